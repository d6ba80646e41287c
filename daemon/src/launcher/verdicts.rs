//! What a pool worker remembers between assignment passes, so that a pass looks only at
//! the requests whose outcome may have changed instead of every waiting request.
//!
//! A request the worker left alone keeps its [`Verdict`] until something that verdict
//! depends on changes: its own record or lock (a cache event names it), the online
//! pools (yielded), the tenant's usage as this pool counts it (deferred by
//! `tenant-resource-limits`), the pool's pause, the provider's running launches
//! (`max-concurrency`). A new or changed request is looked at in the pass its cache
//! event wakes. Everything is looked at again after a config change, a full reload of
//! the cache, missed cache events and a change of images.
//!
//! What changes in the cloud without a cache event (a cloud image, the cloud's limits
//! or flavors) reaches a verdict only through the pool's [label checks]: why it must
//! decline requests of those labels, and their need. Every `pool_recheck` of the
//! launcher's intervals (one minute by default) the worker runs those checks again,
//! once per label list of its deferred requests, and looks again at the requests whose
//! checks came out otherwise; a request deferred by its tenant's limits also when its
//! need changed. A yielded request does not depend on them (the pass yields before it
//! checks), nor does one whose lock someone else holds (left alone whatever the checks
//! say, until its lock's event).
//!
//! [label checks]: super::label_checks
//!
//! Nodepool's pool workers look at every request on every loop; with 5,000 waiting
//! requests and 20 pools per launcher that was most of an idle launcher's CPU and
//! seconds of latency for a new request. The outcome is the same: a verdict is only
//! kept while every input of the checks that made it is unchanged.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use nodepool_shared::config::Config;
use nodepool_shared::model::paths::ZkPath;
use nodepool_shared::model::RequestId;
use nodepool_shared::zk::{CacheEvent, CacheKind};
use tokio::sync::broadcast::error::TryRecvError;
use tokio::sync::broadcast::Receiver;
use tokio::time::Instant;

use super::label_checks::{LabelChecks, LabelMemo};
use super::pool_context::{PoolContext, PoolView};
use super::rivals::OnlinePool;
use super::tenant_limits::TenantBasis;

/// Why the worker left a request alone, and so what it waits for. A deferral keeps the
/// label checks it was made under.
#[derive(Clone, Debug)]
pub enum Verdict {
    /// Another online pool should have it.
    Yielded,
    /// Its tenant would exceed its limits at this usage.
    TenantFull(Arc<TenantBasis>, Arc<LabelChecks>),
    /// Our pool is paused.
    Paused(Arc<LabelChecks>),
    /// The provider runs `max-concurrency` launches.
    AtConcurrency(Arc<LabelChecks>),
    /// Someone else holds its lock.
    LockBusy,
}

impl Verdict {
    /// The label checks a deferral was made under, and whether its need counted.
    fn label_checks(&self) -> Option<(&Arc<LabelChecks>, bool)> {
        match self {
            Verdict::TenantFull(_, c) => Some((c, true)),
            Verdict::Paused(c) | Verdict::AtConcurrency(c) => Some((c, false)),
            Verdict::Yielded | Verdict::LockBusy => None,
        }
    }
}

/// What to look at in this pass.
pub enum Work {
    /// Every waiting request.
    All,
    /// These requests (changed, new, or whose verdict no longer holds).
    Some(HashSet<RequestId>),
}

/// A worker's verdicts and what they were made under.
pub struct Verdicts {
    events: Receiver<CacheEvent>,
    decided: HashMap<RequestId, Verdict>,
    dirty: HashSet<RequestId>,
    everything: bool,
    online_changed: bool,
    /// Shared with each pass (a pass holds it while it records verdicts): copying 60
    /// pools' label sets on every pass of every pool worker was a fifth of an idle
    /// launcher's CPU at scale.
    online: Arc<[OnlinePool]>,
    config: Option<Arc<Config>>,
    /// When the label checks were last run again for every deferral (or everything
    /// looked at).
    last_recheck: Instant,
    /// Whether some verdict is [`Verdict::Paused`] / [`Verdict::AtConcurrency`] (so a
    /// pass checks the pause and the launches only then).
    some_paused: bool,
    some_at_concurrency: bool,
    /// The tenants of [`Verdict::TenantFull`] verdicts, with the [`TenantBasis::key`]
    /// their verdicts were last checked at: while the key is the same, so is the usage.
    tenants: HashMap<String, (u64, u64)>,
}

