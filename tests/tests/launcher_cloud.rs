//! The launcher's cloud half (`nodepool_daemon::launcher`) end to end against the
//! OpenStack simulator over HTTP, through the real `OpenStackDriver`: launch (success,
//! floating IP, host-key scan, launch and keyscan timeouts, ERROR fault, quota, node
//! addresses under clouds.yaml settings, cached lookups forgotten on Nova's 400),
//! retries, delete, the quota model with unmanaged servers and their volumes, and leak
//! cleanup (logged, and counted in statsd captured on a real UDP socket).

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::net::UdpSocket;
use std::path::Path;
use std::time::Duration;

use nodepool_daemon::launcher::backoff::Backoff;
use nodepool_daemon::launcher::delete::{delete_server, DeleteError, DELETE_TIMEOUT};
use nodepool_daemon::launcher::failure::{record_launch, LaunchError};
use nodepool_daemon::launcher::launch::{launch_server, ImageRef, KeyscanSpec, LaunchSpec};
use nodepool_daemon::launcher::leaks::{LeakCleaner, LeakSettings};
use nodepool_daemon::launcher::lookups::FlavorSpec;
use nodepool_daemon::launcher::metadata::{
    build_metadata, server_name, MetadataInput, RequestAttributes,
};
use nodepool_daemon::launcher::quota::{LabelNeedCache, ProviderQuota};
use nodepool_daemon::launcher::retry::launch_with_retries;
use nodepool_shared::cloud::{
    CloudDriver, CloudsFile, CreateServer, DriverOptions, OpenStackDriver,
};
use nodepool_shared::model::QuotaInformation;
use nodepool_shared::stats::Statsd;
use nodepool_shared::testing::bounded;
use nodepool_tests::sim::{Quota, SimAdmin, SimConfig, SimHandle, Simulator};

async fn start() -> (SimHandle, OpenStackDriver) {
    start_with(SimConfig::default(), "", None).await
}

/// A simulator (with `config`) and a driver for it whose clouds.yaml entry has the
/// extra lines `cloud_extra` (4-space indent) and whose host IPv6 support is
/// `local_ipv6` (`None`: detected).
async fn start_with(
    config: SimConfig,
    cloud_extra: &str,
    local_ipv6: Option<bool>,
) -> (SimHandle, OpenStackDriver) {
    // A free SSH port of our own for the fake sshds (see `scanning`).
    let sim = Simulator::start(SimConfig {
        ssh_port: 0,
        ..config
    })
    .await
    .unwrap();
    let yaml = sim.clouds_yaml("sim") + cloud_extra;
    let file = CloudsFile::parse(&yaml, Path::new("clouds.yaml")).unwrap();
    let mut o = DriverOptions::new("prov");
    o.rate = 0.0;
    o.api_timeout = Duration::from_secs(10);
    o.local_ipv6 = local_ipv6;
    let d = OpenStackDriver::new(file.cloud("sim").unwrap(), o).unwrap();
    d.authenticate().await.unwrap();
    (sim, d)
}

fn fast_poll() -> Backoff {
    Backoff::new(Duration::from_millis(10), Duration::from_millis(100))
}

fn spec(node_id: &str) -> LaunchSpec {
    let meta = build_metadata(&MetadataInput {
        node_id: node_id.into(),
        provider: "prov".into(),
        pool: "main".into(),
        image_name: "cirros".into(),
        label: "small-label".into(),
        instance_properties: BTreeMap::from([("team".to_string(), "infra".to_string())]),
        dynamic_instance_properties: BTreeMap::from([(
            "request".to_string(),
            "{request.id} for {request.requestor}".to_string(),
        )]),
        request: RequestAttributes {
            id: "100-0000000001".into(),
            requestor: Some("zuul".into()),
            ..Default::default()
        },
    });
    assert!(meta.errors.is_empty());
    LaunchSpec {
        name: server_name(node_id),
        flavor: FlavorSpec {
            flavor_name: Some("small".into()),
            min_ram: None,
        },
        image: ImageRef::Name("cirros-0.6.2".into()),
        // The shared provider network: a directly reachable (public) address.
        networks: vec!["provider".into()],
        metadata: meta.meta,
        auto_floating_ip: false,
        boot_timeout: Duration::from_secs(30),
        launch_timeout: Duration::from_secs(60),
        cloud: Some("sim".into()),
        region: Some("RegionOne".into()),
        poll: fast_poll(),
        ..Default::default()
    }
}

