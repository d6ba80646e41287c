//! Id types of the ZooKeeper records and the helper that splits the 10-digit sequence
//! suffix ZooKeeper appends to sequential znodes.
//!
//! Ids are znode names, so they are kept as the exact string read from ZooKeeper
//! (`From<&str>` / `From<String>` never fail); `parse` validates user input such as CLI
//! arguments. All ids serialise as plain JSON strings and order as strings, which for
//! zero-padded sequences is numeric order.
//!
//! An id is a [`CompactString`]: up to 24 bytes (every node, request and upload id; a
//! build id is 32) it is kept inline, without a heap block of its own. A launcher at
//! scale holds a few hundred thousand ids (the cache's maps and indexes, each pool
//! worker's verdicts); see docs/decisions.md.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;

use compact_str::{format_compact, CompactString};
use serde::{Deserialize, Serialize};

use super::ModelError;

/// Width of a ZooKeeper sequence suffix.
pub const SEQUENCE_WIDTH: usize = 10;

/// Splits `name` into the prefix and the 10-digit sequence ZooKeeper appended to it,
/// e.g. `vm0000000002` → `("vm", "0000000002")`,
/// `9f54…__lock__0000000000` → `("9f54…__lock__", "0000000000")`.
/// A negative sequence (`-000000001`, after counter overflow) is accepted like kazoo does.
/// Returns `None` when the name does not end in a sequence.
pub fn split_sequence(name: &str) -> Option<(&str, &str)> {
    let bytes = name.as_bytes();
    if bytes.len() < SEQUENCE_WIDTH {
        return None;
    }
    let start = bytes.len() - SEQUENCE_WIDTH;
    let tail = &bytes[start..];
    let digits_ok = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    // ZooKeeper formats the counter with `%010d`, so after an overflow it is `-000000001`.
    if digits_ok(tail) || (tail[0] == b'-' && digits_ok(&tail[1..])) {
        return Some((&name[..start], &name[start..]));
    }
    None
}

