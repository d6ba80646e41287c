//! The OpenStack simulator over real HTTP (reqwest): Keystone, Nova, Glance, Neutron, admin.

use std::time::Duration;

use nodepool_tests::sim::{Quota, SimConfig, SimHandle, Simulator};
use serde_json::{json, Value};

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    async fn login(sim: &SimHandle) -> Client {
        let http = reqwest::Client::new();
        let r = http
            .post(format!("{}/v3/auth/tokens", sim.auth_url()))
            .json(&password_auth("nodepool", "secret"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let token = r.headers()["x-subject-token"].to_str().unwrap().to_string();
        Client {
            http,
            base: sim.url(),
            token,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut rb = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("X-Auth-Token", &self.token)
            .header("OpenStack-API-Version", "compute 2.96");
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }
    async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }
    async fn delete(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::DELETE, path, None).await
    }

    async fn create_server(&self, name: &str, flavor: &str) -> (u16, Value) {
        let (_, images) = self.get("/image/v2/images?name=cirros-0.6.2").await;
        let image = images["images"][0]["id"].as_str().unwrap().to_string();
        self.post(
            "/compute/v2.1/servers",
            json!({"server": {"name": name, "flavorRef": flavor, "imageRef": image,
                "metadata": {"nodepool_provider_name": "sim", "nodepool_node_id": "0000000001"}}}),
        )
        .await
    }

    /// Polls a server until its status is not BUILD (bounded).
    async fn wait_server(&self, id: &str) -> Value {
        for _ in 0..200 {
            let (st, v) = self.get(&format!("/compute/v2.1/servers/{id}")).await;
            assert_eq!(st, 200, "{v}");
            if v["server"]["status"] != "BUILD" {
                return v["server"].clone();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("server {id} stayed in BUILD");
    }
}

fn password_auth(user: &str, password: &str) -> Value {
    json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {"name": user, "domain": {"name": "Default"}, "password": password}}},
        "scope": {"project": {"name": "nodepool", "domain": {"name": "Default"}}}
    }})
}

async fn start() -> SimHandle {
    Simulator::start(SimConfig::default()).await.unwrap()
}

