//! The quota model (docs/launcher.md).
//!
//! * [`ProviderQuota`]: the provider limit = cloud compute (+ volume) limits minus the
//!   usage of **unmanaged** servers (metadata not naming this provider, or naming a node
//!   id that is not known): their flavors' instances, cores and RAM plus the Cinder
//!   volumes attached to them (count and GB), cached for [`PROVIDER_QUOTA_TTL`]; on an
//!   API error a stale value is reused.
//! * [`LabelNeedCache`]: what one node of a label takes (flavor vcpus/RAM, 1 instance,
//!   plus a volume when booting from one), cached per label.
//! * [`fits`] and [`would_ever_fit`]: the launch check and the decline check.
//! * [`PoolLimits`] and [`usage_of`]: pool limits and node usage as quota.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use nodepool_shared::cloud::{CloudDriver, CloudError, Flavor, Server, Volume};
use nodepool_shared::model::quota::{CORES, INSTANCES, RAM, VOLUMES, VOLUME_GB};
use nodepool_shared::model::{Node, QuotaInformation};
use tokio::time::Instant;

use super::lookups::FlavorSpec;
use super::metadata::{NODE_ID, PROVIDER_NAME};
use nodepool_shared::sync::MutexExt;

/// How long a provider limit is reused (Nodepool: 5 minutes).
pub const PROVIDER_QUOTA_TTL: Duration = Duration::from_secs(300);

/// Why a quota could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    /// A cloud call failed and nothing was cached.
    #[error("provider {provider}: {during}: {source}")]
    Cloud {
        provider: String,
        during: &'static str,
        #[source]
        source: CloudError,
    },
    /// The label's flavor does not exist.
    #[error("label {label}: no flavor matches {wanted}")]
    FlavorNotFound { label: String, wanted: String },
}

struct Cached {
    at: Instant,
    limit: QuotaInformation,
}

/// The provider limit with its TTL cache (share it per provider; methods take `&self`).
pub struct ProviderQuota {
    provider: String,
    ttl: Duration,
    cached: Mutex<Option<Cached>>,
}

impl ProviderQuota {
    /// A cache for `provider` with Nodepool's 5-minute TTL.
    pub fn new(provider: impl Into<String>) -> Self {
        Self::with_ttl(provider, PROVIDER_QUOTA_TTL)
    }

    pub fn with_ttl(provider: impl Into<String>, ttl: Duration) -> Self {
        ProviderQuota {
            provider: provider.into(),
            ttl,
            cached: Mutex::new(None),
        }
    }

