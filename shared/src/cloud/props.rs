//! Property tests of what comes from outside the process in the cloud driver:
//!
//! * `clouds.yaml` files built from the real keys (secrets marked), with wrong types and
//!   line-level accidents: a file or a syntax error naming the file; entries valid or an
//!   error naming the file and the entry; no secret in any error or `Debug` output.
//! * Cloud API replies, through the real [`OpenStackDriver`] over HTTP from a local
//!   server that authenticates it and then answers every call with a generated body
//!   (shaped like the real reply with hostile values, cut or flipped, or any bytes) and
//!   status: every call returns a value or a [`CloudError`], never a panic.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::addresses::{needs_floating_ip, server_ips, AddressPolicy};
use super::clouds_yaml::{CloudsFile, CloudsYamlError};
use super::{CloudDriver, DriverOptions, OpenStackDriver};
use crate::testing::fuzz::{self, mangled_json, mangled_lines, to_yaml, typed, Kind};

const SECRET: &str = "s3cr3t-Pa55";

fn clouds_tree() -> impl Strategy<Value = Value> {
    let secret = prop_oneof![
        4 => Just(json!(SECRET)),
        1 => typed(Kind::Opaque),
    ];
    let auth = (
        typed(Kind::Text),
        typed(Kind::Text),
        secret.clone(),
        typed(Kind::Text),
        secret,
        any::<u8>(),
    )
        .prop_map(|(url, user, password, app_id, app_secret, mask)| {
            let mut m = Map::new();
            let mut put = |bit: u8, k: &str, v: Value| {
                if mask & (1 << bit) != 0 {
                    m.insert(k.to_string(), v);
                }
            };
            put(0, "auth_url", url);
            put(1, "username", user);
            put(2, "password", password);
            put(3, "application_credential_id", app_id);
            put(4, "application_credential_secret", app_secret);
            put(5, "project_name", json!("demo"));
            put(6, "user_domain_name", json!("Default"));
            Value::Object(m)
        });
    let entry = (
        auth,
        prop_oneof![
            Just(json!("password")),
            Just(json!("v3applicationcredential")),
            typed(Kind::Text)
        ],
        typed(Kind::Text),
        typed(Kind::Names),
        prop_oneof![
            Just(json!("public")),
            Just(json!("internal")),
            typed(Kind::Text)
        ],
        typed(Kind::Opaque),
        typed(Kind::Text),
    )
        .prop_map(
            |(auth, auth_type, region, regions, interface, verify, fmt)| {
                json!({
                    "auth": auth,
                    "auth_type": auth_type,
                    "region_name": region,
                    "regions": regions,
                    "interface": interface,
                    "verify": verify,
                    "image_format": fmt,
                })
            },
        );
    prop::collection::vec(("[a-z]{1,6}", entry), 0..3)
        .prop_map(|clouds| json!({ "clouds": clouds.into_iter().collect::<Map<_, _>>() }))
}

fn clouds_text() -> impl Strategy<Value = String> {
    (clouds_tree(), any::<u64>())
        .prop_map(|(tree, bits)| {
            let mut n = 0u32;
            let mut plain = || {
                n = (n + 1) % 64;
                bits >> n & 3 == 0
            };
            to_yaml(&tree, &mut plain)
        })
        .prop_flat_map(|t| prop_oneof![3 => Just(t.clone()), 1 => mangled_lines(t)])
}

proptest! {
    #![proptest_config(fuzz::config(1500, 0x434c_0001))]

    #[test]
    fn clouds_yaml_gives_entries_or_named_errors(text in clouds_text()) {
        let path = Path::new("/etc/openstack/clouds.yaml");
        let file = match CloudsFile::parse(&text, path) {
            Ok(f) => f,
            Err(e) => {
                prop_assert!(matches!(e, CloudsYamlError::Syntax { .. }), "{}", e);
                prop_assert!(e.to_string().contains("/etc/openstack/clouds.yaml"), "{}", e);
                prop_assert!(!e.to_string().contains(SECRET), "secret in {}", e);
                return Ok(());
            }
        };
        let names: Vec<String> = file.names().map(str::to_string).collect();
        for name in names.iter().map(String::as_str).chain(["no-such-cloud"]) {
            match file.cloud(name) {
                Ok(c) => {
                    let debug = format!("{c:?}");
                    prop_assert!(!debug.contains(SECRET), "secret in {}", debug);
                }
                Err(e) => {
                    let msg = e.to_string();
                    prop_assert!(msg.contains("/etc/openstack/clouds.yaml") && msg.contains(name), "{}", msg);
                    prop_assert!(!msg.contains(SECRET), "secret in {}", msg);
                }
            }
        }
    }
}

