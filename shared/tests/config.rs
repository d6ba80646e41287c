//! Loads real config files (fixtures and the example in docs/configuration.md) and checks
//! values, defaults, YAML 1.1 quirks, merge keys, environment substitution, the secure
//! file, inheritance, every validation error with its exact position, and garbage input.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nodepool_shared::config::{
    CloudImageRef, Config, ConfigError, ConfigSource, PoolLabelImage, DEFAULT_BUILD_LOG_DIR,
};
use nodepool_shared::testing::{is_child_test, run_test_in_child};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config")
        .join(name)
}

fn load(name: &str) -> Config {
    Config::load(&fixture(name), None).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn problems(result: Result<Config, ConfigError>) -> Vec<String> {
    match result {
        Ok(c) => panic!("expected errors, got {c:#?}"),
        Err(e) => e.problems().iter().map(ToString::to_string).collect(),
    }
}

/// The YAML blocks of docs/configuration.md, in order.
fn doc_yaml_blocks() -> Vec<String> {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md");
    let text = std::fs::read_to_string(&doc).expect("docs/configuration.md");
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```yaml") => current = Some(String::new()),
            (Some(b), "```") => {
                blocks.push(std::mem::take(b));
                current = None;
            }
            (Some(b), l) => {
                b.push_str(l);
                b.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn documented_example_loads_with_every_key() {
    let blocks = doc_yaml_blocks();
    assert!(
        blocks.len() >= 2,
        "the doc has the example and a secure file"
    );
    // The first block is the example, the last one the secure file.
    let secure = blocks.last().expect("blocks");
    let c = Config::from_yaml_strs(&blocks[0], "example", secure, "secure-example")
        .unwrap_or_else(|e| panic!("{e}"));

    assert_eq!(c.webapp.port, 8005);
    assert_eq!(c.webapp.listen_address, "0.0.0.0");
    assert_eq!(
        c.elements_dir.as_deref(),
        Some(Path::new("/etc/nodepool/elements"))
    );
    assert_eq!(
        c.images_dir.as_deref(),
        Some(Path::new("/opt/nodepool/images"))
    );
    assert_eq!(c.build_log_dir, Path::new(DEFAULT_BUILD_LOG_DIR));
    assert_eq!(c.build_log_retention, 7);
    assert_eq!(c.zookeeper_timeout, Duration::from_secs(30));
    assert_eq!(c.max_hold_age, Some(Duration::from_secs(86400)));
    let zk = c.zk_settings();
    assert_eq!(
        zk.connect_string(),
        "zk1.example.com:2281/nodepool,zk2.example.com:2281/nodepool"
    );
    assert_eq!(zk.session_timeout, Duration::from_secs(30));
    assert_eq!(
        zk.tls.as_ref().map(|t| t.cert.clone()),
        Some(PathBuf::from("/etc/nodepool/secret/client.pem")),
        "the secure file's TLS wins"
    );

    assert_eq!(c.labels.len(), 5);
    let deb = c.label("debian-bookworm").unwrap();
    assert_eq!(deb.min_ready, 2);
    assert_eq!(deb.max_ready_age, Some(Duration::from_secs(3600)));
    assert_eq!(c.label("ubuntu-noble").unwrap().max_ready_age, None);

    let t = &c.tenant_resource_limits[0];
    assert_eq!(t.tenant_name, "example-tenant");
    assert_eq!(
        (
            t.max_servers,
            t.max_cores,
            t.max_ram,
            t.max_volumes,
            t.max_volume_gb
        ),
        (Some(10), Some(40), Some(81920), Some(5), Some(500))
    );
    assert_eq!(t.other.get("gpus"), Some(&2));

    assert_eq!(c.diskimages.len(), 2, "the abstract base is left out");
    assert!(c.diskimage("base").is_none());
    let d = c.diskimage("debian-bookworm").unwrap();
    assert_eq!(
        d.elements,
        ["vm", "simple-init", "debian-minimal", "nodepool-base"]
    );
    assert_eq!(d.env_vars["DIB_CHECKSUM"], "1");
    assert_eq!(d.env_vars["DIB_DEBIAN_COMPONENTS"], "main");
    assert_eq!(d.env_vars["REGISTRY_PASSWORD"], "s3cret");
    assert_eq!(d.formats, ["qcow2"]);
    assert_eq!(d.keep_formats, ["qcow2"]);
    assert!(d.delete_after_upload && !d.pause);
    assert_eq!(d.release.as_deref(), Some("bookworm"));
    assert_eq!(d.python_path, "/usr/bin/python3");
    assert_eq!(d.shell_type.as_deref(), Some("sh"));
    assert_eq!(d.build_timeout, Duration::from_secs(7200));
    assert_eq!(d.metadata["hw_rng_model"], "virtio");
    let u = c.diskimage("ubuntu-noble").unwrap();
    assert_eq!(u.release.as_deref(), Some("24.04"));
    assert_eq!(u.python_path, "auto");
    assert_eq!(u.build_timeout, Duration::from_secs(28800));
    assert!(!u.env_vars.contains_key("REGISTRY_PASSWORD"));

    let p = c.provider("cloud1").unwrap();
    assert_eq!(p.cloud, "cloud1");
    assert_eq!(p.region_name.as_deref(), Some("RegionOne"));
    assert_eq!(p.rate, Duration::from_millis(500));
    assert_eq!(p.boot_timeout, Duration::from_secs(120));
    assert_eq!(p.launch_timeout, Duration::from_secs(1800));
    assert_eq!(p.launch_retries, 5);
    assert_eq!(p.image_upload_timeout, Duration::from_secs(7200));
    assert_eq!(p.max_concurrency, 10);
    assert_eq!(p.priority, Some(50));
    assert!(p.clean_floating_ips);
    assert_eq!(p.port_cleanup_interval, Some(Duration::from_secs(300)));
    assert_eq!(p.image_name_format, "{image_name}-{timestamp}");
    assert_eq!(
        p.post_upload_hook.as_deref(),
        Some("/usr/local/bin/check-upload")
    );
    let pd = p.diskimage("debian-bookworm").unwrap();
    assert_eq!(pd.config_drive, Some(true));
    assert_eq!(pd.meta["hw_disk_bus"], "scsi");
    assert_eq!(
        (pd.connection_type.as_str(), pd.connection_port),
        ("ssh", 22)
    );
    let w = p.cloud_image("windows").unwrap();
    assert_eq!(w.image, CloudImageRef::Name("Windows Server 2022".into()));
    assert_eq!(w.username.as_deref(), Some("Administrator"));
    assert_eq!(
        (w.connection_type.as_str(), w.connection_port),
        ("winrm", 5986)
    );
    assert_eq!(
        p.cloud_image("cirros").unwrap().image,
        CloudImageRef::Id("0b3c5e0c-9a9e-4f0a-8d2b-5c3f2f6b8a11".into())
    );

    let main = p.pool("main").unwrap();
    assert_eq!(main.max_servers, Some(20));
    assert_eq!(
        (
            main.max_cores,
            main.max_ram,
            main.max_volumes,
            main.max_volume_gb
        ),
        (Some(80), Some(163840), Some(10), Some(1000))
    );
    assert_eq!(main.availability_zones, ["nova"]);
    assert_eq!(main.security_groups, ["default"]);
    assert!(main.auto_floating_ip && main.host_key_checking && !main.ignore_provider_quota);
    assert_eq!(main.node_attributes["site"], "dc1");
    assert_eq!(main.priority, 10);
    let l = main.label("debian-bookworm").unwrap();
    assert_eq!(l.diskimage(), Some("debian-bookworm"));
    assert_eq!(l.flavor_name.as_deref(), Some("m1.medium"));
    assert_eq!(l.min_ram, Some(4096));
    assert_eq!(l.key_name.as_deref(), Some("nodepool"));
    assert!(l.console_log && l.boot_from_volume);
    assert_eq!(l.volume_size, 80);
    assert_eq!(l.instance_properties["owner"], "zuul");
    assert_eq!(
        l.dynamic_instance_properties["tenant"],
        "{request.tenant_name}"
    );
    assert_eq!(l.userdata.as_deref(), Some("#cloud-config\n"));
    assert_eq!(l.networks, ["private", "storage"]);
    assert!(!l.host_key_checking);
    let win = main.label("windows-2022").unwrap();
    assert_eq!(win.image, PoolLabelImage::CloudImage("windows".into()));
    assert_eq!(win.networks, ["private"], "inherited from the pool");
    assert!(win.host_key_checking, "inherited from the pool");
    assert_eq!(win.volume_size, 50);
    let small = p.pool("small").unwrap();
    assert_eq!(small.priority, 50, "falls back to the provider's priority");
    assert_eq!(small.max_servers, None);

    assert!(
        c.provider("rack1").is_none(),
        "a static provider is not a cloud"
    );
    let rack = c.static_provider("rack1").unwrap();
    assert_eq!((rack.max_concurrency, rack.priority), (-1, Some(20)));
    let lab = rack.pool("lab").unwrap();
    assert_eq!((lab.max_servers, lab.priority), (Some(10), 30));
    assert_eq!(lab.node_attributes["site"], "lab2");
    assert_eq!(lab.labels(), ["arm64-bare-metal", "network-switch"]);
    let arm = &lab.nodes[0];
    assert_eq!(arm.name, "arm1.example.com");
    assert_eq!(arm.timeout, Duration::from_secs(10));
    assert!(arm.host_key_checking);
    assert_eq!(arm.host_keys.len(), 1);
    assert_eq!(
        (arm.connection_type.as_str(), arm.connection_port),
        ("ssh", 22)
    );
    assert_eq!(arm.shell_type.as_deref(), Some("sh"));
    assert_eq!(arm.max_parallel_jobs, 2);
    assert_eq!(arm.python_path, "/usr/bin/python3");
    let switch = &lab.nodes[1];
    assert_eq!(switch.username, "zuul");
    assert!(!switch.host_key_checking && switch.gathers_host_keys());
}

#[test]
fn defaults_of_a_minimal_config() {
    let c = Config::from_yaml_str(
        "zookeeper-servers: [{host: localhost}]\nproviders:\n  - name: p\n    cloud: c\n    pools: [{name: main}]\n    diskimages: [{name: i, connection-type: winrm}]\n    cloud-images: [{name: ci}]\ndiskimages: [{name: i}]\n",
        "min",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.webapp.port, 8005);
    assert_eq!(c.zookeeper_timeout, Duration::from_secs(10));
    assert!(c.zookeeper_tls.is_none(), "plain ZooKeeper is allowed");
    assert_eq!(c.zk_settings().connect_string(), "localhost:2281");
    assert_eq!(c.max_hold_age, None);
    let p = &c.providers[0];
    assert_eq!(p.rate, Duration::from_secs(1));
    assert_eq!(p.boot_timeout, Duration::from_secs(60));
    assert_eq!(p.launch_timeout, Duration::from_secs(3600));
    assert_eq!(p.launch_retries, 3);
    assert_eq!(p.max_concurrency, -1);
    assert!(!p.clean_floating_ips);
    assert_eq!(p.port_cleanup_interval, Some(Duration::from_secs(600)));
    assert_eq!(p.diskimages[0].connection_port, 5986);
    assert_eq!(p.cloud_images[0].image, CloudImageRef::Name("ci".into()));
    assert_eq!(p.cloud_images[0].python_path, "auto");
    assert_eq!(p.pools[0].priority, 100);
    assert!(p.pools[0].auto_floating_ip);
    let d = &c.diskimages[0];
    assert_eq!(d.dib_cmd, "disk-image-create");
    assert_eq!(d.username, "zuul");
    assert_eq!(d.rebuild_age, Duration::from_secs(86400));

    let c = Config::from_yaml_str(
        "providers: [{name: p, cloud: c, port-cleanup-interval: 0}]\nmax-hold-age: -1\n",
        "x",
    )
    .unwrap();
    assert_eq!(c.providers[0].port_cleanup_interval, None);
    assert_eq!(c.max_hold_age, None);
}

#[test]
fn yaml_1_1_booleans_and_numbers() {
    let c = load("yaml11.yaml");
    assert_eq!(c.labels[0].name, "y", "`y` stays a string, as in PyYAML");
    assert_eq!(c.labels[0].min_ready, 2);
    let p = &c.providers[0];
    assert!(p.clean_floating_ips);
    assert!(p.diskimages[0].pause);
    assert_eq!(p.diskimages[0].config_drive, Some(false));
    assert!(!p.pools[0].auto_floating_ip);
    let l = &p.pools[0].labels[0];
    assert_eq!(l.min_ram, Some(8), "010 is octal");
    assert!(l.console_log);
    assert_eq!(c.diskimages[0].release.as_deref(), Some("12"));
    assert!(c.diskimages[0].delete_after_upload);
}

#[test]
fn merge_keys_and_aliases() {
    let c = load("merge.yaml");
    let names: Vec<_> = c.providers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["cloud0", "cloud1", "cloud2"]);
    let p1 = c.provider("cloud1").unwrap();
    assert_eq!(p1.cloud, "shared-cloud");
    assert_eq!(
        p1.rate,
        Duration::from_millis(100),
        "explicit key beats the merge"
    );
    assert_eq!(p1.boot_timeout, Duration::from_secs(300));
    let p2 = c.provider("cloud2").unwrap();
    assert_eq!(p2.rate, Duration::from_secs(2));
    let second = p2.pool("second").unwrap();
    assert_eq!(second.max_servers, Some(4));
    assert_eq!(second.labels.len(), 2);
    assert_eq!(second.labels[1].name, "large");
    assert_eq!(second.labels[1].flavor_name.as_deref(), Some("big"));
    assert_eq!(second.labels[1].cloud_image(), Some("cirros"));

    // A merged value that is wrong is reported where it is written.
    let bad = std::fs::read_to_string(fixture("merge.yaml"))
        .unwrap()
        .replace("boot-timeout: 300", "boot-timeout: slow");
    let got = problems(Config::from_yaml_str(&bad, "merge.yaml"));
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got.iter().all(|m| m.starts_with("merge.yaml:9:19: providers[")
        && m.ends_with("].boot-timeout: expected a non-negative number of seconds, got string \"slow\"")), "{got:?}");
}

