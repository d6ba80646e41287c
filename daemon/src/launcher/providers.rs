//! A started provider as the request handlers see it: the shared [`ProviderRuntime`]
//! (driver, provider quota cache) plus what launching needs on top — the cloud lookups
//! (flavors, networks, cloud images, availability zones; [`CloudLookups`], cached as
//! Nodepool's adapter does until a launch shows them stale), the per-provider launch gate
//! that makes "check quota, then create the node" atomic within this launcher, and the
//! count of active launches (`max-concurrency`).
//!
//! A cloud image found missing is remembered as missing for `image_recheck` (Nodepool
//! caches its image lookups and clears a miss every 5 minutes), so the per-request
//! decline check and min-ready do not ask the cloud every second for an image that is
//! not there; images are looked up with their status, and only an `active` one counts.
//!
//! [`ProviderHandles`] is the registry of started providers the main loop maintains and
//! the pool workers and handlers read (a provider restarted after a config change gets
//! a new handle; the pool workers pick it up on their next pass).
//!
//! Quota usage is the sum of the `resources` of every node of the provider in the
//! tree cache, plus nodes this launcher created that the cache has not shown yet
//! ("claims"), so a burst of handlers cannot overshoot between a write and its watch event.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use nodepool_shared::cloud::Flavor;
use nodepool_shared::config::{CloudImageRef, Pool, PoolLabel};
use nodepool_shared::model::{NodeId, QuotaInformation};

use super::failure::LaunchError;
use super::lookups::{flavor_spec, CloudLookups};
use super::quota::{fits, would_ever_fit, PoolLimits, QuotaError};
use super::runtime::{LauncherContext, ProviderRuntime};
use nodepool_shared::sync::{MutexExt, RwLockExt};

/// Pool limits of a pool config (`None` = unlimited; negative counts as 0).
pub fn pool_limits(pool: &Pool) -> PoolLimits {
    let u = |v: Option<i64>| v.map(|v| v.max(0) as u64);
    PoolLimits {
        max_servers: u(pool.max_servers),
        max_cores: u(pool.max_cores),
        max_ram: u(pool.max_ram),
        max_volumes: u(pool.max_volumes),
        max_volume_gb: u(pool.max_volume_gb),
    }
}

/// The started providers by name, shared by the main loop (which installs, replaces
/// and removes them) and the pool workers and handlers (which look them up).
#[derive(Default)]
pub struct ProviderHandles(RwLock<HashMap<String, Arc<ProviderHandle>>>);

impl ProviderHandles {
    /// The started provider `name`.
    pub fn get(&self, name: &str) -> Option<Arc<ProviderHandle>> {
        self.0.read_or_recover().get(name).cloned()
    }

    /// Names of the started providers.
    pub fn names(&self) -> Vec<String> {
        self.0.read_or_recover().keys().cloned().collect()
    }

    /// Installs (or replaces) the provider `name`.
    pub fn insert(&self, name: &str, handle: Arc<ProviderHandle>) {
        self.0.write_or_recover().insert(name.to_string(), handle);
    }

    /// Removes the provider `name`.
    pub fn remove(&self, name: &str) {
        self.0.write_or_recover().remove(name);
    }
}

/// One started provider with the launch-side caches.
pub struct ProviderHandle {
    /// The shared runtime (also used by the housekeeping tasks).
    pub runtime: Arc<ProviderRuntime>,
    /// Flavors, networks, cloud images and zones as last listed.
    pub lookups: Arc<CloudLookups>,
    claims: Mutex<HashMap<NodeId, QuotaInformation>>,
    /// Held while checking quota and creating a node znode.
    pub launch_gate: tokio::sync::Mutex<()>,
    active_launches: AtomicUsize,
}

impl ProviderHandle {
    /// Wraps a started runtime.
    pub fn new(runtime: Arc<ProviderRuntime>) -> Self {
        ProviderHandle {
            lookups: Arc::new(CloudLookups::new(runtime.name())),
            runtime,
            claims: Mutex::new(HashMap::new()),
            launch_gate: tokio::sync::Mutex::new(()),
            active_launches: AtomicUsize::new(0),
        }
    }

