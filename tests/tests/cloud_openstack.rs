//! The real OpenStack driver (`nodepool_shared::cloud::OpenStackDriver`) against the
//! OpenStack API simulator over HTTP: every operation, its error cases, and — through the
//! simulator's call counters — that each operation is exactly one HTTP request.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::UdpSocket;
use std::path::Path;
use std::time::Duration;

use nodepool_shared::cloud::addresses::needs_floating_ip;
use nodepool_shared::cloud::{
    server_ips, CloudDriver, CloudError, CloudsFile, CreateServer, DriverOptions, FlavorWanted,
    ImageCreate, Limit, OpenStackDriver, PortFilter,
};
use nodepool_shared::stats::Statsd;
use nodepool_shared::testing::{bounded, bounded_serial};
use nodepool_tests::sim::{CloudsAuth, Quota, SimAdmin, SimConfig, SimHandle, Simulator};

fn options(provider: &str) -> DriverOptions {
    let mut o = DriverOptions::new(provider);
    o.rate = 0.0;
    o.api_timeout = Duration::from_secs(10);
    o
}

fn driver_with(sim: &SimHandle, auth: CloudsAuth, opts: DriverOptions) -> OpenStackDriver {
    let yaml = sim.clouds_yaml_with("sim", auth);
    let file = CloudsFile::parse(&yaml, Path::new("clouds.yaml")).unwrap();
    OpenStackDriver::new(file.cloud("sim").unwrap(), opts).unwrap()
}

async fn start(config: SimConfig) -> (SimHandle, OpenStackDriver) {
    let sim = Simulator::start(config).await.unwrap();
    let d = driver_with(&sim, CloudsAuth::Password, options("prov"));
    d.authenticate().await.unwrap();
    (sim, d)
}

fn total(admin: &SimAdmin) -> u64 {
    admin.counters().values().sum()
}

/// Runs `f`, asserting that it made exactly one HTTP request, counted as `op`.
async fn one_request<T>(admin: &SimAdmin, op: &str, f: impl Future<Output = T>) -> T {
    admin.reset_counters();
    let out = f.await;
    assert_eq!(
        admin.counters(),
        BTreeMap::from([(op.to_string(), 1)]),
        "expected exactly one `{op}` request"
    );
    out
}

async fn private_network(d: &OpenStackDriver) -> String {
    let nets = d.list_networks().await.unwrap();
    nets.iter().find(|n| !n.external).unwrap().id.clone()
}

fn simple_server(name: &str, flavor: &str, image: &str) -> CreateServer {
    CreateServer {
        name: name.into(),
        flavor_id: flavor.into(),
        image_id: image.into(),
        ..Default::default()
    }
}