/// `%(NODEPOOL_…)` comes from the process environment: the variables are set for a child
/// process that runs [`nodepool_environment_variables_are_substituted_in_child`] (setting
/// them here, while other tests' threads read the environment, is undefined behaviour).
#[test]
fn nodepool_environment_variables_are_substituted() {
    run_test_in_child(
        "config::nodepool_environment_variables_are_substituted_in_child",
        &[
            ("NODEPOOL_CFGTEST_ZK_HOST", "zk.internal"),
            ("NODEPOOL_CFGTEST_ZK_PORT", "2999"),
        ],
    );
}

#[test]
#[ignore = "runs in a child process of nodepool_environment_variables_are_substituted"]
fn nodepool_environment_variables_are_substituted_in_child() {
    if !is_child_test("config::nodepool_environment_variables_are_substituted_in_child") {
        return;
    }
    let c = load("env.yaml");
    assert_eq!(c.zookeeper_servers[0].host, "zk.internal");
    assert_eq!(c.zookeeper_servers[0].port, 2999);
    assert_eq!(
        c.images_dir.as_deref(),
        Some(Path::new("/srv/%(NODEPOOL_CFGTEST_UNSET)/images"))
    );
    assert_eq!(c.elements_dir.as_deref(), Some(Path::new("%(HOME)")));
}