    /// Sets how long a missing cloud image is taken as missing (see the module doc).
    pub fn with_image_recheck(mut self, recheck: Duration) -> Self {
        self.lookups = Arc::new(CloudLookups::new(self.name()).with_image_recheck(recheck));
        self
    }

    /// The provider name.
    pub fn name(&self) -> &str {
        self.runtime.name()
    }

    /// The flavor of a pool label (from the cached flavor list).
    pub async fn flavor(&self, label: &PoolLabel) -> Result<Flavor, QuotaError> {
        let spec = flavor_spec(label);
        self.lookups
            .flavor(self.runtime.driver.as_ref(), &spec)
            .await
            .map_err(|source| QuotaError::Cloud {
                provider: self.name().to_string(),
                during: "find flavor",
                source,
            })?
            .ok_or_else(|| QuotaError::FlavorNotFound {
                label: label.name.clone(),
                wanted: spec.to_string(),
            })
    }

    /// The quota one node of `label` takes.
    pub async fn label_need(&self, label: &PoolLabel) -> Result<QuotaInformation, QuotaError> {
        let f = self.flavor(label).await?;
        Ok(f.quota(label.boot_from_volume.then_some(label.volume_size)))
    }

    /// The cloud id of a cloud image (`image-id` as is, taken on trust; `image-name`
    /// looked up once, then cached). `Ok(None)` when the cloud has no `active` image of
    /// that name, or had none less than `image_recheck` ago (not asked again before).
    pub async fn cloud_image_id(&self, name: &str) -> Result<Option<String>, LaunchError> {
        let Some(ci) = self.runtime.config.cloud_image(name) else {
            return Ok(None);
        };
        match &ci.image {
            CloudImageRef::Id(id) => Ok(Some(id.clone())),
            CloudImageRef::Name(n) => self
                .lookups
                .image_id(self.runtime.driver.as_ref(), n)
                .await
                .map_err(|e| LaunchError::cloud("find image", e, None)),
        }
    }

    /// The cloud's availability zones (listed once, then cached until a launch shows
    /// them stale; a failed listing is logged, not cached, and gives none: the cloud
    /// then picks).
    pub async fn availability_zones(&self) -> Vec<String> {
        match self.lookups.zones(self.runtime.driver.as_ref()).await {
            Ok(z) => z.as_ref().clone(),
            Err(e) => {
                tracing::warn!(provider = %self.name(), error = %e,
                    "cannot list availability zones");
                Vec::new()
            }
        }
    }

    /// Forgets the cloud lookups (after a launch failed on them).
    pub fn forget_lookups(&self) {
        self.lookups.forget();
    }

    /// Records a node this launcher just created (counted until the cache shows it).
    pub fn claim(&self, id: NodeId, need: QuotaInformation) {
        self.claims.lock_or_recover().insert(id, need);
    }

    /// Drops a claim (the node's handler is done with it).
    pub fn release_claim(&self, id: &NodeId) {
        self.claims.lock_or_recover().remove(id);
    }

    /// Launches running now (for `max-concurrency`).
    pub fn active_launches(&self) -> usize {
        self.active_launches.load(Ordering::Relaxed)
    }

    /// Counts a launch as running until the guard is dropped.
    pub fn launch_started(self: &Arc<Self>) -> LaunchGuard {
        self.active_launches.fetch_add(1, Ordering::Relaxed);
        LaunchGuard(self.clone())
    }