/// The reply a fake cloud gives to every API call of one case.
#[derive(Clone)]
struct Canned {
    status: u16,
    body: Vec<u8>,
}

/// A fake OpenStack: Keystone answers with a token whose catalog points at this server;
/// every other request gets the current canned reply.
struct FakeCloud {
    addr: SocketAddr,
    reply: Arc<Mutex<Canned>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeCloud {
    async fn start() -> FakeCloud {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let reply = Arc::new(Mutex::new(Canned {
            status: 200,
            body: b"{}".to_vec(),
        }));
        let r = reply.clone();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let r = r.clone();
                tokio::spawn(async move {
                    let _ = serve(conn, addr, r).await;
                });
            }
        });
        FakeCloud { addr, reply, task }
    }

    fn set(&self, c: Canned) {
        *self.reply.lock().unwrap_or_else(|e| e.into_inner()) = c;
    }
}

impl Drop for FakeCloud {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn token_body(addr: SocketAddr) -> Vec<u8> {
    let url = format!("http://{addr}");
    let endpoint = |ty: &str, path: &str| {
        json!({"type": ty, "endpoints": [
            {"interface": "public", "region": "RegionOne", "url": format!("{url}{path}")}
        ]})
    };
    serde_json::to_vec(&json!({"token": {
        "expires_at": "2999-01-01T00:00:00.000000Z",
        "project": {"id": "p1"},
        "catalog": [
            endpoint("compute", "/compute/v2.1"),
            endpoint("image", "/image"),
            endpoint("network", "/network"),
            endpoint("volumev3", "/volume/v3/p1"),
        ],
    }}))
    .unwrap_or_default()
}

/// Answers requests on one connection (keep-alive) until the peer closes it.
async fn serve(
    mut conn: tokio::net::TcpStream,
    addr: SocketAddr,
    reply: Arc<Mutex<Canned>>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = conn.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        while buf.len() < head_end + len {
            let mut chunk = [0u8; 4096];
            let n = conn.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        buf.drain(..head_end + len);
        let first = head.lines().next().unwrap_or_default().to_string();
        let (status, body, extra) = if first.contains("/auth/tokens") {
            (201, token_body(addr), "X-Subject-Token: tok\r\n")
        } else {
            let c = reply.lock().unwrap_or_else(|e| e.into_inner()).clone();
            (c.status, c.body, "")
        };
        let resp = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n",
            body.len()
        );
        conn.write_all(resp.as_bytes()).await?;
        conn.write_all(&body).await?;
    }
}

/// A reply body shaped like a list reply (`key: [items]`) whose items have the real
/// fields with values of the right type or not.
fn list_reply(
    key: &'static str,
    fields: &'static [(&'static str, Kind)],
) -> BoxedStrategy<Vec<u8>> {
    let item = fuzz::record(fields, vec![]).prop_map(Value::Object);
    mangled_json(prop::collection::vec(item, 0..4).prop_map(move |items| json!({ key: items })))
        .boxed()
}

const SERVER_FIELDS: &[(&str, Kind)] = &[
    ("id", Kind::Text),
    ("name", Kind::Text),
    ("status", Kind::Text),
    ("metadata", Kind::Object),
    ("addresses", Kind::Object),
    ("hostId", Kind::Text),
    ("OS-EXT-AZ:availability_zone", Kind::Text),
    ("fault", Kind::Object),
    ("flavor", Kind::Object),
    ("image", Kind::Opaque),
    ("key_name", Kind::Text),
    ("created", Kind::Text),
];

const FLAVOR_FIELDS: &[(&str, Kind)] = &[
    ("id", Kind::Text),
    ("name", Kind::Text),
    ("ram", Kind::Int),
    ("vcpus", Kind::Int),
    ("disk", Kind::Int),
    ("os-flavor-access:is_public", Kind::Bool),
];

const IMAGE_FIELDS: &[(&str, Kind)] = &[
    ("id", Kind::Text),
    ("name", Kind::Text),
    ("status", Kind::Text),
    ("disk_format", Kind::Text),
    ("size", Kind::Int),
    ("visibility", Kind::Text),
    ("nodepool_build_id", Kind::Text),
];