#[test]
fn secure_file_replaces_servers_and_tls_and_merges_env_vars() {
    let c = Config::load(&fixture("secure-main.yaml"), Some(&fixture("secure.yaml")))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.zk_settings().connect_string(), "secret-zk:2999/secret");
    assert_eq!(
        c.zookeeper_tls.as_ref().unwrap().ca,
        PathBuf::from("/secret/ca")
    );
    let d = c.diskimage("debian").unwrap();
    assert_eq!(d.env_vars["A"], "base");
    assert_eq!(d.env_vars["B"], "overridden");
    assert_eq!(d.env_vars["PASSWORD"], "hunter2");

    let secure = fixture("secure-bad.yaml");
    let s = secure.display();
    assert_eq!(
        problems(Config::load(&fixture("secure-main.yaml"), Some(&secure))),
        vec![
            format!("{s}:2:11: diskimages[0].name: cannot add secure env-vars to diskimage `base`, which is not a (non-abstract) diskimage of the main config"),
            format!("{s}:4:11: diskimages[1].name: cannot add secure env-vars to diskimage `nope`, which is not a (non-abstract) diskimage of the main config"),
            format!("{s}:5:1: <top level>: unknown key `providers`"),
        ]
    );
}

#[test]
fn inheritance_chains_resolve_in_any_order() {
    let c = load("inheritance.yaml");
    let names: Vec<_> = c.diskimages.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["leaf", "sibling"]);
    let leaf = c.diskimage("leaf").unwrap();
    assert_eq!(leaf.elements, ["root-el", "middle-el", "leaf-el"]);
    assert_eq!(leaf.env_vars["LEVEL"], "leaf");
    assert_eq!(leaf.env_vars["MIDDLE"], "1");
    assert_eq!(leaf.env_vars["ROOT"], "1");
    assert_eq!(leaf.formats, ["raw"]);
    assert_eq!(leaf.username, "middleuser");
    assert_eq!(leaf.rebuild_age, Duration::from_secs(3600));
    assert_eq!(leaf.metadata["a"], 1);
    let sib = c.diskimage("sibling").unwrap();
    assert_eq!(sib.elements, ["root-el"]);
    assert_eq!(sib.formats, ["qcow2", "vhd"]);
    assert_eq!(sib.username, "other");
}

