//! Whether a pool leaves a request to another pool (Nodepool's yield rules): the
//! registered pools as an assignment pass sees them ([`OnlinePool`]), and per pass the
//! other pools that serve every label of a label list, worked out once per list
//! ([`Rivals`]).
//!
//! A request is left to the others when one of them that has not declined it and
//! serves all its labels is the provider it asks for, has a better (lower) priority and
//! is not paused, or when this pool lacks one of its labels. Checked naively, that is
//! every online pool's label set per request: with 60 pools and 5,000 waiting requests
//! a full pass of each of a launcher's 20 pool workers hashed millions of label names,
//! half of the pass's CPU after every cache reload.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use nodepool_shared::model::{ComponentKind, NodeRequest};

use super::runtime::LauncherContext;

/// A registered pool as the assignment pass sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct OnlinePool {
    pub(crate) id: String,
    pub(crate) provider: String,
    pub(crate) labels: HashSet<String>,
    pub(crate) priority: i64,
    pub(crate) paused: bool,
}

/// The pools registered now (from the cache).
pub(crate) fn online_pools(ctx: &LauncherContext) -> Vec<OnlinePool> {
    ctx.cache
        .components(ComponentKind::Pool)
        .iter()
        .filter_map(|c| {
            let p = c.component.pool.as_ref()?;
            Some(OnlinePool {
                id: p.id.clone()?,
                provider: p.provider_name.clone().unwrap_or_default(),
                labels: p.supported_labels.iter().cloned().collect(),
                priority: p.priority,
                paused: p.paused,
            })
        })
        .collect()
}

/// One pool's view of the other online pools during one pass: for each label list
/// met, which of them serve all its labels (indexes into the online pools).
pub struct Rivals {
    online: Arc<[OnlinePool]>,
    worker_id: String,
    provider: String,
    priority: i64,
    serving: HashMap<Vec<String>, Vec<usize>>,
}

impl Rivals {
    /// The rivals of the pool `worker_id` of `provider`, with `priority`, among `online`.
    pub fn new(online: Arc<[OnlinePool]>, worker_id: &str, provider: &str, priority: i64) -> Self {
        Rivals {
            online,
            worker_id: worker_id.to_string(),
            provider: provider.to_string(),
            priority,
            serving: HashMap::new(),
        }
    }