/// `spec` with the host-key scan on the simulator's fake sshd port (I/O bound short, so
/// a closed port fails fast).
fn scanning(node_id: &str, sim: &SimHandle) -> LaunchSpec {
    let mut ks = KeyscanSpec::new(sim.ssh_port(), "ssh");
    ks.io_timeout = Duration::from_secs(2);
    LaunchSpec {
        keyscan: Some(ks),
        ..spec(node_id)
    }
}

/// On the private network, reached through a floating IP the launch attaches.
fn behind_floating_ip(sp: &mut LaunchSpec) {
    sp.networks = vec!["private".into()];
    sp.auto_floating_ip = true;
}

/// Runs `f` and returns what it logged (`tracing`, INFO and up) on this thread.
async fn with_logs<T>(f: impl Future<Output = T>) -> (T, String) {
    #[derive(Clone, Default)]
    struct Buf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let out = {
        let _guard = tracing::subscriber::set_default(subscriber);
        f.await
    };
    let text = String::from_utf8_lossy(&buf.0.lock().unwrap()).into_owned();
    (out, text)
}

fn known(ids: &[&str]) -> HashSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn launch_success_facts_and_metadata() {
    bounded(async {
        let (sim, d) = start().await;
        let admin = sim.admin();
        let out = launch_server(&d, scanning("0000000001", &sim)).await;
        let facts = out.result.unwrap();
        // The scan read the fake sshd's key on the server's (loopback) address.
        assert_eq!(facts.host_keys, admin.host_keys(&facts.external_id));
        assert_eq!(facts.host_keys.len(), 1);
        assert_eq!(out.external_id.as_deref(), Some(facts.external_id.as_str()));
        let s = admin.server(&facts.external_id).unwrap();
        assert_eq!(s.name, "np0000000001");
        assert_eq!(s.metadata["groups"], "prov,cirros,small-label");
        assert_eq!(s.metadata["team"], "infra");
        assert_eq!(s.metadata["request"], "100-0000000001 for zuul");
        assert_eq!(s.metadata["nodepool_node_id"], "0000000001");
        assert_eq!(s.metadata["nodepool_pool_name"], "main");
        assert_eq!(s.metadata["nodepool_provider_name"], "prov");
        // As openstacksdk reads it: the provider network routes externally, so its
        // address is public; without a private one Nodepool stores the public one there.
        assert!(facts.public_ipv4.starts_with("127.30."), "{facts:?}");
        assert_eq!(facts.private_ipv4, facts.public_ipv4);
        assert_eq!(facts.public_ipv6, "");
        assert_eq!(facts.interface_ip, facts.public_ipv4);
        assert!(facts.host_id.is_some());
        assert_eq!(facts.az.as_deref(), Some("nova"));
        assert_eq!(facts.cloud.as_deref(), Some("sim"));
        assert_eq!(facts.region.as_deref(), Some("RegionOne"));
        assert_eq!(facts.resources.get("cores"), 2.0);
        assert_eq!(facts.resources.get("ram"), 2048.0);
        assert_eq!(facts.resources.get("instances"), 1.0);
        // No floating IP was wanted.
        assert!(admin.floating_ips().is_empty());
    })
    .await;
}

#[tokio::test]
async fn launch_attaches_floating_ip() {
    bounded(async {
        let (sim, d) = start().await;
        let admin = sim.admin();
        let mut sp = scanning("0000000002", &sim);
        behind_floating_ip(&mut sp);
        let facts = launch_server(&d, sp).await.result.unwrap();
        // Scanned on the floating address (the interface IP) once attached.
        assert!(facts.interface_ip.starts_with("127.24."), "{facts:?}");
        assert_eq!(facts.host_keys, admin.host_keys(&facts.external_id));
        let fips = admin.floating_ips();
        assert_eq!(fips.len(), 1);
        assert_eq!(facts.public_ipv4, fips[0].floating_ip_address);
        assert_eq!(facts.interface_ip, facts.public_ipv4);
        assert!(facts.private_ipv4.starts_with("127.10."), "{facts:?}");
        let port = admin.server(&facts.external_id).unwrap().port_ids[0].clone();
        assert_eq!(fips[0].port_id.as_deref(), Some(port.as_str()));
    })
    .await;
}

