//! The addresses a node gets, computed from a Nova server record exactly as openstacksdk
//! computes them for Nodepool (`openstack.cloud.meta.add_server_interfaces`, then
//! Nodepool's own fallback), so nodes carry the same `public_ipv4`, `public_ipv6`,
//! `private_ipv4` and `interface_ip` as under Python Nodepool — empty strings where
//! openstacksdk has none, as Nodepool stores them.
//!
//! * `public_ipv4`: `accessIPv4`; else the first IPv4 address on an external network
//!   (Neutron `router:external` or `provider:physical_network`, or clouds.yaml
//!   `networks` entries that route IPv4 externally); else a floating IPv4; else one on
//!   a network named `public`; else the first IPv4 address Python does not call
//!   private. Nothing with clouds.yaml `use_external_network: false`.
//! * `public_ipv6`: nothing with `force_ipv4`; else `accessIPv6`; else the first IPv6
//!   address (floating ones first).
//! * `private_ipv4`: the fixed IPv4 address on an internal network (the one matching
//!   the floating IP's MAC when there is one), else any IPv4 there, else one on a
//!   network named `private`; nothing with `use_internal_network: false`. Nodepool then
//!   falls back to `public_ipv4`.
//! * `interface_ip`: the address on the clouds.yaml `default_interface` network (IPv6
//!   first when preferred); else `private_ipv4` with clouds.yaml `private: true`; else
//!   `public_ipv6` when IPv6 is preferred (the launcher host has a non-link-local IPv6
//!   address and `force_ipv4` is off); else `public_ipv4`.
//!
//! Where openstacksdk holds several candidate addresses it probes port 22 to pick a
//! reachable one; we take the first (the host-key scan checks reachability later).

use std::net::{IpAddr, Ipv4Addr};

use super::types::{Network, Server, ServerAddress};

/// One clouds.yaml `networks` entry (openstacksdk's network roles).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkRole {
    /// Network name (or id).
    pub name: String,
    /// `routes_ipv4_externally` (default: `routes_externally`).
    pub routes_ipv4_externally: bool,
    /// `routes_ipv6_externally` (default: `routes_externally`).
    pub routes_ipv6_externally: bool,
    /// `default_interface`: the network to reach servers on.
    pub default_interface: bool,
}

/// How a cloud's server addresses are read (clouds.yaml settings plus the launcher
/// host's IPv6 support).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressPolicy {
    /// `force_ipv4` (per cloud, or clouds.yaml `client: {force_ipv4}`, `broken-ipv6`,
    /// `prefer_ipv6: false`, `OS_FORCE_IPV4`, `OS_PREFER_IPV6`): never use IPv6.
    pub force_ipv4: bool,
    /// `private`: servers are reached on their private address.
    pub private: bool,
    /// `use_external_network` (default true).
    pub use_external_network: bool,
    /// `use_internal_network` (default true).
    pub use_internal_network: bool,
    /// `networks` (and the older `external_network` / `internal_network`).
    pub networks: Vec<NetworkRole>,
    /// The launcher host has an IPv6 address that is neither loopback nor link-local
    /// (openstacksdk's `localhost_supports_ipv6`); set when the driver is built.
    pub local_ipv6: bool,
}

impl Default for AddressPolicy {
    /// openstacksdk's defaults, on a host without IPv6.
    fn default() -> Self {
        AddressPolicy {
            force_ipv4: false,
            private: false,
            use_external_network: true,
            use_internal_network: true,
            networks: Vec::new(),
            local_ipv6: false,
        }
    }
}

impl AddressPolicy {
    /// IPv6 is preferred for `interface_ip`.
    pub fn prefers_ipv6(&self) -> bool {
        self.local_ipv6 && !self.force_ipv4
    }

    fn named(&self, net: &Network, pick: impl Fn(&NetworkRole) -> bool) -> bool {
        self.networks
            .iter()
            .any(|r| pick(r) && (r.name == net.name || r.name == net.id))
    }

