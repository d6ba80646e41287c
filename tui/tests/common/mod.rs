//! A fixed set of records and a fixed "now" for the snapshot and app tests.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use nodepool_shared::diagnostics::{ImageFacts, PoolFacts, ProviderFacts};
use nodepool_shared::model::{
    BuildId, BuildState, Component, ComponentKind, ComponentState, ImageBuild, ImageUpload, Node,
    NodeId, NodeRequest, NodeState, PoolInfo, RequestId, RequestState, UploadId, UploadState,
};
use nodepool_shared::zk::{
    CacheStatus, CachedBuild, CachedComponent, CachedNode, CachedRequest, CachedUpload,
    ConnectionState, FlagTimes, SessionStatus, Stat, SyncState,
};
use nodepool_tui::app::{App, AppEvent, AppOptions};
use nodepool_tui::data::{ConfigInfo, Health, Snapshot};
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;

/// The fixed clock of every test: 2023-11-14T22:13:20Z.
pub const NOW: f64 = 1_700_000_000.0;

pub fn stat(version: i32, age_secs: f64) -> Stat {
    let t = ((NOW - age_secs) * 1000.0) as i64;
    Stat {
        czxid: 1,
        mzxid: 1 + i64::from(version),
        pzxid: 1,
        ctime: t - 60_000,
        mtime: t,
        version,
        cversion: 0,
        aversion: 0,
        ephemeral_owner: 0,
        data_length: 100,
        num_children: 1,
    }
}

fn node(
    seq: u64,
    state: NodeState,
    label: &str,
    provider: &str,
    age: f64,
    locked: bool,
) -> Arc<CachedNode> {
    let id = NodeId::from_sequence(seq);
    let n = Node {
        id: id.clone(),
        state,
        state_time: NOW - age,
        provider: Some(provider.into()),
        pool: Some("main".into()),
        cloud: Some(provider.into()),
        region: Some("RegionOne".into()),
        node_type: vec![label.into()],
        public_ipv4: Some(format!("198.51.100.{seq}")),
        interface_ip: Some(format!("198.51.100.{seq}")),
        external_id: Some(format!("7e1c0f5a-5b7e-4d57-9a0f-00000000{seq:04}")),
        launcher: Some(format!("nl01-PoolWorker.{provider}-main-ed8e")),
        created_time: Some(NOW - age - 300.0),
        username: Some("zuul".into()),
        connection_type: Some("ssh".into()),
        ..Node::default()
    };
    Arc::new(CachedNode {
        node: Arc::new(n.into()),
        stat: stat(3, age),
        lock_contenders: if locked {
            vec!["8d6b0c__lock__0000000000".into()]
        } else {
            vec![]
        },
    })
}