    /// Whether this pool leaves `req` to another pool; `lacks_label` says whether this
    /// pool lacks one of its labels.
    pub fn yields(&mut self, req: &NodeRequest, lacks_label: bool) -> bool {
        let Rivals {
            online,
            worker_id,
            provider,
            priority,
            serving,
        } = self;
        if !serving.contains_key(&req.node_types) {
            let serve: Vec<usize> = online
                .iter()
                .enumerate()
                .filter(|(_, p)| {
                    p.id != *worker_id && req.node_types.iter().all(|l| p.labels.contains(l))
                })
                .map(|(i, _)| i)
                .collect();
            serving.insert(req.node_types.clone(), serve);
        }
        // The candidates: those of them that have not declined it.
        let candidates = serving[&req.node_types]
            .iter()
            .map(|&i| &online[i])
            .filter(|p| req.declined_by.is_empty() || !req.declined_by.contains(&p.id));
        // The provider it asks for, unless that is ours.
        let wanted = req.provider.as_deref().filter(|w| *w != provider.as_str());
        let mut any = false;
        for p in candidates {
            any = true;
            if wanted == Some(p.provider.as_str()) || (p.priority < *priority && !p.paused) {
                return true;
            }
        }
        lacks_label && any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The rules as Nodepool states them, checked against every online pool.
    fn yields_naively(
        online: &[OnlinePool],
        me: &OnlinePool,
        req: &NodeRequest,
        lacks_label: bool,
    ) -> bool {
        let candidates: Vec<&OnlinePool> = online
            .iter()
            .filter(|p| {
                p.id != me.id
                    && !req.declined_by.contains(&p.id)
                    && req.node_types.iter().all(|l| p.labels.contains(l))
            })
            .collect();
        if let Some(wanted) = req.provider.as_deref() {
            if wanted != me.provider && candidates.iter().any(|p| p.provider == wanted) {
                return true;
            }
        }
        if candidates
            .iter()
            .any(|p| p.priority < me.priority && !p.paused)
        {
            return true;
        }
        lacks_label && !candidates.is_empty()
    }

    fn pool(
        id: usize,
        provider: usize,
        labels: &[usize],
        priority: i64,
        paused: bool,
    ) -> OnlinePool {
        OnlinePool {
            id: format!(
                "nl0{}-PoolWorker.provider-{provider}-main-{id:032x}",
                id % 3
            ),
            provider: format!("provider-{provider}"),
            labels: labels.iter().map(|l| format!("label-{l}")).collect(),
            priority,
            paused,
        }
    }

    fn request(labels: &[usize], provider: Option<usize>, declined: &[String]) -> NodeRequest {
        let mut r = NodeRequest::new(
            labels.iter().map(|l| format!("label-{l}")).collect(),
            "zuul",
        );
        r.provider = provider.map(|p| format!("provider-{p}"));
        r.declined_by = declined.to_vec();
        r
    }

    #[test]
    fn a_better_pool_or_the_wanted_provider_takes_the_request() {
        let online: Arc<[OnlinePool]> = Arc::from(vec![
            pool(0, 0, &[1, 2], 100, false),
            pool(1, 1, &[1], 50, false),
            pool(2, 2, &[1, 2], 100, false),
        ]);
        let me = &online[0];
        let mut rivals = Rivals::new(online.clone(), &me.id, &me.provider, me.priority);
        // Pool 1 serves label-1 with a better priority.
        assert!(rivals.yields(&request(&[1], None, &[]), false));
        // ... unless it declined it.
        assert!(!rivals.yields(&request(&[1], None, &[online[1].id.clone()]), false));
        // Nobody better serves label-2; the request asks for provider-2, which does.
        assert!(!rivals.yields(&request(&[2], None, &[]), false));
        assert!(rivals.yields(&request(&[2], Some(2), &[]), false));
        // A request that asks for our provider still goes to a better pool.
        assert!(rivals.yields(&request(&[1], Some(0), &[]), false));
        // We lack a label that pool 2 serves.
        assert!(rivals.yields(&request(&[2], None, &[]), true));
        // Nobody else serves label-3.
        assert!(!rivals.yields(&request(&[3], None, &[]), true));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
        /// The memo answers as the rules checked against every pool do, request after
        /// request (label lists repeat, so most answers come from the memo).
        #[test]
        fn rivals_answer_as_the_naive_rules(
            pools in prop::collection::vec(
                (0usize..4, prop::collection::vec(0usize..5, 0..4), 0i64..3, any::<bool>()),
                1..8,
            ),
            me_index in 0usize..8,
            requests in prop::collection::vec(
                (prop::collection::vec(0usize..5, 1..3), prop::option::of(0usize..4),
                 prop::collection::vec(0usize..8, 0..3), any::<bool>()),
                1..24,
            ),
        ) {
            let online: Vec<OnlinePool> = pools
                .iter()
                .enumerate()
                .map(|(i, (prov, labels, prio, paused))| pool(i, *prov, labels, *prio, *paused))
                .collect();
            let online: Arc<[OnlinePool]> = Arc::from(online);
            let me = online[me_index % online.len()].clone();
            let mut rivals = Rivals::new(online.clone(), &me.id, &me.provider, me.priority);
            for (labels, provider, declined, lacks) in requests {
                let declined: Vec<String> = declined
                    .iter()
                    .filter_map(|d| online.get(*d).map(|p| p.id.clone()))
                    .collect();
                let req = request(&labels, provider, &declined);
                prop_assert_eq!(
                    rivals.yields(&req, lacks),
                    yields_naively(&online, &me, &req, lacks)
                );
            }
        }
    }
}