    /// Names of the cloud's external and internal IPv4 networks and of the default
    /// network, as openstacksdk's `_set_interesting_networks` classifies them.
    pub fn classify(&self, networks: &[Network]) -> NetworkClasses {
        let mut c = NetworkClasses::default();
        for n in networks {
            let ext_named = self.named(n, |r| r.routes_ipv4_externally);
            let int_named = self.named(n, |r| !r.routes_ipv4_externally);
            let routed = n.external || n.provider_physical_network.is_some();
            if ext_named || (routed && !int_named) {
                c.external_ipv4.push(n.name.clone());
            }
            if int_named || (!routed && !ext_named) {
                c.internal_ipv4.push(n.name.clone());
            }
            if c.default.is_none() && self.named(n, |r| r.default_interface) {
                c.default = Some(n.name.clone());
            }
        }
        c
    }
}

/// The cloud's networks by role (names).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkClasses {
    pub external_ipv4: Vec<String>,
    pub internal_ipv4: Vec<String>,
    /// The clouds.yaml `default_interface` network, if the cloud has it.
    pub default: Option<String>,
}

/// The addresses stored on a node (empty = none).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerIps {
    pub public_ipv4: String,
    pub public_ipv6: String,
    /// Already with Nodepool's fallback to `public_ipv4`.
    pub private_ipv4: String,
    pub interface_ip: String,
}

/// A filter over `server.addresses` (openstacksdk's `find_nova_interfaces`).
#[derive(Clone, Copy, Default)]
struct Filter<'a> {
    network: Option<&'a str>,
    /// `OS-EXT-IPS:type`; addresses without the key never match.
    kind: Option<&'a str>,
    /// `OS-EXT-IPS-MAC:mac_addr`; addresses without the key never match.
    mac: Option<&'a str>,
    version: u8,
}

fn version_of(a: &ServerAddress) -> Option<u8> {
    a.version.or_else(|| match a.addr.parse::<IpAddr>().ok()? {
        IpAddr::V4(_) => Some(4),
        IpAddr::V6(_) => Some(6),
    })
}

fn interfaces<'s>(server: &'s Server, f: Filter<'_>) -> Vec<&'s ServerAddress> {
    let mut out = Vec::new();
    for (net, list) in &server.addresses {
        if f.network.is_some_and(|n| n != net) {
            continue;
        }
        for a in list {
            if f.kind.is_some_and(|k| a.kind.as_deref() != Some(k)) {
                continue;
            }
            if f.mac.is_some_and(|m| a.mac_addr.as_deref() != Some(m)) {
                continue;
            }
            if version_of(a) == Some(f.version) {
                out.push(a);
            }
        }
    }
    out
}

/// The first matching address, floating ones before the others (`find_nova_addresses`
/// followed by `find_best_address` without its port-22 probe).
fn first_address(server: &Server, f: Filter<'_>) -> Option<String> {
    let found = interfaces(server, f);
    found
        .iter()
        .find(|a| a.kind.as_deref() == Some("floating"))
        .or_else(|| found.iter().find(|a| a.kind.as_deref() != Some("floating")))
        .map(|a| a.addr.clone())
}

/// Python's `ipaddress.IPv4Address.is_private` (CPython 3.11).
pub fn python_is_private_v4(ip: Ipv4Addr) -> bool {
    const PRIVATE: [(u32, u8); 14] = [
        (0x0000_0000, 8),  // 0.0.0.0/8
        (0x0a00_0000, 8),  // 10.0.0.0/8
        (0x7f00_0000, 8),  // 127.0.0.0/8
        (0xa9fe_0000, 16), // 169.254.0.0/16
        (0xac10_0000, 12), // 172.16.0.0/12
        (0xc000_0000, 29), // 192.0.0.0/29
        (0xc000_00aa, 31), // 192.0.0.170/31
        (0xc000_0200, 24), // 192.0.2.0/24
        (0xc0a8_0000, 16), // 192.168.0.0/16
        (0xc612_0000, 15), // 198.18.0.0/15
        (0xc633_6400, 24), // 198.51.100.0/24
        (0xcb00_7100, 24), // 203.0.113.0/24
        (0xf000_0000, 4),  // 240.0.0.0/4
        (0xffff_ffff, 32), // 255.255.255.255/32
    ];
    let v = u32::from(ip);
    PRIVATE
        .iter()
        .any(|&(net, len)| (v ^ net) >> (32 - u32::from(len)) == 0)
}

fn non_empty(s: &Option<String>) -> Option<String> {
    s.clone().filter(|s| !s.is_empty())
}

