//! The checks of a pool's assignment pass that depend on a request's labels alone —
//! why the pool must decline it (labels, images, quota that could never fit) and the
//! pool's need for it (for `tenant-resource-limits`) — worked out once per label list
//! and pass ([`LabelMemo`]) instead of once per request, and kept with the verdicts of
//! the requests they deferred ([`LabelChecks`]).
//!
//! These are the inputs of a verdict that can change without a ZooKeeper event: a
//! cloud image that goes away, the cloud's limits or flavors (through the provider's
//! caches). So every `pool_recheck` a pool worker works them out again for each label
//! list its deferred requests have, and looks again only at the requests whose inputs
//! changed (see `verdicts`), instead of at every waiting request: with 5,000 waiting
//! requests and 20 pools that full look cost each launcher ~0.6 s of CPU a minute.

use std::collections::HashMap;
use std::sync::Arc;

use nodepool_shared::model::QuotaInformation;
use tokio::sync::OnceCell;

use super::decline::{decline_reason_for, DeclineReason};
use super::pool_context::PoolView;
use super::runtime::LauncherContext;

/// The label checks of one label list in one pass.
#[derive(Debug)]
pub struct LabelChecks {
    labels: Vec<String>,
    decline: Option<Arc<DeclineReason>>,
    /// Worked out only when a request of a tenant with limits asks (it may call the cloud).
    need: OnceCell<Result<QuotaInformation, String>>,
}

impl LabelChecks {
    /// Runs the decline checks of `labels` (the need waits for [`Self::need`]).
    pub async fn run(ctx: &LauncherContext, view: &PoolView, labels: &[String]) -> Self {
        LabelChecks {
            labels: labels.to_vec(),
            decline: decline_reason_for(ctx, view, labels).await.map(Arc::new),
            need: OnceCell::new(),
        }
    }

    /// The label list.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Why the pool must decline requests of these labels, if it must.
    pub fn decline(&self) -> Option<&Arc<DeclineReason>> {
        self.decline.as_ref()
    }

    /// The pool's quota for the labels it serves of these (the error text when it
    /// cannot be computed now).
    pub async fn need(&self, view: &PoolView) -> &Result<QuotaInformation, String> {
        self.need
            .get_or_init(|| async {
                let mut need = QuotaInformation::usage();
                for name in &self.labels {
                    let Some(label) = view.label(name) else {
                        continue;
                    };
                    need.add(
                        &view
                            .provider
                            .label_need(label)
                            .await
                            .map_err(|e| e.to_string())?,
                    );
                }
                Ok(need)
            })
            .await
    }

    /// Whether a request deferred under `then` (no decline; for a tenant's limits
    /// when `tenant`) could now be treated otherwise: the pool must decline it, or
    /// (`tenant`) its need is another or cannot be computed. `self` is the check now.
    pub async fn differ(&self, then: &LabelChecks, view: &PoolView, tenant: bool) -> bool {
        if self.decline.is_some() != then.decline.is_some() {
            return true;
        }
        if !tenant {
            return false;
        }
        match then.need.get() {
            Some(before) => self.need(view).await != before,
            None => true,
        }
    }
}

/// The label checks of one pass, by label list.
#[derive(Default)]
pub struct LabelMemo(HashMap<Vec<String>, Arc<LabelChecks>>);

impl LabelMemo {
    /// The checks of `labels`, run on the first ask in this pass.
    pub async fn get(
        &mut self,
        ctx: &LauncherContext,
        view: &PoolView,
        labels: &[String],
    ) -> Arc<LabelChecks> {
        if let Some(c) = self.0.get(labels) {
            return c.clone();
        }
        let c = Arc::new(LabelChecks::run(ctx, view, labels).await);
        self.0.insert(labels.to_vec(), c.clone());
        c
    }
}
