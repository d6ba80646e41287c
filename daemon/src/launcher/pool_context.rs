//! What a pool worker shares with its request handlers, and how both see their pool.
//!
//! A pool worker lives as long as its provider-pool is in the config and its provider is
//! started: a reload that changes the pool (its `max-servers`, labels, …) or the
//! provider does not restart it, so its id (in `declined_by` and node `launcher`) stays,
//! as in Nodepool. Instead the worker and its handlers read their pool afresh — every
//! assignment pass, every allocation round — through [`PoolContext::view`], which is the
//! *current* config and started provider, or why there is none ([`ConfigGone`]). A
//! handler waiting for quota therefore notices a reload that makes its request
//! impossible here and declines it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use nodepool_shared::config::{Config, Pool, PoolLabel, Provider};
use nodepool_shared::model::{pool_worker_id, ComponentKind, QuotaInformation, RequestId};
use tokio::sync::{watch, Notify};

use super::providers::{ProviderHandle, ProviderHandles};
use super::runtime::LauncherContext;
use super::tasks::TaskGroup;
use nodepool_shared::sync::MutexExt;

/// Why a pool worker has no pool to work with in the current config.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigGone {
    /// The provider was removed from the config.
    #[error("provider {0} is not in the configuration")]
    ProviderRemoved(String),
    /// The provider is configured but not started (its cloud could not be set up).
    #[error("provider {0} is not started")]
    ProviderNotStarted(String),
    /// The pool was removed from the provider.
    #[error("pool {pool} is not in the configuration of provider {provider}")]
    PoolRemoved {
        /// The provider.
        provider: String,
        /// The pool.
        pool: String,
    },
}

/// A pool as the current config and the started provider have it.
#[derive(Clone)]
pub struct PoolView {
    config: Arc<Config>,
    provider_index: usize,
    pool_index: usize,
    /// The started provider.
    pub provider: Arc<ProviderHandle>,
}

impl PoolView {
    /// The whole config this view was taken from.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The config this view was taken from, shared (a reload makes a new one).
    pub fn config_arc(&self) -> &Arc<Config> {
        &self.config
    }

    /// The provider's config.
    pub fn provider_config(&self) -> &Provider {
        &self.config.providers[self.provider_index]
    }

    /// The pool's config.
    pub fn pool(&self) -> &Pool {
        &self.provider_config().pools[self.pool_index]
    }

    /// The pool label named `name`.
    pub fn label(&self, name: &str) -> Option<&PoolLabel> {
        self.pool().label(name)
    }

    /// The names of the pool's labels, in config order.
    pub fn label_names(&self) -> Vec<String> {
        self.pool().labels.iter().map(|l| l.name.clone()).collect()
    }
}

/// What a pool worker shares with its handlers.
pub struct PoolContext {
    /// The launcher.
    pub ctx: Arc<LauncherContext>,
    /// The provider's name.
    pub provider_name: String,
    /// The pool's name.
    pub pool_name: String,
    /// The started providers (the main loop replaces a provider's handle on restart).
    pub handles: Arc<ProviderHandles>,
    /// Where the handlers run (one group for the whole launcher, so a handler outlives
    /// a pool worker that stops, and shutdown stops them all in order).
    pub handlers: Arc<TaskGroup>,
    /// The pool worker id (`declined_by`, node `launcher`).
    pub worker_id: String,
    /// Number of handlers waiting for quota (the worker mirrors `> 0` into the
    /// component's `paused`).
    pub paused: watch::Sender<usize>,
    /// Requests being handled by this pool.
    handling: Mutex<HashSet<RequestId>>,
    /// Tenant needs of the requests being handled (tenant-resource-limits), until their
    /// handler ends: counted instead of their nodes, which may not be cached yet.
    tenant_claims: Mutex<HashMap<RequestId, (String, QuotaInformation)>>,
    /// Bumped whenever `tenant_claims` changes.
    claims_version: AtomicU64,
    /// Requests whose handler ended since the worker last looked (it re-examines them).
    ended: Mutex<Vec<RequestId>>,
    /// Wakes the worker when a handler ends.
    pub handler_ended: Notify,
}