/// `get_server_external_ipv4`.
fn public_v4(server: &Server, classes: &NetworkClasses, policy: &AddressPolicy) -> Option<String> {
    if !policy.use_external_network {
        return None;
    }
    if let Some(a) = non_empty(&server.access_ipv4) {
        return Some(a);
    }
    let v4 = Filter {
        version: 4,
        ..Filter::default()
    };
    classes
        .external_ipv4
        .iter()
        .find_map(|n| {
            first_address(
                server,
                Filter {
                    network: Some(n),
                    ..v4
                },
            )
        })
        .or_else(|| {
            first_address(
                server,
                Filter {
                    kind: Some("floating"),
                    ..v4
                },
            )
        })
        .or_else(|| {
            first_address(
                server,
                Filter {
                    network: Some("public"),
                    ..v4
                },
            )
        })
        .or_else(|| {
            server
                .addresses
                .iter()
                .flat_map(|(_, l)| l)
                .find(|a| matches!(a.addr.parse(), Ok(IpAddr::V4(ip)) if !python_is_private_v4(ip)))
                .map(|a| a.addr.clone())
        })
}

/// `get_server_external_ipv6`.
fn public_v6(server: &Server, policy: &AddressPolicy) -> Option<String> {
    if policy.force_ipv4 {
        return None;
    }
    non_empty(&server.access_ipv6).or_else(|| {
        first_address(
            server,
            Filter {
                version: 6,
                ..Filter::default()
            },
        )
    })
}

/// `get_server_private_ip` (before Nodepool's fallback).
fn private_v4(server: &Server, classes: &NetworkClasses, policy: &AddressPolicy) -> Option<String> {
    if !policy.use_internal_network {
        return None;
    }
    let v4 = Filter {
        version: 4,
        ..Filter::default()
    };
    let fip_mac = interfaces(
        server,
        Filter {
            kind: Some("floating"),
            ..v4
        },
    )
    .first()
    .and_then(|a| a.mac_addr.clone());
    let mac = fip_mac.as_deref();
    let on = |network: &str, kind: Option<&str>| {
        first_address(
            server,
            Filter {
                network: Some(network),
                kind,
                mac,
                ..v4
            },
        )
    };
    let internal = &classes.internal_ipv4;
    internal
        .iter()
        .find_map(|n| on(n, Some("fixed")))
        .or_else(|| internal.iter().find_map(|n| on(n, None)))
        .or_else(|| on("private", Some("fixed")))
        .or_else(|| {
            first_address(
                server,
                Filter {
                    network: Some("private"),
                    ..v4
                },
            )
        })
}

/// `get_server_default_ip`.
fn default_ip(server: &Server, classes: &NetworkClasses, policy: &AddressPolicy) -> Option<String> {
    let net = classes.default.as_deref()?;
    let versions: &[u8] = if policy.prefers_ipv6() { &[6, 4] } else { &[4] };
    versions.iter().find_map(|&version| {
        first_address(
            server,
            Filter {
                network: Some(net),
                version,
                ..Filter::default()
            },
        )
    })
}

/// The node addresses of `server` on a cloud with `networks` (its Neutron network
/// list; empty when unknown) under `policy`.
pub fn server_ips(server: &Server, networks: &[Network], policy: &AddressPolicy) -> ServerIps {
    let classes = policy.classify(networks);
    let public_ipv4 = public_v4(server, &classes, policy).unwrap_or_default();
    let public_ipv6 = public_v6(server, policy).unwrap_or_default();
    let private = private_v4(server, &classes, policy).unwrap_or_default();
    let interface_ip = default_ip(server, &classes, policy)
        .or_else(|| (policy.private && !private.is_empty()).then(|| private.clone()))
        .or_else(|| (policy.prefers_ipv6() && !public_ipv6.is_empty()).then(|| public_ipv6.clone()))
        .unwrap_or_else(|| public_ipv4.clone());
    // Nodepool: "this doesn't match the behavior of other drivers but is here for
    // backwards compatibility".
    let private_ipv4 = if private.is_empty() {
        public_ipv4.clone()
    } else {
        private
    };
    ServerIps {
        public_ipv4,
        public_ipv6,
        private_ipv4,
        interface_ip,
    }
}

