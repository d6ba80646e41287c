//! A started provider as the request handlers see it: the shared [`ProviderRuntime`]
//! (driver, provider quota cache) plus what launching needs on top — resolved flavors
//! and cloud images (cached like openstacksdk does, until a launch fails on them), the
//! per-provider launch gate that makes "check quota, then create the node" atomic within
//! this launcher, and the count of active launches (`max-concurrency`).
//!
//! Quota usage is the sum of the `resources` of every node of the provider in the
//! tree cache, plus nodes this launcher created that the cache has not shown yet
//! ("claims"), so a burst of handlers cannot overshoot between a write and its watch event.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use nodepool_shared::cloud::Flavor;
use nodepool_shared::config::{CloudImageRef, Pool, PoolLabel};
use nodepool_shared::model::{NodeId, QuotaInformation};

use super::failure::LaunchError;
use super::launch::FlavorSpec;
use super::quota::{fits, would_ever_fit, PoolLimits, QuotaError};
use super::runtime::{LauncherContext, ProviderRuntime};
use nodepool_shared::sync::MutexExt;

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

/// The flavor wish of a pool label.
pub fn flavor_spec(label: &PoolLabel) -> FlavorSpec {
    FlavorSpec {
        flavor_name: label.flavor_name.clone(),
        min_ram: label.min_ram,
    }
}

/// One started provider with the launch-side caches.
pub struct ProviderHandle {
    /// The shared runtime (also used by the housekeeping tasks).
    pub runtime: Arc<ProviderRuntime>,
    flavors: Mutex<HashMap<String, Flavor>>,
    cloud_images: Mutex<HashMap<String, String>>,
    zones: Mutex<Option<Vec<String>>>,
    claims: Mutex<HashMap<NodeId, QuotaInformation>>,
    /// Held while checking quota and creating a node znode.
    pub launch_gate: tokio::sync::Mutex<()>,
    active_launches: AtomicUsize,
}

impl ProviderHandle {
    /// Wraps a started runtime.
    pub fn new(runtime: Arc<ProviderRuntime>) -> Self {
        ProviderHandle {
            runtime,
            flavors: Mutex::new(HashMap::new()),
            cloud_images: Mutex::new(HashMap::new()),
            zones: Mutex::new(None),
            claims: Mutex::new(HashMap::new()),
            launch_gate: tokio::sync::Mutex::new(()),
            active_launches: AtomicUsize::new(0),
        }
    }

    /// The provider name.
    pub fn name(&self) -> &str {
        self.runtime.name()
    }

    /// The flavor of a pool label (one flavor list on first use, then cached).
    pub async fn flavor(&self, label: &PoolLabel) -> Result<Flavor, QuotaError> {
        if let Some(f) = self.flavors.lock_or_recover().get(&label.name) {
            return Ok(f.clone());
        }
        let spec = flavor_spec(label);
        let f = self
            .runtime
            .driver
            .find_flavor(spec.wanted())
            .await
            .map_err(|source| QuotaError::Cloud {
                provider: self.name().to_string(),
                during: "find flavor",
                source,
            })?
            .ok_or_else(|| QuotaError::FlavorNotFound {
                label: label.name.clone(),
                wanted: spec.to_string(),
            })?;
        self.flavors
            .lock_or_recover()
            .insert(label.name.clone(), f.clone());
        Ok(f)
    }

    /// The quota one node of `label` takes.
    pub async fn label_need(&self, label: &PoolLabel) -> Result<QuotaInformation, QuotaError> {
        let f = self.flavor(label).await?;
        Ok(f.quota(label.boot_from_volume.then_some(label.volume_size)))
    }

    /// The cloud id of a cloud image (`image-id` as is; `image-name` looked up once).
    /// `Ok(None)` when the cloud does not have it.
    pub async fn cloud_image_id(&self, name: &str) -> Result<Option<String>, LaunchError> {
        let Some(ci) = self.runtime.config.cloud_image(name) else {
            return Ok(None);
        };
        let wanted = match &ci.image {
            CloudImageRef::Id(id) => return Ok(Some(id.clone())),
            CloudImageRef::Name(n) => n.clone(),
        };
        if let Some(id) = self.cloud_images.lock_or_recover().get(&wanted) {
            return Ok(Some(id.clone()));
        }
        let found = self
            .runtime
            .driver
            .find_image(&wanted)
            .await
            .map_err(|e| LaunchError::cloud("find image", e, None))?;
        Ok(found.map(|img| {
            self.cloud_images
                .lock_or_recover()
                .insert(wanted, img.id.clone());
            img.id
        }))
    }

    /// The cloud's availability zones (listed once, then cached; a failed listing is
    /// logged, not cached, and gives none: the cloud then picks).
    pub async fn availability_zones(&self) -> Vec<String> {
        if let Some(z) = self.zones.lock_or_recover().as_ref() {
            return z.clone();
        }
        match self.runtime.driver.list_availability_zones().await {
            Ok(z) => {
                *self.zones.lock_or_recover() = Some(z.clone());
                z
            }
            Err(e) => {
                tracing::warn!(provider = %self.name(), error = %e,
                    "cannot list availability zones");
                Vec::new()
            }
        }
    }

    /// Forgets resolved flavors, images and zones (after a launch failed on them).
    pub fn forget_lookups(&self) {
        self.flavors.lock_or_recover().clear();
        self.cloud_images.lock_or_recover().clear();
        *self.zones.lock_or_recover() = None;
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
    /// in the cache plus claims not yet cached.
    pub fn usage(&self, ctx: &LauncherContext, pool: &str) -> (QuotaInformation, QuotaInformation) {
        let mut provider = QuotaInformation::usage();
        let mut in_pool = QuotaInformation::usage();
        let claims = self.claims.lock_or_recover().clone();
        let mut seen = std::collections::HashSet::new();
        for n in ctx.cache.nodes() {
            let node = &n.node;
            if node.provider.as_deref() != Some(self.name()) {
                continue;
            }
            seen.insert(node.id.clone());
            let q = node
                .resources_quota()
                .or_else(|| claims.get(&node.id).cloned())
                .or_else(|| {
                    node.node_type
                        .first()
                        .and_then(|l| self.runtime.label_needs.get(l))
                })
                .or_else(|| {
                    let l = node.node_type.first()?;
                    let f = self.flavors.lock_or_recover().get(l).cloned()?;
                    Some(f.quota(None))
                });
            if let Some(q) = q {
                provider.add(&q);
                if node.pool.as_deref() == Some(pool) {
                    in_pool.add(&q);
                }
            }
        }
        for (id, q) in claims {
            if !seen.contains(&id) {
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
        let known = ctx.known_node_ids(self.name());
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