    /// Drops the cached value (after a quota failure from the cloud).
    pub fn invalidate(&self) {
        *self.lock() = None;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Cached>> {
        self.cached.lock_or_recover()
    }

    /// The cached limit if it is still fresh (no cloud call, no list of node ids needed).
    pub fn fresh(&self) -> Option<QuotaInformation> {
        self.lock()
            .as_ref()
            .filter(|c| c.at.elapsed() < self.ttl)
            .map(|c| c.limit.clone())
    }

    /// The provider limit, from the cache if fresh. On a cloud error the stale value is
    /// returned if there is one.
    pub async fn limit(
        &self,
        cloud: &dyn CloudDriver,
        known_node_ids: &dyn KnownNodes,
    ) -> Result<QuotaInformation, QuotaError> {
        if let Some(c) = self.lock().as_ref() {
            if c.at.elapsed() < self.ttl {
                return Ok(c.limit.clone());
            }
        }
        match self.compute(cloud, known_node_ids).await {
            Ok(limit) => {
                *self.lock() = Some(Cached {
                    at: Instant::now(),
                    limit: limit.clone(),
                });
                Ok(limit)
            }
            Err(e) => match self.lock().as_ref() {
                Some(c) => {
                    tracing::warn!(provider = %self.provider, error = %e, "reusing stale provider quota");
                    Ok(c.limit.clone())
                }
                None => Err(e),
            },
        }
    }

    /// Cloud limits minus unmanaged usage, uncached.
    pub async fn compute(
        &self,
        cloud: &dyn CloudDriver,
        known_node_ids: &dyn KnownNodes,
    ) -> Result<QuotaInformation, QuotaError> {
        let err = |during, source| QuotaError::Cloud {
            provider: self.provider.clone(),
            during,
            source,
        };
        let compute = cloud
            .compute_limits()
            .await
            .map_err(|e| err("compute limits", e))?;
        let volume = match cloud.volume_limits().await {
            Ok(v) => v,
            Err(CloudError::EndpointNotFound { .. }) => None,
            Err(e) => return Err(err("volume limits", e)),
        };
        let mut limit = compute.to_quota(volume.as_ref());
        let servers = cloud
            .list_servers()
            .await
            .map_err(|e| err("list servers", e))?;
        let unmanaged: Vec<&Server> = servers
            .iter()
            .filter(|s| is_unmanaged(s, &self.provider, known_node_ids))
            .collect();
        // Servers from before microversion 2.47 carry only a flavor id.
        let needs_flavors = unmanaged.iter().any(|s| {
            s.flavor
                .as_ref()
                .is_none_or(|f| f.vcpus.is_none() || f.ram.is_none())
        });
        let flavors = if needs_flavors {
            cloud
                .list_flavors()
                .await
                .map_err(|e| err("list flavors", e))?
        } else {
            Vec::new()
        };
        // Only listed when some unmanaged server has volumes attached.
        let volumes = if unmanaged.iter().any(|s| !s.volumes_attached.is_empty()) {
            cloud
                .list_volumes()
                .await
                .map_err(|e| err("list volumes", e))?
        } else {
            Vec::new()
        };
        let volumes: HashMap<&str, &Volume> = volumes.iter().map(|v| (v.id.as_str(), v)).collect();
        let mut used = QuotaInformation::usage();
        for s in unmanaged {
            used.add(&server_quota(s, &flavors, &volumes));
        }
        limit.subtract(&used);
        Ok(limit)
    }
}

/// Whether ZooKeeper has a node of the provider being checked with a given id: how the
/// quota and leak checks tell our servers from others. The launcher asks its tree cache
/// (one lookup per listed server, not a set built by a scan of every node); a set of ids
/// answers too (tests, tools).
pub trait KnownNodes: Sync {
    /// Whether a node `node_id` of the provider exists.
    fn knows(&self, node_id: &str) -> bool;
}

impl KnownNodes for HashSet<String> {
    fn knows(&self, node_id: &str) -> bool {
        self.contains(node_id)
    }
}

/// True when `server` does not belong to a node this provider knows: its metadata names
/// another (or no) provider, or a node id that is not known. Deleted servers count as
/// nothing.
pub fn is_unmanaged(server: &Server, provider: &str, known_node_ids: &dyn KnownNodes) -> bool {
    if server.status.eq_ignore_ascii_case("DELETED") {
        return false;
    }
    if server.metadata.get(PROVIDER_NAME).map(String::as_str) != Some(provider) {
        return true;
    }
    match server.metadata.get(NODE_ID) {
        Some(id) => !known_node_ids.knows(id),
        None => true,
    }
}

/// One server's usage (Python's `quota_from_flavor` for a listed instance): 1 instance
/// plus its flavor's cores and RAM (embedded flavor, else looked up by id in `flavors`;
/// unknown → instance only), plus the number and total size of its attached volumes
/// that `volumes` (the cloud's volumes by id) knows.
pub fn server_quota(
    server: &Server,
    flavors: &[Flavor],
    volumes: &HashMap<&str, &Volume>,
) -> QuotaInformation {
    let mut q = QuotaInformation::usage();
    q.set(INSTANCES, 1.0);
    let embedded = server.flavor.as_ref();
    let listed = embedded
        .and_then(|f| f.id.as_deref().or(f.original_name.as_deref()))
        .and_then(|id| flavors.iter().find(|f| f.id == id || f.name == id));
    let cores = embedded
        .and_then(|f| f.vcpus)
        .or_else(|| listed.and_then(|f| f.vcpus));
    let ram = embedded
        .and_then(|f| f.ram)
        .or_else(|| listed.and_then(|f| f.ram));
    q.set(CORES, cores.unwrap_or(0) as f64);
    q.set(RAM, ram.unwrap_or(0) as f64);
    let attached: Vec<&Volume> = server
        .volumes_attached
        .iter()
        .filter_map(|a| volumes.get(a.id.as_str()).copied())
        .collect();
    if !attached.is_empty() {
        q.set(VOLUMES, attached.len() as f64);
        let gb: u64 = attached.iter().map(|v| v.size.unwrap_or(0)).sum();
        q.set(VOLUME_GB, gb as f64);
    }
    q
}

/// Label needs, cached per label name (flavors do not change under a running launcher;
/// [`LabelNeedCache::clear`] after a config change).
#[derive(Default)]
pub struct LabelNeedCache {
    needs: Mutex<BTreeMap<String, QuotaInformation>>,
}

impl LabelNeedCache {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, QuotaInformation>> {
        self.needs.lock_or_recover()
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    /// The cached need of `label`, if computed before.
    pub fn get(&self, label: &str) -> Option<QuotaInformation> {
        self.lock().get(label).cloned()
    }

