//! What every part of the running builder shares: the ZooKeeper store, the current
//! configuration and cloud drivers (replaced on reload), identity, statsd, the wake-up
//! signal of the scheduler, the shutdown token, and the live activity (running builds
//! and uploads, retry back-offs, counters) that SIGUSR2 reports.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use nodepool_shared::cloud::{provider_driver, CloudDriver, CloudsFile};
use nodepool_shared::config::Config;
use nodepool_shared::stats::Statsd;
use nodepool_shared::sync::{MutexExt, RwLockExt};
use nodepool_shared::zk::ZkStore;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// One provider's cloud access as the builder needs it.
#[derive(Clone)]
pub struct ProviderCloud {
    /// The driver.
    pub driver: Arc<dyn CloudDriver>,
    /// clouds.yaml `image_format` of the provider's cloud (default `qcow2`).
    pub image_format: String,
}

/// Cloud access for every provider of one configuration.
#[derive(Clone, Default)]
pub struct Clouds {
    providers: BTreeMap<String, ProviderCloud>,
}

impl Clouds {
    /// Drivers for every provider in `config`, from clouds.yaml (`clouds_file`, else the
    /// usual search path). A provider whose cloud cannot be set up is logged and left
    /// out (nothing is uploaded there; its format defaults to `qcow2`).
    pub fn from_config(config: &Config, clouds_file: Option<&PathBuf>, statsd: &Statsd) -> Self {
        let mut providers = BTreeMap::new();
        if config.providers.is_empty() {
            return Clouds { providers };
        }
        let file = match clouds_file {
            Some(p) => CloudsFile::load_from(p),
            None => CloudsFile::load(),
        };
        let file = match file {
            Ok(f) => f,
            Err(e) => {
                warn!("cannot read clouds.yaml, no uploads possible: {e}");
                return Clouds { providers };
            }
        };
        for p in &config.providers {
            match provider_driver(p, &file, statsd) {
                Ok(d) => {
                    let image_format = d.image_format().to_string();
                    providers.insert(
                        p.name.clone(),
                        ProviderCloud {
                            driver: Arc::new(d),
                            image_format,
                        },
                    );
                }
                Err(e) => warn!(provider = %p.name, "cannot set up cloud driver: {e}"),
            }
        }
        Clouds { providers }
    }

    /// A provider's cloud access.
    pub fn get(&self, provider: &str) -> Option<&ProviderCloud> {
        self.providers.get(provider)
    }

    /// The upload format of a provider (`qcow2` when unknown).
    pub fn image_format(&self, provider: &str) -> String {
        self.providers
            .get(provider)
            .map(|p| p.image_format.clone())
            .unwrap_or_else(|| "qcow2".to_string())
    }

    /// Clouds built from explicit drivers (tests and embedders).
    pub fn from_map(providers: BTreeMap<String, ProviderCloud>) -> Self {
        Clouds { providers }
    }
}

/// A build this process runs.
#[derive(Clone, Debug)]
pub struct ActiveBuild {
    /// Build id.
    pub build_id: String,
    /// Why it runs.
    pub reason: String,
    /// Start.
    pub started: Instant,
}

/// An upload this process runs.
#[derive(Clone, Debug)]
pub struct ActiveUpload {
    /// Build id.
    pub build_id: String,
    /// Upload id once recorded.
    pub upload_id: Option<String>,
    /// Start.
    pub started: Instant,
}

/// Totals since start.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counters {
    /// Builds that ended `ready`.
    pub builds_ready: u64,
    /// Builds that ended `failed`.
    pub builds_failed: u64,
    /// Uploads that ended `ready`.
    pub uploads_ready: u64,
    /// Uploads that ended `failed`.
    pub uploads_failed: u64,
    /// Cleanup passes run.
    pub cleanup_passes: u64,
    /// Build records removed by cleanup.
    pub builds_deleted: u64,
    /// Upload records removed by cleanup.
    pub uploads_deleted: u64,
    /// Configuration reloads applied.
    pub config_reloads: u64,
}

/// What runs now and what waits for a retry.
#[derive(Debug, Default)]
pub struct Activity {
    /// Running builds by image.
    pub builds: BTreeMap<String, ActiveBuild>,
    /// Running uploads by (image, provider).
    pub uploads: BTreeMap<(String, String), ActiveUpload>,
    /// Image → no new build attempt before this (after a failure).
    pub build_backoff: BTreeMap<String, Instant>,
    /// (image, provider) → no new upload attempt before this (after a failure).
    pub upload_backoff: BTreeMap<(String, String), Instant>,
    /// Totals.
    pub counters: Counters,
}

