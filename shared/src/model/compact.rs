//! [`CompactNode`]: a node record as the tree cache keeps it, about a third of the
//! memory of a [`Node`] (a launcher caches every node of the system: 100,000 on a large
//! deployment; docs/benchmarks.md).
//!
//! A [`Node`] is about 1 kB before its texts (three `serde_json::Value`s and three maps
//! inline, 18 optional strings) plus one allocation per text. Here:
//!
//! * the texts a whole fleet shares (cloud, provider, pool, labels, AZ, region, image,
//!   launcher, username, connection and shell type, python path, tenant, requestor) form
//!   one interned [`Profile`], shared by every node with the same values;
//! * the node's own texts (addresses, server and host ids, hostname, allocation,
//!   comment, hold job, host keys) are packed into one buffer;
//! * the `resources` a launcher writes (`cores`, `instances`, `ram` as integers, in that
//!   order) are three integers; anything else, and the opaque or rarely set keys
//!   (`user_data`, `attributes`, `driver_data`, `node_properties`, `slot`,
//!   `hold_expiration`, unknown keys), go to one boxed [`Rare`] part that most nodes do
//!   not have.
//!
//! [`CompactNode::to_node`] gives back exactly the [`Node`] it was made from (tested
//! on every golden record and by the property tests), so the record written back or
//! shown is never changed by the cache.

use std::borrow::{Borrow, Cow};
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};

use super::compact_json;
use super::quota::{QuotaInformation, CORES, INSTANCES, RAM};
use super::{ModelError, Node, NodeId, NodeState, RequestId};

/// The texts nodes of a fleet share; interned, so equal profiles are stored once.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Profile {
    cloud: Option<Box<str>>,
    provider: Option<Box<str>>,
    pool: Option<Box<str>>,
    labels: Box<[Box<str>]>,
    az: Option<Box<str>>,
    region: Option<Box<str>>,
    image_id: Option<Box<str>>,
    launcher: Option<Box<str>>,
    username: Option<Box<str>>,
    connection_type: Option<Box<str>>,
    shell_type: Option<Box<str>>,
    python_path: Option<Box<str>>,
    tenant_name: Option<Box<str>>,
    requestor: Option<Box<str>>,
}

/// The texts of a [`Profile`] other than its labels, in its field order; the index of
/// each in [`Parts::shared`].
#[derive(Clone, Copy)]
pub(super) enum Shared {
    Cloud,
    Provider,
    Pool,
    Az,
    Region,
    ImageId,
    Launcher,
    Username,
    ConnectionType,
    ShellType,
    PythonPath,
    TenantName,
    Requestor,
}

const SHARED: usize = 13;

impl Profile {
    /// The texts in [`Shared`] order.
    fn texts(&self) -> [Option<&str>; SHARED] {
        [
            &self.cloud,
            &self.provider,
            &self.pool,
            &self.az,
            &self.region,
            &self.image_id,
            &self.launcher,
            &self.username,
            &self.connection_type,
            &self.shell_type,
            &self.python_path,
            &self.tenant_name,
            &self.requestor,
        ]
        .map(|t| t.as_deref())
    }
}

/// A profile's values borrowed from where they were read: looked up without building a
/// [`Profile`], so nothing is allocated for a profile the fleet already has.
struct ProfileKey<'a, L> {
    texts: [Option<&'a str>; SHARED],
    labels: &'a [L],
}

impl<L: AsRef<str>> ProfileKey<'_, L> {
    fn hash(&self, state: &RandomState) -> u64 {
        let mut h = state.build_hasher();
        self.texts.hash(&mut h);
        h.write_usize(self.labels.len());
        for l in self.labels {
            l.as_ref().hash(&mut h);
        }
        h.finish()
    }

    fn matches(&self, p: &Profile) -> bool {
        self.texts == p.texts()
            && self.labels.len() == p.labels.len()
            && self
                .labels
                .iter()
                .zip(&*p.labels)
                .all(|(a, b)| a.as_ref() == &**b)
    }

    fn to_profile(&self) -> Profile {
        let [cloud, provider, pool, az, region, image_id, launcher, username, connection_type, shell_type, python_path, tenant_name, requestor] =
            self.texts.map(|t| t.map(Box::from));
        Profile {
            cloud,
            provider,
            pool,
            labels: self.labels.iter().map(|l| Box::from(l.as_ref())).collect(),
            az,
            region,
            image_id,
            launcher,
            username,
            connection_type,
            shell_type,
            python_path,
            tenant_name,
            requestor,
        }
    }
}

/// The shared profiles, by the hash of their values. Entries nobody uses any more are
/// dropped whenever the set has doubled since the last sweep, so hostile or churning
/// values cannot make it grow beyond twice the values in use.
struct Interner {
    by_hash: HashMap<u64, Vec<Arc<Profile>>>,
    len: usize,
    sweep_at: usize,
    state: RandomState,
}

