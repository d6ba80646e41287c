//! What a provider's launches look up in the cloud, cached the way Nodepool's OpenStack
//! adapter caches it (an LRU cache per provider, no expiry): the flavor list, the network
//! list, cloud-image ids by name and the availability zones.
//!
//! The caches live until a launch shows them stale: on Nova's 400 to a server create
//! ("the requested availability zone is not available", an unknown flavor or network)
//! every one of them is forgotten, so the next launch lists again (Nodepool's
//! `test_az_change_recover`); a flavor or image not found forgets them as well.
//!
//! A cloud image found missing (or not `active`) is remembered as missing for
//! `image_recheck` (Nodepool caches its image lookups and clears a miss every 5
//! minutes), so the per-request decline check and min-ready do not ask the cloud every
//! second for an image that is not there.
//!
//! Concurrent launches that find a cache empty wait for one listing instead of each
//! making its own; a listing that finishes after a [`CloudLookups::forget`] is not
//! stored.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nodepool_shared::cloud::{
    choose_flavor, CloudDriver, CloudError, Flavor, FlavorWanted, Network,
};
use nodepool_shared::config::PoolLabel;
use nodepool_shared::sync::MutexExt;

/// How long a missing cloud image is taken as missing by default (Nodepool: 5 min).
pub const IMAGE_RECHECK: Duration = Duration::from_secs(300);

/// How a label picks its flavor (`flavor-name` and/or `min-ram`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlavorSpec {
    /// `flavor-name`: exact name/id without `min-ram`, a name filter with it.
    pub flavor_name: Option<String>,
    /// `min-ram` in MiB.
    pub min_ram: Option<u64>,
}

impl FlavorSpec {
    /// As the shared flavor-choice input.
    pub fn wanted(&self) -> FlavorWanted<'_> {
        FlavorWanted {
            min_ram: self.min_ram,
            flavor_name: self.flavor_name.as_deref(),
        }
    }
}

impl fmt::Display for FlavorSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.flavor_name, self.min_ram) {
            (Some(n), Some(r)) => write!(f, "min-ram {r} and flavor-name `{n}`"),
            (Some(n), None) => write!(f, "flavor-name `{n}`"),
            (None, Some(r)) => write!(f, "min-ram {r}"),
            (None, None) => f.write_str("no flavor-name or min-ram"),
        }
    }
}

/// The flavor wish of a pool label.
pub fn flavor_spec(label: &PoolLabel) -> FlavorSpec {
    FlavorSpec {
        flavor_name: label.flavor_name.clone(),
        min_ram: label.min_ram,
    }
}

/// One cached listing.
struct Cached<T> {
    value: Mutex<Option<Arc<T>>>,
    /// Serialises the fetches (the value lock is never held across one).
    fetch: tokio::sync::Mutex<()>,
}

impl<T> Cached<T> {
    fn new() -> Self {
        Cached {
            value: Mutex::new(None),
            fetch: tokio::sync::Mutex::new(()),
        }
    }

    fn peek(&self) -> Option<Arc<T>> {
        self.value.lock_or_recover().clone()
    }

    fn clear(&self) {
        *self.value.lock_or_recover() = None;
    }

    /// The cached value, else the result of `fetch` (stored unless `generation` moved).
    async fn get_or_fetch<F, Fut>(
        &self,
        generation: &Mutex<u64>,
        fetch: F,
    ) -> Result<Arc<T>, CloudError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, CloudError>>,
    {
        if let Some(v) = self.peek() {
            return Ok(v);
        }
        let _one = self.fetch.lock().await;
        if let Some(v) = self.peek() {
            return Ok(v);
        }
        let started = *generation.lock_or_recover();
        let v = Arc::new(fetch().await?);
        if *generation.lock_or_recover() == started {
            *self.value.lock_or_recover() = Some(v.clone());
        }
        Ok(v)
    }
}

/// The cached cloud lookups of one provider.
pub struct CloudLookups {
    provider: String,
    flavors: Cached<Vec<Flavor>>,
    networks: Cached<Vec<Network>>,
    zones: Cached<Vec<String>>,
    images: Mutex<HashMap<String, String>>,
    /// Image names found missing, and when.
    missing_images: Mutex<HashMap<String, Instant>>,
    image_recheck: Duration,
    /// Bumped by every [`forget`](Self::forget).
    generation: Mutex<u64>,
}