#[tokio::test]
async fn launch_timeout_when_boot_never_finishes() {
    bounded(async {
        let (sim, d) = start().await;
        sim.admin().update_knobs(|k| k.hang_all_boots = true);
        // As in Nodepool 11, launch-timeout (not boot-timeout) bounds the wait for ACTIVE.
        let mut sp = scanning("0000000003", &sim);
        sp.launch_timeout = Duration::from_millis(500);
        sp.boot_timeout = Duration::from_secs(600);
        let out = launch_server(&d, sp).await;
        let e = out.result.unwrap_err();
        assert!(matches!(e, LaunchError::LaunchTimeout { .. }), "{e:?}");
        assert_eq!(e.stats_key(), "error.servercreatetimeout");
        assert!(!e.is_quota());
        // The half-built server is known so that it can be deleted.
        let id = out.external_id.unwrap();
        assert_eq!(e.server_id(), Some(id.as_str()));
        assert!(sim.admin().server(&id).is_some());
    })
    .await;
}

#[tokio::test]
async fn keyscan_timeout_when_sshd_never_answers() {
    bounded(async {
        let (sim, d) = start().await;
        sim.admin().update_knobs(|k| k.ssh_never = true);
        let mut sp = scanning("0000000013", &sim);
        sp.boot_timeout = Duration::from_millis(700);
        sp.console_log = true;
        let out = launch_server(&d, sp).await;
        let e = out.result.unwrap_err();
        assert!(matches!(e, LaunchError::Keyscan { .. }), "{e:?}");
        assert_eq!(e.stats_key(), "error.keyscan");
        let id = out.external_id.unwrap();
        assert_eq!(e.server_id(), Some(id.as_str()));
        // The server did boot; the console log of a failed scan is fetched.
        assert_eq!(sim.admin().server(&id).unwrap().status.as_str(), "ACTIVE");
        assert!(out.console_log.is_some());
        // Without the scan the same server would have been fine.
        let plain = launch_server(&d, spec("0000000014")).await;
        assert!(plain.result.unwrap().host_keys.is_empty());
        // Launch-timeout shorter than boot-timeout wins while scanning.
        let mut sp = scanning("0000000015", &sim);
        sp.boot_timeout = Duration::from_secs(600);
        sp.launch_timeout = Duration::from_millis(700);
        let e = launch_server(&d, sp).await.result.unwrap_err();
        assert!(matches!(e, LaunchError::LaunchTimeout { .. }), "{e:?}");
    })
    .await;
}

#[tokio::test]
async fn keyscan_waits_for_a_slow_sshd() {
    bounded(async {
        let (sim, d) = start().await;
        sim.admin().update_knobs(|k| k.ssh_delay_ms = 600);
        let mut sp = scanning("0000000016", &sim);
        sp.boot_timeout = Duration::from_secs(20);
        let out = launch_server(&d, sp).await;
        let facts = out.result.unwrap();
        assert_eq!(facts.host_keys, sim.admin().host_keys(&facts.external_id));
        println!(
            "launch with a sshd answering 600 ms after ACTIVE took {:?}",
            out.elapsed
        );
    })
    .await;
}

#[tokio::test]
async fn error_server_fails_with_fault_text_and_console() {
    bounded(async {
        let (sim, d) = start().await;
        sim.admin().update_knobs(|k| {
            k.fail_next_boots = 1;
            k.boot_fault_message =
                "No valid host was found. There are not enough hosts available.".into();
        });
        let mut sp = spec("0000000004");
        sp.console_log = true;
        let out = launch_server(&d, sp).await;
        let e = out.result.unwrap_err();
        assert!(matches!(e, LaunchError::ServerError { .. }), "{e:?}");
        assert!(e.to_string().contains("No valid host was found"), "{e}");
        assert_eq!(e.stats_key(), "error.status");
        assert!(out.console_log.is_some());
    })
    .await;
}

