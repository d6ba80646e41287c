//! Who this daemon is on the network, named as Python Nodepool names it: the short
//! hostname (`socket.gethostname()`: component records) and the fully qualified name
//! (`socket.getfqdn()`: pool worker ids, a build's `builder`, the
//! `nodepool.builder.<host>` gauges). One implementation for the launcher and the
//! builder, so both daemons of one machine give the same name Python Nodepool would.
//!
//! `getfqdn(name)` resolves `name` to its first address (`getaddrinfo`), asks the
//! resolver for that address's names (`gethostbyaddr`: the primary name and its
//! aliases) and returns the first of them that contains a dot, else the primary name;
//! `name` itself when either lookup fails. With the common `/etc/hosts` line
//! `127.0.0.1 localhost` and a host name that resolves to 127.0.0.1, that is
//! `localhost`, exactly as Python says.

use std::ffi::{c_char, c_int, CStr, CString};

/// `gethostname()`; `localhost` if it cannot be read.
pub fn hostname() -> String {
    gethostname::gethostname()
        .into_string()
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Python's `socket.getfqdn(name)` (see the module doc); an empty name (or `0.0.0.0`,
/// `::`) means this machine.
pub fn fqdn_of(name: &str) -> String {
    let name = name.trim();
    let name = if name.is_empty() || name == "0.0.0.0" || name == "::" {
        hostname()
    } else {
        name.to_string()
    };
    match host_names_of(&name) {
        Some((primary, aliases)) => std::iter::once(&primary)
            .chain(aliases.iter())
            .find(|n| n.contains('.'))
            .cloned()
            .unwrap_or(primary),
        None => name,
    }
}

/// The fully qualified name of this machine (`socket.getfqdn()`).
pub fn fqdn() -> String {
    fqdn_of("")
}

extern "C" {
    // glibc and musl; not in the libc crate.
    fn gethostbyaddr_r(
        addr: *const libc::c_void,
        len: libc::socklen_t,
        kind: c_int,
        ret: *mut libc::hostent,
        buf: *mut c_char,
        buflen: libc::size_t,
        result: *mut *mut libc::hostent,
        h_errnop: *mut c_int,
    ) -> c_int;
}

/// Python's `socket.gethostbyaddr(name)`: (primary name, aliases) of the first address
/// `name` resolves to; `None` when it does not resolve or the address has no name.
fn host_names_of(name: &str) -> Option<(String, Vec<String>)> {
    let (family, addr) = first_address(name)?;
    let mut buf = vec![0 as c_char; 1024];
    loop {
        // SAFETY: hostent is plain data; gethostbyaddr_r fills it, pointing into `buf`.
        let mut ent: libc::hostent = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::hostent = std::ptr::null_mut();
        let mut h_errno: c_int = 0;
        // SAFETY: addr/buf outlive the call and their lengths are passed; result and
        // h_errno are valid out-pointers.
        let rc = unsafe {
            gethostbyaddr_r(
                addr.as_ptr().cast(),
                addr.len() as libc::socklen_t,
                family,
                &mut ent,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
                &mut h_errno,
            )
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if rc != 0 || result.is_null() || ent.h_name.is_null() {
            return None;
        }
        // SAFETY: on success h_name is a NUL-terminated string and h_aliases a
        // NULL-terminated array of them, all inside `buf`, which is still alive.
        let names = unsafe {
            let primary = CStr::from_ptr(ent.h_name).to_string_lossy().into_owned();
            let mut aliases = Vec::new();
            let mut p = ent.h_aliases;
            while !p.is_null() && !(*p).is_null() {
                aliases.push(CStr::from_ptr(*p).to_string_lossy().into_owned());
                p = p.add(1);
            }
            (primary, aliases)
        };
        return Some(names);
    }
}

/// The family and raw bytes of the first address `getaddrinfo(name)` gives.
fn first_address(name: &str) -> Option<(c_int, Vec<u8>)> {
    let node = CString::new(name).ok()?;
    // SAFETY: a zeroed addrinfo is a valid "no hints" value; only the family is set.
    let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_family = libc::AF_UNSPEC;
    let mut res: *mut libc::addrinfo = std::ptr::null_mut();
    // SAFETY: node and hints outlive the call; res is freed below with freeaddrinfo.
    let rc = unsafe { libc::getaddrinfo(node.as_ptr(), std::ptr::null(), &hints, &mut res) };
    if rc != 0 || res.is_null() {
        return None;
    }
    // SAFETY: res is the head of a valid list from getaddrinfo; ai_addr points to a
    // sockaddr of ai_family's type. The list is freed exactly once.
    unsafe {
        let ai = &*res;
        let found = match ai.ai_family {
            libc::AF_INET if !ai.ai_addr.is_null() => {
                let sa = &*(ai.ai_addr as *const libc::sockaddr_in);
                Some((libc::AF_INET, sa.sin_addr.s_addr.to_ne_bytes().to_vec()))
            }
            libc::AF_INET6 if !ai.ai_addr.is_null() => {
                let sa = &*(ai.ai_addr as *const libc::sockaddr_in6);
                Some((libc::AF_INET6, sa.sin6_addr.s6_addr.to_vec()))
            }
            _ => None,
        };
        libc::freeaddrinfo(res);
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_not_empty() {
        assert!(!hostname().is_empty());
        assert!(!fqdn().is_empty());
        // Not a valid C string: no lookup, returned as given.
        assert_eq!(fqdn_of("a\0b"), "a\0b");
    }

    /// The names Python's own `socket.getfqdn` gives on this machine (python3 is a
    /// Debian base package; without it the comparison is skipped, except under CI).
    /// Only names the daemons look up themselves: no unknown name is sent to DNS.
    #[test]
    fn same_names_as_python_getfqdn() {
        let names = [
            String::new(),
            hostname(),
            "localhost".to_string(),
            "127.0.0.1".to_string(),
        ];
        let script = "import socket, sys\nfor n in sys.argv[1:]: print(socket.getfqdn(n))";
        let out = std::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .args(&names)
            .output();
        let out = match out {
            Ok(o) if o.status.success() => o,
            other => {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "python3 is needed under CI: {other:?}"
                );
                eprintln!("skipped: python3 not available ({other:?})");
                return;
            }
        };
        let python: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        let ours: Vec<String> = names.iter().map(|n| fqdn_of(n)).collect();
        assert_eq!(ours, python, "for {names:?}");
    }
}
