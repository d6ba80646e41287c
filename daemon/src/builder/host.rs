//! Who this builder is on the network: the short hostname (component records, like
//! Python's `socket.gethostname()`) and the fully qualified name (build records'
//! `builder` and the `nodepool.builder.<host>` gauges, like `socket.getfqdn()`).

use std::ffi::{CStr, CString};

/// `gethostname()`; `localhost` if it cannot be read.
pub fn hostname() -> String {
    gethostname::gethostname()
        .into_string()
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// The canonical name of `host` from the resolver (`getaddrinfo` with `AI_CANONNAME`),
/// else `host` itself — the gist of Python's `socket.getfqdn()`.
pub fn fqdn_of(host: &str) -> String {
    let Ok(node) = CString::new(host) else {
        return host.to_string();
    };
    // SAFETY: a zeroed addrinfo is a valid "no hints" value; we only set flags.
    let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_flags = libc::AI_CANONNAME;
    hints.ai_family = libc::AF_UNSPEC;
    let mut res: *mut libc::addrinfo = std::ptr::null_mut();
    // SAFETY: node and hints outlive the call; res is freed below with freeaddrinfo.
    let rc = unsafe { libc::getaddrinfo(node.as_ptr(), std::ptr::null(), &hints, &mut res) };
    if rc != 0 || res.is_null() {
        return host.to_string();
    }
    // SAFETY: res is a valid list returned by getaddrinfo; ai_canonname is either null
    // or a NUL-terminated string owned by that list.
    let name = unsafe {
        let canon = (*res).ai_canonname;
        let name = (!canon.is_null())
            .then(|| CStr::from_ptr(canon).to_string_lossy().into_owned())
            .filter(|n| !n.is_empty());
        libc::freeaddrinfo(res);
        name
    };
    name.unwrap_or_else(|| host.to_string())
}

/// The fully qualified name of this machine.
pub fn fqdn() -> String {
    fqdn_of(&hostname())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_not_empty() {
        assert!(!hostname().is_empty());
        assert!(!fqdn().is_empty());
        assert_eq!(fqdn_of("a\0b"), "a\0b");
    }
}