#[test]
fn type_errors_unknown_and_missing_keys_are_all_reported() {
    let got = problems(Config::load(&fixture("errors-types.yaml"), None));
    let f = fixture("errors-types.yaml");
    let f = f.display();
    let want: Vec<String> = [
        "2:9: webapp.port: expected a port number (0-65535), got integer 99999",
        "3:3: webapp: unknown key `listen-address`",
        "4:20: zookeeper-timeout: expected a non-negative number of seconds, got string \"soon\"",
        "7:16: labels[0].min-ready: expected a non-negative integer, got integer -1",
        "8:5: labels[1]: missing required key `name`",
        "12:11: providers[0].rate: expected a non-negative number of seconds, got string \"fast\"",
        "15:22: providers[0].pools[0].max-servers: expected an integer, got string \"ten\"",
        "16:19: providers[0].pools[0].networks: expected a list of strings, got string \"private\"",
        "18:13: providers[0].pools[0].labels[0]: needs `flavor-name` or `min-ram` (or both)",
        "20:26: providers[0].pools[0].labels[0].cloud-image: `diskimage` and `cloud-image` are mutually exclusive",
        "21:13: providers[0].pools[0].labels[1]: needs one of `diskimage` or `cloud-image`",
        "25:19: diskimages[0].elements[1]: expected a string, got integer 3",
        "26:19: diskimages[0].env-vars.X: expected a string, got integer 1",
        "27:1: <top level>: unknown key `unknown-top`",
    ]
    .iter()
    .map(|m| format!("{f}:{m}"))
    .collect();
    assert_eq!(got, want);
}