#[tokio::test]
async fn keystone_password_and_app_credential_and_catalog() {
    let sim = start().await;
    let http = reqwest::Client::new();
    // Version documents.
    let v: Value = http
        .get(sim.auth_url())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["versions"]["values"][0]["id"], "v3.14");
    let v: Value = http
        .get(format!("{}/", sim.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(v["versions"]["values"][0]["links"][0]["href"]
        .as_str()
        .unwrap()
        .ends_with("/identity/v3/"));

    // Wrong password → 401.
    let r = http
        .post(format!("{}/v3/auth/tokens", sim.auth_url()))
        .json(&password_auth("nodepool", "wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Application credential.
    let r = http
        .post(format!("{}/v3/auth/tokens", sim.url()))
        .json(
            &json!({"auth": {"identity": {"methods": ["application_credential"],
            "application_credential": {"id": "nodepool-appcred", "secret": "appcred-secret"}}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert!(r.headers().contains_key("x-subject-token"));
    let body: Value = r.json().await.unwrap();
    let token = &body["token"];
    assert!(token["expires_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(token["project"]["name"], "nodepool");
    let types: Vec<&str> = token["catalog"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["identity", "compute", "image", "network", "block-storage"]
    );
    for e in token["catalog"].as_array().unwrap() {
        let ep = &e["endpoints"][0];
        assert_eq!(ep["interface"], "public");
        assert_eq!(ep["region"], "RegionOne");
        assert!(ep["url"].as_str().unwrap().starts_with(&sim.url()));
    }
    // Wrong application credential secret → 401.
    let r = http
        .post(format!("{}/v3/auth/tokens", sim.url()))
        .json(
            &json!({"auth": {"identity": {"methods": ["application_credential"],
            "application_credential": {"id": "nodepool-appcred", "secret": "nope"}}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn services_require_a_token() {
    let sim = start().await;
    let http = reqwest::Client::new();
    for path in [
        "/compute/v2.1/servers/detail",
        "/image/v2/images",
        "/network/v2.0/floatingips",
    ] {
        let r = http
            .get(format!("{}{path}", sim.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
        let r = http
            .get(format!("{}{path}", sim.url()))
            .header("X-Auth-Token", "bogus")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    // Version documents are public, and compute advertises microversions.
    let v: Value = http
        .get(format!("{}/compute/v2.1/", sim.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["version"]["version"], "2.96");
    assert_eq!(v["version"]["min_version"], "2.1");
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn server_lifecycle_shape_and_ports() {
    let sim = start().await;
    sim.admin().update_knobs(|k| k.boot_delay_ms = 50);
    let c = Client::login(&sim).await;
    let (st, v) = c.create_server("np0000000001", "1").await;
    assert_eq!(st, 202, "{v}");
    let id = v["server"]["id"].as_str().unwrap().to_string();
    let (_, v) = c.get(&format!("/compute/v2.1/servers/{id}")).await;
    assert_eq!(v["server"]["status"], "BUILD");
    let s = c.wait_server(&id).await;
    assert_eq!(s["status"], "ACTIVE");
    for key in [
        "links",
        "OS-EXT-AZ:availability_zone",
        "OS-EXT-STS:vm_state",
        "OS-EXT-STS:task_state",
        "config_drive",
        "hostId",
        "accessIPv4",
        "accessIPv6",
        "addresses",
    ] {
        assert!(s.get(key).is_some(), "server lacks {key}: {s}");
    }
    assert_eq!(s["flavor"]["original_name"], "small");
    assert_eq!(s["flavor"]["vcpus"], 2);
    assert_eq!(s["metadata"]["nodepool_provider_name"], "sim");
    // Without networks Nova puts it on the shared provider network.
    let addr = &s["addresses"]["provider"][0];
    assert_eq!(addr["OS-EXT-IPS:type"], "fixed");
    assert!(addr["addr"].as_str().unwrap().starts_with("127.30."));

    // The server got a port.
    let (_, ports) = c.get(&format!("/network/v2.0/ports?device_id={id}")).await;
    let ports = ports["ports"].as_array().unwrap().clone();
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0]["status"], "ACTIVE");
    let port_id = ports[0]["id"].as_str().unwrap().to_string();

    // Floating IP on the external network, attached to the port, shows in addresses.
    let (_, nets) = c.get("/network/v2.0/networks?router:external=true").await;
    let public = nets["networks"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(nets["networks"][0]["name"], "public");
    let (st, f) = c
        .post(
            "/network/v2.0/floatingips",
            json!({"floatingip": {"floating_network_id": public, "port_id": port_id}}),
        )
        .await;
    assert_eq!(st, 201, "{f}");
    let fip = f["floatingip"]["floating_ip_address"]
        .as_str()
        .unwrap()
        .to_string();
    let fip_id = f["floatingip"]["id"].as_str().unwrap().to_string();
    let (_, v) = c.get(&format!("/compute/v2.1/servers/{id}")).await;
    let addrs = v["server"]["addresses"]["provider"].as_array().unwrap();
    assert!(addrs
        .iter()
        .any(|a| a["addr"] == fip.as_str() && a["OS-EXT-IPS:type"] == "floating"));

    // Delete: 204, port gone, floating IP detached (kept), then 404.
    let (st, _) = c.delete(&format!("/compute/v2.1/servers/{id}")).await;
    assert_eq!(st, 204);
    let (st, v) = c.get(&format!("/compute/v2.1/servers/{id}")).await;
    assert_eq!(st, 404);
    assert!(v["itemNotFound"]["message"].as_str().unwrap().contains(&id));
    let (st, _) = c.delete(&format!("/compute/v2.1/servers/{id}")).await;
    assert_eq!(st, 404);
    let (st, _) = c.get(&format!("/network/v2.0/ports/{port_id}")).await;
    assert_eq!(st, 404);
    let (_, f) = c.get(&format!("/network/v2.0/floatingips/{fip_id}")).await;
    assert_eq!(f["floatingip"]["port_id"], Value::Null);
    assert_eq!(f["floatingip"]["status"], "DOWN");
    let (st, _) = c
        .delete(&format!("/network/v2.0/floatingips/{fip_id}"))
        .await;
    assert_eq!(st, 204);
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn server_list_filters_and_pagination_end_with_empty_page() {
    let sim = start().await;
    sim.admin().set_quota(Quota::UNLIMITED);
    let c = Client::login(&sim).await;
    for i in 0..5 {
        let (st, _) = c.create_server(&format!("np000000000{i}"), "1").await;
        assert_eq!(st, 202);
    }
    c.create_server("other", "1").await;
    let (_, v) = c.get("/compute/v2.1/servers/detail?name=%5Enp").await;
    assert_eq!(v["servers"].as_array().unwrap().len(), 5);
    let (_, v) = c.get("/compute/v2.1/servers/detail?status=ACTIVE").await;
    assert_eq!(v["servers"].as_array().unwrap().len(), 6);
    let (_, v) = c.get("/compute/v2.1/servers/detail?status=ERROR").await;
    assert_eq!(v["servers"].as_array().unwrap().len(), 0);

    let mut seen = Vec::new();
    let mut marker: Option<String> = None;
    let mut pages = 0;
    loop {
        pages += 1;
        assert!(pages < 10, "pagination does not end");
        let path = match &marker {
            Some(m) => format!("/compute/v2.1/servers/detail?limit=2&marker={m}"),
            None => "/compute/v2.1/servers/detail?limit=2".to_string(),
        };
        let (st, v) = c.get(&path).await;
        assert_eq!(st, 200);
        let page = v["servers"].as_array().unwrap();
        if page.is_empty() {
            break;
        }
        for s in page {
            seen.push(s["id"].as_str().unwrap().to_string());
        }
        marker = seen.last().cloned();
    }
    assert_eq!(seen.len(), 6);
    assert_eq!(pages, 4); // 2 + 2 + 2 + empty
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn quota_exceeded_is_403_with_novas_message_and_limits_report_usage() {
    let sim = start().await;
    sim.admin().set_quota(Quota {
        instances: 2,
        ..Quota::UNLIMITED
    });
    let c = Client::login(&sim).await;
    assert_eq!(c.create_server("a", "1").await.0, 202);
    assert_eq!(c.create_server("b", "1").await.0, 202);
    let (st, v) = c.create_server("c", "1").await;
    assert_eq!(st, 403);
    assert_eq!(
        v["forbidden"]["message"],
        "Quota exceeded for instances: Requested 1, but already used 2 of 2 instances"
    );
    let (_, v) = c.get("/compute/v2.1/limits").await;
    let abs = &v["limits"]["absolute"];
    assert_eq!(abs["maxTotalInstances"], 2);
    assert_eq!(abs["totalInstancesUsed"], 2);
    assert_eq!(abs["totalCoresUsed"], 4);
    assert_eq!(abs["totalRAMUsed"], 4096);
    assert_eq!(abs["maxTotalCores"], -1);
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn injected_boot_failures_hangs_and_api_errors() {
    let sim = start().await;
    let admin = sim.admin();
    admin.update_knobs(|k| {
        k.fail_next_boots = 1;
        k.hang_next_boots = 1;
    });
    let c = Client::login(&sim).await;
    let (_, v) = c.create_server("fails", "1").await;
    let failed = v["server"]["id"].as_str().unwrap().to_string();
    let (_, v) = c.create_server("hangs", "1").await;
    let hung = v["server"]["id"].as_str().unwrap().to_string();
    let s = c.wait_server(&failed).await;
    assert_eq!(s["status"], "ERROR");
    assert!(s["fault"]["message"]
        .as_str()
        .unwrap()
        .contains("No valid host"));
    tokio::time::sleep(Duration::from_millis(30)).await;
    let (_, v) = c.get(&format!("/compute/v2.1/servers/{hung}")).await;
    assert_eq!(v["server"]["status"], "BUILD");

    // Deterministic API failure of the next call of one operation.
    admin.fail_next("compute.servers.detail", 1, 503);
    let (st, _) = c.get("/compute/v2.1/servers/detail").await;
    assert_eq!(st, 503);
    let (st, _) = c.get("/compute/v2.1/servers/detail").await;
    assert_eq!(st, 200);
    assert_eq!(admin.counter("compute.servers.detail"), 2);
    assert_eq!(admin.counter("compute.servers.create"), 2);
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn glance_create_upload_list_delete() {
    let sim = start().await;
    let c = Client::login(&sim).await;
    let (st, v) = c
        .post(
            "/image/v2/images",
            json!({"name": "ubuntu-jammy-0000000001", "disk_format": "qcow2", "container_format": "bare",
                   "visibility": "private", "nodepool_build_id": "0000000001", "nodepool_upload_id": "0000000001",
                   "nodepool_provider_name": "sim"}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["status"], "queued");
    assert_eq!(v["nodepool_build_id"], "0000000001");
    let id = v["id"].as_str().unwrap().to_string();

    // Upload 3 MiB as a stream (more than axum's default body limit).
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = (0..48)
        .map(|_| Ok(bytes::Bytes::from(vec![7u8; 65536])))
        .collect();
    let r = c
        .http
        .put(format!("{}/image/v2/images/{id}/file", sim.url()))
        .header("X-Auth-Token", &c.token)
        .header("Content-Type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (_, v) = c.get(&format!("/image/v2/images/{id}")).await;
    assert_eq!(v["status"], "active");
    assert_eq!(v["size"], 3 * 1024 * 1024);
    let expected_md5: String = {
        use md5::{Digest, Md5};
        let mut h = Md5::new();
        for _ in 0..48 {
            h.update(vec![7u8; 65536]);
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    };
    assert_eq!(v["checksum"], expected_md5.as_str());
    assert_eq!(v["os_hash_algo"], "sha512");

    // Filters by property and status; pagination by marker ends with an empty page.
    let (_, v) = c.get("/image/v2/images?nodepool_provider_name=sim").await;
    assert_eq!(v["images"].as_array().unwrap().len(), 1);
    let (_, v) = c.get("/image/v2/images?status=active&limit=1").await;
    assert_eq!(v["images"].as_array().unwrap().len(), 1);
    assert!(v["next"].as_str().unwrap().contains("marker="));
    let (_, v) = c.get("/image/v2/images?limit=5").await;
    let last = v["images"].as_array().unwrap().last().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, v) = c
        .get(&format!("/image/v2/images?limit=5&marker={last}"))
        .await;
    assert_eq!(v["images"].as_array().unwrap().len(), 0);

    let (st, _) = c.delete(&format!("/image/v2/images/{id}")).await;
    assert_eq!(st, 204);
    let (st, _) = c.get(&format!("/image/v2/images/{id}")).await;
    assert_eq!(st, 404);
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn neutron_leaks_and_filters() {
    let sim = start().await;
    let admin = sim.admin();
    let port = admin.inject_down_port();
    let fip = admin.inject_leaked_floating_ip();
    let server = admin.inject_leaked_server("sim", "0000000999", "main");
    let c = Client::login(&sim).await;
    let (_, v) = c
        .get("/network/v2.0/ports?status=DOWN&device_owner=compute:nova")
        .await;
    let ids: Vec<&str> = v["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [port.as_str()]);
    let (_, v) = c.get("/network/v2.0/floatingips").await;
    assert_eq!(v["floatingips"][0]["id"], fip.as_str());
    assert_eq!(v["floatingips"][0]["port_id"], Value::Null);
    let (_, v) = c.get(&format!("/compute/v2.1/servers/{server}")).await;
    assert_eq!(v["server"]["status"], "ACTIVE");
    assert_eq!(v["server"]["metadata"]["nodepool_node_id"], "0000000999");
    let (st, _) = c.delete(&format!("/network/v2.0/ports/{port}")).await;
    assert_eq!(st, 204);
    let (st, v) = c.delete(&format!("/network/v2.0/ports/{port}")).await;
    assert_eq!(st, 404);
    assert_eq!(v["NeutronError"]["type"], "PortNotFound");
    let (st, _) = c
        .put(
            &format!("/network/v2.0/floatingips/{fip}"),
            json!({"floatingip": {"port_id": null}}),
        )
        .await;
    assert_eq!(st, 200);
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn admin_http_api_knobs_counters_and_state() {
    let sim = start().await;
    let http = reqwest::Client::new();
    let r = http
        .patch(format!("{}/admin/knobs", sim.url()))
        .json(&json!({"boot_delay_ms": 1234, "quota": {"instances": 3}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let k = sim.admin().knobs();
    assert_eq!(k.boot_delay_ms, 1234);
    assert_eq!(
        k.quota,
        Quota {
            instances: 3,
            ..Quota::default()
        }
    );
    let r = http
        .patch(format!("{}/admin/knobs", sim.url()))
        .json(&json!({"no_such_knob": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let r = http
        .post(format!("{}/admin/leaks/servers", sim.url()))
        .json(&json!({"provider": "sim", "node_id": "0000000042"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let c = Client::login(&sim).await;
    c.get("/compute/v2.1/servers/detail").await;
    let counters: Value = http
        .get(format!("{}/admin/counters", sim.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(counters["compute.servers.detail"], 1);
    assert_eq!(counters["identity.tokens.create"], 1);
    let state: Value = http
        .get(format!("{}/admin/state", sim.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        state["world"]["servers"][0]["metadata"]["nodepool_node_id"],
        "0000000042"
    );
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn snapshot_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sim.json");
    let cfg = SimConfig {
        state_file: Some(path.clone()),
        ..SimConfig::default()
    };
    let sim = Simulator::start(cfg.clone()).await.unwrap();
    let id = sim
        .admin()
        .inject_leaked_server("sim", "0000000007", "main");
    sim.shutdown().await.unwrap();
    let sim = Simulator::start(cfg).await.unwrap();
    assert_eq!(sim.admin().servers()[0].id, id);
    sim.shutdown().await.unwrap();

    std::fs::write(&path, "{not json").unwrap();
    let err = Simulator::start(SimConfig {
        state_file: Some(path.clone()),
        ..SimConfig::default()
    })
    .await
    .err()
    .unwrap();
    assert!(err.to_string().contains("sim.json"), "{err}");
}

#[tokio::test]
async fn boot_from_volume_uses_cinder_quota() {
    let sim = start().await;
    sim.admin().set_quota(Quota {
        gigabytes: 100,
        ..Quota::default()
    });
    let c = Client::login(&sim).await;
    let (_, images) = c.get("/image/v2/images?name=cirros-0.6.2").await;
    let image = images["images"][0]["id"].as_str().unwrap().to_string();
    let bfv = |name: &str, size: u64| {
        json!({"server": {"name": name, "flavorRef": "1", "user_data": "IyEvYmluL3NoCg==",
            "block_device_mapping_v2": [{"boot_index": 0, "uuid": image, "source_type": "image",
                "destination_type": "volume", "volume_size": size.to_string(), "delete_on_termination": true}]}})
    };
    let (st, v) = c.post("/compute/v2.1/servers", bfv("bfv1", 80)).await;
    assert_eq!(st, 202, "{v}");
    let ok = v["server"]["id"].as_str().unwrap().to_string();
    let s = c.wait_server(&ok).await;
    assert_eq!(s["status"], "ACTIVE");
    assert_eq!(s["image"], "");
    let vol = s["os-extended-volumes:volumes_attached"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // The volume service is in the catalog and reports usage.
    let project = &sim.config().credentials.project_id;
    let (st, v) = c.get(&format!("/volume/v3/{project}/limits")).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["limits"]["absolute"]["maxTotalVolumeGigabytes"], 100);
    assert_eq!(v["limits"]["absolute"]["totalGigabytesUsed"], 80);
    assert_eq!(v["limits"]["absolute"]["totalVolumesUsed"], 1);

    // Over the gigabytes quota: the build is aborted with a quota fault.
    let (_, v) = c.post("/compute/v2.1/servers", bfv("bfv2", 80)).await;
    let bad = v["server"]["id"].as_str().unwrap().to_string();
    let s = c.wait_server(&bad).await;
    assert_eq!(s["status"], "ERROR");
    let fault = s["fault"]["message"].as_str().unwrap();
    assert!(
        fault.contains("exceeds") && fault.contains("quota"),
        "{fault}"
    );

    // Deleting the server deletes its volume (delete_on_termination).
    c.delete(&format!("/compute/v2.1/servers/{ok}")).await;
    let (st, _) = c.get(&format!("/volume/v3/{project}/volumes/{vol}")).await;
    assert_eq!(st, 404);

    // user_data must be base64.
    let (st, v) = c
        .post(
            "/compute/v2.1/servers",
            json!({"server": {"name": "x", "flavorRef": "1", "imageRef": image, "user_data": "not base64!"}}),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_requests_name_the_problem() {
    let sim = start().await;
    let c = Client::login(&sim).await;
    let (st, v) = c
        .post(
            "/compute/v2.1/servers",
            json!({"server": {"name": "x", "flavorRef": "99", "imageRef": "nope"}}),
        )
        .await;
    assert_eq!(st, 400);
    assert!(
        v["badRequest"]["message"]
            .as_str()
            .unwrap()
            .contains("Flavor 99"),
        "{v}"
    );
    let (st, v) = c
        .post(
            "/compute/v2.1/servers",
            json!({"server": {"name": "x", "flavorRef": "1", "imageRef": "nope"}}),
        )
        .await;
    assert_eq!(st, 400);
    assert!(
        v["badRequest"]["message"]
            .as_str()
            .unwrap()
            .contains("Image nope"),
        "{v}"
    );
    let r = c
        .http
        .post(format!("{}/compute/v2.1/servers", sim.url()))
        .header("X-Auth-Token", &c.token)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let (st, _) = c.get("/compute/v2.1/servers/detail?limit=abc").await;
    assert_eq!(st, 400);
    let (st, _) = c.get("/compute/v2.1/servers/detail?marker=unknown").await;
    assert_eq!(st, 400);
    let (st, _) = c.get("/no/such/path").await;
    assert_eq!(st, 404);
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn error_rates_delete_delay_and_hanging_boots() {
    let sim = start().await;
    let admin = sim.admin();
    let c = Client::login(&sim).await;
    // An error rate of 1.0 fails every call of that operation with `error_status`.
    admin.update_knobs(|k| {
        k.error_rates.insert("network.ports.list".into(), 1.0);
        k.error_status = 503;
    });
    for _ in 0..3 {
        let (st, v) = c.get("/network/v2.0/ports").await;
        assert_eq!(st, 503);
        assert!(v["NeutronError"]["message"]
            .as_str()
            .unwrap()
            .contains("network.ports.list"));
    }
    assert_eq!(c.get("/network/v2.0/networks").await.0, 200);
    admin.update_knobs(|k| k.error_rates.clear());
    assert_eq!(c.get("/network/v2.0/ports").await.0, 200);

    // Every boot hangs in BUILD.
    admin.update_knobs(|k| k.hang_all_boots = true);
    let (_, v) = c.create_server("hang", "1").await;
    let id = v["server"]["id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (_, v) = c.get(&format!("/compute/v2.1/servers/{id}")).await;
    assert_eq!(v["server"]["status"], "BUILD");
    assert_eq!(v["server"]["OS-EXT-STS:task_state"], "spawning");

    // A delayed delete shows task_state `deleting`, then the server is gone.
    admin.update_knobs(|k| k.delete_delay_ms = 50);
    assert_eq!(
        c.delete(&format!("/compute/v2.1/servers/{id}")).await.0,
        204
    );
    let (st, v) = c.get(&format!("/compute/v2.1/servers/{id}")).await;
    assert_eq!(st, 200);
    assert_eq!(v["server"]["OS-EXT-STS:task_state"], "deleting");
    let mut gone = false;
    for _ in 0..200 {
        if c.get(&format!("/compute/v2.1/servers/{id}")).await.0 == 404 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(gone, "server not deleted after its delete delay");
    assert!(admin.ports().is_empty());
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn metadata_keypairs_token_validation_and_image_patch() {
    let sim = start().await;
    let c = Client::login(&sim).await;
    let (_, v) = c.create_server("meta", "1").await;
    let id = v["server"]["id"].as_str().unwrap().to_string();
    let base = format!("/compute/v2.1/servers/{id}/metadata");
    let (st, v) = c.post(&base, json!({"metadata": {"a": "1"}})).await;
    assert_eq!(st, 200);
    assert_eq!(v["metadata"]["a"], "1");
    assert_eq!(v["metadata"]["nodepool_provider_name"], "sim");
    let (_, v) = c
        .put(&format!("{base}/b"), json!({"meta": {"b": "2"}}))
        .await;
    assert_eq!(v["meta"]["b"], "2");
    assert_eq!(c.delete(&format!("{base}/a")).await.0, 204);
    assert_eq!(c.get(&format!("{base}/a")).await.0, 404);
    let (_, v) = c.put(&base, json!({"metadata": {"only": "this"}})).await;
    assert_eq!(v["metadata"], json!({"only": "this"}));

    // Keypairs: create, duplicate → 409, show, server create with it, delete.
    let (st, v) = c
        .post(
            "/compute/v2.1/os-keypairs",
            json!({"keypair": {"name": "k", "public_key": "ssh-ed25519 AAAA test"}}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let (st, _) = c
        .post(
            "/compute/v2.1/os-keypairs",
            json!({"keypair": {"name": "k", "public_key": "ssh-ed25519 AAAA test"}}),
        )
        .await;
    assert_eq!(st, 409);
    let (_, v) = c.get("/compute/v2.1/os-keypairs").await;
    assert_eq!(v["keypairs"][0]["keypair"]["name"], "k");
    let (_, images) = c.get("/image/v2/images").await;
    let image = images["images"][0]["id"].as_str().unwrap().to_string();
    let (st, v) = c
        .post("/compute/v2.1/servers", json!({"server": {"name": "withkey", "flavorRef": "1", "imageRef": image, "key_name": "nokey"}}))
        .await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(c.delete("/compute/v2.1/os-keypairs/k").await.0, 204);
    assert_eq!(c.delete("/compute/v2.1/os-keypairs/k").await.0, 404);

    // Token validation.
    let r = c
        .http
        .get(format!("{}/v3/auth/tokens", sim.auth_url()))
        .header("X-Auth-Token", &c.token)
        .header("X-Subject-Token", &c.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .http
        .get(format!("{}/v3/auth/tokens", sim.auth_url()))
        .header("X-Auth-Token", &c.token)
        .header("X-Subject-Token", "nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // Glance JSON-patch of properties.
    let r = c
        .http
        .patch(format!("{}/image/v2/images/{image}", sim.url()))
        .header("X-Auth-Token", &c.token)
        .header("Content-Type", "application/openstack-images-v2.1-json-patch")
        .body(r#"[{"op": "add", "path": "/nodepool_build_id", "value": "0000000003"}, {"op": "replace", "path": "/name", "value": "renamed"}]"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["nodepool_build_id"], "0000000003");
    assert_eq!(v["name"], "renamed");
    // Every reply carries a request id.
    let r = c
        .http
        .get(format!("{}/compute/v2.1/", sim.url()))
        .send()
        .await
        .unwrap();
    assert!(r.headers()["x-openstack-request-id"]
        .to_str()
        .unwrap()
        .starts_with("req-"));
    sim.shutdown().await.unwrap();
}

/// The fake sshd finishes the key exchange as a real sshd does: its ECDH reply is signed
/// by the server's host key over the exchange hash, and SSH_MSG_NEWKEYS follows it.
/// Clients that complete the exchange before reading the key — paramiko, so Python
/// Nodepool's host-key scan — wait for that NEWKEYS (without it they time out).
#[tokio::test]
async fn fake_sshd_finishes_the_key_exchange_with_newkeys() {
    use aws_lc_rs::agreement::{agree_ephemeral, EphemeralPrivateKey, UnparsedPublicKey, X25519};
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{UnparsedPublicKey as VerifyKey, ED25519};
    use nodepool_shared::ssh::wire::{self, Deadline, KexInit, Reader, Writer};
    use sha2::{Digest, Sha256};

    let sim = Simulator::start(SimConfig {
        ssh_port: 0,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let c = Client::login(&sim).await;
    let (_, v) = c.create_server("kex", "1").await;
    let id = v["server"]["id"].as_str().unwrap().to_string();
    let s = c.wait_server(&id).await;
    let ip = s["addresses"]["provider"][0]["addr"].as_str().unwrap();
    // The listener opens just after the server turns ACTIVE: retry a refused connect.
    let mut conn =
        nodepool_shared::testing::wait_for_within("fake sshd", Duration::from_secs(5), || {
            let port = sim.ssh_port();
            async move { tokio::net::TcpStream::connect((ip, port)).await.ok() }
        })
        .await;
    let (mut rd, mut wr) = conn.split();
    let dl = Deadline {
        end: tokio::time::Instant::now() + Duration::from_secs(5),
        io: Duration::from_secs(5),
    };
    let v_c = "SSH-2.0-test_client";
    wire::write_ident(&mut wr, v_c, &dl).await.unwrap();
    let i_c = KexInit::build([7; 16], &["curve25519-sha256"], &["ssh-ed25519"]);
    wire::write_packet(&mut wr, &i_c, &dl).await.unwrap();
    let v_s = wire::read_ident(&mut rd, &dl).await.unwrap();
    let i_s = wire::read_message(&mut rd, wire::MSG_KEXINIT, &dl)
        .await
        .unwrap();
    let eph = EphemeralPrivateKey::generate(&X25519, &SystemRandom::new()).unwrap();
    let q_c = eph.compute_public_key().unwrap().as_ref().to_vec();
    let mut init = Writer::new(wire::MSG_KEX_ECDH_INIT);
    init.string(&q_c);
    wire::write_packet(&mut wr, &init.buf, &dl).await.unwrap();
    let reply = wire::read_message(&mut rd, wire::MSG_KEX_ECDH_REPLY, &dl)
        .await
        .unwrap();
    let mut r = Reader::new(&reply[1..]);
    let (k_s, q_s, sig_blob) = (
        r.string().unwrap().to_vec(),
        r.string().unwrap().to_vec(),
        r.string().unwrap().to_vec(),
    );
    let shared = agree_ephemeral(eph, UnparsedPublicKey::new(&X25519, &q_s), (), |k| {
        Ok(k.to_vec())
    })
    .unwrap();
    let mut h = Writer::default();
    h.string(v_c.as_bytes())
        .string(v_s.as_bytes())
        .string(&i_c)
        .string(&i_s)
        .string(&k_s)
        .string(&q_c)
        .string(&q_s)
        .mpint(&shared);
    let hash = Sha256::digest(&h.buf);
    let mut key = Reader::new(&k_s);
    assert_eq!(key.string().unwrap(), b"ssh-ed25519");
    let public = key.string().unwrap();
    let mut sig = Reader::new(&sig_blob);
    assert_eq!(sig.string().unwrap(), b"ssh-ed25519");
    VerifyKey::new(&ED25519, public)
        .verify(&hash, sig.string().unwrap())
        .expect("the exchange hash is signed by the host key");
    // The key blob is the one the admin API reports for the server.
    use base64::Engine;
    let line = format!(
        "ssh-ed25519 {}",
        base64::engine::general_purpose::STANDARD.encode(&k_s)
    );
    assert_eq!(vec![line], sim.admin().host_keys(&id));
    let newkeys = wire::read_message(&mut rd, wire::MSG_NEWKEYS, &dl).await;
    assert_eq!(newkeys.unwrap(), vec![wire::MSG_NEWKEYS]);
    sim.shutdown().await.unwrap();
}

/// The fake sshd of an ACTIVE server answers our keyscan on the server's loopback address
/// with the key the admin API reports; it goes away with the server; `ssh_never` keeps
/// the port closed.
#[tokio::test]
async fn fake_sshd_per_active_server() {
    use nodepool_shared::ssh::{scan_host_keys, ScanOptions};
    let sim = Simulator::start(SimConfig {
        ssh_port: 0,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let port = sim.ssh_port();
    assert_ne!(port, 0);
    let c = Client::login(&sim).await;
    let (st, v) = c.create_server("scan-me", "1").await;
    assert_eq!(st, 202, "{v}");
    let id = v["server"]["id"].as_str().unwrap().to_string();
    let s = c.wait_server(&id).await;
    let ip = s["addresses"]["provider"][0]["addr"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(ip.starts_with("127.30."), "{ip}");
    let opts = ScanOptions {
        io_timeout: Duration::from_secs(2),
        ..ScanOptions::default()
    };
    let deadline = || tokio::time::Instant::now() + Duration::from_secs(10);
    let keys = scan_host_keys(&ip, port, deadline(), &opts).await.unwrap();
    assert_eq!(keys, sim.admin().host_keys(&id));
    // The admin API reports the same.
    let (_, ssh) = c.get("/admin/ssh").await;
    assert_eq!(ssh["port"], port);
    assert_eq!(ssh["host_keys"][&id], json!(keys));
    assert!(ssh["listening"].as_array().unwrap().contains(&json!(ip)));

    // A floating IP gets its own listener with the same key.
    let (_, nets) = c.get("/network/v2.0/networks?router:external=true").await;
    let public = nets["networks"][0]["id"].as_str().unwrap().to_string();
    let (_, ports) = c.get(&format!("/network/v2.0/ports?device_id={id}")).await;
    let port_id = ports["ports"][0]["id"].as_str().unwrap().to_string();
    let (st, f) = c
        .post(
            "/network/v2.0/floatingips",
            json!({"floatingip": {"floating_network_id": public, "port_id": port_id}}),
        )
        .await;
    assert_eq!(st, 201, "{f}");
    let fip = f["floatingip"]["floating_ip_address"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(fip.starts_with("127.24."), "{fip}");
    c.get(&format!("/compute/v2.1/servers/{id}")).await;
    let keys = scan_host_keys(&fip, port, deadline(), &opts).await.unwrap();
    assert_eq!(keys, sim.admin().host_keys(&id));

    // Deleted: the listeners go with it (the port refuses).
    let (st, _) = c.delete(&format!("/compute/v2.1/servers/{id}")).await;
    assert_eq!(st, 204);
    assert!(sim.admin().sshd_addresses().is_empty());
    let gone = scan_host_keys(
        &ip,
        port,
        tokio::time::Instant::now() + Duration::from_millis(300),
        &opts,
    )
    .await;
    assert!(gone.is_err(), "{gone:?}");

    // ssh_never: ACTIVE, but nothing answers.
    sim.admin().update_knobs(|k| k.ssh_never = true);
    let (_, v) = c.create_server("silent", "1").await;
    let id2 = v["server"]["id"].as_str().unwrap().to_string();
    let s2 = c.wait_server(&id2).await;
    let ip2 = s2["addresses"]["provider"][0]["addr"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(sim.admin().sshd_addresses().len(), 1);
    let r = scan_host_keys(
        &ip2,
        port,
        tokio::time::Instant::now() + Duration::from_millis(500),
        &opts,
    )
    .await;
    assert!(r.is_err(), "{r:?}");
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn admin_flips_servers_to_error_and_hangs_builds() {
    let sim = start().await;
    sim.admin().update_knobs(|k| k.boot_delay_ms = 100);
    let c = Client::login(&sim).await;
    let http = reqwest::Client::new();
    let admin_post = |path: String, body: Value| {
        let http = http.clone();
        let url = format!("{}/admin/{path}", sim.url());
        async move {
            let r = http.post(url).json(&body).send().await.unwrap();
            let st = r.status().as_u16();
            (st, r.json::<Value>().await.unwrap())
        }
    };
    let (_, v) = c.create_server("active", "1").await;
    let active = v["server"]["id"].as_str().unwrap().to_string();
    let (_, v) = c.create_server("hung", "1").await;
    let hung = v["server"]["id"].as_str().unwrap().to_string();

    // A BUILD server made to hang never finishes, while its twin boots.
    let (st, v) = admin_post(format!("servers/{hung}/hang"), json!({})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(c.wait_server(&active).await["status"], "ACTIVE");
    let (_, v) = c.get(&format!("/compute/v2.1/servers/{hung}")).await;
    assert_eq!(v["server"]["status"], "BUILD");
    // Only BUILD servers can be made to hang.
    let (st, v) = admin_post(format!("servers/{active}/hang"), json!({})).await;
    assert_eq!(st, 409, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("ACTIVE"));

    // An ACTIVE server flips to ERROR with the given fault.
    let (st, v) = admin_post(
        format!("servers/{active}/error"),
        json!({"message": "Hypervisor went away"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let (_, v) = c.get(&format!("/compute/v2.1/servers/{active}")).await;
    assert_eq!(v["server"]["status"], "ERROR");
    assert_eq!(v["server"]["OS-EXT-STS:vm_state"], "error");
    assert_eq!(v["server"]["fault"]["message"], "Hypervisor went away");
    assert_eq!(v["server"]["fault"]["code"], 500);
    let (st, _) = admin_post(format!("servers/{active}/error"), json!({})).await;
    assert_eq!(st, 409, "already in ERROR");
    // The hung BUILD server can be failed too (default fault message).
    let (st, _) = admin_post(format!("servers/{hung}/error"), json!({})).await;
    assert_eq!(st, 200);
    let (_, v) = c.get(&format!("/compute/v2.1/servers/{hung}")).await;
    assert_eq!(v["server"]["status"], "ERROR");
    assert!(v["server"]["fault"]["message"]
        .as_str()
        .unwrap()
        .contains("openstack-sim"));
    // Unknown servers and bad bodies.
    let (st, _) = admin_post("servers/nope/error".into(), json!({})).await;
    assert_eq!(st, 404);
    let (st, _) = admin_post("servers/nope/hang".into(), json!({})).await;
    assert_eq!(st, 404);
    let (st, _) = admin_post(format!("servers/{hung}/error"), json!({"message": 5})).await;
    assert_eq!(st, 400);
    // In-process equivalents.
    assert!(sim.admin().hang_server(&active).is_err());
    assert!(sim.admin().fail_server(&active, None).is_err());
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn admin_request_log_records_arrivals_in_order() {
    let sim = start().await;
    let c = Client::login(&sim).await;
    sim.admin().reset_counters();
    assert!(sim.admin().requests().is_empty(), "reset clears the log");
    c.get("/compute/v2.1/flavors").await;
    c.get("/compute/v2.1/servers/detail").await;
    c.get("/compute/v2.1/flavors").await;
    let log: Value = reqwest::get(format!("{}/admin/requests", sim.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ops: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["operation"].as_str().unwrap())
        .collect();
    assert_eq!(
        ops,
        [
            "compute.flavors.list",
            "compute.servers.detail",
            "compute.flavors.list"
        ]
    );
    let at: Vec<f64> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["at_ms"].as_f64().unwrap())
        .collect();
    assert!(at.windows(2).all(|w| w[0] <= w[1]), "{at:?}");
    let r = reqwest::Client::new()
        .delete(format!("{}/admin/requests", sim.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(sim.admin().requests().is_empty());
    assert_eq!(
        sim.admin().counter("compute.flavors.list"),
        2,
        "counters kept"
    );
    sim.shutdown().await.unwrap();
}

/// `os-getConsoleOutput`: a booting server has only the kernel's first lines, an active
/// one a whole boot log ending at its login prompt (serial-console `\r\n` line ends and
/// colour escapes included), one in ERROR a kernel panic with its fault; `length` keeps
/// the last lines; an unknown server is 404.
#[tokio::test]
async fn console_output_follows_the_server() {
    let sim = start().await;
    sim.admin().update_knobs(|k| k.boot_delay_ms = 300);
    let c = Client::login(&sim).await;
    let (_, v) = c.create_server("np0000000042", "1").await;
    let id = v["server"]["id"].as_str().unwrap().to_string();
    let console = |length: Value| {
        let c = &c;
        let id = id.clone();
        async move {
            let (st, v) = c
                .post(
                    &format!("/compute/v2.1/servers/{id}/action"),
                    json!({"os-getConsoleOutput": {"length": length}}),
                )
                .await;
            assert_eq!(st, 200, "{v}");
            v["output"].as_str().unwrap().to_string()
        }
    };
    let booting = console(Value::Null).await;
    assert!(booting.contains("Linux version"), "{booting}");
    assert!(!booting.contains("login:"), "{booting}");
    c.wait_server(&id).await;
    let full = console(Value::Null).await;
    assert!(full.contains("np0000000042 login: \r\n"), "{full}");
    assert!(full.contains(&id), "{full}");
    assert!(full.contains("\u{1b}[0;32m  OK  \u{1b}[0m"), "{full}");
    assert!(full.lines().count() > 20, "{full}");
    let tail = console(json!(3)).await;
    assert_eq!(tail.lines().count(), 3, "{tail}");
    assert!(full.ends_with(&tail), "{tail}");
    assert_eq!(console(json!("2")).await.lines().count(), 2);
    assert_eq!(console(json!(-1)).await, full);
    sim.admin()
        .fail_server(&id, Some("Hypervisor went away"))
        .unwrap();
    let failed = console(Value::Null).await;
    assert!(failed.contains("Kernel panic"), "{failed}");
    assert!(failed.contains("Hypervisor went away"), "{failed}");
    let (st, _) = c
        .post(
            "/compute/v2.1/servers/nope/action",
            json!({"os-getConsoleOutput": {}}),
        )
        .await;
    assert_eq!(st, 404);
    sim.shutdown().await.unwrap();
}

/// `PUT /admin/availability-zones` changes Nova's zones at run time: the zone list
/// shows the new ones and a create naming an old zone gets Nova's 400; bad bodies are
/// refused.
#[tokio::test]
async fn admin_changes_availability_zones_at_run_time() {
    let sim = start().await;
    let c = Client::login(&sim).await;
    let http = reqwest::Client::new();
    let put = |body: Value| {
        let http = http.clone();
        let url = format!("{}/admin/availability-zones", sim.url());
        async move {
            let r = http.put(url).json(&body).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (st, v) = put(json!({"zones": ["new-az1", "new-az2"]})).await;
    assert_eq!((st, &v), (200, &json!({"zones": ["new-az1", "new-az2"]})));
    let (_, v) = c.get("/compute/v2.1/os-availability-zone").await;
    let names: Vec<&str> = v["availabilityZoneInfo"]
        .as_array()
        .unwrap()
        .iter()
        .map(|z| z["zoneName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["new-az1", "new-az2"]);
    let (_, images) = c.get("/image/v2/images?name=cirros-0.6.2").await;
    let image = images["images"][0]["id"].as_str().unwrap().to_string();
    let create = |az: &str| json!({"server": {"name": "z", "flavorRef": "1", "imageRef": image, "availability_zone": az}});
    let (st, v) = c.post("/compute/v2.1/servers", create("nova")).await;
    assert_eq!(st, 400, "{v}");
    assert!(
        v.to_string().contains("availability zone is not available"),
        "{v}"
    );
    let (st, v) = c.post("/compute/v2.1/servers", create("new-az2")).await;
    assert_eq!(st, 202, "{v}");
    for bad in [
        json!({"zones": []}),
        json!({"zones": "a"}),
        json!({"zones": ["a", "a"]}),
    ] {
        let (st, v) = put(bad.clone()).await;
        assert_eq!(st, 400, "{bad}: {v}");
    }
    assert_eq!(sim.admin().availability_zones(), ["new-az1", "new-az2"]);
    sim.shutdown().await.unwrap();
}

/// With `ipv6` the shared provider network is dual-stack: Neutron shows an IPv6 subnet
/// of IPv4-mapped addresses, and a server on it gets the IPv4 address and its mapped
/// IPv6 twin (reachable on loopback: the fake sshd answers on both).
#[tokio::test]
async fn ipv6_provider_network_is_dual_stack() {
    let sim = Simulator::start(SimConfig {
        ipv6: true,
        ssh_port: 0,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let c = Client::login(&sim).await;
    let (_, nets) = c.get("/network/v2.0/networks?name=provider").await;
    let net = &nets["networks"][0];
    assert_eq!(net["provider:physical_network"], "physnet1");
    assert_eq!(net["router:external"], false);
    assert_eq!(net["shared"], true);
    assert_eq!(net["subnets"].as_array().unwrap().len(), 2);
    let (_, subnets) = c.get("/network/v2.0/subnets?ip_version=6").await;
    assert_eq!(subnets["subnets"][0]["cidr"], "::ffff:127.30.0.0/112");
    let (_, v) = c.create_server("dual", "1").await;
    let id = v["server"]["id"].as_str().unwrap().to_string();
    let s = c.wait_server(&id).await;
    let addrs = s["addresses"]["provider"].as_array().unwrap();
    assert_eq!(addrs.len(), 2, "{addrs:?}");
    let v4 = addrs[0]["addr"].as_str().unwrap();
    assert_eq!(addrs[0]["version"], 4);
    assert_eq!(addrs[1]["version"], 6);
    assert_eq!(addrs[1]["addr"], format!("::ffff:{v4}"));
    let keys = nodepool_shared::ssh::scan_host_keys(
        addrs[1]["addr"].as_str().unwrap(),
        sim.ssh_port(),
        tokio::time::Instant::now() + Duration::from_secs(10),
        &nodepool_shared::ssh::ScanOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(keys, sim.admin().host_keys(&id));
    sim.shutdown().await.unwrap();
}