const MIN_SWEEP: usize = 1024;

impl Interner {
    fn intern<L: AsRef<str>>(&mut self, key: &ProfileKey<'_, L>) -> Arc<Profile> {
        let hash = key.hash(&self.state);
        if let Some(p) = self
            .by_hash
            .get(&hash)
            .and_then(|same| same.iter().find(|p| key.matches(p)))
        {
            return p.clone();
        }
        if self.len >= self.sweep_at {
            self.by_hash.retain(|_, same| {
                same.retain(|p| Arc::strong_count(p) > 1);
                !same.is_empty()
            });
            self.len = self.by_hash.values().map(Vec::len).sum();
            self.sweep_at = (self.len * 2).max(MIN_SWEEP);
        }
        let p = Arc::new(key.to_profile());
        self.by_hash.entry(hash).or_default().push(p.clone());
        self.len += 1;
        p
    }
}

static PROFILES: Mutex<Option<Interner>> = Mutex::new(None);

fn intern_profile<L: AsRef<str>>(key: &ProfileKey<'_, L>) -> Arc<Profile> {
    let mut g = PROFILES.lock().unwrap_or_else(|e| e.into_inner());
    g.get_or_insert_with(|| Interner {
        by_hash: HashMap::new(),
        len: 0,
        sweep_at: MIN_SWEEP,
        state: RandomState::new(),
    })
    .intern(key)
}

/// Number of distinct profiles held (for tests and benchmarks).
pub fn interned_profiles() -> usize {
    PROFILES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .map_or(0, |i| i.len)
}

/// The per-node texts, in this order, then the host keys; the index of each in
/// [`Parts::texts`].
#[derive(Clone, Copy)]
pub(super) enum Text {
    AllocatedTo,
    PublicIpv4,
    PrivateIpv4,
    PublicIpv6,
    HostId,
    InterfaceIp,
    ExternalId,
    Hostname,
    Comment,
    HoldJob,
}

pub(super) const TEXTS: usize = 10;

/// Optional texts packed into one buffer: `ends[i]` is where text `i` ends; a text
/// whose bit in `present` is clear is `None`. The host keys follow, each as
/// [`pack_host_key`] writes it.
#[derive(Clone, Debug, PartialEq, Default)]
struct Packed {
    buf: Box<[u8]>,
    ends: Box<[u32]>,
    present: u16,
}

impl Packed {
    fn new(texts: [Option<&str>; TEXTS], host_keys: &[impl AsRef<str>]) -> Packed {
        let len: usize = texts.iter().flatten().map(|t| t.len()).sum::<usize>()
            + host_keys
                .iter()
                .map(|k| k.as_ref().len() + 1)
                .sum::<usize>();
        let mut buf = Vec::with_capacity(len);
        let mut ends = Vec::with_capacity(TEXTS + host_keys.len());
        let mut present = 0u16;
        // A record is at most ZooKeeper's 1 MB znode limit (jute.maxbuffer): far below 4 GB.
        let end = |buf: &Vec<u8>| u32::try_from(buf.len()).unwrap_or(u32::MAX);
        for (i, t) in texts.iter().enumerate() {
            if let Some(t) = t {
                buf.extend_from_slice(t.as_bytes());
                present |= 1 << i;
            }
            ends.push(end(&buf));
        }
        for k in host_keys {
            pack_host_key(k.as_ref(), &mut buf);
            ends.push(end(&buf));
        }
        Packed {
            buf: buf.into_boxed_slice(),
            ends: ends.into_boxed_slice(),
            present,
        }
    }

    fn bytes(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        let end = self.ends[i] as usize;
        self.buf.get(start..end).unwrap_or_default()
    }

    fn get(&self, t: Text) -> Option<&str> {
        let i = t as usize;
        // Written from a `String` by `new`: always UTF-8.
        (self.present & (1 << i) != 0).then(|| std::str::from_utf8(self.bytes(i)).unwrap_or(""))
    }

    fn host_keys(&self) -> impl ExactSizeIterator<Item = Cow<'_, str>> + '_ {
        (TEXTS..self.ends.len()).map(|i| unpack_host_key(self.bytes(i)))
    }
}

/// A host key kept as written.
const KEY_TEXT: u8 = 0;
/// A host key `<type> <base64>` with the base64 at 6 bits a character.
const KEY_PACKED: u8 = 1;

/// The base64 alphabet (RFC 4648 §4), in value order.
const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Each byte's base64 value, or [`NOT_BASE64`].
const BASE64_VALUES: [u8; 256] = {
    let mut t = [NOT_BASE64; 256];
    let mut i = 0;
    while i < 64 {
        t[BASE64[i] as usize] = i as u8;
        i += 1;
    }
    t
};
const NOT_BASE64: u8 = 0xff;