async fn create_keypair(sim: &SimHandle, name: &str) {
    let http = reqwest::Client::new();
    let c = &sim.config().credentials;
    let body = serde_json::json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": c.username, "password": c.password, "domain": {"id": "default"}}}},
        "scope": {"project": {"id": c.project_id}}}});
    let r = http
        .post(format!("{}/v3/auth/tokens", sim.auth_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    let token = r.headers()["x-subject-token"].to_str().unwrap().to_string();
    let r = http
        .post(format!("{}/compute/v2.1/os-keypairs", sim.url()))
        .header("X-Auth-Token", token)
        .json(&serde_json::json!({"keypair": {"name": name,
            "public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBxp0s5Yf1bJ7o0oB5R3m0i0o0o0o0o0o0o0o0o0o0o0 t"}}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "keypair: {}", r.status());
}

#[tokio::test]
async fn auth_password_and_application_credential() {
    bounded(async {
        let sim = Simulator::start(SimConfig::default()).await.unwrap();
        let admin = sim.admin();
        for auth in [CloudsAuth::Password, CloudsAuth::ApplicationCredential] {
            let d = driver_with(&sim, auth, options("prov"));
            one_request(&admin, "identity.tokens.create", d.authenticate())
                .await
                .unwrap();
            // The token is reused: no second authentication.
            admin.reset_counters();
            d.authenticate().await.unwrap();
            d.compute_limits().await.unwrap();
            assert_eq!(admin.counter("identity.tokens.create"), 0);
        }
        // Wrong password: a typed auth error that does not leak the password.
        let yaml = sim
            .clouds_yaml("sim")
            .replace("password: secret", "password: wrong-pw");
        let file = CloudsFile::parse(&yaml, Path::new("clouds.yaml")).unwrap();
        let d = OpenStackDriver::new(file.cloud("sim").unwrap(), options("prov")).unwrap();
        let e = d.list_servers().await.unwrap_err();
        assert!(matches!(e, CloudError::Auth { .. }), "{e:?}");
        assert!(!e.to_string().contains("wrong-pw"), "{e}");
        assert!(!format!("{d:?}").contains("wrong-pw"));
    })
    .await;
}

#[tokio::test]
async fn clouds_yaml_file_from_simulator() {
    bounded(async {
        let sim = Simulator::start(SimConfig::default()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clouds.yaml");
        sim.write_clouds_yaml(&path, "devstack").unwrap();
        let file =
            CloudsFile::load_first(&[dir.path().join("missing.yaml"), path.clone()]).unwrap();
        assert_eq!(file.path, path);
        let cloud = file.cloud("devstack").unwrap();
        assert_eq!(cloud.image_format(), "qcow2");
        let mut opts = options("prov");
        opts.region_name = Some("RegionOne".into());
        let d = OpenStackDriver::new(cloud, opts).unwrap();
        assert_eq!(d.region(), Some("RegionOne"));
        assert!(d.list_flavors().await.unwrap().len() >= 3);
        // A region the catalog does not have.
        let mut opts = options("prov");
        opts.region_name = Some("Nowhere".into());
        let d = OpenStackDriver::new(cloud, opts).unwrap();
        let e = d.list_flavors().await.unwrap_err();
        assert!(matches!(e, CloudError::EndpointNotFound { .. }), "{e:?}");
    })
    .await;
}

#[tokio::test]
async fn server_lifecycle_one_request_each() {
    bounded(async {
        let (sim, d) = start(SimConfig::default()).await;
        let admin = sim.admin();
        create_keypair(&sim, "nodepool").await;

        let flavors = one_request(&admin, "compute.flavors.list", d.list_flavors())
            .await
            .unwrap();
        let small = flavors.iter().find(|f| f.name == "small").unwrap();
        assert_eq!((small.ram, small.vcpus), (Some(2048), Some(2)));
        let image = one_request(&admin, "image.images.list", d.find_image("cirros-0.6.2"))
            .await
            .unwrap()
            .unwrap();
        let net = one_request(&admin, "network.networks.list", private_network(&d)).await;

        let req = CreateServer {
            name: "np0000000001".into(),
            flavor_id: small.id.clone(),
            image_id: image.id.clone(),
            key_name: Some("nodepool".into()),
            networks: vec![net.clone()],
            metadata: BTreeMap::from([
                ("nodepool_node_id".to_string(), "0000000001".to_string()),
                ("nodepool_provider_name".to_string(), "prov".to_string()),
                ("nodepool_pool_name".to_string(), "main".to_string()),
            ]),
            availability_zone: Some("nova".into()),
            user_data: Some("hello".into()),
            config_drive: Some(true),
            boot_from_volume: false,
            volume_size: None,
            security_groups: vec!["default".into()],
        };
        let created = one_request(&admin, "compute.servers.create", d.create_server(&req))
            .await
            .unwrap();

        // What the cloud received.
        let s = admin.server(&created.id).unwrap();
        assert_eq!(s.name, "np0000000001");
        assert_eq!(s.user_data.as_deref(), Some("aGVsbG8="));
        assert!(s.config_drive);
        assert_eq!(s.key_name.as_deref(), Some("nodepool"));
        assert_eq!(s.metadata["nodepool_node_id"], "0000000001");
        assert_eq!(s.availability_zone, "nova");
        assert_eq!(s.security_groups, ["default"]);
        assert_eq!(s.image_id.as_deref(), Some(image.id.as_str()));

        // What we read back.
        let got = one_request(&admin, "compute.servers.get", d.get_server(&created.id))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.id, created.id);
        assert_eq!(got.status, "ACTIVE");
        assert_eq!(got.metadata["nodepool_provider_name"], "prov");
        assert_eq!(got.availability_zone.as_deref(), Some("nova"));
        assert!(got.host_id.as_deref().is_some_and(|h| !h.is_empty()));
        assert_eq!(got.flavor.as_ref().unwrap().vcpus, Some(2));
        assert_eq!(got.image_id(), Some(image.id.as_str()));
        assert_eq!(got.addresses.len(), 1, "{:?}", got.addresses);
        assert_eq!(got.addresses[0].0, "private");
        assert!(got.config_drive);

        let all = one_request(&admin, "compute.servers.detail", d.list_servers())
            .await
            .unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].id, created.id);

        let console = one_request(
            &admin,
            "compute.servers.action",
            d.console_output(&created.id, Some(50)),
        )
        .await
        .unwrap();
        assert!(console.contains("np0000000001"), "{console}");

        one_request(
            &admin,
            "compute.servers.delete",
            d.delete_server(&created.id),
        )
        .await
        .unwrap();
        // Already gone: a 404 that counts as success.
        one_request(
            &admin,
            "compute.servers.delete",
            d.delete_server(&created.id),
        )
        .await
        .unwrap();
        let gone = one_request(&admin, "compute.servers.get", d.get_server(&created.id))
            .await
            .unwrap();
        assert!(gone.is_none());
    })
    .await;
}

#[tokio::test]
async fn boot_from_volume_and_auto_network() {
    bounded(async {
        let (sim, d) = start(SimConfig::default()).await;
        let admin = sim.admin();
        let image = d.find_image("cirros-0.6.2").await.unwrap().unwrap();
        let flavor = d
            .find_flavor(FlavorWanted {
                min_ram: Some(1024),
                flavor_name: None,
            })
            .await
            .unwrap()
            .unwrap();
        let mut req = simple_server("np0000000002", &flavor.id, &image.id);
        req.boot_from_volume = true;
        req.volume_size = Some(80);
        let created = one_request(&admin, "compute.servers.create", d.create_server(&req))
            .await
            .unwrap();
        let s = admin.server(&created.id).unwrap();
        assert_eq!(s.image_id, None);
        assert_eq!(s.block_device_mapping_v2.len(), 1);
        let bdm = &s.block_device_mapping_v2[0];
        assert_eq!(bdm["volume_size"], 80);
        assert_eq!(bdm["uuid"], image.id.as_str());
        assert_eq!(bdm["destination_type"], "volume");
        // `networks: auto` gave it a port on the provider network.
        assert_eq!(s.port_ids.len(), 1);
        let got = d.get_server(&created.id).await.unwrap().unwrap();
        assert_eq!(got.image_id(), None);
        // Its boot volume is attached, and the volume list shows it (one request).
        assert_eq!(got.volumes_attached.len(), 1);
        let vols = one_request(&admin, "volume.volumes.list", d.list_volumes())
            .await
            .unwrap();
        assert_eq!(vols.len(), 1);
        assert_eq!(vols[0].id, got.volumes_attached[0].id);
        assert_eq!(vols[0].size, Some(80));
    })
    .await;
}