#[test]
fn reference_errors_are_all_reported() {
    let got = problems(Config::load(&fixture("errors-refs.yaml"), None));
    let f = fixture("errors-refs.yaml");
    let f = f.display();
    let want: Vec<String> = [
        "3:11: labels[1].name: duplicate label `a` (first defined at line 2)",
        "7:11: diskimages[1].name: duplicate diskimage `img` (first defined at line 6)",
        "11:13: diskimages[3].parent: diskimage `missing` is not defined in the top-level `diskimages`",
        "13:13: diskimages[4].parent: inheritance cycle: loop1 -> loop2 -> loop1",
        "15:13: diskimages[5].parent: inheritance cycle: loop2 -> loop1 -> loop2",
        "21:15: providers[0].diskimages[1].name: diskimage `nowhere` is not defined in the top-level `diskimages`",
        "22:15: providers[0].diskimages[2].name: diskimage `abstract-img` is abstract and cannot be used by a provider",
        "26:21: providers[0].cloud-images[0].image-name: `image-id` and `image-name` are mutually exclusive",
        "30:19: providers[0].pools[0].labels[0].name: label `undefined-label` is not defined in the top-level `labels`",
        "34:24: providers[0].pools[0].labels[1].diskimage: provider diskimage `orphan` is not defined in this provider's `diskimages`",
        "37:26: providers[0].pools[0].labels[2].cloud-image: cloud-image `other` is not defined in this provider's `cloud-images`",
        "39:15: providers[0].pools[1].name: duplicate pool `main` (first defined at line 28)",
        "40:11: providers[1].name: duplicate provider `p` (first defined at line 17)",
        "43:13: providers[2].driver: driver `aws` is not supported (only `openstack` and `static` are)",
        "47:5: providers[3]: unknown key `cloud`",
        "52:21: providers[3].pools[0].nodes[0].labels: label `undefined-static-label` is not defined in the top-level `labels`",
        "53:19: providers[3].pools[0].nodes[1].name: duplicate static node `zuul@h1:22` (first defined at line 51)",
        "57:25: providers[3].pools[0].nodes[2].labels[1]: expected a string, got integer 3",
        "58:32: providers[3].pools[0].nodes[2].max-parallel-jobs: expected a non-negative integer, got integer -1",
        "59:13: providers[3].pools[0].nodes[3]: missing required key `name`",
        "60:15: providers[3].pools[1].name: duplicate pool `main` (first defined at line 49)",
        "61:11: providers[4].name: duplicate provider `p` (first defined at line 17)",
    ]
    .iter().map(|m| format!("{f}:{m}")).collect();
    assert_eq!(got, want);
}