fn base64_value(c: u8) -> u8 {
    BASE64_VALUES[usize::from(c)]
}

/// Appends a host key to `buf`. An OpenSSH public key (`<type> <base64>`, what Nodepool
/// stores: a quarter of a node's record) keeps its base64 at 6 bits a character (any
/// run of base64 characters and up to two `=`, valid base64 or not, so that it comes
/// back exactly); anything else is kept as written.
fn pack_host_key(key: &str, buf: &mut Vec<u8>) {
    let shape = key.split_once(' ').and_then(|(kind, body)| {
        let digits = body.trim_end_matches('=');
        let pad = body.len() - digits.len();
        let ok = !kind.is_empty()
            && kind.len() <= usize::from(u8::MAX)
            && pad <= 2
            && digits.len() >= 16
            && u32::try_from(digits.len()).is_ok();
        ok.then_some((kind, digits, pad))
    });
    let start = buf.len();
    if let Some((kind, digits, pad)) = shape {
        if pack_base64(kind, digits, pad, buf) {
            return;
        }
        buf.truncate(start);
    }
    buf.push(KEY_TEXT);
    buf.extend_from_slice(key.as_bytes());
}

/// Appends `<kind> <digits>` and `pad` `=` packed; false (`buf` then partly written) if
/// a digit is not a base64 character. One pass: the digits are checked as they are
/// packed, whole groups of four at a time.
fn pack_base64(kind: &str, digits: &str, pad: usize, buf: &mut Vec<u8>) -> bool {
    buf.push(KEY_PACKED);
    buf.push(kind.len() as u8);
    buf.extend_from_slice(kind.as_bytes());
    buf.push(pad as u8);
    buf.extend_from_slice(&(digits.len() as u32).to_le_bytes());
    let digits = digits.as_bytes();
    let groups = digits.chunks_exact(4);
    let rest = groups.remainder();
    // 1 to 3 characters left over take 1 to 3 bytes.
    let rest_len = (rest.len() * 6).div_ceil(8);
    let at = buf.len();
    buf.resize(at + digits.len() / 4 * 3 + rest_len, 0);
    let (out, out_rest) = buf[at..].split_at_mut(digits.len() / 4 * 3);
    // A character outside base64 has the value 0xff: its high bits end up in `seen`.
    let mut seen = 0u8;
    for (g, o) in groups.zip(out.chunks_exact_mut(3)) {
        let v = [g[0], g[1], g[2], g[3]].map(base64_value);
        seen |= v[0] | v[1] | v[2] | v[3];
        let bits = v.iter().fold(0u32, |b, x| b << 6 | u32::from(*x & 63));
        o.copy_from_slice(&bits.to_be_bytes()[1..]);
    }
    if !rest.is_empty() {
        let mut bits = 0u32;
        for (j, c) in rest.iter().enumerate() {
            let v = base64_value(*c);
            seen |= v;
            bits |= u32::from(v & 63) << (18 - 6 * j);
        }
        out_rest.copy_from_slice(&bits.to_be_bytes()[1..1 + rest_len]);
    }
    seen & !63 == 0
}

/// A host key as [`pack_host_key`] wrote it.
fn unpack_host_key(b: &[u8]) -> Cow<'_, str> {
    match b.split_first() {
        Some((&KEY_PACKED, rest)) => {
            unpack_packed(rest).map_or_else(|| String::from_utf8_lossy(rest), Cow::Owned)
        }
        Some((_, rest)) => String::from_utf8_lossy(rest),
        None => Cow::Borrowed(""),
    }
}

fn unpack_packed(b: &[u8]) -> Option<String> {
    let (&kind_len, b) = b.split_first()?;
    let (kind, b) = b.split_at_checked(usize::from(kind_len))?;
    let (&pad, b) = b.split_first()?;
    let (len, mut b) = b.split_at_checked(4)?;
    let len = u32::from_le_bytes(len.try_into().ok()?) as usize;
    let mut out = String::with_capacity(kind.len() + 1 + len + usize::from(pad));
    out.push_str(std::str::from_utf8(kind).ok()?);
    out.push(' ');
    let mut left = len;
    while left > 0 {
        let chars = left.min(4);
        let (group, rest) = b.split_at_checked((chars * 6).div_ceil(8))?;
        let mut bytes = [0u8; 4];
        bytes[1..1 + group.len()].copy_from_slice(group);
        let bits = u32::from_be_bytes(bytes);
        for j in 0..chars {
            out.push(char::from(BASE64[((bits >> (18 - 6 * j)) & 63) as usize]));
        }
        left -= chars;
        b = rest;
    }
    for _ in 0..pad {
        out.push('=');
    }
    Some(out)
}

