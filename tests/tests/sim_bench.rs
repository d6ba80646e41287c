//! Simulator benchmarks (ignored by default; figures go to docs/benchmarks.md):
//! `cargo test -p nodepool-tests --test integration sim_bench:: -- --ignored --nocapture --test-threads 1`

use std::time::Instant;

use nodepool_tests::sim::{Quota, SimConfig, Simulator};
use serde_json::{json, Value};

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

async fn token(http: &reqwest::Client, auth_url: &str) -> String {
    let r = http
        .post(format!("{auth_url}/v3/auth/tokens"))
        .json(&json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "nodepool", "domain": {"name": "Default"}, "password": "secret"}}}}}))
        .send()
        .await
        .unwrap();
    r.headers()["x-subject-token"].to_str().unwrap().to_string()
}

#[tokio::test]
#[ignore]
async fn bench_sim_servers() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    sim.admin().set_quota(Quota::UNLIMITED);
    let http = reqwest::Client::new();
    let tok = token(&http, &sim.auth_url()).await;
    let image = sim.admin().images()[0].id.clone();
    let n = 1000;
    let t = Instant::now();
    for i in 0..n {
        let r = http
            .post(format!("{}/compute/v2.1/servers", sim.url()))
            .header("X-Auth-Token", &tok)
            .json(&json!({"server": {"name": format!("np{i:010}"), "flavorRef": "1", "imageRef": image,
                "metadata": {"nodepool_provider_name": "sim", "nodepool_node_id": format!("{i:010}")}}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    let create = t.elapsed();
    let rounds = 20;
    let t = Instant::now();
    let mut bytes = 0;
    for _ in 0..rounds {
        let r = http
            .get(format!("{}/compute/v2.1/servers/detail", sim.url()))
            .header("X-Auth-Token", &tok)
            .header("OpenStack-API-Version", "compute 2.79")
            .send()
            .await
            .unwrap();
        let body = r.bytes().await.unwrap();
        bytes = body.len();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["servers"].as_array().unwrap().len(), n);
    }
    let list = t.elapsed();
    let t = Instant::now();
    for _ in 0..1000 {
        let r = http
            .get(format!("{}/compute/v2.1/limits", sim.url()))
            .header("X-Auth-Token", &tok)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let small = t.elapsed();
    println!(
        "create {n} servers: {:.1} ms each; GET servers/detail ({n} servers, {} KiB): {:.1} ms; GET limits: {:.2} ms",
        create.as_secs_f64() * 1000.0 / n as f64,
        bytes / 1024,
        list.as_secs_f64() * 1000.0 / rounds as f64,
        small.as_secs_f64(),
    );
    sim.shutdown().await.unwrap();
}

#[tokio::test]
#[ignore]
async fn bench_sim_upload() {
    for hash in [true, false] {
        upload(hash).await;
    }
}

async fn upload(hash_uploads: bool) {
    let sim = Simulator::start(SimConfig {
        hash_uploads,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let tok = token(&http, &sim.auth_url()).await;
    let before = vm_hwm_kib();
    let mib = 512u64;
    let chunk = bytes::Bytes::from(vec![0x5au8; 1 << 20]);
    let r = http
        .post(format!("{}/image/v2/images", sim.url()))
        .header("X-Auth-Token", &tok)
        .json(&json!({"name": "big", "disk_format": "raw", "container_format": "bare"}))
        .send()
        .await
        .unwrap();
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let stream =
        futures::stream::iter((0..mib).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let t = Instant::now();
    let r = http
        .put(format!("{}/image/v2/images/{id}/file", sim.url()))
        .header("X-Auth-Token", &tok)
        .header("Content-Type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let secs = t.elapsed().as_secs_f64();
    let after = vm_hwm_kib();
    println!(
        "upload {mib} MiB (hash_uploads {hash_uploads}): {:.1} s ({:.0} MiB/s); peak RSS {} MiB before, {} MiB after",
        secs,
        mib as f64 / secs,
        before / 1024,
        after / 1024
    );
    assert_eq!(
        sim.admin()
            .images()
            .iter()
            .find(|i| i.id == id)
            .unwrap()
            .size,
        Some(mib << 20)
    );
    sim.shutdown().await.unwrap();
}