#[tokio::test]
async fn quota_errors_are_typed() {
    bounded(async {
        let (sim, d) = start(SimConfig::default()).await;
        let admin = sim.admin();
        let image = d.find_image("cirros-0.6.2").await.unwrap().unwrap();
        let flavors = d.list_flavors().await.unwrap();
        let large = flavors.iter().find(|f| f.name == "large").unwrap();

        // Nova refuses the create: 403 "Quota exceeded for cores ...".
        admin.set_quota(Quota {
            instances: 10,
            cores: 4,
            ram: 51200,
            ..Quota::default()
        });
        let e = one_request(
            &admin,
            "compute.servers.create",
            d.create_server(&simple_server("np1", &large.id, &image.id)),
        )
        .await
        .unwrap_err();
        assert!(e.is_quota(), "{e:?}");
        assert!(e.to_string().contains("compute.POST.servers"), "{e}");

        // The server is accepted but fails with a quota fault.
        admin.set_quota(Quota {
            instances: 10,
            cores: 20,
            ram: 51200,
            ..Quota::default()
        });
        admin.update_knobs(|k| {
            k.fail_next_boots = 1;
            k.boot_fault_message =
                "Build of instance aborted: VCPU count exceeds the project quota".into();
        });
        let small = flavors.iter().find(|f| f.name == "small").unwrap();
        let created = d
            .create_server(&simple_server("np2", &small.id, &image.id))
            .await
            .unwrap();
        let s = d.get_server(&created.id).await.unwrap().unwrap();
        assert_eq!(s.status, "ERROR");
        assert!(s.has_quota_fault(), "{:?}", s.fault);

        // The limits reflect the quota; -1 is unlimited.
        admin.set_quota(Quota {
            instances: -1,
            cores: 8,
            ram: 4096,
            ..Quota::default()
        });
        let l = one_request(&admin, "compute.limits", d.compute_limits())
            .await
            .unwrap();
        assert_eq!(l.instances, Limit::Unlimited);
        assert_eq!(l.cores, Limit::Max(8));
        assert_eq!(l.ram, Limit::Max(4096));
        assert_eq!(l.instances_used, Some(1));
        let q = l.to_quota(None);
        assert!(q.get("instances").is_infinite());
        assert_eq!(q.get("cores"), 8.0);
    })
    .await;
}

#[tokio::test]
async fn server_errors_are_classified() {
    bounded(async {
        let (sim, d) = start(SimConfig::default()).await;
        let admin = sim.admin();
        let (image, flavor) = cirros_small(&d).await;

        // 5xx → retryable, one request, nothing created.
        admin.fail_next("compute.servers.create", 1, 503);
        let e = one_request(
            &admin,
            "compute.servers.create",
            d.create_server(&simple_server("np1", &flavor, &image)),
        )
        .await
        .unwrap_err();
        assert!(e.is_retryable(), "{e:?}");
        assert!(e.to_string().contains("503"), "{e}");
        assert!(admin.servers().is_empty());

        admin.fail_next("compute.servers.detail", 1, 500);
        let e = d.list_servers().await.unwrap_err();
        assert!(e.is_retryable(), "{e:?}");

        // A 4xx that is neither quota nor 404.
        let e = d
            .create_server(&simple_server("np1", "no-such-flavor", &image))
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                CloudError::Http { status: 400, .. } | CloudError::NotFound { .. }
            ),
            "{e:?}"
        );

        // 200 with a body that is not JSON: a bad-reply error naming the operation.
        admin.garbage_next("compute.servers.detail", 1);
        let e = d.list_servers().await.unwrap_err();
        assert!(matches!(e, CloudError::BadReply { .. }), "{e:?}");
        assert!(e.to_string().contains("compute.GET.servers.detail"), "{e}");
        admin.garbage_next("compute.servers.get", 1);
        let e = d.get_server("anything").await.unwrap_err();
        assert!(matches!(e, CloudError::BadReply { .. }), "{e:?}");
        admin.garbage_next("compute.limits", 1);
        assert!(matches!(
            d.compute_limits().await,
            Err(CloudError::BadReply { .. })
        ));

        // Deleting something that never existed is fine; getting it is None.
        d.delete_server("00000000-0000-0000-0000-000000000000")
            .await
            .unwrap();
        assert!(d
            .get_server("00000000-0000-0000-0000-000000000000")
            .await
            .unwrap()
            .is_none());
    })
    .await;
}