    /// The need of one node of `label`: flavor vcpus and RAM, 1 instance, plus 1 volume
    /// of `boot_from_volume_gb` GB when booting from a volume.
    pub async fn need(
        &self,
        cloud: &dyn CloudDriver,
        label: &str,
        flavor: &FlavorSpec,
        boot_from_volume_gb: Option<u64>,
    ) -> Result<QuotaInformation, QuotaError> {
        if let Some(q) = self.get(label) {
            return Ok(q);
        }
        let f = cloud
            .find_flavor(flavor.wanted())
            .await
            .map_err(|source| QuotaError::Cloud {
                provider: cloud.provider().to_string(),
                during: "find flavor",
                source,
            })?
            .ok_or_else(|| QuotaError::FlavorNotFound {
                label: label.to_string(),
                wanted: flavor.to_string(),
            })?;
        let q = f.quota(boot_from_volume_gb);
        self.lock().insert(label.to_string(), q.clone());
        Ok(q)
    }
}

/// Pool limits (`max-servers`, `max-cores`, `max-ram`, `max-volumes`, `max-volume-gb`;
/// unset = unlimited).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolLimits {
    pub max_servers: Option<u64>,
    pub max_cores: Option<u64>,
    pub max_ram: Option<u64>,
    pub max_volumes: Option<u64>,
    pub max_volume_gb: Option<u64>,
}

impl PoolLimits {
    /// As limits (unset keys are +∞).
    pub fn to_quota(&self) -> QuotaInformation {
        let mut q = QuotaInformation::unlimited();
        for (k, v) in [
            (INSTANCES, self.max_servers),
            (CORES, self.max_cores),
            (RAM, self.max_ram),
            (VOLUMES, self.max_volumes),
            (VOLUME_GB, self.max_volume_gb),
        ] {
            if let Some(v) = v {
                q.set(k, v as f64);
            }
        }
        q
    }
}

/// Usage of `nodes` (all states): each node's `resources`, or `fallback(node)` when it
/// has none (Nodepool uses the label need). Filter the nodes by provider (and pool) first.
pub fn usage_of<'a>(
    nodes: impl IntoIterator<Item = &'a Node>,
    mut fallback: impl FnMut(&Node) -> Option<QuotaInformation>,
) -> QuotaInformation {
    let mut used = QuotaInformation::usage();
    for n in nodes {
        if let Some(q) = n.resources_quota().or_else(|| fallback(n)) {
            used.add(&q);
        }
    }
    used
}

/// The launch check: `provider_limit − nodepool_usage − need ≥ 0` and
/// `pool_limits − pool_usage − need ≥ 0`. With `ignore-provider-quota`, pass
/// [`QuotaInformation::unlimited`] as `provider_limit`.
pub fn fits(
    provider_limit: &QuotaInformation,
    nodepool_usage: &QuotaInformation,
    pool_limits: &QuotaInformation,
    pool_usage: &QuotaInformation,
    need: &QuotaInformation,
) -> bool {
    let mut room = provider_limit.clone();
    room.subtract(nodepool_usage);
    if !room.fits(need) {
        return false;
    }
    let mut pool_room = pool_limits.clone();
    pool_room.subtract(pool_usage);
    pool_room.fits(need)
}