/// `resources` as a launcher writes it, or anything else (kept as is in [`Rare`]).
#[derive(Clone, Debug, PartialEq)]
enum Resources {
    None,
    /// `{"cores": c, "instances": i, "ram": r}`, integers, in this order.
    Standard([i64; 3]),
    /// Another shape (other keys, floats, another order): in [`Rare::resources`].
    Other,
}

/// The keys most nodes leave at their defaults.
#[derive(Clone, Debug, PartialEq, Default)]
pub(super) struct Rare {
    pub user_data: Value,
    pub attributes: Value,
    pub driver_data: Value,
    pub node_properties: Map<String, Value>,
    pub extra: Map<String, Value>,
    /// `resources` of another shape than [`Resources::Standard`].
    resources: Option<Map<String, Value>>,
    pub slot: Option<i64>,
    pub hold_expiration: Option<i64>,
}

impl Rare {
    fn is_default(&self) -> bool {
        self.user_data.is_null()
            && self.attributes.is_null()
            && self.driver_data.is_null()
            && self.node_properties.is_empty()
            && self.extra.is_empty()
            && self.resources.is_none()
            && self.slot.is_none()
            && self.hold_expiration.is_none()
    }
}

fn standard_resources(m: &Map<String, Value>) -> Option<[i64; 3]> {
    if m.len() != 3 {
        return None;
    }
    let mut out = [0i64; 3];
    for (slot, ((k, v), want)) in out.iter_mut().zip(m.iter().zip([CORES, INSTANCES, RAM])) {
        if k != want {
            return None;
        }
        // Only plain integers: a float such as 4.0 must be written back as 4.0.
        match v {
            Value::Number(n) if n.is_i64() || n.is_u64() => *slot = n.as_i64()?,
            _ => return None,
        }
    }
    Some(out)
}

/// `resources` as read: absent or null, the standard three integers, or any object.
pub(super) enum ReadResources {
    None,
    Standard([i64; 3]),
    Map(Map<String, Value>),
}

/// A node record's values, borrowed from where they were read (a [`Node`] or the JSON
/// text): what a [`CompactNode`] is built from.
pub(super) struct Parts<'a> {
    pub id: NodeId,
    pub state: NodeState,
    pub state_time: f64,
    pub created_time: Option<f64>,
    pub connection_port: u16,
    /// The profile's texts, indexed by [`Shared`].
    pub shared: [Option<Cow<'a, str>>; SHARED],
    pub labels: Vec<Cow<'a, str>>,
    /// The node's own texts, indexed by [`Text`].
    pub texts: [Option<Cow<'a, str>>; TEXTS],
    pub host_keys: Vec<Cow<'a, str>>,
    pub resources: ReadResources,
    /// Everything else (`resources` apart, set from [`Parts::resources`]).
    pub rare: Rare,
}

impl Parts<'_> {
    /// A record with every key absent: `Node::from_json`'s defaults (`username` is
    /// `zuul`, the port 22); `state` must still be set.
    pub fn new(id: NodeId) -> Self {
        let mut shared: [Option<Cow<'_, str>>; SHARED] = Default::default();
        shared[Shared::Username as usize] = Some(Cow::Borrowed("zuul"));
        Parts {
            id,
            state: NodeState::Init,
            state_time: 0.0,
            created_time: None,
            connection_port: 22,
            shared,
            labels: Vec::new(),
            texts: Default::default(),
            host_keys: Vec::new(),
            resources: ReadResources::None,
            rare: Rare::default(),
        }
    }
}

fn unboxed(s: &Option<Box<str>>) -> Option<String> {
    s.as_deref().map(str::to_string)
}

/// A node record in compact form (see the module doc); read it with the accessors or
/// turn it back into a [`Node`] with [`CompactNode::to_node`].
#[derive(Clone, Debug, PartialEq)]
pub struct CompactNode {
    id: NodeId,
    state: NodeState,
    connection_port: u16,
    state_time: f64,
    created_time: Option<f64>,
    profile: Arc<Profile>,
    texts: Packed,
    resources: Resources,
    rare: Option<Box<Rare>>,
}

impl From<Node> for CompactNode {
    fn from(n: Node) -> Self {
        let Node {
            id,
            state,
            state_time,
            cloud,
            provider,
            pool,
            node_type,
            allocated_to,
            az,
            region,
            public_ipv4,
            private_ipv4,
            public_ipv6,
            host_id,
            interface_ip,
            connection_port,
            image_id,
            launcher,
            created_time,
            external_id,
            hostname,
            comment,
            user_data,
            hold_job,
            host_keys,
            username,
            connection_type,
            shell_type,
            hold_expiration,
            resources,
            slot,
            attributes,
            python_path,
            tenant_name,
            driver_data,
            requestor,
            node_properties,
            extra,
        } = n;
        fn b(s: &Option<String>) -> Option<Cow<'_, str>> {
            s.as_deref().map(Cow::Borrowed)
        }
        fn strs(v: &[String]) -> Vec<Cow<'_, str>> {
            v.iter().map(|s| Cow::Borrowed(s.as_str())).collect()
        }
        CompactNode::from_parts(Parts {
            id,
            state,
            state_time,
            created_time,
            connection_port,
            shared: [
                b(&cloud),
                b(&provider),
                b(&pool),
                b(&az),
                b(&region),
                b(&image_id),
                b(&launcher),
                b(&username),
                b(&connection_type),
                b(&shell_type),
                b(&python_path),
                b(&tenant_name),
                b(&requestor),
            ],
            labels: strs(&node_type),
            texts: [
                allocated_to.as_ref().map(|r| Cow::Borrowed(r.as_str())),
                b(&public_ipv4),
                b(&private_ipv4),
                b(&public_ipv6),
                b(&host_id),
                b(&interface_ip),
                b(&external_id),
                b(&hostname),
                b(&comment),
                b(&hold_job),
            ],
            host_keys: strs(&host_keys),
            resources: resources.map_or(ReadResources::None, ReadResources::Map),
            rare: Rare {
                user_data,
                attributes,
                driver_data,
                node_properties,
                extra,
                resources: None,
                slot,
                hold_expiration,
            },
        })
    }
}