#[tokio::test]
async fn quota_failures_are_classified_as_quota() {
    bounded(async {
        let (sim, d) = start().await;
        let admin = sim.admin();
        // Nova refuses the create.
        admin.set_quota(Quota {
            cores: 1,
            ..Quota::default()
        });
        let out = launch_server(&d, spec("0000000005")).await;
        let e = out.result.unwrap_err();
        assert!(e.is_quota(), "{e:?}");
        assert_eq!(e.stats_key(), "error.quota");
        assert!(out.external_id.is_none());
        // Accepted, then ERROR with a quota fault.
        admin.set_quota(Quota::default());
        admin.update_knobs(|k| {
            k.fail_next_boots = 1;
            k.boot_fault_message =
                "Build of instance aborted: VCPU count exceeds the project quota".into();
        });
        let out = launch_server(&d, spec("0000000006")).await;
        let e = out.result.unwrap_err();
        assert!(e.is_quota(), "{e:?}");
        assert_eq!(e.server_id(), out.external_id.as_deref());
        // Quota ends a retried launch at once.
        admin.set_quota(Quota {
            cores: 1,
            ..Quota::default()
        });
        let mut failures = Vec::new();
        let r = launch_with_retries(&d, &spec("0000000007"), 3, DELETE_TIMEOUT, |e, _| {
            failures.push(e.stats_key())
        })
        .await;
        assert!(r.is_quota());
        assert_eq!(r.attempts, 1);
        assert_eq!(failures, ["error.quota"]);
        // Launch stats for the outcome, over UDP.
        let (sock, statsd) = statsd_pair();
        record_launch(
            &statsd,
            "prov",
            Some("nova"),
            Some("zuul.example"),
            failures[0],
            Duration::from_millis(5),
        );
        statsd.flush();
        statsd_lines_until(
            &sock,
            &[
                "nodepool.launch.provider.prov.error.quota:1|c",
                "nodepool.launch.error.quota:1|c",
                "nodepool.launch.provider.prov.nova.error.quota:1|c",
                "nodepool.launch.requestor.zuul_example.error.quota:1|c",
            ],
        );
    })
    .await;
}

#[tokio::test]
async fn retry_deletes_failed_attempt_then_succeeds() {
    bounded(async {
        let (sim, d) = start().await;
        let admin = sim.admin();
        admin.update_knobs(|k| k.fail_next_boots = 1);
        let mut failures = Vec::new();
        let r = launch_with_retries(&d, &spec("0000000008"), 3, DELETE_TIMEOUT, |e, _| {
            failures.push(e.stats_key())
        })
        .await;
        let facts = r.result.unwrap();
        assert_eq!(r.attempts, 2);
        assert_eq!(failures, ["error.status"]);
        // Only the second attempt's server is left.
        let servers = admin.servers();
        assert_eq!(servers.len(), 1);
        assert_eq!(servers[0].id, facts.external_id);
        // Out of attempts.
        admin.update_knobs(|k| k.fail_next_boots = 2);
        let r = launch_with_retries(&d, &spec("0000000009"), 2, DELETE_TIMEOUT, |_, _| {}).await;
        assert_eq!(r.attempts, 2);
        assert!(matches!(r.result, Err(LaunchError::ServerError { .. })));
        // The first failed server was removed; the last one is left for the node delete.
        assert_eq!(admin.servers().len(), 2);
    })
    .await;
}

#[tokio::test]
async fn delete_removes_floating_ip_and_server_and_accepts_404() {
    bounded(async {
        let (sim, d) = start().await;
        let admin = sim.admin();
        admin.update_knobs(|k| k.delete_delay_ms = 300);
        let mut sp = spec("0000000010");
        behind_floating_ip(&mut sp);
        let facts = launch_server(&d, sp).await.result.unwrap();
        assert_eq!(admin.floating_ips().len(), 1);
        delete_server(&d, &facts.external_id, DELETE_TIMEOUT)
            .await
            .unwrap();
        assert!(admin.server(&facts.external_id).is_none());
        assert!(admin.floating_ips().is_empty());
        // Already gone, and never existed: both success.
        delete_server(&d, &facts.external_id, DELETE_TIMEOUT)
            .await
            .unwrap();
        delete_server(&d, "no-such-server", DELETE_TIMEOUT)
            .await
            .unwrap();
        // A 404 on the lookup means "already gone": success without a delete call.
        admin.update_knobs(|k| k.delete_delay_ms = 0);
        let facts = launch_server(&d, spec("0000000011")).await.result.unwrap();
        admin.fail_next("compute.servers.get", 1, 404);
        admin.reset_counters();
        delete_server(&d, &facts.external_id, DELETE_TIMEOUT)
            .await
            .unwrap();
        assert_eq!(admin.counter("compute.servers.delete"), 0);
        // A temporary error is retried.
        admin.fail_next("compute.servers.delete", 1, 503);
        delete_server(&d, &facts.external_id, DELETE_TIMEOUT)
            .await
            .unwrap();
        assert!(admin.server(&facts.external_id).is_none());
        assert_eq!(admin.counter("compute.servers.delete"), 2);
    })
    .await;
}

