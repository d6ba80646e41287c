//! Benchmark helper (not a test): fills a ZooKeeper chroot with N realistic node records
//! (every 10th with a lock contender; persistent, so it outlives this process; with
//! `--lock-dirs` every other node gets an empty lock dir) and writes a nodepool.yaml
//! pointing at it, for timing `nodepool list` (see docs/benchmarks.md).
//!
//! With `--scale` the records are the scale benchmarks' fleet instead
//! (`nodepool_shared::testing::scale`, as `launcher_scale` writes it: ~1.9 kB records
//! with three host keys over 20 providers and 40 labels, 90 % `in-use` with a lock
//! contender as Zuul holds them, 10 % `hold` without a lock dir).
//!
//! `cargo run --release -p nodepool-daemon --example fill_zk_nodes -- \
//!     --zk 127.0.0.1:2181 --chroot /bench --count 10000 --config /tmp/bench.yaml`

use std::path::PathBuf;

use clap::Parser;
use futures::stream::{self, StreamExt};
use nodepool_shared::model::{now_epoch, paths, Node, NodeState};
use nodepool_shared::testing::scale::{realistic_node, FleetShape};
use nodepool_shared::zk::{ZkClient, ZkSettings, ZkStore};

#[derive(Parser)]
struct Args {
    /// ZooKeeper `host:port` (plain).
    #[arg(long)]
    zk: String,
    /// Chroot to fill (must not exist yet, or be empty).
    #[arg(long, default_value = "/bench")]
    chroot: String,
    /// Number of nodes.
    #[arg(long, default_value_t = 10_000)]
    count: usize,
    /// Where to write the nodepool.yaml.
    #[arg(long)]
    config: PathBuf,
    /// Give every node an (empty) lock dir, as in a live system where the launcher locked
    /// each node it launched; without it only the nodes with a contender have one.
    #[arg(long)]
    lock_dirs: bool,
    /// The scale benchmarks' fleet (realistic records, 90 % `in-use` and locked, 10 %
    /// `hold`); `--lock-dirs` is then ignored.
    #[arg(long)]
    scale: bool,
}

/// The `i`-th node of the fleet and whether it gets a lock contender (`true`), an empty
/// lock dir (`Some(false)`) or neither (`None`).
fn fleet_node(i: usize, args: &Args, now: f64) -> (Node, Option<bool>) {
    if args.scale {
        let mut n = realistic_node(i, FleetShape::default(), now);
        if i % 10 == 9 {
            n.state = NodeState::Hold;
            return (n, None);
        }
        n.state = NodeState::InUse;
        return (n, Some(true));
    }
    let states = [
        NodeState::Ready,
        NodeState::InUse,
        NodeState::Building,
        NodeState::Used,
    ];
    let mut n = Node::new();
    n.state = states[i % states.len()];
    n.state_time = now - (i as f64) * 7.0;
    n.provider = Some(format!("provider-{}", i % 3));
    n.pool = Some("main".into());
    n.node_type = vec![format!("label-{}", i % 5)];
    n.external_id = Some(uuid::Uuid::new_v4().to_string());
    n.public_ipv4 = Some(format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256));
    n.private_ipv4 = n.public_ipv4.clone();
    n.az = Some("nova".into());
    n.username = Some("zuul".into());
    n.cloud = Some("cloud".into());
    n.region = Some("RegionOne".into());
    n.launcher = Some("launcher-PoolWorker.provider-main-0123456789abcdef".into());
    n.connection_type = Some("ssh".into());
    n.host_keys = vec!["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample".into()];
    let lock = if i.is_multiple_of(10) {
        Some(true)
    } else if args.lock_dirs {
        Some(false)
    } else {
        None
    };
    (n, lock)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let (host, port) = args.zk.rsplit_once(':').ok_or("--zk must be host:port")?;
    let port: u16 = port.parse()?;
    let root = ZkClient::connect(ZkSettings::new(vec![(host.to_string(), port)])).await?;
    root.ensure_path(&args.chroot).await?;
    root.close().await;
    let settings =
        ZkSettings::new(vec![(host.to_string(), port)]).with_chroot(Some(args.chroot.clone()));
    let store = ZkStore::new(ZkClient::connect(settings).await?);
    let now = now_epoch();
    let args = &args;
    let creates = (0..args.count).map(|i| {
        let store = store.clone();
        async move {
            let (mut n, lock) = fleet_node(i, args, now);
            let id = store.create_node(&mut n).await?;
            match lock {
                Some(true) => {
                    // A lock contender, as Zuul's would look (persistent so it outlives us).
                    let path = format!(
                        "{}/{}__lock__0000000000",
                        paths::node_lock(&id),
                        uuid::Uuid::new_v4().simple()
                    );
                    store.client().create_persistent(&path, b"").await?;
                }
                Some(false) => store.client().ensure_path(&paths::node_lock(&id)).await?,
                None => {}
            }
            Ok::<_, nodepool_shared::zk::ZkError>(())
        }
    });
    let results: Vec<_> = stream::iter(creates).buffer_unordered(256).collect().await;
    for r in results {
        r?;
    }
    store.client().close().await;
    std::fs::write(
        &args.config,
        format!(
            "zookeeper-servers:\n  - host: {host}\n    port: {port}\n    chroot: {}\n",
            args.chroot
        ),
    )?;
    println!(
        "{} nodes in {}{}; config {}",
        args.count,
        args.zk,
        args.chroot,
        args.config.display()
    );
    Ok(())
}