impl Verdicts {
    /// Follows `events` (subscribe before the first pass, so that no change is missed).
    pub fn new(events: Receiver<CacheEvent>) -> Self {
        Verdicts {
            events,
            decided: HashMap::new(),
            dirty: HashSet::new(),
            everything: true,
            online_changed: true,
            online: Arc::from([]),
            config: None,
            last_recheck: Instant::now(),
            some_paused: false,
            some_at_concurrency: false,
            tenants: HashMap::new(),
        }
    }

    /// The online pools as of the last [`Self::prepare`].
    pub fn online(&self) -> Arc<[OnlinePool]> {
        self.online.clone()
    }

    /// Reads what changed since the last pass and says what this pass looks at.
    pub fn prepare(
        &mut self,
        pc: &PoolContext,
        config: &Arc<Config>,
        max_concurrency: i64,
    ) -> Work {
        self.absorb_events();
        for id in pc.take_ended() {
            self.forget(id);
        }
        if !self.config.as_ref().is_some_and(|c| Arc::ptr_eq(c, config)) {
            self.config = Some(config.clone());
            self.everything = true;
        }
        if self.online_changed || self.everything {
            self.online_changed = false;
            let now = super::rivals::online_pools(&pc.ctx);
            if *now != *self.online {
                self.online = now.into();
                self.release(|v| matches!(v, Verdict::Yielded));
            }
        }
        if self.everything {
            self.everything = false;
            self.last_recheck = Instant::now();
            self.decided.clear();
            self.dirty.clear();
            self.some_paused = false;
            self.some_at_concurrency = false;
            self.tenants.clear();
            return Work::All;
        }
        self.revisit(pc, max_concurrency);
        Work::Some(std::mem::take(&mut self.dirty))
    }

    /// Whether the label checks of the deferrals are due again (`pool_recheck`).
    pub fn recheck_due(&self, pc: &PoolContext) -> bool {
        !self.everything && self.last_recheck.elapsed() >= pc.ctx.intervals.pool_recheck
    }

    /// Runs the label checks of every deferral again, once per label list (into
    /// `memo`, which the pass then uses), and moves the deferrals whose checks came out
    /// otherwise to the work of the next pass (see the module doc). Returns how many
    /// label lists were checked and how many deferrals moved.
    pub async fn recheck(
        &mut self,
        pc: &PoolContext,
        view: &PoolView,
        memo: &mut LabelMemo,
    ) -> (usize, usize) {
        self.last_recheck = Instant::now();
        // The distinct checks the deferrals were made under (shared within a pass).
        let mut then: HashMap<usize, (Arc<LabelChecks>, bool)> = HashMap::new();
        for v in self.decided.values() {
            if let Some((c, tenant)) = v.label_checks() {
                then.entry(Arc::as_ptr(c) as usize)
                    .or_insert_with(|| (c.clone(), false))
                    .1 |= tenant;
            }
        }
        let mut stale: HashSet<usize> = HashSet::new();
        let mut lists = HashSet::new();
        for (ptr, (c, tenant)) in &then {
            lists.insert(c.labels().to_vec());
            let now = memo.get(&pc.ctx, view, c.labels()).await;
            if now.differ(c, view, *tenant).await {
                stale.insert(*ptr);
            }
        }
        let before = self.dirty.len();
        if !stale.is_empty() {
            self.release(|v| {
                v.label_checks()
                    .is_some_and(|(c, _)| stale.contains(&(Arc::as_ptr(c) as usize)))
            });
        }
        (lists.len(), self.dirty.len() - before)
    }

