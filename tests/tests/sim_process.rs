//! `openstack-sim` as a separate process: prints its URL, writes clouds.yaml, saves its state
//! on SIGTERM and loads it again on the next start.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary and returns it with the URL it printed (bounded wait).
fn spawn(args: &[&str]) -> (Proc, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_openstack-sim"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start openstack-sim");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = tx.send(line);
        // Keep draining: the simulator prints more lines (its fake sshd port) and must
        // not die of a closed pipe.
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    });
    let proc = Proc(child);
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("openstack-sim printed nothing within 30 s");
    let url = line
        .trim()
        .strip_prefix("openstack-sim listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    (proc, url)
}

fn terminate(mut p: Proc) {
    // SAFETY: kill(2) on the pid of our own child.
    unsafe { libc::kill(p.0.id() as i32, libc::SIGTERM) };
    for _ in 0..300 {
        if let Some(status) = p.0.try_wait().unwrap() {
            assert!(status.success(), "openstack-sim exited with {status}");
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("openstack-sim did not stop within 6 s of SIGTERM");
}

#[tokio::test]
async fn binary_serves_saves_and_reloads_state() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let clouds = dir.path().join("clouds.yaml");
    let state_arg = state.to_str().unwrap();
    let clouds_arg = clouds.to_str().unwrap();
    let (p, url) = spawn(&[
        "--port",
        "0",
        "--state-file",
        state_arg,
        "--write-clouds-yaml",
        clouds_arg,
        "--cloud-name",
        "mysim",
        "--quota-instances",
        "-1",
    ]);
    let yaml = std::fs::read_to_string(&clouds).unwrap();
    assert!(
        yaml.contains("mysim:") && yaml.contains(&format!("{url}/identity")),
        "{yaml}"
    );

    let http = reqwest::Client::new();
    let r = http
        .post(format!("{url}/admin/leaks/servers"))
        .json(&json!({"provider": "p1", "node_id": "0000000005"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let knobs: Value = http
        .get(format!("{url}/admin/knobs"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(knobs["quota"]["instances"], -1);
    terminate(p);
    assert!(state.exists(), "no state file written on SIGTERM");

    let (p, url) = spawn(&["--state-file", state_arg]);
    let dump: Value = http
        .get(format!("{url}/admin/state"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        dump["world"]["servers"][0]["metadata"]["nodepool_node_id"],
        "0000000005"
    );
    assert_eq!(dump["knobs"]["quota"]["instances"], -1);
    terminate(p);
}

#[test]
fn bad_flags_and_configs_are_reported() {
    let out = Command::new(env!("CARGO_BIN_EXE_openstack-sim"))
        .args(["--error-rate", "2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--error-rate"));

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sim.json");
    std::fs::write(&cfg, "{\"region\": \"R1\",\n \"bogus\": 1}").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_openstack-sim"))
        .args(["--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sim.json:2:") && err.contains("bogus"),
        "{err}"
    );
}

/// A logged-in HTTP client for one simulator process.
struct Api {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Api {
    async fn login(url: &str) -> Api {
        let http = reqwest::Client::new();
        let r = http
            .post(format!("{url}/identity/v3/auth/tokens"))
            .json(&json!({"auth": {
                "identity": {"methods": ["password"], "password": {"user": {
                    "name": "nodepool", "domain": {"name": "Default"}, "password": "secret"}}},
                "scope": {"project": {"name": "nodepool", "domain": {"name": "Default"}}}}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let token = r.headers()["x-subject-token"].to_str().unwrap().to_string();
        Api {
            http,
            url: url.to_string(),
            token,
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, String) {
        let mut rb = self
            .http
            .request(method, format!("{}{path}", self.url))
            .header("X-Auth-Token", &self.token);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.text().await.unwrap())
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let (st, text) = self.call(reqwest::Method::GET, path, None).await;
        (
            st,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn admin(&self, path: &str) -> Value {
        self.http
            .get(format!("{}/admin/{path}", self.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn create_server(&self, name: &str) -> String {
        let (_, images) = self.get("/image/v2/images?name=cirros-0.6.2").await;
        let image = images["images"][0]["id"].as_str().unwrap().to_string();
        let (st, text) = self
            .call(
                reqwest::Method::POST,
                "/compute/v2.1/servers",
                Some(json!({"server": {"name": name, "flavorRef": "1", "imageRef": image}})),
            )
            .await;
        assert_eq!(st, 202, "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        v["server"]["id"].as_str().unwrap().to_string()
    }

    async fn status(&self, id: &str) -> Value {
        let (st, v) = self.get(&format!("/compute/v2.1/servers/{id}")).await;
        assert_eq!(st, 200, "{v}");
        v["server"].clone()
    }

    /// Polls until the server leaves BUILD (bounded).
    async fn wait_not_building(&self, id: &str) -> Value {
        for _ in 0..500 {
            let s = self.status(id).await;
            if s["status"] != "BUILD" {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("server {id} stayed in BUILD");
    }
}

#[test]
fn help_explains_every_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_openstack-sim"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--boot-delay-ms",
        "--delete-delay-ms",
        "--api-latency-ms",
        "--api-latency-ms-for",
        "--image-upload-delay-ms",
        "--quota-instances",
        "--error-rate ",
        "--error-rate-for",
        "--error-status",
        "--fail-next",
        "--garbage-next",
        "--error-boots",
        "--boot-fault-message",
        "--hang-boots",
        "--hang-all-boots",
        "--leak-server",
        "--leak-floating-ips",
        "--leak-ports",
        "--leak-image",
        "--username",
        "--password",
        "--project-name",
        "--app-credential-id",
        "--app-credential-secret",
        "--state-file",
        "--write-clouds-yaml",
        "--availability-zone",
        "--ipv6",
    ] {
        // The flag's line and the next one together carry an explanation.
        let pos = help
            .find(&format!("  {flag}"))
            .unwrap_or_else(|| panic!("--help does not mention {flag}:\n{help}"));
        let rest = &help[pos + flag.len() + 2..];
        let words = rest
            .lines()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
            .split_whitespace()
            .count();
        assert!(words >= 4, "{flag} has no explanation in --help:\n{help}");
    }
}

#[tokio::test]
async fn knob_and_leak_flags_shape_the_running_simulator() {
    let (p, url) = spawn(&[
        "--error-rate-for",
        "compute.flavors.list=1",
        "--error-rate-for",
        "compute.keypairs.list=0.25",
        "--error-status",
        "502",
        "--fail-next",
        "compute.servers.detail=2:503",
        "--fail-next",
        "compute.limits=1",
        "--garbage-next",
        "compute.availability_zones=1",
        "--error-boots",
        "1",
        "--boot-fault-message",
        "Host exploded",
        "--hang-boots",
        "1",
        "--image-upload-delay-ms",
        "7",
        "--leak-server",
        "p1",
        "--leak-server",
        "provider=p2,node_id=0000000042,pool=gpu,flavor=medium",
        "--leak-floating-ips",
        "2",
        "--leak-ports",
        "3",
        "--leak-image",
        "provider=p1,build_id=0000000011,upload_id=0000000001",
        "--quota-instances",
        "-1",
        "--availability-zone",
        "az-x",
        "--availability-zone",
        "az-y",
        "--ipv6",
    ]);
    let api = Api::login(&url).await;
    assert_eq!(
        api.admin("availability-zones").await,
        serde_json::json!({"zones": ["az-x", "az-y"]})
    );

    let knobs = api.admin("knobs").await;
    assert_eq!(knobs["error_rates"]["compute.keypairs.list"], 0.25);
    assert_eq!(knobs["image_upload_delay_ms"], 7);

    // Per-call error rate 1 with --error-status; other calls are untouched.
    for _ in 0..3 {
        let (st, _) = api.get("/compute/v2.1/flavors").await;
        assert_eq!(st, 502);
    }
    let (st, _) = api.get("/compute/v2.1/os-availability-zone").await;
    assert_eq!(st, 200, "--garbage-next replies 200");
    let (st, v) = api.get("/compute/v2.1/os-availability-zone").await;
    assert!(st == 200 && v.is_object(), "second call is JSON again: {v}");
    // Deterministic failures: two 503s, then success; default status 500.
    for want in [503, 503, 200] {
        let (st, _) = api.get("/compute/v2.1/servers/detail").await;
        assert_eq!(st, want);
    }
    let (st, _) = api.get("/compute/v2.1/limits").await;
    assert_eq!(st, 500);
    let (st, _) = api.get("/compute/v2.1/limits").await;
    assert_eq!(st, 200);

    // Leaks present from the start.
    let world = &api.admin("state").await["world"];
    let servers = world["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 2, "{servers:?}");
    let p2 = servers
        .iter()
        .find(|s| s["metadata"]["nodepool_provider_name"] == "p2")
        .expect("leaked server of p2");
    assert_eq!(p2["metadata"]["nodepool_node_id"], "0000000042");
    assert_eq!(p2["metadata"]["nodepool_pool_name"], "gpu");
    assert_eq!(p2["flavor"]["name"], "medium");
    assert_eq!(p2["status"], "ACTIVE");
    assert!(servers
        .iter()
        .any(|s| s["metadata"]["nodepool_provider_name"] == "p1"
            && s["metadata"]["nodepool_node_id"].as_str().unwrap().len() == 10));
    let fips = world["floating_ips"].as_array().unwrap();
    assert_eq!(fips.len(), 2);
    assert!(fips.iter().all(|f| f["port_id"].is_null()));
    let ports = world["ports"].as_array().unwrap();
    let down: Vec<_> = ports
        .iter()
        .filter(|p| p["status"] == "DOWN" && p["device_owner"] == "compute:nova")
        .collect();
    assert_eq!(down.len(), 3, "{ports:?}");
    assert!(world["images"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["properties"]["nodepool_build_id"] == "0000000011"));

    // Boots: the first goes to ERROR with the given fault, the second hangs, the third boots.
    let failed = api.create_server("a").await;
    let hung = api.create_server("b").await;
    let ok = api.create_server("c").await;
    let s = api.wait_not_building(&failed).await;
    assert_eq!(s["status"], "ERROR");
    assert_eq!(s["fault"]["message"], "Host exploded");
    let booted = api.wait_not_building(&ok).await;
    assert_eq!(booted["status"], "ACTIVE");
    assert_eq!(booted["OS-EXT-AZ:availability_zone"], "az-x");
    // --ipv6: the provider network gives an IPv4-mapped IPv6 address too.
    let addrs = booted["addresses"]["provider"].as_array().unwrap();
    assert!(
        addrs.iter().any(|a| a["version"] == 6
            && a["addr"].as_str().unwrap().starts_with("::ffff:127.30.")),
        "{addrs:?}"
    );
    assert_eq!(api.status(&hung).await["status"], "BUILD");
    terminate(p);

    // --hang-all-boots: no server ever leaves BUILD, while the API keeps answering.
    let (p, url) = spawn(&["--hang-all-boots"]);
    let api = Api::login(&url).await;
    let ids = [api.create_server("x").await, api.create_server("y").await];
    for id in &ids {
        assert_eq!(api.status(id).await["status"], "BUILD");
    }
    assert_eq!(api.admin("knobs").await["hang_all_boots"], true);
    terminate(p);
}

#[test]
fn bad_knob_and_leak_flags_are_reported() {
    for (args, needle) in [
        (
            &["--error-rate-for", "compute.servers.create"][..],
            "--error-rate-for",
        ),
        (
            &["--error-rate-for", "compute.servers.create=1.5"][..],
            "between 0 and 1",
        ),
        (&["--fail-next", "compute.limits=x"][..], "--fail-next"),
        (
            &["--fail-next", "compute.limits=1:999"][..],
            "not an HTTP status",
        ),
        (&["--garbage-next", "=1"][..], "--garbage-next"),
        (
            &["--api-latency-ms-for", "compute.limits=-1"][..],
            "--api-latency-ms-for",
        ),
        (
            &["--leak-server", "provider=p,colour=red"][..],
            "unknown key",
        ),
        (
            &["--leak-server", "provider=p,flavor=huge"][..],
            "Unknown flavor huge",
        ),
        (
            &["--leak-image", "provider=p,build_id=1"][..],
            "upload_id is required",
        ),
        (
            &["--availability-zone", "a", "--availability-zone", "a"][..],
            "--availability-zone",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_openstack-sim"))
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
