//! What the configuration promises, in the few numbers the inspections and the console
//! compare the cached state with: `min-ready` per label, `max-servers` and the timeouts
//! per provider and pool, `rebuild-age` per diskimage. Empty (and `loaded` false) when
//! no configuration was given: the checks then say only what ZooKeeper alone tells.

use std::time::Duration;

use crate::config::Config;

/// A diskimage of the config.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageFacts {
    /// Name.
    pub name: String,
    /// `rebuild-age`.
    pub rebuild_age: Duration,
    /// `build-timeout`.
    pub build_timeout: Duration,
    /// `pause: true` in the config (no builds at all).
    pub paused: bool,
}

/// A pool of a provider.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolFacts {
    /// Name.
    pub name: String,
    /// `max-servers` (`None`: unlimited).
    pub max_servers: Option<i64>,
    /// Labels it serves, with the diskimage each boots (`None`: a cloud image).
    pub labels: Vec<(String, Option<String>)>,
}

/// A provider of the config.
#[derive(Clone, Debug, PartialEq)]
pub struct ProviderFacts {
    /// Name.
    pub name: String,
    /// The clouds.yaml cloud.
    pub cloud: String,
    /// `region-name`.
    pub region_name: Option<String>,
    /// `rate` (seconds between API calls).
    pub rate: Duration,
    /// `launch-timeout`.
    pub launch_timeout: Duration,
    /// `boot-timeout`.
    pub boot_timeout: Duration,
    /// `launch-retries`.
    pub launch_retries: u32,
    /// `image-upload-timeout`.
    pub image_upload_timeout: Duration,
    /// Its pools.
    pub pools: Vec<PoolFacts>,
}

impl ProviderFacts {
    /// Sum of the pools' `max-servers`; `None` when any pool is unlimited (or none).
    pub fn max_servers(&self) -> Option<i64> {
        if self.pools.is_empty() {
            return None;
        }
        self.pools.iter().map(|p| p.max_servers).sum()
    }

    /// The longest one launch attempt may take (`launch-timeout` + `boot-timeout`).
    pub fn attempt_limit(&self) -> Duration {
        self.launch_timeout + self.boot_timeout
    }
}

/// Facts from `nodepool.yaml` (empty without one).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConfigFacts {
    /// Whether a configuration was given at all.
    pub loaded: bool,
    /// Top-level labels and their `min-ready`.
    pub labels: Vec<(String, u32)>,
    /// The (concrete) diskimages.
    pub diskimages: Vec<ImageFacts>,
    /// The providers.
    pub providers: Vec<ProviderFacts>,
}

impl ConfigFacts {
    /// Takes what the inspections and the console need from a loaded config.
    pub fn from_config(c: &Config) -> ConfigFacts {
        ConfigFacts {
            loaded: true,
            labels: c
                .labels
                .iter()
                .map(|l| (l.name.clone(), l.min_ready))
                .collect(),
            diskimages: c
                .diskimages
                .iter()
                .map(|d| ImageFacts {
                    name: d.name.clone(),
                    rebuild_age: d.rebuild_age,
                    build_timeout: d.build_timeout,
                    paused: d.pause,
                })
                .collect(),
            providers: c
                .providers
                .iter()
                .map(|p| ProviderFacts {
                    name: p.name.clone(),
                    cloud: p.cloud.clone(),
                    region_name: p.region_name.clone(),
                    rate: p.rate,
                    launch_timeout: p.launch_timeout,
                    boot_timeout: p.boot_timeout,
                    launch_retries: p.launch_retries,
                    image_upload_timeout: p.image_upload_timeout,
                    pools: p
                        .pools
                        .iter()
                        .map(|pool| PoolFacts {
                            name: pool.name.clone(),
                            max_servers: pool.max_servers,
                            labels: pool
                                .labels
                                .iter()
                                .map(|l| (l.name.clone(), l.diskimage().map(str::to_string)))
                                .collect(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    /// `min-ready` of a label, if the config names it.
    pub fn min_ready(&self, label: &str) -> Option<u32> {
        self.labels
            .iter()
            .find(|(n, _)| n == label)
            .map(|(_, m)| *m)
    }

    /// The diskimage named `name`.
    pub fn diskimage(&self, name: &str) -> Option<&ImageFacts> {
        self.diskimages.iter().find(|d| d.name == name)
    }

    /// The provider named `name`.
    pub fn provider(&self, name: &str) -> Option<&ProviderFacts> {
        self.providers.iter().find(|p| p.name == name)
    }
}