/// openstacksdk's `_needs_floating_ip` for a cloud with floating IPs from Neutron: not
/// with a public IPv4 or a floating address already, not without any fixed address,
/// not with clouds.yaml `private`, and only when the cloud has an external network.
pub fn needs_floating_ip(
    server: &Server,
    ips: &ServerIps,
    cloud_has_external_network: bool,
    policy: &AddressPolicy,
) -> bool {
    let addrs = || server.addresses.iter().flat_map(|(_, l)| l);
    if !ips.public_ipv4.is_empty() || addrs().any(|a| a.kind.as_deref() == Some("floating")) {
        return false;
    }
    if ips.private_ipv4.is_empty() && !addrs().any(|a| a.kind.as_deref() == Some("fixed")) {
        return false;
    }
    !policy.private && cloud_has_external_network
}

/// openstacksdk's `localhost_supports_ipv6`: some interface of this host has an IPv6
/// address that is neither loopback nor link-local.
pub fn local_host_has_ipv6() -> bool {
    local_ipv6_addresses()
        .into_iter()
        .any(|a| !a.is_loopback() && (a.segments()[0] & 0xffc0) != 0xfe80)
}

/// The IPv6 addresses of this host's interfaces (`getifaddrs`); none if that fails.
fn local_ipv6_addresses() -> Vec<std::net::Ipv6Addr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we only read and then free once.
    unsafe {
        if libc::getifaddrs(&mut head) != 0 {
            return out;
        }
        let mut cur = head;
        while !cur.is_null() {
            let addr = (*cur).ifa_addr;
            if !addr.is_null() && i32::from((*addr).sa_family) == libc::AF_INET6 {
                let sin6 = &*(addr as *const libc::sockaddr_in6);
                out.push(std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr));
            }
            cur = (*cur).ifa_next;
        }
        libc::freeifaddrs(head);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(a: &str, kind: Option<&str>, mac: Option<&str>) -> ServerAddress {
        ServerAddress {
            addr: a.into(),
            version: Some(if a.contains(':') { 6 } else { 4 }),
            kind: kind.map(str::to_string),
            mac_addr: mac.map(str::to_string),
        }
    }

    fn server(nets: Vec<(&str, Vec<ServerAddress>)>) -> Server {
        Server {
            id: "s".into(),
            addresses: nets.into_iter().map(|(n, l)| (n.to_string(), l)).collect(),
            ..Default::default()
        }
    }

    fn net(name: &str, external: bool) -> Network {
        Network {
            id: format!("{name}-id"),
            name: name.into(),
            external,
            ..Default::default()
        }
    }

    /// Nodepool's `test_node_ipv6` / `test_node_net_name` shapes.
    #[test]
    fn dual_stack_public_network() {
        let s = server(vec![
            (
                "public",
                vec![
                    addr("203.0.113.10", Some("fixed"), Some("m1")),
                    addr("2001:db8::10", Some("fixed"), Some("m1")),
                ],
            ),
            (
                "private",
                vec![addr("10.0.0.10", Some("fixed"), Some("m2"))],
            ),
        ]);
        let nets = [net("public", true), net("private", false)];
        let mut p = AddressPolicy {
            local_ipv6: true,
            ..Default::default()
        };
        let ips = server_ips(&s, &nets, &p);
        assert_eq!(ips.public_ipv4, "203.0.113.10");
        assert_eq!(ips.public_ipv6, "2001:db8::10");
        assert_eq!(ips.private_ipv4, "10.0.0.10");
        assert_eq!(ips.interface_ip, "2001:db8::10");
        // Host without IPv6, or force_ipv4: the IPv4 address.
        p.local_ipv6 = false;
        assert_eq!(server_ips(&s, &nets, &p).interface_ip, "203.0.113.10");
        p.local_ipv6 = true;
        p.force_ipv4 = true;
        let ips = server_ips(&s, &nets, &p);
        assert_eq!(
            (ips.public_ipv6.as_str(), ips.interface_ip.as_str()),
            ("", "203.0.113.10")
        );
        // clouds.yaml private: the private address.
        p.force_ipv4 = false;
        p.private = true;
        assert_eq!(server_ips(&s, &nets, &p).interface_ip, "10.0.0.10");
    }

    #[test]
    fn private_falls_back_to_public() {
        let s = server(vec![(
            "public",
            vec![addr("198.51.100.7", Some("fixed"), None)],
        )]);
        let ips = server_ips(&s, &[net("public", true)], &AddressPolicy::default());
        assert_eq!(ips.public_ipv4, "198.51.100.7");
        assert_eq!(ips.private_ipv4, "198.51.100.7");
        assert_eq!(ips.public_ipv6, "");
        assert_eq!(ips.interface_ip, "198.51.100.7");
    }

    #[test]
    fn floating_ip_and_its_fixed_address() {
        // Two private ports; the floating IP sits on the second (same MAC).
        let s = server(vec![(
            "private",
            vec![
                addr("10.0.0.5", Some("fixed"), Some("aa")),
                addr("10.0.1.5", Some("fixed"), Some("bb")),
                addr("172.24.4.9", Some("floating"), Some("bb")),
            ],
        )]);
        let nets = [net("public", true), net("private", false)];
        let ips = server_ips(&s, &nets, &AddressPolicy::default());
        assert_eq!(ips.public_ipv4, "172.24.4.9");
        assert_eq!(ips.private_ipv4, "10.0.1.5");
        assert!(!needs_floating_ip(
            &s,
            &ips,
            true,
            &AddressPolicy::default()
        ));
    }

    #[test]
    fn without_network_list_and_special_cases() {
        // No Neutron knowledge: `public`/`private` names, then a non-private address.
        let s = server(vec![
            ("net-a", vec![addr("100.64.0.3", Some("fixed"), None)]),
            ("private", vec![addr("10.1.1.1", None, None)]),
        ]);
        let ips = server_ips(&s, &[], &AddressPolicy::default());
        assert_eq!(ips.public_ipv4, "100.64.0.3"); // not private for Python
        assert_eq!(ips.private_ipv4, "10.1.1.1");
        assert!(needs_floating_ip(
            &server(vec![(
                "private",
                vec![addr("10.0.0.2", Some("fixed"), None)]
            )]),
            &ServerIps {
                private_ipv4: "10.0.0.2".into(),
                ..Default::default()
            },
            true,
            &AddressPolicy::default()
        ));
        // accessIPv4/6 win; use_external_network: false hides public addresses.
        let mut s2 = s.clone();
        s2.access_ipv4 = Some("192.0.2.1".into());
        s2.access_ipv6 = Some("2001:db8::1".into());
        let ips = server_ips(&s2, &[], &AddressPolicy::default());
        assert_eq!(
            (ips.public_ipv4.as_str(), ips.public_ipv6.as_str()),
            ("192.0.2.1", "2001:db8::1")
        );
        let p = AddressPolicy {
            use_external_network: false,
            ..Default::default()
        };
        assert_eq!(server_ips(&s2, &[], &p).public_ipv4, "");
    }

    #[test]
    fn clouds_yaml_network_roles() {
        let s = server(vec![
            ("ext", vec![addr("10.9.0.4", Some("fixed"), None)]),
            (
                "v6net",
                vec![
                    addr("2001:db8::4", Some("fixed"), None),
                    addr("10.8.0.4", Some("fixed"), None),
                ],
            ),
        ]);
        let nets = [net("ext", false), net("v6net", false)];
        let p = AddressPolicy {
            local_ipv6: true,
            networks: vec![
                NetworkRole {
                    name: "ext".into(),
                    routes_ipv4_externally: true,
                    routes_ipv6_externally: true,
                    default_interface: false,
                },
                NetworkRole {
                    name: "v6net".into(),
                    default_interface: true,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let c = p.classify(&nets);
        assert_eq!(c.external_ipv4, ["ext"]);
        assert_eq!(c.internal_ipv4, ["v6net"]);
        let ips = server_ips(&s, &nets, &p);
        assert_eq!(ips.public_ipv4, "10.9.0.4");
        assert_eq!(ips.private_ipv4, "10.8.0.4");
        assert_eq!(ips.interface_ip, "2001:db8::4");
    }

    #[test]
    fn python_private_ranges() {
        for (a, private) in [
            ("127.24.0.5", true),
            ("100.64.0.1", false),
            ("203.0.113.5", true),
            ("192.0.0.9", false),
            ("192.0.0.170", true),
            ("8.8.8.8", false),
            ("172.31.255.255", true),
            ("172.32.0.0", false),
            ("255.255.255.255", true),
        ] {
            assert_eq!(python_is_private_v4(a.parse().unwrap()), private, "{a}");
        }
    }
}