impl CompactNode {
    /// Reads a node znode, as [`Node::from_json`] followed by [`CompactNode::from`] would
    /// (same record, same errors), but straight from the JSON text in most cases
    /// (module `compact_json`). Empty data means "no node" (`Ok(None)`).
    pub fn from_json(id: &NodeId, data: &[u8]) -> Result<Option<CompactNode>, ModelError> {
        if data.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        if let Some(n) = compact_json::parse(id, data) {
            return Ok(Some(n));
        }
        Node::from_json(id, data).map(|n| n.map(CompactNode::from))
    }

    /// Packs the values of a record.
    pub(super) fn from_parts(p: Parts<'_>) -> CompactNode {
        let profile = intern_profile(&ProfileKey {
            texts: p.shared.each_ref().map(|t| t.as_deref()),
            labels: &p.labels,
        });
        let texts = Packed::new(p.texts.each_ref().map(|t| t.as_deref()), &p.host_keys);
        let mut rare = p.rare;
        let resources = match p.resources {
            ReadResources::None => Resources::None,
            ReadResources::Standard(v) => Resources::Standard(v),
            ReadResources::Map(m) => match standard_resources(&m) {
                Some(v) => Resources::Standard(v),
                None => {
                    rare.resources = Some(m);
                    Resources::Other
                }
            },
        };
        CompactNode {
            id: p.id,
            state: p.state,
            connection_port: p.connection_port,
            state_time: p.state_time,
            created_time: p.created_time,
            profile,
            texts,
            resources,
            rare: (!rare.is_default()).then(|| Box::new(rare)),
        }
    }

    /// The record as a [`Node`], exactly as it was read.
    pub fn to_node(&self) -> Node {
        let p = &*self.profile;
        let t = |k: Text| self.texts.get(k).map(str::to_string);
        let rare = self.rare.as_deref();
        let r = |f: fn(&Rare) -> Value| rare.map_or(Value::Null, f);
        Node {
            id: self.id.clone(),
            state: self.state,
            state_time: self.state_time,
            cloud: unboxed(&p.cloud),
            provider: unboxed(&p.provider),
            pool: unboxed(&p.pool),
            node_type: p.labels.iter().map(|l| l.to_string()).collect(),
            allocated_to: self.texts.get(Text::AllocatedTo).map(RequestId::from),
            az: unboxed(&p.az),
            region: unboxed(&p.region),
            public_ipv4: t(Text::PublicIpv4),
            private_ipv4: t(Text::PrivateIpv4),
            public_ipv6: t(Text::PublicIpv6),
            host_id: t(Text::HostId),
            interface_ip: t(Text::InterfaceIp),
            connection_port: self.connection_port,
            image_id: unboxed(&p.image_id),
            launcher: unboxed(&p.launcher),
            created_time: self.created_time,
            external_id: t(Text::ExternalId),
            hostname: t(Text::Hostname),
            comment: t(Text::Comment),
            user_data: r(|r| r.user_data.clone()),
            hold_job: t(Text::HoldJob),
            host_keys: self.texts.host_keys().map(Cow::into_owned).collect(),
            username: unboxed(&p.username),
            connection_type: unboxed(&p.connection_type),
            shell_type: unboxed(&p.shell_type),
            hold_expiration: rare.and_then(|r| r.hold_expiration),
            resources: self.resources(),
            slot: rare.and_then(|r| r.slot),
            attributes: r(|r| r.attributes.clone()),
            python_path: unboxed(&p.python_path),
            tenant_name: unboxed(&p.tenant_name),
            driver_data: r(|r| r.driver_data.clone()),
            requestor: unboxed(&p.requestor),
            node_properties: rare.map(|r| r.node_properties.clone()).unwrap_or_default(),
            extra: rare.map(|r| r.extra.clone()).unwrap_or_default(),
        }
    }