fn validate_name(kind: &'static str, s: &str) -> Result<(), ModelError> {
    let err = |reason| ModelError::InvalidId {
        kind,
        value: s.to_string(),
        reason,
    };
    if s.is_empty() {
        return Err(err("empty"));
    }
    if s.contains('/') {
        return Err(err("contains '/'"));
    }
    if s == "." || s == ".." || s == "lock" {
        return Err(err("reserved znode name"));
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(CompactString);

        impl $name {
            /// Validates a user-supplied id (non-empty, no `/`, not a reserved znode name).
            pub fn parse(s: &str) -> Result<Self, ModelError> {
                validate_name($kind, s)?;
                Ok(Self(CompactString::new(s)))
            }
            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
            /// True for the default, not-yet-stored id.
            pub fn is_empty(&self) -> bool {
                self.0.is_empty()
            }
            /// Consumes the id, returning the string.
            pub fn into_string(self) -> String {
                self.0.into_string()
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl FromStr for $name {
            type Err = ModelError;
            fn from_str(s: &str) -> Result<Self, ModelError> {
                Self::parse(s)
            }
        }
        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(CompactString::new(s))
            }
        }
        impl From<String> for $name {
            fn from(s: String) -> Self {
                // `new` keeps a short id inline (`From<String>` would keep its heap block).
                Self(CompactString::new(&s))
            }
        }
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }
        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

string_id!(
    /// A node id: the 10-digit sequence of `/nodepool/nodes/<id>`, e.g. `0000004772`.
    /// Empty (the default) until the node is first stored.
    NodeId,
    "node id"
);
string_id!(
    /// A node request id `<precedence>-<seq10>`, e.g. `100-0000003350`.
    /// Empty (the default) until the request is first stored.
    RequestId,
    "request id"
);
string_id!(
    /// An image build id: `uuid4().hex` (32 lowercase hex digits) since Nodepool 9.0.0;
    /// older builds used 10-digit sequences, which are accepted too.
    BuildId,
    "build id"
);
string_id!(
    /// An image upload id: the 10-digit sequence of `…/images/<upload-id>`.
    UploadId,
    "upload id"
);

impl NodeId {
    /// The id ZooKeeper gives the node whose sequence number is `seq`.
    pub fn from_sequence(seq: u64) -> Self {
        Self(format_compact!("{seq:010}"))
    }
    /// The numeric sequence, if the id is a plain sequence.
    pub fn sequence(&self) -> Option<u64> {
        parse_digits(&self.0)
    }
}

impl UploadId {
    /// The id ZooKeeper gives the upload whose sequence number is `seq`.
    pub fn from_sequence(seq: u64) -> Self {
        Self(format_compact!("{seq:010}"))
    }
    /// The numeric sequence, if the id is a plain sequence.
    pub fn sequence(&self) -> Option<u64> {
        parse_digits(&self.0)
    }
}

impl BuildId {
    /// A fresh build id, `uuid4().hex`.
    pub fn generate() -> Self {
        Self(CompactString::new(
            uuid::Uuid::new_v4()
                .simple()
                .encode_lower(&mut uuid::Uuid::encode_buffer()),
        ))
    }
}

impl RequestId {
    /// Builds `<precedence>-<sequence>`, e.g. `("100", 3350)` → `100-0000003350`.
    pub fn new(precedence: &str, seq: u64) -> Self {
        Self(format_compact!("{precedence}-{seq:010}"))
    }
    /// Validates a request id: `<precedence>-<sequence>` with exactly one `-` and both
    /// parts non-empty (Python splits on `-` and unpacks two values).
    pub fn parse_strict(s: &str) -> Result<Self, ModelError> {
        validate_name("request id", s)?;
        match s.split_once('-') {
            Some((p, q)) if !p.is_empty() && !q.is_empty() && !q.contains('-') => {
                Ok(Self(CompactString::new(s)))
            }
            _ => Err(ModelError::InvalidId {
                kind: "request id",
                value: s.to_string(),
                reason: "expected <precedence>-<sequence>",
            }),
        }
    }
    /// The text before the `-` (`100`, `200`, `300`, `900` …); the whole id if there is none.
    pub fn precedence(&self) -> &str {
        self.0.split_once('-').map_or(self.0.as_str(), |(p, _)| p)
    }
    /// The text after the `-` (the 10-digit sequence); empty if there is none.
    pub fn sequence(&self) -> &str {
        self.0.split_once('-').map_or("", |(_, s)| s)
    }
    /// Whether Zuul would recognise this as a request id (`id[3] == '-'`).
    pub fn looks_like_zuul_request(&self) -> bool {
        self.0.as_bytes().get(3) == Some(&b'-')
    }
}

fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_suffix() {
        assert_eq!(split_sequence("vm0000000002"), Some(("vm", "0000000002")));
        assert_eq!(split_sequence("0000004772"), Some(("", "0000004772")));
        assert_eq!(
            split_sequence("9f54667cbcfc403587c22e036a44174b__lock__0000000000"),
            Some(("9f54667cbcfc403587c22e036a44174b__lock__", "0000000000"))
        );
        assert_eq!(
            split_sequence("abc__lock__-000000001"),
            Some(("abc__lock__", "-000000001"))
        );
        assert_eq!(split_sequence("short12"), None);
        assert_eq!(split_sequence("host-name"), None);
        assert_eq!(
            split_sequence("host-0000000003"),
            Some(("host-", "0000000003"))
        );
    }

    #[test]
    fn node_and_upload_ids() {
        let id = NodeId::from_sequence(4772);
        assert_eq!(id, "0000004772");
        assert_eq!(id.sequence(), Some(4772));
        assert_eq!(UploadId::from_sequence(1).as_str(), "0000000001");
        assert!(NodeId::parse("").is_err());
        assert!(NodeId::parse("a/b").is_err());
        assert!(NodeId::parse("lock").is_err());
        assert_eq!(NodeId::parse("0000000001").unwrap().sequence(), Some(1));
    }

    #[test]
    fn build_id_is_uuid_hex() {
        let b = BuildId::generate();
        assert_eq!(b.as_str().len(), 32);
        assert!(b
            .as_str()
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    }

    #[test]
    fn request_id_parts() {
        let r = RequestId::new("100", 3350);
        assert_eq!(r, "100-0000003350");
        assert_eq!(r.precedence(), "100");
        assert_eq!(r.sequence(), "0000003350");
        assert!(r.looks_like_zuul_request());
        assert!(RequestId::parse_strict("100-0000003350").is_ok());
        assert!(RequestId::parse_strict("1000000003350").is_err());
        assert!(RequestId::parse_strict("1-2-3").is_err());
        let odd = RequestId::from("garbage");
        assert_eq!(odd.precedence(), "garbage");
        assert_eq!(odd.sequence(), "");
    }

    /// Kept inline or on the heap, an id is its string: JSON, order, hash lookups by
    /// `&str`, and the string it gives back.
    #[test]
    fn ids_behave_as_their_strings() {
        use std::collections::{BTreeSet, HashMap};
        let long = "x".repeat(100);
        for s in ["", "0000004772", "100-0000003350", long.as_str()] {
            let id = RequestId::from(s);
            assert_eq!(id.as_str(), s);
            assert_eq!(RequestId::from(s.to_string()), id);
            assert_eq!(id.clone().into_string(), s);
            assert_eq!(id.to_string(), s);
            let json = serde_json::to_string(&id).unwrap();
            assert_eq!(json, serde_json::to_string(s).unwrap());
            assert_eq!(serde_json::from_str::<RequestId>(&json).unwrap(), id);
            let map: HashMap<RequestId, u8> = [(id.clone(), 1)].into();
            assert_eq!(map.get(s), Some(&1));
        }
        let build = BuildId::generate();
        assert_eq!(
            serde_json::from_value::<BuildId>(build.as_str().into()).unwrap(),
            build
        );
        let ids: BTreeSet<NodeId> = ["0000000010", "0000000002", "a", "0000000001"]
            .into_iter()
            .map(NodeId::from)
            .collect();
        let sorted: Vec<&str> = ids.iter().map(NodeId::as_str).collect();
        assert_eq!(sorted, ["0000000001", "0000000002", "0000000010", "a"]);
    }
}