/// The decline check ("would exceed quota"): could the whole request (the needs of all
/// its labels this pool serves) ever fit, ignoring current usage?
pub fn would_ever_fit(
    provider_limit: &QuotaInformation,
    pool_limits: &QuotaInformation,
    needs: &[QuotaInformation],
) -> bool {
    let mut total = QuotaInformation::usage();
    for n in needs {
        total.add(n);
    }
    provider_limit.fits(&total) && pool_limits.fits(&total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nodepool_shared::cloud::types::ServerFlavor;
    use nodepool_shared::cloud::AttachedVolume;
    use serde_json::json;

    fn need(cores: f64, ram: f64) -> QuotaInformation {
        QuotaInformation::new(Some(cores), Some(1.0), Some(ram), 0.0)
    }

    #[test]
    fn fits_checks_provider_and_pool() {
        let provider =
            QuotaInformation::from_cloud_limits([("instances", 10), ("cores", 8), ("ram", -1)]);
        let used = need(4.0, 1000.0);
        let pool = PoolLimits {
            max_servers: Some(2),
            ..Default::default()
        }
        .to_quota();
        assert!(fits(&provider, &used, &pool, &used, &need(4.0, 1.0)));
        assert!(!fits(&provider, &used, &pool, &used, &need(5.0, 1.0)));
        let mut two = used.clone();
        two.add(&used);
        assert!(!fits(
            &provider,
            &QuotaInformation::usage(),
            &pool,
            &two,
            &need(1.0, 1.0)
        ));
        assert!(fits(
            &QuotaInformation::unlimited(),
            &two,
            &QuotaInformation::unlimited(),
            &two,
            &need(100.0, 1.0)
        ));
    }

    #[test]
    fn ever_fit_ignores_usage() {
        let provider = QuotaInformation::from_cloud_limits([("cores", 8)]);
        let pool = PoolLimits::default().to_quota();
        assert!(would_ever_fit(
            &provider,
            &pool,
            &[need(4.0, 1.0), need(4.0, 1.0)]
        ));
        assert!(!would_ever_fit(
            &provider,
            &pool,
            &[need(4.0, 1.0), need(5.0, 1.0)]
        ));
        let pool = PoolLimits {
            max_servers: Some(1),
            ..Default::default()
        }
        .to_quota();
        assert!(!would_ever_fit(
            &provider,
            &pool,
            &[need(1.0, 1.0), need(1.0, 1.0)]
        ));
    }

    #[test]
    fn unmanaged_rules() {
        let known: HashSet<String> = ["0000000001".to_string()].into();
        let mut s = Server {
            id: "x".into(),
            status: "ACTIVE".into(),
            ..Default::default()
        };
        assert!(is_unmanaged(&s, "p", &known));
        s.metadata.insert(PROVIDER_NAME.into(), "p".into());
        assert!(is_unmanaged(&s, "p", &known));
        s.metadata.insert(NODE_ID.into(), "0000000001".into());
        assert!(!is_unmanaged(&s, "p", &known));
        assert!(is_unmanaged(&s, "other", &known));
        s.metadata.insert(NODE_ID.into(), "0000000002".into());
        assert!(is_unmanaged(&s, "p", &known));
        s.status = "DELETED".into();
        assert!(!is_unmanaged(&s, "p", &known));
    }

    #[test]
    fn server_quota_from_embedded_or_listed_flavor() {
        let s = Server {
            id: "x".into(),
            flavor: Some(ServerFlavor {
                vcpus: Some(2),
                ram: Some(2048),
                ..Default::default()
            }),
            ..Default::default()
        };
        let none = HashMap::new();
        let q = server_quota(&s, &[], &none);
        assert_eq!(
            (q.get(CORES), q.get(RAM), q.get(INSTANCES), q.get(VOLUMES)),
            (2.0, 2048.0, 1.0, 0.0)
        );
        // Attached volumes the cloud lists count (one it does not know is skipped).
        let mut with_vols = s.clone();
        for id in ["v1", "v2", "gone"] {
            with_vols.volumes_attached.push(AttachedVolume {
                id: id.into(),
                delete_on_termination: None,
            });
        }
        let v1 = Volume {
            id: "v1".into(),
            size: Some(10),
            ..Default::default()
        };
        let v2 = Volume {
            id: "v2".into(),
            size: Some(25),
            ..Default::default()
        };
        let vols = HashMap::from([("v1", &v1), ("v2", &v2)]);
        let q = server_quota(&with_vols, &[], &vols);
        assert_eq!((q.get(VOLUMES), q.get(VOLUME_GB)), (2.0, 35.0));
        let s = Server {
            id: "x".into(),
            flavor: Some(ServerFlavor {
                id: Some("f".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let f = Flavor {
            id: "f".into(),
            vcpus: Some(4),
            ram: Some(8192),
            ..Default::default()
        };
        assert_eq!(server_quota(&s, &[f], &none).get(CORES), 4.0);
    }

    #[test]
    fn usage_with_fallback() {
        let a = Node {
            resources: json!({"cores": 2, "instances": 1, "ram": 100})
                .as_object()
                .cloned(),
            ..Default::default()
        };
        let b = Node::default();
        let u = usage_of([&a, &b], |_| Some(need(1.0, 1.0)));
        assert_eq!(u.get(CORES), 3.0);
        assert_eq!(u.get(INSTANCES), 2.0);
    }
}