    /// The znode name.
    pub fn id(&self) -> &NodeId {
        &self.id
    }
    /// `state`.
    pub fn state(&self) -> NodeState {
        self.state
    }
    /// `state_time` (epoch seconds).
    pub fn state_time(&self) -> f64 {
        self.state_time
    }
    /// `created_time` (epoch seconds).
    pub fn created_time(&self) -> Option<f64> {
        self.created_time
    }
    /// `connection_port`.
    pub fn connection_port(&self) -> u16 {
        self.connection_port
    }
    /// `cloud`.
    pub fn cloud(&self) -> Option<&str> {
        self.profile.cloud.as_deref()
    }
    /// `provider`.
    pub fn provider(&self) -> Option<&str> {
        self.profile.provider.as_deref()
    }
    /// `pool`.
    pub fn pool(&self) -> Option<&str> {
        self.profile.pool.as_deref()
    }
    /// `type`: the labels.
    pub fn labels(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.profile.labels.iter().map(Borrow::borrow)
    }
    /// The first label.
    pub fn first_label(&self) -> Option<&str> {
        self.profile.labels.first().map(Borrow::borrow)
    }
    /// True if the node carries `label` in its `type` list.
    pub fn has_label(&self, label: &str) -> bool {
        self.profile.labels.iter().any(|l| &**l == label)
    }
    /// `az`.
    pub fn az(&self) -> Option<&str> {
        self.profile.az.as_deref()
    }
    /// `region`.
    pub fn region(&self) -> Option<&str> {
        self.profile.region.as_deref()
    }
    /// `image_id`.
    pub fn image_id(&self) -> Option<&str> {
        self.profile.image_id.as_deref()
    }
    /// `launcher`.
    pub fn launcher(&self) -> Option<&str> {
        self.profile.launcher.as_deref()
    }
    /// `username`.
    pub fn username(&self) -> Option<&str> {
        self.profile.username.as_deref()
    }
    /// `tenant_name`.
    pub fn tenant_name(&self) -> Option<&str> {
        self.profile.tenant_name.as_deref()
    }
    /// `requestor`.
    pub fn requestor(&self) -> Option<&str> {
        self.profile.requestor.as_deref()
    }
    /// `allocated_to`: the request id.
    pub fn allocated_to(&self) -> Option<&str> {
        self.texts.get(Text::AllocatedTo)
    }
    /// True if the node is allocated to `request`.
    pub fn is_allocated_to(&self, request: &RequestId) -> bool {
        self.allocated_to() == Some(request.as_str())
    }
    /// `public_ipv4`.
    pub fn public_ipv4(&self) -> Option<&str> {
        self.texts.get(Text::PublicIpv4)
    }
    /// `private_ipv4`.
    pub fn private_ipv4(&self) -> Option<&str> {
        self.texts.get(Text::PrivateIpv4)
    }
    /// `public_ipv6`.
    pub fn public_ipv6(&self) -> Option<&str> {
        self.texts.get(Text::PublicIpv6)
    }
    /// `interface_ip`.
    pub fn interface_ip(&self) -> Option<&str> {
        self.texts.get(Text::InterfaceIp)
    }
    /// `external_id`: the cloud server id.
    pub fn external_id(&self) -> Option<&str> {
        self.texts.get(Text::ExternalId)
    }
    /// `hostname`.
    pub fn hostname(&self) -> Option<&str> {
        self.texts.get(Text::Hostname)
    }
    /// `comment`.
    pub fn comment(&self) -> Option<&str> {
        self.texts.get(Text::Comment)
    }
    /// `hold_job`.
    pub fn hold_job(&self) -> Option<&str> {
        self.texts.get(Text::HoldJob)
    }
    /// `host_keys` (an OpenSSH key is kept packed and written out on each call).
    pub fn host_keys(&self) -> impl ExactSizeIterator<Item = Cow<'_, str>> + '_ {
        self.texts.host_keys()
    }
    /// `slot` (a static node's slot on its host).
    pub fn slot(&self) -> Option<i64> {
        self.rare.as_ref().and_then(|r| r.slot)
    }
    /// `hold_expiration`.
    pub fn hold_expiration(&self) -> Option<i64> {
        self.rare.as_ref().and_then(|r| r.hold_expiration)
    }
    /// `user_data` (`null` when unset).
    pub fn user_data(&self) -> &Value {
        self.rare.as_ref().map_or(&Value::Null, |r| &r.user_data)
    }
    /// `driver_data` (`null` when unset).
    pub fn driver_data(&self) -> &Value {
        self.rare.as_ref().map_or(&Value::Null, |r| &r.driver_data)
    }
    /// `resources`, as the record has it.
    pub fn resources(&self) -> Option<Map<String, Value>> {
        match &self.resources {
            Resources::None => None,
            Resources::Standard(v) => Some(
                [CORES, INSTANCES, RAM]
                    .into_iter()
                    .zip(v)
                    .map(|(k, v)| (k.to_string(), Value::from(*v)))
                    .collect(),
            ),
            Resources::Other => self.rare.as_ref().and_then(|r| r.resources.clone()),
        }
    }
    /// `cores`, `instances` and `ram` when `resources` is exactly these three integers
    /// (what a launcher writes), for summing usage without building a
    /// [`QuotaInformation`] per node.
    pub fn standard_resources(&self) -> Option<[i64; 3]> {
        match self.resources {
            Resources::Standard(v) => Some(v),
            _ => None,
        }
    }