async fn create_raw(d: &OpenStackDriver, name: &str, meta: &[(&str, &str)]) -> String {
    let flavors = d.list_flavors().await.unwrap();
    let small = flavors.iter().find(|f| f.name == "small").unwrap();
    let image = d.find_image("cirros-0.6.2").await.unwrap().unwrap();
    let req = CreateServer {
        name: name.into(),
        flavor_id: small.id.clone(),
        image_id: image.id,
        metadata: meta
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    };
    d.create_server(&req).await.unwrap().id
}

#[tokio::test]
async fn provider_quota_subtracts_unmanaged_servers() {
    bounded(async {
        let (sim, d) = start().await;
        let admin = sim.admin();
        // Unmanaged: no metadata, another provider, our provider with an unknown node.
        create_raw(&d, "manual", &[]).await;
        create_raw(
            &d,
            "other",
            &[
                ("nodepool_provider_name", "other"),
                ("nodepool_node_id", "0000000001"),
            ],
        )
        .await;
        create_raw(
            &d,
            "np0000000077",
            &[
                ("nodepool_provider_name", "prov"),
                ("nodepool_node_id", "0000000077"),
            ],
        )
        .await;
        // Managed: a known node of ours.
        create_raw(
            &d,
            "np0000000001",
            &[
                ("nodepool_provider_name", "prov"),
                ("nodepool_node_id", "0000000001"),
            ],
        )
        .await;

        let pq = ProviderQuota::new("prov");
        let known = known(&["0000000001"]);
        let limit = pq.limit(&d, &known).await.unwrap();
        // Default quota 10 instances / 20 cores / 51200 MB; 3 unmanaged small servers.
        assert_eq!(limit.get("instances"), 7.0);
        assert_eq!(limit.get("cores"), 14.0);
        assert_eq!(limit.get("ram"), 51200.0 - 3.0 * 2048.0);
        assert_eq!(limit.get("volumes"), 10.0);
        assert_eq!(limit.get("volume-gb"), 1000.0);

        // Cached: no API calls, same value even though the cloud changed.
        create_raw(&d, "manual2", &[]).await;
        admin.reset_counters();
        assert_eq!(pq.limit(&d, &known).await.unwrap(), limit);
        assert_eq!(admin.counter("compute.limits"), 0);
        pq.invalidate();
        assert_eq!(pq.limit(&d, &known).await.unwrap().get("instances"), 6.0);

        // Stale value reused on API error.
        let pq = ProviderQuota::with_ttl("prov", Duration::ZERO);
        let first = pq.limit(&d, &known).await.unwrap();
        admin.fail_next("compute.limits", 1, 500);
        assert_eq!(pq.limit(&d, &known).await.unwrap(), first);
        // Without a cached value the error surfaces.
        let fresh = ProviderQuota::new("prov");
        admin.fail_next("compute.limits", 1, 500);
        assert!(fresh.limit(&d, &known).await.is_err());

        // Label need: flavor + volume when booting from one, cached per label.
        let needs = LabelNeedCache::new();
        let fl = FlavorSpec {
            flavor_name: None,
            min_ram: Some(4000),
        };
        admin.reset_counters();
        let n = needs.need(&d, "medium-label", &fl, Some(80)).await.unwrap();
        let n2 = needs.need(&d, "medium-label", &fl, Some(80)).await.unwrap();
        assert_eq!(n, n2);
        assert_eq!(admin.counter("compute.flavors.list"), 1);
        let mut want = QuotaInformation::new(Some(4.0), Some(1.0), Some(8192.0), 0.0);
        want.set("volumes", 1.0);
        want.set("volume-gb", 80.0);
        assert_eq!(n, want);
    })
    .await;
}

/// Collects statsd lines from `sock` until every `wanted` line was seen (bounded).
fn statsd_lines_until(sock: &UdpSocket, wanted: &[&str]) -> Vec<String> {
    let mut lines = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 4096];
    while !wanted.iter().all(|w| lines.iter().any(|l| l == w)) {
        assert!(
            std::time::Instant::now() < deadline,
            "statsd lines {wanted:?} not all seen in {lines:?}"
        );
        if let Ok(n) = sock.recv(&mut buf) {
            lines.extend(
                String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .map(str::to_string),
            );
        }
    }
    lines
}