/// Tunables of a running builder (flags).
#[derive(Clone, Debug)]
pub struct Tunables {
    /// Concurrent builds.
    pub build_workers: usize,
    /// Concurrent uploads.
    pub upload_workers: usize,
    /// Time between cleanup passes.
    pub cleanup_interval: Duration,
    /// Wait after a failed build or upload before trying that image/provider again.
    pub retry_delay: Duration,
    /// Safety-net scheduler pass interval (ZooKeeper watches do the real work).
    pub scan_interval: Duration,
    /// What `%p` in `dib-cmd` stands for.
    pub program_dir: PathBuf,
}

/// The shared state (cheap to clone through `Arc`).
pub struct Ctx {
    /// Typed ZooKeeper access.
    pub store: ZkStore,
    /// Short hostname (component record).
    pub hostname: String,
    /// Fully qualified name (`builder` of build records, gauge names).
    pub fqdn: String,
    /// `builder_id.txt` content.
    pub builder_id: String,
    /// Metrics.
    pub statsd: Statsd,
    /// Flags.
    pub tunables: Tunables,
    /// Wakes the scheduler.
    pub wake: Notify,
    /// Fires on shutdown.
    pub cancel: CancellationToken,
    config: RwLock<Arc<Config>>,
    clouds: RwLock<Arc<Clouds>>,
    activity: Mutex<Activity>,
}

impl Ctx {
    /// A context for a validated configuration.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: ZkStore,
        config: Arc<Config>,
        clouds: Arc<Clouds>,
        hostname: String,
        fqdn: String,
        builder_id: String,
        statsd: Statsd,
        tunables: Tunables,
        cancel: CancellationToken,
    ) -> Self {
        Ctx {
            store,
            hostname,
            fqdn,
            builder_id,
            statsd,
            tunables,
            wake: Notify::new(),
            cancel,
            config: RwLock::new(config),
            clouds: RwLock::new(clouds),
            activity: Mutex::new(Activity::default()),
        }
    }

    /// The current configuration.
    pub fn config(&self) -> Arc<Config> {
        self.config.read_or_recover().clone()
    }

    /// The current cloud drivers.
    pub fn clouds(&self) -> Arc<Clouds> {
        self.clouds.read_or_recover().clone()
    }

    /// Installs a new configuration and its drivers, and wakes the scheduler.
    pub fn replace_config(&self, config: Arc<Config>, clouds: Arc<Clouds>) {
        *self.config.write_or_recover() = config;
        *self.clouds.write_or_recover() = clouds;
        self.with_activity(|a| a.counters.config_reloads += 1);
        self.wake.notify_one();
    }

    /// `images-dir` of the current configuration.
    pub fn images_dir(&self) -> PathBuf {
        self.config()
            .images_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("/opt/nodepool_dib"))
    }

    /// Runs `f` on the activity record.
    pub fn with_activity<T>(&self, f: impl FnOnce(&mut Activity) -> T) -> T {
        f(&mut self.activity.lock_or_recover())
    }

    /// A human-readable report of the activity (SIGUSR2).
    pub fn state_report(&self) -> String {
        use std::fmt::Write;
        let now = Instant::now();
        self.with_activity(|a| {
            let mut s = String::new();
            let _ = writeln!(
                s,
                "nodepool-builder {} (builder id {}): {}/{} build workers busy, {}/{} upload workers busy",
                self.fqdn,
                self.builder_id,
                a.builds.len(),
                self.tunables.build_workers,
                a.uploads.len(),
                self.tunables.upload_workers
            );
            for (image, b) in &a.builds {
                let _ = writeln!(
                    s,
                    "  building {image}-{} for {:.0}s ({})",
                    b.build_id,
                    now.duration_since(b.started).as_secs_f64(),
                    b.reason
                );
            }
            for ((image, provider), u) in &a.uploads {
                let _ = writeln!(
                    s,
                    "  uploading {image}-{} to {provider} (upload {}) for {:.0}s",
                    u.build_id,
                    u.upload_id.as_deref().unwrap_or("-"),
                    now.duration_since(u.started).as_secs_f64()
                );
            }
            for (image, until) in &a.build_backoff {
                if *until > now {
                    let _ = writeln!(
                        s,
                        "  build of {image} retried in {:.0}s",
                        (*until - now).as_secs_f64()
                    );
                }
            }
            for ((image, provider), until) in &a.upload_backoff {
                if *until > now {
                    let _ = writeln!(
                        s,
                        "  upload of {image} to {provider} retried in {:.0}s",
                        (*until - now).as_secs_f64()
                    );
                }
            }
            let c = a.counters;
            let _ = write!(
                s,
                "  totals: builds ready {} failed {}, uploads ready {} failed {}, cleanup passes {}, builds deleted {}, uploads deleted {}, config reloads {}",
                c.builds_ready, c.builds_failed, c.uploads_ready, c.uploads_failed,
                c.cleanup_passes, c.builds_deleted, c.uploads_deleted, c.config_reloads
            );
            s
        })
    }
}
