//! One version story for every binary and every ZooKeeper component record: our own
//! release ([`OURS`], the workspace's Cargo version) and the Python Nodepool release whose
//! ZooKeeper data, config and behaviour we are compatible with ([`NODEPOOL_COMPAT`]).
//!
//! * `--version` of every binary prints [`version_line`]:
//!   `nodepool-launcher 0.1.0 (Nodepool in Rust; compatible with Nodepool 11.0.0)`.
//! * The `version` field of `/nodepool/components/*` records is [`COMPONENT_VERSION`],
//!   `11.0.0+rust.0.1.0`: it starts with the Nodepool release, as Python Nodepool's own
//!   (`11.0.0`), and carries ours as build metadata (valid both as a SemVer and as a
//!   PEP 440 local version). Neither Nodepool nor Zuul parses this field: Nodepool only
//!   writes it and Zuul reads pool components for `id` and `supported_labels`; the
//!   version is for people (`nodepool-tui`'s components view, `zkCli get`).

/// The Python Nodepool release we are compatible with.
pub const NODEPOOL_COMPAT: &str = "11.0.0";

/// Our own version (the workspace's Cargo version).
pub const OURS: &str = env!("CARGO_PKG_VERSION");

/// The `version` written into component records.
pub const COMPONENT_VERSION: &str = concat!("11.0.0+rust.", env!("CARGO_PKG_VERSION"));

/// The text after the program name in `--version` (clap's `version = …`).
pub const LONG: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (Nodepool in Rust; compatible with Nodepool 11.0.0)"
);

/// `<program> <LONG>`: what `--version` prints.
pub fn version_line(program: &str) -> String {
    format!("{program} {LONG}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_story() {
        assert_eq!(COMPONENT_VERSION, format!("{NODEPOOL_COMPAT}+rust.{OURS}"));
        assert!(LONG.starts_with(OURS));
        assert!(LONG.contains(&format!("Nodepool {NODEPOOL_COMPAT})")));
        assert_eq!(
            version_line("nodepool"),
            format!("nodepool {OURS} (Nodepool in Rust; compatible with Nodepool 11.0.0)")
        );
    }
}