const NETWORK_FIELDS: &[(&str, Kind)] = &[
    ("id", Kind::Text),
    ("name", Kind::Text),
    ("status", Kind::Text),
    ("router:external", Kind::Bool),
    ("subnets", Kind::Names),
];

fn limits_reply() -> BoxedStrategy<Vec<u8>> {
    let absolute = fuzz::record(
        &[
            ("maxTotalInstances", Kind::Int),
            ("maxTotalCores", Kind::Int),
            ("maxTotalRAMSize", Kind::Int),
            ("totalInstancesUsed", Kind::Int),
            ("totalCoresUsed", Kind::Int),
            ("totalRAMUsed", Kind::Int),
        ],
        vec![],
    );
    mangled_json(absolute.prop_map(|a| json!({"limits": {"absolute": a}}))).boxed()
}

/// Which driver call a case makes, with the reply it gets.
fn case() -> impl Strategy<Value = (u8, u16, Vec<u8>)> {
    let status = prop_oneof![
        20 => Just(200u16),
        1 => Just(203u16),
        1 => Just(404u16),
        1 => Just(409u16),
        1 => Just(500u16),
        1 => Just(503u16),
        1 => 100u16..600,
    ];
    (0u8..6).prop_flat_map(move |op| {
        let body = match op {
            0 => list_reply("servers", SERVER_FIELDS),
            1 => list_reply("flavors", FLAVOR_FIELDS),
            2 => list_reply("images", IMAGE_FIELDS),
            3 => list_reply("networks", NETWORK_FIELDS),
            4 => limits_reply(),
            _ => list_reply(
                "availabilityZoneInfo",
                &[("zoneName", Kind::Text), ("zoneState", Kind::Object)],
            ),
        };
        (Just(op), status.clone(), body)
    })
}

/// Runs one call and uses every accessor of what it returns.
async fn call(driver: &OpenStackDriver, op: u8) -> Result<(), String> {
    let err = |e: super::CloudError| e.to_string();
    match op {
        0 => {
            let policy = AddressPolicy::default();
            for s in driver.list_servers().await.map_err(err)? {
                let ips = server_ips(&s, &[], &policy);
                let _ = s.floating_ipv4();
                let _ = (s.fault_message(), s.has_quota_fault(), s.image_id());
                let _ = needs_floating_ip(&s, &ips, true, &policy);
            }
        }
        1 => {
            for f in driver.list_flavors().await.map_err(err)? {
                let _ = (f.ram_mb(), f.quota(Some(u64::MAX)));
            }
        }
        2 => {
            for i in driver.list_images().await.map_err(err)? {
                let _ = i.property("nodepool_build_id");
            }
        }
        3 => {
            driver.list_networks().await.map_err(err)?;
        }
        4 => {
            let l = driver.compute_limits().await.map_err(err)?;
            let _ = l.to_quota(None);
        }
        _ => {
            driver.list_availability_zones().await.map_err(err)?;
        }
    }
    Ok(())
}

#[test]
fn cloud_replies_give_values_or_errors() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (cloud, driver) = rt.block_on(async {
        let cloud = FakeCloud::start().await;
        let text = format!(
            "clouds:\n  fake:\n    auth:\n      auth_url: http://{}/identity\n      username: u\n      password: p\n      project_name: demo\n      user_domain_name: Default\n      project_domain_name: Default\n    region_name: RegionOne\n",
            cloud.addr
        );
        let file = CloudsFile::parse(&text, Path::new("clouds.yaml")).expect("clouds.yaml");
        let mut opts = DriverOptions::new("fuzz");
        opts.rate = 0.0;
        opts.api_timeout = Duration::from_secs(5);
        let driver = OpenStackDriver::new(file.cloud("fake").expect("cloud"), opts).expect("driver");
        (cloud, driver)
    });
    let mut runner = proptest::test_runner::TestRunner::new(fuzz::config(600, 0x434c_0002));
    let counts = std::cell::Cell::new((0, 0));
    runner
        .run(&case(), |(op, status, body)| {
            cloud.set(Canned { status, body });
            let (ok, failed) = counts.get();
            match rt.block_on(call(&driver, op)) {
                Ok(()) => counts.set((ok + 1, failed)),
                Err(msg) => {
                    prop_assert!(!msg.trim().is_empty());
                    counts.set((ok, failed + 1));
                }
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let (ok, failed) = counts.get();
    // Both outcomes are reached.
    assert!(ok >= 30 && failed >= 30, "{ok} answered, {failed} failed");
    drop(driver);
    drop(cloud);
}