impl CloudLookups {
    /// Empty caches for `provider` (the name is for logs).
    pub fn new(provider: impl Into<String>) -> Self {
        CloudLookups {
            provider: provider.into(),
            flavors: Cached::new(),
            networks: Cached::new(),
            zones: Cached::new(),
            images: Mutex::new(HashMap::new()),
            missing_images: Mutex::new(HashMap::new()),
            image_recheck: IMAGE_RECHECK,
            generation: Mutex::new(0),
        }
    }

    /// Sets how long a missing image is taken as missing (see the module doc).
    pub fn with_image_recheck(mut self, recheck: Duration) -> Self {
        self.image_recheck = recheck;
        self
    }

    /// The flavor list (one list call, then cached).
    pub async fn flavors(&self, cloud: &dyn CloudDriver) -> Result<Arc<Vec<Flavor>>, CloudError> {
        self.flavors
            .get_or_fetch(&self.generation, || cloud.list_flavors())
            .await
    }

    /// The flavor a label asks for, from the cached list.
    pub async fn flavor(
        &self,
        cloud: &dyn CloudDriver,
        spec: &FlavorSpec,
    ) -> Result<Option<Flavor>, CloudError> {
        let flavors = self.flavors(cloud).await?;
        Ok(choose_flavor(&flavors, &spec.wanted()).cloned())
    }

    /// The flavor a label asks for if the list is cached (no cloud call).
    pub fn cached_flavor(&self, spec: &FlavorSpec) -> Option<Flavor> {
        let flavors = self.flavors.peek()?;
        choose_flavor(&flavors, &spec.wanted()).cloned()
    }

    /// The network list (one list call, then cached).
    pub async fn networks(&self, cloud: &dyn CloudDriver) -> Result<Arc<Vec<Network>>, CloudError> {
        self.networks
            .get_or_fetch(&self.generation, || cloud.list_networks())
            .await
    }

    /// The availability zones (one call, then cached).
    pub async fn zones(&self, cloud: &dyn CloudDriver) -> Result<Arc<Vec<String>>, CloudError> {
        self.zones
            .get_or_fetch(&self.generation, || cloud.list_availability_zones())
            .await
    }

    /// The id of the `active` image named (or with id) `name`; `Ok(None)` when the cloud
    /// has none, or had none less than `image_recheck` ago (not asked again before).
    pub async fn image_id(
        &self,
        cloud: &dyn CloudDriver,
        name: &str,
    ) -> Result<Option<String>, CloudError> {
        if let Some(id) = self.images.lock_or_recover().get(name) {
            return Ok(Some(id.clone()));
        }
        if self
            .missing_images
            .lock_or_recover()
            .get(name)
            .is_some_and(|at| at.elapsed() < self.image_recheck)
        {
            return Ok(None);
        }
        let started = *self.generation.lock_or_recover();
        let found = cloud
            .find_image(name)
            .await?
            .filter(|img| img.status.eq_ignore_ascii_case("active"));
        let current = *self.generation.lock_or_recover() == started;
        match found {
            Some(img) => {
                if current {
                    self.missing_images.lock_or_recover().remove(name);
                    self.images
                        .lock_or_recover()
                        .insert(name.to_string(), img.id.clone());
                }
                Ok(Some(img.id))
            }
            None => {
                tracing::warn!(provider = %self.provider, image = %name,
                    "cloud image not found in the cloud; labels using it are not available");
                if current {
                    self.missing_images
                        .lock_or_recover()
                        .insert(name.to_string(), Instant::now());
                }
                Ok(None)
            }
        }
    }

    /// Forgets everything (the next lookups list again).
    pub fn forget(&self) {
        *self.generation.lock_or_recover() += 1;
        self.flavors.clear();
        self.networks.clear();
        self.zones.clear();
        self.images.lock_or_recover().clear();
        self.missing_images.lock_or_recover().clear();
    }

    /// After Nova answered a server create with 400: most likely a stale zone, flavor,
    /// image or network, so forget them all (as Nodepool does).
    pub fn forget_after_bad_request(&self) {
        tracing::info!(provider = %self.provider,
            "clearing availability zone, flavor, image and network caches after a 400 from Nova");
        self.forget();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flavor_spec_display() {
        let f = FlavorSpec {
            flavor_name: Some("m1".into()),
            min_ram: None,
        };
        assert_eq!(f.to_string(), "flavor-name `m1`");
        assert_eq!(f.wanted().flavor_name, Some("m1"));
    }
}