/// Nodepool's `test_static_config`: the static provider's config loads, and loading it
/// again gives an equal config.
#[test]
fn static_config() {
    let c = load("static.yaml");
    assert!(c.providers.is_empty(), "no OpenStack provider");
    let p = c
        .static_provider("static-provider")
        .expect("static provider");
    assert_eq!((p.max_concurrency, p.priority), (-1, None));
    let pool = p.pool("main").unwrap();
    assert_eq!(pool.priority, 100);
    assert_eq!(pool.max_servers, None);
    assert_eq!(
        pool.labels(),
        ["fake-label", "fake-concurrent-label", "fake-windows-label"]
    );
    let h1 = &pool.nodes[0];
    assert_eq!(h1.name, "fake-host-1");
    assert_eq!(h1.labels, ["fake-label"]);
    assert_eq!(h1.host_keys, ["ssh-rsa FAKEKEY"]);
    assert_eq!(h1.timeout, Duration::from_secs(13));
    assert_eq!(h1.connection_port, 22022);
    assert_eq!(h1.username, "zuul");
    assert_eq!(h1.max_parallel_jobs, 1);
    let h2 = &pool.nodes[1];
    assert_eq!(h2.max_parallel_jobs, 2);
    assert_eq!(
        (h2.connection_port, h2.timeout, h2.python_path.as_str()),
        (22, Duration::from_secs(5), "auto")
    );
    let h3 = &pool.nodes[2];
    assert_eq!(h3.connection_type, "winrm");
    assert_eq!(
        h3.connection_port, 22,
        "no winrm default port, as in Nodepool"
    );
    assert!(!h3.gathers_host_keys());
    assert_eq!(c, load("static.yaml"));
}

/// Nodepool's `test_static_validator`: a static provider with a `cloud` is invalid.
#[test]
fn static_validator() {
    let got = problems(Config::load(&fixture("static-error.yaml"), None));
    let f = fixture("static-error.yaml");
    assert_eq!(
        got,
        [format!(
            "{}:6:5: providers[0]: unknown key `cloud`",
            f.display()
        )]
    );
}