    /// `resources` as quota usage, like [`Node::resources_quota`].
    pub fn resources_quota(&self) -> Option<QuotaInformation> {
        match &self.resources {
            Resources::None => None,
            Resources::Standard([c, i, r]) => {
                let mut q = QuotaInformation::usage();
                q.set(CORES, *c as f64);
                q.set(INSTANCES, *i as f64);
                q.set(RAM, *r as f64);
                Some(q)
            }
            Resources::Other => self
                .rare
                .as_ref()
                .and_then(|r| r.resources.as_ref())
                .map(QuotaInformation::from_resources),
        }
    }
}

/// What code that filters nodes reads, the same for a [`Node`] and a cached
/// [`CompactNode`] (so a check made on the cache is re-made on the record read under
/// the lock with the same function).
pub trait NodeView {
    /// The znode name.
    fn node_id(&self) -> &NodeId;
    /// `state`.
    fn node_state(&self) -> NodeState;
    /// `state_time`.
    fn node_state_time(&self) -> f64;
    /// `provider`.
    fn node_provider(&self) -> Option<&str>;
    /// `pool`.
    fn node_pool(&self) -> Option<&str>;
    /// `az`.
    fn node_az(&self) -> Option<&str>;
    /// `allocated_to`.
    fn node_allocated_to(&self) -> Option<&str>;
    /// `hold_expiration`.
    fn node_hold_expiration(&self) -> Option<i64>;
    /// True if `label` is in `type`.
    fn node_has_label(&self, label: &str) -> bool;
}

impl NodeView for Node {
    fn node_id(&self) -> &NodeId {
        &self.id
    }
    fn node_state(&self) -> NodeState {
        self.state
    }
    fn node_state_time(&self) -> f64 {
        self.state_time
    }
    fn node_provider(&self) -> Option<&str> {
        self.provider.as_deref()
    }
    fn node_pool(&self) -> Option<&str> {
        self.pool.as_deref()
    }
    fn node_az(&self) -> Option<&str> {
        self.az.as_deref()
    }
    fn node_allocated_to(&self) -> Option<&str> {
        self.allocated_to.as_ref().map(RequestId::as_str)
    }
    fn node_hold_expiration(&self) -> Option<i64> {
        self.hold_expiration
    }
    fn node_has_label(&self, label: &str) -> bool {
        self.has_label(label)
    }
}