fn statsd_pair() -> (UdpSocket, Statsd) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let port = sock.local_addr().unwrap().port();
    let statsd = Statsd::udp("127.0.0.1", port).unwrap();
    (sock, statsd)
}

fn sim_has_server(admin: &SimAdmin, id: &str) -> bool {
    admin.server(id).is_some()
}

#[tokio::test]
async fn leaked_instance_removed_only_on_second_pass() {
    bounded(async {
        let (sim, d) = start().await;
        let admin = sim.admin();
        let leaked = admin.inject_leaked_server("prov", "0000000099", "main");
        let ours = admin.inject_leaked_server("prov", "0000000001", "main");
        let other = admin.inject_leaked_server("other", "0000000099", "main");
        let (sock, statsd) = statsd_pair();
        let mut cleaner = LeakCleaner::new(
            LeakSettings {
                port_cleanup_interval: Duration::ZERO,
                ..LeakSettings::new("prov")
            },
            statsd.clone(),
        );
        let known = known(&["0000000001"]);

        let r1 = cleaner.pass(&d, &known).await;
        assert!(r1.errors.is_empty(), "{:?}", r1.errors);
        assert_eq!((r1.suspected_instances, r1.instances), (1, 0));
        assert!(sim_has_server(&admin, &leaked));

        let r2 = cleaner.pass(&d, &known).await;
        assert!(r2.errors.is_empty(), "{:?}", r2.errors);
        assert_eq!(r2.instances, 1);
        assert!(!sim_has_server(&admin, &leaked));
        assert!(sim_has_server(&admin, &ours));
        assert!(sim_has_server(&admin, &other));

        statsd.flush();
        let lines = statsd_lines_until(&sock, &["nodepool.provider.prov.leaked.instances:1|c"]);
        assert!(lines.iter().all(|l| !l.contains("downPorts")), "{lines:?}");

        // A node id that becomes known between passes is no longer a leak.
        let late = admin.inject_leaked_server("prov", "0000000100", "main");
        assert_eq!(cleaner.pass(&d, &known).await.suspected_instances, 1);
        let known2 = self::known(&["0000000001", "0000000100"]);
        let r = cleaner.pass(&d, &known2).await;
        assert_eq!((r.suspected_instances, r.instances), (0, 0));
        assert!(sim_has_server(&admin, &late));
    })
    .await;
}

#[tokio::test]
async fn down_ports_and_unattached_floating_ips_removed_and_counted() {
    bounded(async {
        let (sim, d) = start().await;
        let admin = sim.admin();
        let p1 = admin.inject_down_port();
        let p2 = admin.inject_down_port();
        let fip1 = admin.inject_leaked_floating_ip();
        let fip2 = admin.inject_leaked_floating_ip();
        // An attached floating IP and an active port must stay.
        let mut sp = spec("0000000001");
        behind_floating_ip(&mut sp);
        let facts = launch_server(&d, sp).await.result.unwrap();
        let ports_before = admin.ports().len();

        let (sock, statsd) = statsd_pair();
        let interval = Duration::from_millis(200);
        let mut cleaner = LeakCleaner::new(
            LeakSettings {
                provider: "prov".into(),
                port_cleanup_interval: interval,
                clean_floating_ips: true,
            },
            statsd.clone(),
        );
        let known = known(&["0000000001"]);

        let (r1, logs) = with_logs(cleaner.pass(&d, &known)).await;
        assert!(r1.errors.is_empty(), "{:?}", r1.errors);
        assert_eq!(r1.ports, 0, "first sample only records DOWN ports");
        assert_eq!(r1.floating_ips, 2);
        assert_eq!(admin.floating_ips().len(), 1);
        // Each deleted floating IP is logged with its id and address.
        for id in [&fip1, &fip2] {
            let line = logs
                .lines()
                .find(|l| l.contains("deleting leaked floating IP") && l.contains(id.as_str()))
                .unwrap_or_else(|| panic!("no log line for floating IP {id}:\n{logs}"));
            assert!(line.contains("address=127.24."), "{line}");
        }
        // A port that goes DOWN after the first sample is not removed yet.
        let p3 = admin.inject_down_port();

        // Within the interval nothing happens to ports.
        let r = cleaner.pass(&d, &known).await;
        assert_eq!(r.ports, 0);

        tokio::time::sleep(interval + Duration::from_millis(50)).await;
        let (r2, logs) = with_logs(cleaner.pass(&d, &known)).await;
        for id in [&p1, &p2] {
            assert!(
                logs.lines()
                    .any(|l| l.contains("removed DOWN port") && l.contains(id.as_str())),
                "no log line for port {id}:\n{logs}"
            );
        }
        assert!(r2.errors.is_empty(), "{:?}", r2.errors);
        assert_eq!(r2.ports, 2);
        assert_eq!(r2.floating_ips, 0);
        let ports: Vec<String> = admin.ports().into_iter().map(|p| p.id).collect();
        assert!(!ports.contains(&p1) && !ports.contains(&p2));
        assert!(ports.contains(&p3));
        assert_eq!(ports.len(), ports_before + 1 - 2);
        assert!(admin.server(&facts.external_id).is_some());
        assert_eq!(admin.floating_ips().len(), 1);

        statsd.flush();
        let lines = statsd_lines_until(
            &sock,
            &[
                "nodepool.provider.prov.leaked.floatingips:2|c",
                "nodepool.provider.prov.leaked.ports:2|c",
            ],
        );
        assert!(lines.iter().all(|l| !l.contains("downPorts")), "{lines:?}");
        assert!(
            !lines.iter().any(|l| l.contains("leaked.instances")),
            "{lines:?}"
        );
    })
    .await;
}