#[test]
fn garbage_never_panics() {
    let inputs: Vec<String> = vec![
        String::new(),
        "\n\n# comment only\n".into(),
        "---\n".into(),
        "- a\n- b\n".into(),
        "just a string".into(),
        "42".into(),
        "{".into(),
        "a: [1, 2\n".into(),
        "key: value\n  bad: indent\n".into(),
        "\t- tab\n".into(),
        "a: *undefined\n".into(),
        "--- a\n--- b\n".into(),
        "labels: 5\nproviders: {a: b}\ndiskimages: [1, [2], null, {}]\n".into(),
        "providers: [null, 1, [], {name: [x]}, {name: p, pools: [[]], cloud-images: 3}]\n".into(),
        "zookeeper-servers: [{}, {host: 1}]\nzookeeper-tls: []\nwebapp: x\n".into(),
        "? [complex, key]\n: value\n1: 2\nnull: 3\n".into(),
        "labels:\n  - name: &a x\n    min-ready: 99999999999999999999999\n".into(),
        "a: !!binary aGVsbG8=\nb: !custom tag\n".into(),
        "a: .nan\nb: -.inf\n".into(),
        "\u{feff}\u{0}\u{1}binary\u{7f}".into(),
        "[".repeat(10_000),
        "a: &x [*x]\n".into(),
        format!("l: &l0 [{}]\n", "x, ".repeat(100))
            + &(1..10)
                .map(|i| format!("l{i}: &l{i} [*l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}]\n", p = i - 1))
                .collect::<String>(),
    ];
    for input in &inputs {
        match Config::from_yaml_str(input, "garbage") {
            Ok(_) => {}
            Err(e) => {
                for p in e.problems() {
                    assert!(!p.message.is_empty());
                    assert_eq!(p.origin, "garbage");
                }
                assert!(!e.to_string().is_empty());
            }
        }
    }
    let empty = Config::from_yaml_str("", "empty").expect("an empty file is an empty config");
    assert!(empty.providers.is_empty());
    assert_eq!(
        problems(Config::from_yaml_str("- a\n", "o")),
        vec!["o:1:1: the document: expected a mapping, got a list"]
    );
    assert_eq!(
        problems(Config::from_yaml_str("a: 1\n---\nb: 2\n", "o")),
        vec!["o:3:1: invalid YAML: the file holds more than one YAML document"]
    );
    assert_eq!(
        problems(Config::from_yaml_str("key: value\n  bad: indent\n", "o")),
        vec!["o:2:6: invalid YAML: mapping values are not allowed in this context"]
    );
}

#[test]
fn io_errors_name_the_file() {
    let missing = fixture("does-not-exist.yaml");
    let err = Config::load(&missing, None).unwrap_err();
    assert!(matches!(err, ConfigError::Io { .. }));
    assert!(err.to_string().contains("does-not-exist.yaml"), "{err}");
}

#[test]
fn config_source_stamps_change_with_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("nodepool.yaml");
    let secure = dir.path().join("secure.yaml");
    std::fs::write(&main, "labels: [{name: a}]\n").unwrap();
    std::fs::write(&secure, "").unwrap();
    let src = ConfigSource::new(&main, Some(secure.clone()));
    let before = src.stamp();
    assert!(before.config.is_some() && before.secure.is_some());
    assert_eq!(src.load().unwrap().labels.len(), 1);

    let later = before.config.unwrap() + Duration::from_secs(5);
    std::fs::write(&main, "labels: [{name: a}, {name: b}]\n").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&main)
        .unwrap()
        .set_modified(later)
        .unwrap();
    let after = src.stamp();
    assert_ne!(before, after);
    let reloaded = src.load().unwrap();
    assert_eq!(reloaded.labels.len(), 2);
    assert_ne!(
        reloaded,
        src.load()
            .map(|mut c| {
                c.labels.pop();
                c
            })
            .unwrap()
    );

    std::fs::remove_file(&secure).unwrap();
    assert_eq!(src.stamp().secure, None);
    assert!(matches!(src.load(), Err(ConfigError::Io { .. })));
}
