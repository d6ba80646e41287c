//! The few bytes of SSH (RFC 4253, RFC 8731) Nodepool needs: reading a server's host keys
//! the way Nodepool's nodescan does ([`keyscan`]), and the wire encoding ([`wire`]) that
//! the OpenStack simulator's fake sshd shares. This is not an SSH client: it stops after
//! the key-exchange reply, which is where the host key is.

pub mod keyscan;
pub mod wire;

pub use keyscan::{scan_host_keys, KeyscanError, ScanOptions, HOST_KEY_TYPES};
pub use wire::WireError;