/// The node addresses of a launch follow openstacksdk's rules under each clouds.yaml
/// setting: on the dual-stack provider network the IPv6 address is the interface IP
/// when the host has IPv6, the IPv4 one when it has not or with `force_ipv4` (which
/// also hides the IPv6 address); with `private: true` a server on the private network
/// gets no floating IP and is reached (and scanned) on its private address.
#[tokio::test]
async fn addresses_follow_clouds_yaml_and_host_ipv6() {
    bounded(async {
        let dual = SimConfig {
            ipv6: true,
            ..SimConfig::default()
        };
        for (extra, local_ipv6, want_v6) in [
            ("", Some(true), true),
            ("", Some(false), false),
            ("    force_ipv4: true\n", Some(true), false),
        ] {
            let (sim, d) = start_with(dual.clone(), extra, local_ipv6).await;
            let facts = launch_server(&d, scanning("0000000031", &sim))
                .await
                .result
                .unwrap();
            let v4 = facts.public_ipv4.clone();
            assert!(v4.starts_with("127.30."), "{facts:?}");
            assert_eq!(facts.private_ipv4, v4);
            let mapped = format!("::ffff:{v4}");
            let forced = !extra.is_empty();
            assert_eq!(facts.public_ipv6, if forced { "" } else { mapped.as_str() });
            let want = if want_v6 {
                mapped.as_str()
            } else {
                v4.as_str()
            };
            assert_eq!(facts.interface_ip, want, "{extra} {local_ipv6:?}");
            // The scan reached the fake sshd on the interface IP (IPv6 included).
            assert_eq!(facts.host_keys, sim.admin().host_keys(&facts.external_id));
        }
        let (sim, d) = start_with(SimConfig::default(), "    private: true\n", None).await;
        let mut sp = scanning("0000000032", &sim);
        behind_floating_ip(&mut sp);
        let facts = launch_server(&d, sp).await.result.unwrap();
        assert!(sim.admin().floating_ips().is_empty(), "no floating IP");
        assert!(facts.private_ipv4.starts_with("127.10."), "{facts:?}");
        assert_eq!(facts.public_ipv4, "");
        assert_eq!(facts.interface_ip, facts.private_ipv4);
        assert_eq!(facts.host_keys.len(), 1);
    })
    .await;
}