impl PoolContext {
    /// The context of a new worker for `provider`/`pool`, with a new worker id
    /// (`<fqdn>-PoolWorker.<provider>-<pool>-<uuid>`).
    pub fn new(
        ctx: Arc<LauncherContext>,
        handles: Arc<ProviderHandles>,
        handlers: Arc<TaskGroup>,
        provider: &str,
        pool: &str,
    ) -> Self {
        let worker_id = pool_worker_id(&ctx.fqdn, provider, pool);
        ctx.own_pool_workers
            .lock_or_recover()
            .insert(worker_id.clone());
        PoolContext {
            worker_id,
            ctx,
            provider_name: provider.to_string(),
            pool_name: pool.to_string(),
            handles,
            handlers,
            paused: watch::channel(0).0,
            handling: Mutex::new(HashSet::new()),
            tenant_claims: Mutex::new(HashMap::new()),
            claims_version: AtomicU64::new(0),
            ended: Mutex::new(Vec::new()),
            handler_ended: Notify::new(),
        }
    }

    /// The task name of the worker (`PoolWorker.<provider>-<pool>`, as Nodepool's thread).
    pub fn task_name(&self) -> String {
        format!("PoolWorker.{}-{}", self.provider_name, self.pool_name)
    }

    /// The pool in the current config with its started provider.
    pub fn view(&self) -> Result<PoolView, ConfigGone> {
        let config = self.ctx.config();
        let provider_index = config
            .providers
            .iter()
            .position(|p| p.name == self.provider_name)
            .ok_or_else(|| ConfigGone::ProviderRemoved(self.provider_name.clone()))?;
        let pool_index = config.providers[provider_index]
            .pools
            .iter()
            .position(|p| p.name == self.pool_name)
            .ok_or_else(|| ConfigGone::PoolRemoved {
                provider: self.provider_name.clone(),
                pool: self.pool_name.clone(),
            })?;
        let provider = self
            .handles
            .get(&self.provider_name)
            .ok_or_else(|| ConfigGone::ProviderNotStarted(self.provider_name.clone()))?;
        Ok(PoolView {
            config,
            provider_index,
            pool_index,
            provider,
        })
    }

    /// Whether some handler of this pool waits for quota.
    pub fn is_paused(&self) -> bool {
        *self.paused.borrow() > 0
    }

    fn handling(&self) -> std::sync::MutexGuard<'_, HashSet<RequestId>> {
        self.handling.lock_or_recover()
    }

    /// Marks a request as handled here (false if it already is).
    pub fn start_handling(&self, id: &RequestId) -> bool {
        self.handling().insert(id.clone())
    }

    /// Whether a request is handled here.
    pub fn is_handling(&self, id: &RequestId) -> bool {
        self.handling().contains(id)
    }

    /// The handler of `id` ended.
    pub fn stop_handling(&self, id: &RequestId) {
        self.handling().remove(id);
        if self.tenant_claims().remove(id).is_some() {
            self.claims_version.fetch_add(1, Ordering::Relaxed);
        }
        self.ended.lock_or_recover().push(id.clone());
        self.handler_ended.notify_one();
    }

    /// The requests whose handler ended since the last call.
    pub fn take_ended(&self) -> Vec<RequestId> {
        std::mem::take(&mut *self.ended.lock_or_recover())
    }

    fn tenant_claims(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<RequestId, (String, QuotaInformation)>> {
        self.tenant_claims.lock_or_recover()
    }

    /// Counts `need` against `tenant` while the request's handler runs.
    pub fn claim_tenant(&self, id: &RequestId, tenant: String, need: QuotaInformation) {
        self.tenant_claims().insert(id.clone(), (tenant, need));
        self.claims_version.fetch_add(1, Ordering::Relaxed);
    }

    /// Changes whenever the tenant claims change.
    pub fn claims_version(&self) -> u64 {
        self.claims_version.load(Ordering::Relaxed)
    }

    /// The tenant claims now (request → tenant, need).
    pub fn tenant_claims_snapshot(&self) -> HashMap<RequestId, (String, QuotaInformation)> {
        self.tenant_claims().clone()
    }

    /// Ids of every currently registered pool (from the cache).
    pub fn registered_pool_ids(&self) -> Vec<String> {
        self.ctx
            .cache
            .components(ComponentKind::Pool)
            .iter()
            .filter_map(|c| c.component.pool.as_ref().and_then(|p| p.id.clone()))
            .collect()
    }
}