impl NodeView for CompactNode {
    fn node_id(&self) -> &NodeId {
        self.id()
    }
    fn node_state(&self) -> NodeState {
        self.state()
    }
    fn node_state_time(&self) -> f64 {
        self.state_time()
    }
    fn node_provider(&self) -> Option<&str> {
        self.provider()
    }
    fn node_pool(&self) -> Option<&str> {
        self.pool()
    }
    fn node_az(&self) -> Option<&str> {
        self.az()
    }
    fn node_allocated_to(&self) -> Option<&str> {
        self.allocated_to()
    }
    fn node_hold_expiration(&self) -> Option<i64> {
        self.hold_expiration()
    }
    fn node_has_label(&self, label: &str) -> bool {
        self.has_label(label)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::scale::{realistic_node, FleetShape};
    use serde_json::json;
    use std::collections::HashSet;

    fn round_trip(n: Node) {
        let c = CompactNode::from(n.clone());
        assert_eq!(c.to_node(), n);
        assert_eq!(c.to_node().to_json(), n.to_json());
        assert_eq!(c.resources_quota(), n.resources_quota());
        assert_eq!(c.provider(), n.provider.as_deref());
        assert_eq!(
            c.allocated_to(),
            n.allocated_to.as_ref().map(|r| r.as_str())
        );
        assert_eq!(c.labels().collect::<Vec<_>>(), n.node_type);
        assert_eq!(c.host_keys().collect::<Vec<_>>(), n.host_keys);
    }

    #[test]
    fn round_trips_every_shape() {
        round_trip(Node::default());
        round_trip(realistic_node(7, FleetShape::default(), 1.7e9));
        let mut n = realistic_node(8, FleetShape::default(), 1.7e9);
        n.comment = Some(String::new());
        n.hold_job = Some("ünïcode \u{0} job".into());
        n.user_data = json!({"b": 1, "a": [null, 2.5]});
        n.attributes = json!("x");
        n.driver_data = json!([1]);
        n.node_properties.insert("spot".into(), json!(false));
        n.extra.insert("id".into(), json!("0000000008"));
        n.slot = Some(-3);
        n.hold_expiration = Some(0);
        n.host_keys.clear();
        n.node_type = vec!["a".into(), "b".into(), String::new()];
        round_trip(n.clone());
        for resources in [
            json!({"cores": 4.0, "instances": 1, "ram": 8192}),
            json!({"instances": 1, "cores": 4, "ram": 8192}),
            json!({"cores": 4, "instances": 1, "ram": 8192, "volumes": 2}),
            json!({"cores": 4, "instances": 1, "ram": u64::MAX}),
            json!({"cores": -1, "instances": 1, "ram": "x"}),
            json!({}),
        ] {
            n.resources = resources.as_object().cloned();
            round_trip(n.clone());
        }
    }

    #[test]
    fn host_keys_come_back_exactly() {
        let mut keys: Vec<String> = [
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
            "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEmKSENjQEezOmxkZMy7opKgwFB9nkt5YRrYMjNuG5N87uRgg6CLrbo5wAdT/y6v0mKV0U2w0WZ2YB/++Tpockg=",
            "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ== comment@host",
            "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ===",
            "ssh-rsa AAAAB3Nza C1yc2EAAAADAQABAAABAQ",
            "ssh-rsa AAAAB3NzaC1yc2EAAAADAQAB-AABAQ",
            "ssh-rsa short",
            " AAAAB3NzaC1yc2EAAAADAQABAAABAQ",
            "ünïcode AAAAB3NzaC1yc2EAAAADAQABAAABAQ",
            "no-space-at-all",
            "",
            "=",
        ]
        .iter()
        .map(|k| k.to_string())
        .collect();
        // Every length around the 4-character groups, with and without padding.
        for len in 16..=24 {
            for pad in ["", "=", "=="] {
                keys.push(format!(
                    "ssh-x {}{pad}",
                    &BASE64[..].repeat(2)[len..2 * len].escape_ascii()
                ));
            }
        }
        let n = Node {
            host_keys: keys.clone(),
            ..Node::default()
        };
        let c = CompactNode::from(n);
        assert_eq!(c.host_keys().collect::<Vec<_>>(), keys);
        // A realistic fleet's keys take under four fifths of their text.
        let n = realistic_node(3, FleetShape::default(), 1.7e9);
        let text: usize = n.host_keys.iter().map(String::len).sum();
        let mut buf = Vec::new();
        for k in &n.host_keys {
            pack_host_key(k, &mut buf);
        }
        assert!(buf.len() * 100 < text * 80, "{} of {text}", buf.len());
        round_trip(n);
    }

    #[test]
    fn a_fleet_shares_its_profiles() {
        let nodes: Vec<CompactNode> = (0..2000)
            .map(|i| realistic_node(i, FleetShape::default(), 1.7e9).into())
            .collect();
        // The profile depends on the label (which fixes the provider) and on whether the
        // node is in use: 40 combinations for 2,000 nodes.
        assert!(Arc::ptr_eq(&nodes[0].profile, &nodes[40].profile));
        let distinct: HashSet<*const Profile> =
            nodes.iter().map(|n| Arc::as_ptr(&n.profile)).collect();
        assert!(distinct.len() <= 40, "{}", distinct.len());
    }

    #[test]
    fn unused_profiles_are_swept() {
        // Distinct hostile values: the interner must not keep them once unused.
        for i in 0..(4 * MIN_SWEEP) {
            let n = Node {
                provider: Some(format!("churn-{i}")),
                ..Node::default()
            };
            drop(CompactNode::from(n));
        }
        assert!(
            interned_profiles() <= 2 * MIN_SWEEP + 100,
            "{}",
            interned_profiles()
        );
    }
}