pub fn fixture() -> Snapshot {
    let mut nodes = vec![
        node(1, NodeState::Ready, "ubuntu-jammy", "rax-dfw", 320.0, false),
        node(
            2,
            NodeState::InUse,
            "ubuntu-jammy",
            "rax-dfw",
            1_900.0,
            true,
        ),
        node(
            3,
            NodeState::Building,
            "ubuntu-noble",
            "ovh-bhs1",
            45.0,
            true,
        ),
        node(4, NodeState::Failed, "centos-9", "ovh-bhs1", 7_300.0, false),
        node(
            5,
            NodeState::Deleting,
            "ubuntu-jammy",
            "ovh-bhs1",
            12.0,
            true,
        ),
        node(
            6,
            NodeState::Ready,
            "ubuntu-noble",
            "rax-dfw",
            90_000.0,
            false,
        ),
    ];
    let mut held = nodes[3].node.to_node();
    held.id = NodeId::from_sequence(7);
    held.state = NodeState::Hold;
    held.comment = Some("debugging job tox-py311 failure".into());
    held.hold_job = Some("tenant-one project tox-py311 .*".into());
    held.allocated_to = Some(RequestId::from("100-0000000002"));
    nodes.push(Arc::new(CachedNode {
        node: Arc::new(held.into()),
        stat: stat(9, 600.0),
        lock_contenders: vec![],
    }));
    let req = |seq: u64, state: RequestState, labels: &[&str], age: f64, nodes: &[u64]| {
        let mut r = NodeRequest::new(
            labels.iter().map(|s| s.to_string()).collect(),
            "zuul-scheduler-01",
        );
        r.id = RequestId::new("100", seq);
        r.state = state;
        r.state_time = NOW - age;
        r.created_time = Some(NOW - age);
        r.nodes = nodes.iter().map(|n| NodeId::from_sequence(*n)).collect();
        r.tenant_name = Some("tenant-one".into());
        r.declined_by = vec![];
        Arc::new(CachedRequest {
            request: r,
            stat: stat(1, age),
        })
    };
    let requests = vec![
        req(1, RequestState::Requested, &["ubuntu-noble"], 30.0, &[]),
        req(
            2,
            RequestState::Fulfilled,
            &["ubuntu-jammy", "ubuntu-jammy"],
            200.0,
            &[1, 2],
        ),
        req(3, RequestState::Pending, &["centos-9"], 75.0, &[]),
    ];
    let build = |image: &str, id: &str, state: BuildState, age: f64| {
        let mut b = ImageBuild::new(image, BuildId::from(id));
        b.state = state;
        b.state_time = NOW - age;
        b.builder = Some("nb01.example.org".into());
        b.formats = if state == BuildState::Building {
            vec![]
        } else {
            vec!["qcow2".into(), "raw".into()]
        };
        Arc::new(CachedBuild {
            build: b,
            stat: stat(2, age),
        })
    };
    let builds = vec![
        build(
            "centos-9",
            "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
            BuildState::Failed,
            20_000.0,
        ),
        build(
            "ubuntu-jammy",
            "3b2a1c0d9e8f7a6b5c4d3e2f1a0b9c8d",
            BuildState::Ready,
            86_400.0,
        ),
        build(
            "ubuntu-jammy",
            "9f8e7d6c5b4a39281706f5e4d3c2b1a0",
            BuildState::Building,
            600.0,
        ),
        build(
            "ubuntu-noble",
            "a1b2c3d4e5f60718293a4b5c6d7e8f90",
            BuildState::Ready,
            4_000.0,
        ),
    ];
    let upload =
        |image: &str, build: &str, provider: &str, seq: u64, state: UploadState, age: f64| {
            let mut u = ImageUpload::new(image, BuildId::from(build), provider);
            u.id = UploadId::from_sequence(seq);
            u.state = state;
            u.state_time = NOW - age;
            u.format = Some("qcow2".into());
            if state != UploadState::Uploading {
                u.external_id = Some(format!("c0ffee00-0000-4000-8000-0000000000{seq:02}"));
                u.external_name = Some(format!("{image}-{}", &build[..8]));
            }
            Arc::new(CachedUpload {
                upload: u,
                stat: stat(2, age),
            })
        };
    let uploads = vec![
        upload(
            "ubuntu-jammy",
            "3b2a1c0d9e8f7a6b5c4d3e2f1a0b9c8d",
            "ovh-bhs1",
            1,
            UploadState::Ready,
            80_000.0,
        ),
        upload(
            "ubuntu-jammy",
            "3b2a1c0d9e8f7a6b5c4d3e2f1a0b9c8d",
            "rax-dfw",
            2,
            UploadState::Ready,
            79_000.0,
        ),
        upload(
            "ubuntu-noble",
            "a1b2c3d4e5f60718293a4b5c6d7e8f90",
            "ovh-bhs1",
            3,
            UploadState::Uploading,
            300.0,
        ),
        upload(
            "ubuntu-noble",
            "a1b2c3d4e5f60718293a4b5c6d7e8f90",
            "rax-dfw",
            4,
            UploadState::Failed,
            3_000.0,
        ),
    ];
    let comp =
        |kind: ComponentKind, name: &str, provider: Option<&str>, labels: &[&str], paused: bool| {
            let mut c = Component::new(kind, "nl01", "11.0.0");
            if let Some(p) = c.pool.as_mut() {
                p.id = Some(format!(
                    "nl01.example.org-PoolWorker.{}-main-ed8e",
                    provider.unwrap_or("")
                ));
                p.name = Some("main".into());
                p.provider_name = provider.map(str::to_string);
                p.supported_labels = labels.iter().map(|s| s.to_string()).collect();
                p.paused = paused;
            }
            if kind == ComponentKind::Builder {
                c.hostname = "nb01".into();
            }
            if paused {
                c.state = ComponentState::Paused;
            }
            Arc::new(CachedComponent {
                name: name.into(),
                component: c,
                stat: stat(0, 5_000.0),
            })
        };
    let _ = PoolInfo::default();
    let components = vec![
        comp(ComponentKind::Launcher, "nl010000000000", None, &[], false),
        comp(
            ComponentKind::Pool,
            "nl010000000001",
            Some("rax-dfw"),
            &["ubuntu-jammy", "ubuntu-noble"],
            false,
        ),
        comp(
            ComponentKind::Pool,
            "nl010000000002",
            Some("ovh-bhs1"),
            &["ubuntu-jammy", "ubuntu-noble", "centos-9"],
            true,
        ),
        comp(ComponentKind::Builder, "nb010000000000", None, &[], false),
    ];
    Snapshot {
        nodes,
        requests,
        builds,
        uploads,
        components,
        images: ["centos-9", "ubuntu-jammy", "ubuntu-noble"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        paused: ["centos-9".to_string()].into_iter().collect(),
        build_requests: [(
            "ubuntu-jammy".to_string(),
            FlagTimes {
                created: NOW - 650.0,
                modified: NOW - 650.0,
            },
        )]
        .into_iter()
        .collect(),
        request_locks: [(
            RequestId::from("100-0000000003"),
            vec!["5e0d4c__lock__0000000000".to_string()],
        )]
        .into_iter()
        .collect(),
        corrupt: vec!["/nodepool/nodes/0000000099".into()],
    }
}

fn provider(name: &str, max_servers: i64, labels: &[&str]) -> ProviderFacts {
    ProviderFacts {
        name: name.into(),
        cloud: format!("{name}-cloud"),
        region_name: None,
        rate: Duration::from_secs(1),
        launch_timeout: Duration::from_secs(3600),
        boot_timeout: Duration::from_secs(60),
        launch_retries: 3,
        image_upload_timeout: Duration::from_secs(3600),
        pools: vec![PoolFacts {
            name: "main".into(),
            max_servers: Some(max_servers),
            labels: labels
                .iter()
                .map(|l| (l.to_string(), Some(l.to_string())))
                .collect(),
        }],
    }
}

pub fn config() -> ConfigInfo {
    let image = |name: &str| ImageFacts {
        name: name.into(),
        rebuild_age: Duration::from_secs(86_400),
        build_timeout: Duration::from_secs(8 * 3600),
        paused: false,
    };
    ConfigInfo {
        labels: vec![
            ("ubuntu-jammy".into(), 2),
            ("ubuntu-noble".into(), 1),
            ("centos-9".into(), 0),
            ("debian-bookworm".into(), 1),
        ],
        diskimages: vec![
            image("ubuntu-jammy"),
            image("ubuntu-noble"),
            image("centos-9"),
        ],
        providers: vec![
            provider("rax-dfw", 10, &["ubuntu-jammy", "ubuntu-noble"]),
            provider("ovh-bhs1", 5, &["ubuntu-jammy", "ubuntu-noble", "centos-9"]),
        ],
        loaded: true,
    }
}

pub fn health() -> Health {
    Health {
        hosts: "zk01.example.org:2281/nodepool".into(),
        connection: SessionStatus {
            state: ConnectionState::Connected,
            generation: 1,
        },
        cache: CacheStatus {
            state: SyncState::Synced,
            session_generation: 1,
            loads: 1,
            last_error: None,
        },
        changes: 42,
    }
}

/// An app with the fixture loaded, at [`NOW`], as it starts (on the Overview).
pub fn app_at_start() -> App {
    let mut app = App::new(AppOptions {
        hosts: "zk01.example.org:2281/nodepool".into(),
        read_only: false,
        config: config(),
        now: NOW,
    });
    app.update(AppEvent::Health(health()));
    app.update(AppEvent::Data(fixture()));
    app
}

/// An app with the fixture loaded, at [`NOW`], on the nodes view (1).
pub fn app() -> App {
    let mut app = app_at_start();
    keys(&mut app, "1");
    app
}

pub fn key(c: char) -> AppEvent {
    AppEvent::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
}

pub fn code(c: KeyCode) -> AppEvent {
    AppEvent::Key(KeyEvent::new(c, KeyModifiers::NONE))
}

pub fn keys(app: &mut App, s: &str) {
    for c in s.chars() {
        app.update(key(c));
    }
}

/// Renders into a test backend of `w`×`h`.
pub fn draw(app: &mut App, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut t = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
    t.draw(|f| app.render(f)).expect("draw");
    t
}

/// The screen as text lines.
pub fn screen(app: &mut App, w: u16, h: u16) -> String {
    let t = draw(app, w, h);
    let buf = t.backend().buffer();
    let mut out = String::new();
    for y in 0..h {
        for x in 0..w {
            out.push_str(buf[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}