    /// Records the verdict on a request the pass left alone.
    pub fn decide(&mut self, id: RequestId, verdict: Verdict) {
        match &verdict {
            Verdict::Paused(_) => self.some_paused = true,
            Verdict::AtConcurrency(_) => self.some_at_concurrency = true,
            Verdict::TenantFull(b, _) => {
                self.tenants.entry(b.tenant.clone()).or_insert(b.key());
            }
            Verdict::Yielded | Verdict::LockBusy => {}
        }
        self.decided.insert(id, verdict);
    }

    /// Looks at `id` again in the next pass (its outcome was not settled).
    pub fn retry(&mut self, id: RequestId) {
        self.decided.remove(&id);
        self.dirty.insert(id);
    }

    fn forget(&mut self, id: RequestId) {
        self.retry(id);
    }

    /// Drains the cache events: a request's record or lock changed, pools came or went,
    /// images changed, or the cache reloaded (or events were missed).
    fn absorb_events(&mut self) {
        loop {
            match self.events.try_recv() {
                Ok(e) => self.absorb(e),
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Lagged(_)) => {
                    self.everything = true;
                    self.online_changed = true;
                }
                Err(TryRecvError::Closed) => {
                    self.everything = true;
                    return;
                }
            }
        }
    }

    fn absorb(&mut self, e: CacheEvent) {
        match (e.kind, e.path) {
            (CacheKind::Request, ZkPath::Request(id))
            | (CacheKind::RequestLock, ZkPath::RequestLock(id, _)) => self.forget(id),
            (CacheKind::Component, _) => self.online_changed = true,
            (CacheKind::Upload | CacheKind::Build | CacheKind::Image, _) | (CacheKind::Tree, _) => {
                self.everything = true;
            }
            _ => {}
        }
    }

    /// Moves the verdicts `stale` says no longer hold to the work of the next pass.
    fn release(&mut self, mut stale: impl FnMut(&Verdict) -> bool) {
        let dirty = &mut self.dirty;
        self.decided.retain(|id, v| {
            let keep = !stale(v);
            if !keep {
                dirty.insert(id.clone());
            }
            keep
        });
    }

    /// Releases deferrals whose reason is gone: the pool no longer paused, the provider
    /// below `max-concurrency`, a tenant's usage different. Costs a look at every
    /// verdict only when one of those may have changed.
    fn revisit(&mut self, pc: &PoolContext, max_concurrency: i64) {
        let unpaused = self.some_paused && !pc.is_paused();
        let below = self.some_at_concurrency
            && !(max_concurrency > 0
                && pc
                    .handles
                    .get(&pc.provider_name)
                    .is_some_and(|p| p.active_launches() as i64 >= max_concurrency));
        let moved: HashMap<String, (u64, u64)> = self
            .tenants
            .iter()
            .filter_map(|(t, key)| {
                let now = TenantBasis::key_now(pc, t);
                (now != *key).then(|| (t.clone(), now))
            })
            .collect();
        if !unpaused && !below && moved.is_empty() {
            return;
        }
        // The usage of each moved tenant now; a verdict holds if its usage is the same.
        let mut usage: HashMap<String, TenantBasis> = HashMap::new();
        self.release(|v| match v {
            Verdict::Paused(_) => unpaused,
            Verdict::AtConcurrency(_) => below,
            Verdict::TenantFull(b, _) if moved.contains_key(&b.tenant) => {
                let now = usage
                    .entry(b.tenant.clone())
                    .or_insert_with(|| TenantBasis::now(pc, &b.tenant));
                now.used != b.used
            }
            Verdict::TenantFull(..) | Verdict::Yielded | Verdict::LockBusy => false,
        });
        self.some_paused &= !unpaused;
        self.some_at_concurrency &= !below;
        for (t, key) in moved {
            let key = usage.get(&t).map_or(key, TenantBasis::key);
            self.tenants.insert(t, key);
        }
    }
}