#[tokio::test]
async fn connection_and_timeout_errors() {
    bounded(async {
        let sim = Simulator::start(SimConfig::default()).await.unwrap();
        let admin = sim.admin();
        let mut opts = options("prov");
        opts.api_timeout = Duration::from_millis(300);
        let d = driver_with(&sim, CloudsAuth::Password, opts);
        d.authenticate().await.unwrap();
        admin.update_knobs(|k| k.api_latency_ms = 3000);
        let e = d.compute_limits().await.unwrap_err();
        assert!(matches!(e, CloudError::Timeout { .. }), "{e:?}");
        assert!(e.is_retryable());

        // Nobody listening: a retryable connection error.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let yaml = sim
            .clouds_yaml("sim")
            .replace(&sim.url(), &format!("http://127.0.0.1:{port}"));
        let file = CloudsFile::parse(&yaml, Path::new("clouds.yaml")).unwrap();
        let d = OpenStackDriver::new(file.cloud("sim").unwrap(), options("prov")).unwrap();
        let e = d.authenticate().await.unwrap_err();
        assert!(e.is_retryable(), "{e:?}");
    })
    .await;
}

#[tokio::test]
async fn token_renewed_once_on_401_and_before_expiry() {
    bounded(async {
        let (sim, d) = start(SimConfig::default()).await;
        let admin = sim.admin();
        // The cloud rejects the token once: renew (1 request) and retry (1 request).
        admin.reset_counters();
        admin.fail_next("compute.limits", 1, 401);
        d.compute_limits().await.unwrap();
        assert_eq!(admin.counter("identity.tokens.create"), 1);
        assert_eq!(admin.counter("compute.limits"), 2);
        assert_eq!(total(&admin), 3);

        // Rejected again after renewal: an auth error, no loop.
        admin.reset_counters();
        admin.fail_next("compute.limits", 2, 401);
        let e = d.compute_limits().await.unwrap_err();
        assert!(matches!(e, CloudError::Auth { .. }), "{e:?}");
        assert_eq!(total(&admin), 3);

        // Tokens that are about to expire are renewed before use.
        let sim2 = Simulator::start(SimConfig {
            token_ttl_secs: 30,
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let admin2 = sim2.admin();
        let d2 = driver_with(&sim2, CloudsAuth::Password, options("prov"));
        d2.compute_limits().await.unwrap();
        d2.compute_limits().await.unwrap();
        assert_eq!(admin2.counter("identity.tokens.create"), 2);
        assert_eq!(admin2.counter("compute.limits"), 2);
    })
    .await;
}

#[tokio::test]
async fn flavors_zones_and_limits() {
    bounded(async {
        let (sim, d) = start(SimConfig {
            availability_zones: vec!["az1".into(), "az2".into()],
            ..SimConfig::default()
        })
        .await;
        let admin = sim.admin();
        let pick = |min_ram, name| FlavorWanted {
            min_ram,
            flavor_name: name,
        };
        let f = one_request(
            &admin,
            "compute.flavors.list",
            d.find_flavor(pick(Some(4000), None)),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(f.name, "medium");
        let f = d
            .find_flavor(pick(None, Some("large")))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(f.ram, Some(16384));
        assert!(d
            .find_flavor(pick(Some(1 << 30), None))
            .await
            .unwrap()
            .is_none());

        let azs = one_request(
            &admin,
            "compute.availability_zones",
            d.list_availability_zones(),
        )
        .await
        .unwrap();
        assert_eq!(azs, ["az1", "az2"]);

        // The simulator's volume service (Cinder) reports its default quota in one request.
        let v = one_request(&admin, "volume.limits", d.volume_limits())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(v.volumes, Limit::Max(10));
        assert_eq!(v.gigabytes, Limit::Max(1000));
    })
    .await;
}

#[tokio::test]
async fn image_create_upload_list_delete() {
    bounded(async {
        let (sim, d) = start(SimConfig::default()).await;
        let admin = sim.admin();
        let req = ImageCreate {
            name: "ubuntu-noble-1700000000".into(),
            disk_format: "qcow2".into(),
            container_format: None,
            properties: BTreeMap::from([
                ("nodepool_build_id".to_string(), "0000000007".to_string()),
                ("nodepool_upload_id".to_string(), "0000000001".to_string()),
                ("nodepool_provider_name".to_string(), "prov".to_string()),
            ]),
        };
        let image = one_request(&admin, "image.images.create", d.create_image(&req))
            .await
            .unwrap();
        assert_eq!(image.status, "queued");
        assert_eq!(
            image.property("nodepool_build_id").as_deref(),
            Some("0000000007")
        );

        // 3 MiB + 5 bytes, streamed from disk.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("image.qcow2");
        let data: Vec<u8> = (0..(3 * 1024 * 1024 + 5))
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(&file, &data).unwrap();
        one_request(
            &admin,
            "image.images.upload",
            d.upload_image_data(&image.id, &file),
        )
        .await
        .unwrap();
        let got = one_request(&admin, "image.images.get", d.get_image(&image.id))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.status, "active");
        assert_eq!(got.size, Some(data.len() as u64));
        assert_eq!(got.disk_format.as_deref(), Some("qcow2"));

        let ours = one_request(
            &admin,
            "image.images.list",
            d.list_images_with_property("nodepool_build_id"),
        )
        .await
        .unwrap();
        assert_eq!(ours.len(), 1);
        assert_eq!(ours[0].id, image.id);
        let by_name = d
            .find_image("ubuntu-noble-1700000000")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(by_name.id, image.id);
        let by_id = d.find_image(&image.id).await.unwrap().unwrap();
        assert_eq!(by_id.name, "ubuntu-noble-1700000000");

        // Errors: missing local file, missing image, 5xx on upload.
        let e = d
            .upload_image_data(&image.id, &dir.path().join("nope"))
            .await
            .unwrap_err();
        assert!(matches!(e, CloudError::Io { .. }), "{e:?}");
        let e = d
            .upload_image_data("00000000-0000-0000-0000-000000000000", &file)
            .await
            .unwrap_err();
        assert!(e.is_not_found(), "{e:?}");
        let img2 = d.create_image(&req).await.unwrap();
        admin.fail_next("image.images.upload", 1, 500);
        let e = d.upload_image_data(&img2.id, &file).await.unwrap_err();
        assert!(e.is_retryable(), "{e:?}");
        admin.garbage_next("image.images.list", 1);
        let e = d.list_images().await.unwrap_err();
        assert!(e.to_string().contains("image.GET.images"), "{e}");

        one_request(&admin, "image.images.delete", d.delete_image(&image.id))
            .await
            .unwrap();
        one_request(&admin, "image.images.delete", d.delete_image(&image.id))
            .await
            .unwrap();
        assert!(d.get_image(&image.id).await.unwrap().is_none());
    })
    .await;
}

#[tokio::test]
async fn floating_ips_and_ports() {
    bounded(async {
        let (sim, d) = start(SimConfig::default()).await;
        let admin = sim.admin();
        let image = d.find_image("cirros-0.6.2").await.unwrap().unwrap();
        let flavor = d
            .find_flavor(FlavorWanted {
                min_ram: Some(1),
                flavor_name: None,
            })
            .await
            .unwrap()
            .unwrap();
        let nets = d.list_networks().await.unwrap();
        let public = nets.iter().find(|n| n.external).unwrap();
        let policy = d.address_policy();
        let needs_fip = |s: &nodepool_shared::cloud::Server| {
            let ips = server_ips(s, &nets, &policy);
            needs_floating_ip(s, &ips, true, &policy)
        };
        let created = d
            .create_server(&CreateServer {
                networks: vec![private_network(&d).await],
                ..simple_server("np3", &flavor.id, &image.id)
            })
            .await
            .unwrap();
        let server = d.get_server(&created.id).await.unwrap().unwrap();
        assert!(needs_fip(&server));

        let ports = one_request(&admin, "network.ports.list", d.server_ports(&created.id))
            .await
            .unwrap();
        assert_eq!(ports.len(), 1);
        let port = &ports[0];
        assert!(port.is_compute_owned());

        let fip = one_request(
            &admin,
            "network.floatingips.create",
            d.create_floating_ip(&public.id, None),
        )
        .await
        .unwrap();
        assert!(!fip.is_attached());
        let fip = one_request(
            &admin,
            "network.floatingips.update",
            d.attach_floating_ip(&fip.id, &port.id),
        )
        .await
        .unwrap();
        assert_eq!(fip.port_id.as_deref(), Some(port.id.as_str()));
        let server = d.get_server(&created.id).await.unwrap().unwrap();
        assert_eq!(
            server_ips(&server, &nets, &policy).public_ipv4,
            fip.floating_ip_address
        );
        assert!(!needs_fip(&server));

        let fips = one_request(&admin, "network.floatingips.list", d.list_floating_ips())
            .await
            .unwrap();
        assert_eq!(fips.len(), 1);

        // Leaked floating IPs: only unattached ones are removed.
        admin.inject_leaked_floating_ip();
        admin.inject_leaked_floating_ip();
        let n = d.delete_unattached_floating_ips().await.unwrap();
        assert_eq!(n, 2);
        assert_eq!(admin.floating_ips().len(), 1);

        let fip = one_request(
            &admin,
            "network.floatingips.update",
            d.detach_floating_ip(&fip.id),
        )
        .await
        .unwrap();
        assert!(!fip.is_attached());
        one_request(
            &admin,
            "network.floatingips.delete",
            d.delete_floating_ip(&fip.id),
        )
        .await
        .unwrap();
        one_request(
            &admin,
            "network.floatingips.delete",
            d.delete_floating_ip(&fip.id),
        )
        .await
        .unwrap();

        // Creating from a network that is not external is refused with a typed error.
        let private = nets.iter().find(|n| !n.external).unwrap();
        let e = d.create_floating_ip(&private.id, None).await.unwrap_err();
        assert!(matches!(e, CloudError::Http { status: 400, .. }), "{e:?}");

        // Leaked DOWN ports.
        let leaked = admin.inject_down_port();
        let down = one_request(
            &admin,
            "network.ports.list",
            d.list_ports(&PortFilter {
                status: Some("DOWN".into()),
                ..Default::default()
            }),
        )
        .await
        .unwrap();
        assert_eq!(down.len(), 1);
        assert_eq!(down[0].id, leaked);
        assert!(down[0].is_compute_owned());
        one_request(&admin, "network.ports.delete", d.delete_port(&leaked))
            .await
            .unwrap();
        one_request(&admin, "network.ports.delete", d.delete_port(&leaked))
            .await
            .unwrap();
        assert!(!admin.ports().iter().any(|p| p.id == leaked));

        admin.fail_next("network.floatingips.list", 1, 502);
        assert!(d.list_floating_ips().await.unwrap_err().is_retryable());
        admin.garbage_next("network.ports.list", 1);
        let e = d.list_ports(&PortFilter::default()).await.unwrap_err();
        assert!(e.to_string().contains("network.GET.ports"), "{e}");
    })
    .await;
}

/// The simulator's cirros image and `small` flavor: `(image id, flavor id)`.
async fn cirros_small(d: &OpenStackDriver) -> (String, String) {
    let image = d.find_image("cirros-0.6.2").await.unwrap().unwrap();
    let flavor = d
        .find_flavor(FlavorWanted {
            min_ram: None,
            flavor_name: Some("small"),
        })
        .await
        .unwrap()
        .unwrap();
    (image.id, flavor.id)
}

/// Boots `np0` … `np4` (cirros, flavor `small`).
async fn create_five_servers(d: &OpenStackDriver) {
    let (image, flavor) = cirros_small(d).await;
    for i in 0..5 {
        d.create_server(&simple_server(&format!("np{i}"), &flavor, &image))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn lists_are_paged_with_limit_and_marker() {
    bounded(async {
        let sim = Simulator::start(SimConfig::default()).await.unwrap();
        let admin = sim.admin();
        let mut opts = options("prov");
        opts.page_size = 2;
        let d = driver_with(&sim, CloudsAuth::Password, opts);
        create_five_servers(&d).await;
        admin.reset_counters();
        let servers = d.list_servers().await.unwrap();
        let mut names: Vec<_> = servers.iter().map(|s| s.name.clone()).collect();
        names.sort();
        assert_eq!(names, ["np0", "np1", "np2", "np3", "np4"]);
        // Pages of 2, 2, 1: the short page ends the listing.
        assert_eq!(admin.counter("compute.servers.detail"), 3);

        for i in 0..4 {
            d.create_image(&ImageCreate {
                name: format!("img{i}"),
                disk_format: "raw".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        }
        admin.reset_counters();
        let images = d.list_images().await.unwrap();
        assert_eq!(images.len(), 5);
        let pages = admin.counter("image.images.list");
        assert!((3..=4).contains(&pages), "{pages} pages");

        let ports = d.list_ports(&PortFilter::default()).await.unwrap();
        assert_eq!(ports.len(), 5);
    })
    .await;
}

/// A reply larger than the driver's limit fails its call with a bad-reply error that
/// names the call and the limit, instead of being read whole into memory (a broken
/// proxy or cloud could send gigabytes). The same cloud, read with the default limit,
/// answers normally.
#[tokio::test]
async fn oversized_replies_fail_the_call() {
    bounded(async {
        let sim = Simulator::start(SimConfig::default()).await.unwrap();
        let d = driver_with(&sim, CloudsAuth::Password, options("prov"));
        create_five_servers(&d).await;
        assert_eq!(d.list_servers().await.unwrap().len(), 5);

        let mut opts = options("prov");
        opts.max_reply_bytes = 4096;
        let small = driver_with(&sim, CloudsAuth::Password, opts);
        // The token's reply (with its catalog) is within 4 KiB; 5 servers are not.
        small.authenticate().await.unwrap();
        let err = small.list_servers().await.unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, CloudError::BadReply { .. }), "{err:?}");
        assert!(text.contains("reply larger than 4096 bytes"), "{text}");
    })
    .await;
}

#[tokio::test]
async fn api_calls_are_timed_in_statsd() {
    bounded(async {
        let sim = Simulator::start(SimConfig::default()).await.unwrap();
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let port = server.local_addr().unwrap().port();
        let statsd = Statsd::udp("127.0.0.1", port).unwrap();
        let mut opts = options("prov-1");
        opts.statsd = statsd.clone();
        let d = driver_with(&sim, CloudsAuth::Password, opts);
        d.list_servers().await.unwrap();
        d.delete_server("00000000-0000-0000-0000-000000000000")
            .await
            .unwrap();
        statsd.flush();
        let text = tokio::task::spawn_blocking(move || {
            let mut all = String::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = server.recv(&mut buf) {
                all.push_str(&String::from_utf8_lossy(&buf[..n]));
                if all.contains("compute.DELETE.servers:1|c") {
                    break;
                }
            }
            all
        })
        .await
        .unwrap();
        for key in [
            "nodepool.task.prov-1.identity.POST.auth.tokens",
            "nodepool.task.prov-1.compute.GET.servers.detail",
            "nodepool.task.prov-1.compute.DELETE.servers",
        ] {
            assert!(
                text.contains(&format!("{key}:1|c")),
                "{key} count in {text}"
            );
            assert!(
                text.lines()
                    .any(|l| l.starts_with(&format!("{key}:")) && l.ends_with("|ms")),
                "{key} timer in {text}"
            );
        }
    })
    .await;
}

/// Peak resident memory of this process (`VmHWM`), in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Benchmark (run explicitly): uploads sparse image files of 64 MiB and then 1 GiB to a
/// separate `openstack-sim` process and reports this process's peak RSS after each, to
/// show that the upload is streamed (memory does not grow with the image size).
///
/// `cargo test -p nodepool-tests --test integration cloud_openstack::bench_upload_memory -- --ignored --nocapture`
#[tokio::test]
#[ignore]
async fn bench_upload_memory() {
    let dir = tempfile::tempdir().unwrap();
    let clouds = dir.path().join("clouds.yaml");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_openstack-sim"))
        .arg("--write-clouds-yaml")
        .arg(&clouds)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let file = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Ok(f) = CloudsFile::load_from(&clouds) {
                if f.cloud("sim").is_ok() {
                    return f;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("openstack-sim did not start");
    let d = OpenStackDriver::new(file.cloud("sim").unwrap(), options("bench")).unwrap();
    d.authenticate().await.unwrap();
    let before = peak_rss_kib();
    let mut report = vec![format!("peak RSS before uploads: {} MiB", before / 1024)];
    for mib in [64u64, 1024] {
        let path = dir.path().join(format!("img-{mib}.raw"));
        std::fs::File::create(&path)
            .unwrap()
            .set_len(mib * 1024 * 1024)
            .unwrap();
        let img = d
            .create_image(&ImageCreate {
                name: format!("bench-{mib}"),
                disk_format: "raw".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let start = std::time::Instant::now();
        tokio::time::timeout(
            Duration::from_secs(600),
            d.upload_image_data(&img.id, &path),
        )
        .await
        .expect("upload timed out")
        .unwrap();
        let secs = start.elapsed().as_secs_f64();
        let got = d.get_image(&img.id).await.unwrap().unwrap();
        assert_eq!(got.size, Some(mib * 1024 * 1024));
        report.push(format!(
            "{mib} MiB uploaded in {secs:.1} s; peak RSS now {} MiB",
            peak_rss_kib() / 1024
        ));
    }
    for l in &report {
        println!("{l}");
    }
    child.kill().await.unwrap();
}

/// Gaps in milliseconds between consecutive arrivals the simulator logged.
fn arrival_gaps(admin: &SimAdmin, op: &str, calls: usize) -> Vec<f64> {
    let log = admin.requests();
    let at: Vec<f64> = log
        .iter()
        .filter(|r| r.operation == op)
        .map(|r| r.at_ms)
        .collect();
    assert_eq!(
        at.len(),
        calls,
        "one `{op}` request per call and nothing else: {log:?}"
    );
    at.windows(2).map(|w| w[1] - w[0]).collect()
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

/// `rate` of nodepool.yaml (seconds between API calls) goes through the launcher's
/// `ProviderRuntime::start` into the real driver: the simulator sees consecutive calls —
/// sequential or concurrent — `rate` apart (a call delayed on its way may arrive late and
/// close to the next: two neighbouring gaps together are at least twice the rate); with
/// `rate: 0` they are not spaced.
#[tokio::test]
async fn provider_rate_spaces_api_calls_as_seen_by_the_simulator() {
    use nodepool_daemon::launcher::runtime::ProviderRuntime;
    use nodepool_shared::config::Config;

    /// Calls per burst.
    const N: usize = 6;
    /// Allowed shortfall of a sum of gaps: request send jitter on a loaded machine.
    const TOLERANCE_MS: f64 = 50.0;
    const OP: &str = "compute.servers.detail";
    // Serial with the process-heavy tests of this binary: the gaps are measured where the
    // simulator receives the calls, and a launcher or builder busy on the same 2 cores
    // delays one arrival and shortens the next gap by more than the tolerance.
    bounded_serial(async {
        let sim = Simulator::start(SimConfig::default()).await.unwrap();
        let admin = sim.admin();
        let clouds = CloudsFile::parse(&sim.clouds_yaml("sim"), Path::new("clouds.yaml")).unwrap();
        for rate in [0.2, 0.0] {
            let yaml = format!("providers:\n  - name: prov\n    cloud: sim\n    rate: {rate}\n");
            let config = Config::from_yaml_str(&yaml, "nodepool.yaml").unwrap();
            assert_eq!(config.providers[0].rate.as_secs_f64(), rate);
            let rt = ProviderRuntime::start(&config.providers[0], &clouds, &Statsd::noop()).unwrap();
            // Authenticate and take the first slot.
            rt.driver.list_servers().await.unwrap();

            admin.reset_counters();
            for _ in 0..N {
                rt.driver.list_servers().await.unwrap();
            }
            let sequential = arrival_gaps(&admin, OP, N);

            admin.reset_counters();
            let calls = (0..N).map(|_| rt.driver.list_servers());
            for r in futures::future::join_all(calls).await {
                r.unwrap();
            }
            let concurrent = arrival_gaps(&admin, OP, N);

            let fmt = |g: &[f64]| {
                g.iter()
                    .map(|x| format!("{x:.0}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            println!(
                "rate {rate}: gaps between {N} calls at the simulator (ms): sequential [{}], concurrent [{}]",
                fmt(&sequential),
                fmt(&concurrent)
            );
            let interval_ms = rate * 1000.0;
            if rate > 0.0 {
                // A late arrival shortens the gap after it by as much as it lengthened the
                // one before: each two neighbouring gaps, and all of them, add up to at
                // least their share of the rate (unspaced calls arrive within a few ms).
                for (what, gaps) in [("sequential", &sequential), ("concurrent", &concurrent)] {
                    let total: f64 = gaps.iter().sum();
                    assert!(
                        total >= (N - 1) as f64 * interval_ms - TOLERANCE_MS,
                        "{what} calls closer than rate {rate} s: {gaps:?} ms"
                    );
                    for pair in gaps.windows(2) {
                        assert!(
                            pair[0] + pair[1] >= 2.0 * interval_ms - TOLERANCE_MS,
                            "{what} calls closer than rate {rate} s: {gaps:?} ms"
                        );
                    }
                }
            } else {
                // Unlimited: concurrent calls arrive together, far closer than 200 ms.
                assert!(
                    min(&concurrent) < 100.0,
                    "rate 0 spaced concurrent calls: {concurrent:?} ms"
                );
            }
        }
        sim.shutdown().await.unwrap();
    })
    .await;
}

/// The one constructor of a provider's driver (`provider_driver`): the provider's
/// `region-name` wins over the cloud's, clouds.yaml's `image_format` and address
/// settings reach the driver, and a provider whose cloud is not in clouds.yaml gets an
/// error naming the provider, the cloud and the file. The launcher's and the builder's
/// drivers come from it (the CLI's too, see `daemon/tests/cli.rs`).
#[tokio::test]
async fn provider_driver_is_the_one_constructor() {
    use nodepool_daemon::builder::context::Clouds;
    use nodepool_daemon::launcher::runtime::ProviderRuntime;
    use nodepool_shared::cloud::provider_driver;
    use nodepool_shared::config::Config;

    bounded(async {
        let sim = Simulator::start(SimConfig::default()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clouds.yaml");
        let yaml = sim.clouds_yaml("sim") + "    image_format: raw\n    force_ipv4: true\n";
        std::fs::write(&path, yaml).unwrap();
        let clouds = CloudsFile::load_from(&path).unwrap();
        let config = Config::from_yaml_str(
            "providers:\n  - name: prov\n    cloud: sim\n    region-name: RegionOne\n    rate: 0\n  \
             - name: moved\n    cloud: sim\n    region-name: RegionTwo\n  \
             - name: lost\n    cloud: nowhere\n",
            "nodepool.yaml",
        )
        .unwrap();
        let statsd = Statsd::noop();
        let d = provider_driver(&config.providers[0], &clouds, &statsd).unwrap();
        assert_eq!(d.provider(), "prov");
        assert_eq!(d.image_format(), "raw");
        assert!(d.address_policy().force_ipv4);
        d.list_servers().await.unwrap();
        let moved = provider_driver(&config.providers[1], &clouds, &statsd).unwrap();
        assert_eq!(moved.region(), Some("RegionTwo"));
        let e = provider_driver(&config.providers[2], &clouds, &statsd)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("provider lost") && e.contains("`nowhere`") && e.contains("clouds.yaml"),
            "{e}"
        );
        // The launcher's runtime and the builder's clouds use it.
        let rt = ProviderRuntime::start(&config.providers[0], &clouds, &statsd).unwrap();
        assert!(rt.driver.address_policy().force_ipv4);
        let b = Clouds::from_config(&config, Some(&path), &statsd);
        assert_eq!(b.image_format("prov"), "raw");
        assert!(b.get("prov").unwrap().driver.address_policy().force_ipv4);
        assert!(b.get("lost").is_none());
        sim.shutdown().await.unwrap();
    })
    .await;
}

/// A wrong password: after the first refused token request no other is sent until the
/// backoff window (1 s, then 2 s, …) has passed; every call in between fails at once
/// with the last error. Token requests take slots of the provider's `rate` like any call.
#[tokio::test]
async fn failed_authentication_backs_off_and_is_rate_limited() {
    bounded(async {
        let sim = Simulator::start(SimConfig::default()).await.unwrap();
        let admin = sim.admin();
        let yaml = sim
            .clouds_yaml("sim")
            .replace("password: secret", "password: wrong-pw");
        let file = CloudsFile::parse(&yaml, Path::new("clouds.yaml")).unwrap();
        let d = OpenStackDriver::new(file.cloud("sim").unwrap(), options("prov")).unwrap();
        admin.reset_counters();
        let first = d.list_servers().await.unwrap_err();
        assert!(matches!(first, CloudError::Auth { .. }), "{first:?}");
        // 2.5 s of callers as eager as a delete loop: the token requests are counted.
        let until = tokio::time::Instant::now() + Duration::from_millis(2500);
        let mut calls = 0;
        let mut backoff_errors = 0;
        while tokio::time::Instant::now() < until {
            match d.list_servers().await.unwrap_err() {
                CloudError::AuthBackoff { last_error, .. } => {
                    assert!(last_error.contains("authentication failed"), "{last_error}");
                    backoff_errors += 1;
                }
                e => assert!(matches!(e, CloudError::Auth { .. }), "{e:?}"),
            }
            calls += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let tokens = admin.counter("identity.tokens.create");
        assert!(
            calls > 20 && backoff_errors > 0,
            "{calls} calls, {backoff_errors}"
        );
        // At 0 s and after the 1 s window; the next is due at 3 s.
        assert!(tokens <= 3, "{tokens} token requests for {calls} calls");
        assert_eq!(admin.counter("compute.servers.detail"), 0);

        // With `rate`, a token request waits for its slot like an API call: two drivers'
        // worth of calls through one limiter are spaced by it.
        let mut o = options("prov");
        o.rate = 0.5;
        let d = driver_with(&sim, CloudsAuth::Password, o);
        admin.reset_counters();
        let start = tokio::time::Instant::now();
        d.list_servers().await.unwrap(); // token, then the list: two slots
        d.list_servers().await.unwrap(); // a third
        assert_eq!(admin.counter("identity.tokens.create"), 1);
        assert!(
            start.elapsed() >= Duration::from_millis(1000),
            "three slots of 0.5 s take at least 1 s"
        );
    })
    .await;
}