/// With the provider's cloud lookups (the launcher's path), two launches list flavors
/// and networks once; Nova's 400 to a create (a zone the cloud no longer has) makes the
/// provider forget them all, so the next launch lists again.
#[tokio::test]
async fn bad_request_on_create_forgets_cached_lookups() {
    use nodepool_daemon::launcher::lookups::CloudLookups;
    use nodepool_daemon::launcher::LaunchMachine;
    use std::sync::Arc;

    bounded(async {
        let (sim, d) = start().await;
        let admin = sim.admin();
        let lookups = Arc::new(CloudLookups::new("prov"));
        let zones = lookups.zones(&d).await.unwrap();
        assert_eq!(zones.as_slice(), ["nova"]);
        admin.reset_counters();
        for id in ["0000000041", "0000000042"] {
            let out = LaunchMachine::new(spec(id))
                .with_lookups(lookups.clone())
                .run(&d)
                .await;
            out.result.unwrap();
        }
        assert_eq!(admin.counter("compute.flavors.list"), 1);
        assert_eq!(admin.counter("network.networks.list"), 1);
        assert_eq!(admin.counter("compute.availability_zones"), 0);
        // The cloud's zones change; a launch in the cached zone gets Nova's 400.
        admin
            .set_availability_zones(&["az-new".to_string()])
            .unwrap();
        let stale = LaunchSpec {
            availability_zone: Some(zones[0].clone()),
            ..spec("0000000043")
        };
        let out = LaunchMachine::new(stale)
            .with_lookups(lookups.clone())
            .run(&d)
            .await;
        let e = out.result.unwrap_err();
        assert!(e.to_string().contains("availability zone"), "{e}");
        assert!(
            lookups.cached_flavor(&spec("x").flavor).is_none(),
            "flavors forgotten"
        );
        admin.reset_counters();
        assert_eq!(lookups.zones(&d).await.unwrap().as_slice(), ["az-new"]);
        assert_eq!(admin.counter("compute.availability_zones"), 1);
        LaunchMachine::new(spec("0000000044"))
            .with_lookups(lookups.clone())
            .run(&d)
            .await
            .result
            .unwrap();
        assert_eq!(admin.counter("compute.flavors.list"), 1);
        assert_eq!(admin.counter("network.networks.list"), 1);
    })
    .await;
}

/// Unmanaged usage counts the Cinder volumes attached to servers Nodepool does not
/// manage (number and GB), as Nodepool's `quota_from_flavor` does for listed instances;
/// our own nodes' volumes are not subtracted twice.
#[tokio::test]
async fn provider_quota_subtracts_unmanaged_volumes() {
    bounded(async {
        let (_sim, d) = start().await;
        let flavors = d.list_flavors().await.unwrap();
        let small = flavors.iter().find(|f| f.name == "small").unwrap();
        let image = d.find_image("cirros-0.6.2").await.unwrap().unwrap();
        let bfv = |name: &str, gb: u64, meta: &[(&str, &str)]| CreateServer {
            name: name.into(),
            flavor_id: small.id.clone(),
            image_id: image.id.clone(),
            boot_from_volume: true,
            volume_size: Some(gb),
            metadata: meta
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        };
        // Unmanaged, with a 30 GB boot volume; ours (known node), with a 40 GB one.
        d.create_server(&bfv("manual", 30, &[])).await.unwrap();
        let ours = [
            ("nodepool_provider_name", "prov"),
            ("nodepool_node_id", "0000000001"),
        ];
        d.create_server(&bfv("np0000000001", 40, &ours))
            .await
            .unwrap();
        let limit = ProviderQuota::new("prov")
            .limit(&d, &known(&["0000000001"]))
            .await
            .unwrap();
        // Default Cinder quota: 10 volumes, 1000 GB.
        assert_eq!(limit.get("volumes"), 9.0);
        assert_eq!(limit.get("volume-gb"), 970.0);
        assert_eq!(limit.get("instances"), 9.0);
        assert_eq!(limit.get("cores"), 18.0);
    })
    .await;
}

/// A delete that runs out of time says why: "still exists" only when the cloud answered
/// that the server is still there; when its calls could not reach the cloud, it says so
/// with the error.
#[tokio::test]
async fn delete_out_of_time_says_whether_the_cloud_was_reachable() {
    bounded(async {
        let (sim, d) = start().await;
        let admin = sim.admin();
        let facts = launch_server(&d, spec("0000000020")).await.result.unwrap();
        // The server keeps showing after the delete: it still exists.
        admin.update_knobs(|k| k.delete_delay_ms = 60_000);
        let e = delete_server(&d, &facts.external_id, Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(matches!(e, DeleteError::Timeout { .. }), "{e:?}");
        assert!(e.to_string().contains("still exists after 2s"), "{e}");
        // The cloud is gone (connection refused): not "still exists".
        sim.shutdown().await.unwrap();
        let e = delete_server(&d, &facts.external_id, Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(matches!(e, DeleteError::Unreachable { .. }), "{e:?}");
        let text = e.to_string();
        assert!(
            text.contains("could not reach the cloud to delete server")
                && text.contains(&facts.external_id)
                && !text.contains("still exists"),
            "{text}"
        );
        assert!(
            text.contains("temporary failure"),
            "the error itself: {text}"
        );
    })
    .await;
}