    /// Current usage of the provider and of `pool`: resources of all nodes (any state)
    /// in the cache plus claims not yet cached. The cache keeps the sum of the nodes
    /// with standard `resources` per provider and pool; only the few others (no
    /// `resources` yet) are looked at one by one, in id order.
    pub fn usage(&self, ctx: &LauncherContext, pool: &str) -> (QuotaInformation, QuotaInformation) {
        let mut provider = QuotaInformation::usage();
        let mut in_pool = QuotaInformation::usage();
        let claims = self.claims.lock_or_recover().clone();
        let seen = ctx.cache.provider_usage(self.name(), pool, claims.keys());
        for n in &seen.other {
            let node = &n.node;
            let q = node
                .resources_quota()
                .or_else(|| claims.get(node.id()).cloned())
                .or_else(|| {
                    node.first_label()
                        .and_then(|l| self.runtime.label_needs.get(l))
                })
                .or_else(|| {
                    let l = node.first_label()?;
                    let pool = self
                        .runtime
                        .config
                        .pools
                        .iter()
                        .find(|p| Some(p.name.as_str()) == node.pool())?;
                    let label = pool.labels.iter().find(|pl| pl.name == l)?;
                    let f = self.lookups.cached_flavor(&flavor_spec(label))?;
                    Some(f.quota(None))
                });
            if let Some(q) = q {
                provider.add(&q);
                if node.pool() == Some(pool) {
                    in_pool.add(&q);
                }
            }
        }
        // Summed as integers by the cache; added once, as they were when this summed
        // a scan (exact: the sums stay far below 2^53).
        for (usage, (count, [c, n, r])) in [
            (&mut provider, seen.provider_standard),
            (&mut in_pool, seen.pool_standard),
        ] {
            if count > 0 {
                usage.add(&QuotaInformation::new(
                    Some(c as f64),
                    Some(n as f64),
                    Some(r as f64),
                    0.0,
                ));
            }
        }
        for (id, q) in claims {
            if !seen.cached.contains(&id) {
                provider.add(&q);
                in_pool.add(&q); // claims are made per pool; conservative for others
            }
        }
        (provider, in_pool)
    }

    /// The provider limit (unlimited with `ignore-provider-quota`).
    pub async fn provider_limit(
        &self,
        ctx: &LauncherContext,
        pool: &Pool,
    ) -> Result<QuotaInformation, QuotaError> {
        if pool.ignore_provider_quota {
            return Ok(QuotaInformation::unlimited());
        }
        // The node ids (a scan of the whole cache) are needed only to refresh the limit.
        if let Some(limit) = self.runtime.quota.fresh() {
            return Ok(limit);
        }
        let known = ctx.known_nodes(self.name());
        self.runtime
            .quota
            .limit(self.runtime.driver.as_ref(), &known)
            .await
    }

    /// Whether one more node with `need` fits now (provider limit and pool limits minus
    /// current usage).
    pub async fn has_quota_for(
        &self,
        ctx: &LauncherContext,
        pool: &Pool,
        need: &QuotaInformation,
    ) -> Result<bool, QuotaError> {
        let limit = self.provider_limit(ctx, pool).await?;
        let (used, pool_used) = self.usage(ctx, &pool.name);
        Ok(fits(
            &limit,
            &used,
            &pool_limits(pool).to_quota(),
            &pool_used,
            need,
        ))
    }

    /// Whether the whole request could ever fit (the same limits without current
    /// usage; a request that never fits is declined).
    pub async fn could_ever_fit(
        &self,
        ctx: &LauncherContext,
        pool: &Pool,
        labels: &[&PoolLabel],
    ) -> Result<bool, QuotaError> {
        let mut needs = Vec::with_capacity(labels.len());
        for l in labels {
            needs.push(self.label_need(l).await?);
        }
        let limit = self.provider_limit(ctx, pool).await?;
        Ok(would_ever_fit(
            &limit,
            &pool_limits(pool).to_quota(),
            &needs,
        ))
    }
}

/// Decrements the active launch count on drop.
pub struct LaunchGuard(Arc<ProviderHandle>);

impl Drop for LaunchGuard {
    fn drop(&mut self) {
        self.0.active_launches.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_of_pool() {
        let pool = Pool {
            name: "p".into(),
            max_servers: Some(-3),
            max_cores: Some(8),
            max_ram: None,
            max_volumes: None,
            max_volume_gb: None,
            ignore_provider_quota: false,
            availability_zones: vec![],
            networks: vec![],
            security_groups: vec![],
            auto_floating_ip: true,
            host_key_checking: true,
            node_attributes: Default::default(),
            priority: 100,
            labels: vec![],
        };
        let l = pool_limits(&pool);
        assert_eq!(l.max_servers, Some(0));
        assert_eq!(l.max_cores, Some(8));
        assert_eq!(l.max_ram, None);
    }
}
