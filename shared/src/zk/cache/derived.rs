//! What the tree keeps beside its maps so that the launcher's pool workers need no scan
//! of the whole cache: the `requested` requests in Nodepool's priority order
//! ([`RequestOrder`]), and every tenant's node usage ([`TenantUsage`]), both updated as
//! each change is applied.
//!
//! At 100,000 nodes and 5,000 waiting requests, sorting the requests and summing a
//! tenant's nodes on every pass of every pool worker was most of an idle launcher's CPU;
//! kept here they cost a map update per change.

use std::cmp::Ordering;
use std::collections::HashMap;

use crate::model::{CompactNode, NodeRequest, QuotaInformation, RequestId};

/// The position of a request in Nodepool's order: `(precedence, relative_priority,
/// sequence)` as [`NodeRequest::priority`], then the whole id (a total order for a map
/// key; ids that tie on all three are malformed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestOrder {
    relative_priority: i64,
    id: RequestId,
}

impl RequestOrder {
    /// The key of `r`.
    pub fn of(r: &NodeRequest) -> Self {
        RequestOrder {
            relative_priority: r.relative_priority,
            id: r.id.clone(),
        }
    }
}

impl Ord for RequestOrder {
    fn cmp(&self, other: &Self) -> Ordering {
        self.id
            .precedence()
            .cmp(other.id.precedence())
            .then(self.relative_priority.cmp(&other.relative_priority))
            .then_with(|| self.id.sequence().cmp(other.id.sequence()))
            .then_with(|| self.id.cmp(&other.id))
    }
}

impl PartialOrd for RequestOrder {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The nodes of one tenant as `tenant-resource-limits` count them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TenantUsage {
    /// The sum of the `resources` of every cached node with this `tenant_name` (any
    /// provider, any state; nodes without `resources` count as nothing).
    pub used: QuotaInformation,
    /// Bumped on every change of a node of this tenant (any field: also one that moves
    /// a node between requests). Never goes back, also not across a full reload, so
    /// "unchanged counter" means "the same nodes as then".
    pub changes: u64,
}

/// Every tenant's usage (tenants are few; an entry stays once seen, so that its
/// counter never restarts).
#[derive(Debug, Default)]
pub struct Tenants(HashMap<String, TenantUsage>);

impl Tenants {
    /// The usage of `tenant` (none seen: nothing used, counter 0).
    pub fn get(&self, tenant: &str) -> TenantUsage {
        self.0.get(tenant).cloned().unwrap_or_default()
    }

    /// Accounts for a node replaced by another (`None` = absent).
    pub fn replace(&mut self, old: Option<&CompactNode>, new: Option<&CompactNode>) {
        if let Some(o) = old {
            self.count(o, -1.0);
        }
        if let Some(n) = new {
            self.count(n, 1.0);
        }
    }

    fn count(&mut self, n: &CompactNode, sign: f64) {
        let Some(tenant) = n.tenant_name() else {
            return;
        };
        let entry = match self.0.get_mut(tenant) {
            Some(e) => e,
            None => self.0.entry(tenant.to_string()).or_default(),
        };
        entry.changes += 1;
        if let Some(q) = n.resources_quota() {
            if sign > 0.0 {
                entry.used.add(&q);
            } else {
                entry.used.subtract(&q);
            }
        }
    }

    /// Takes over the counters of `old` (the tree this one replaces after a full load),
    /// each one past its old value, so that no counter repeats.
    pub fn continue_from(&mut self, old: &Tenants) {
        for (t, u) in &old.0 {
            let e = self.0.entry(t.clone()).or_default();
            e.changes += u.changes + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Node, NodeId};

    fn req(id: &str, rp: i64) -> NodeRequest {
        NodeRequest {
            id: RequestId::from(id),
            relative_priority: rp,
            ..NodeRequest::default()
        }
    }

    #[test]
    fn order_is_precedence_then_relative_priority_then_sequence() {
        let mut v = [
            RequestOrder::of(&req("200-0000000001", 0)),
            RequestOrder::of(&req("100-0000000009", 1)),
            RequestOrder::of(&req("100-0000000008", 1)),
            RequestOrder::of(&req("100-0000000010", 0)),
        ];
        v.sort();
        let ids: Vec<&str> = v.iter().map(|o| o.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "100-0000000010",
                "100-0000000008",
                "100-0000000009",
                "200-0000000001"
            ]
        );
        let a = req("100-0000000008", 1);
        let b = req("100-0000000009", 1);
        assert_eq!(
            RequestOrder::of(&a).cmp(&RequestOrder::of(&b)),
            a.cmp_priority(&b)
        );
    }

    #[test]
    fn tenant_usage_follows_node_changes() {
        let node = |tenant: Option<&str>, cores: u64| {
            let mut n = Node::new();
            n.id = NodeId::from("0000000001");
            n.tenant_name = tenant.map(str::to_string);
            let mut r = QuotaInformation::usage();
            r.set("cores", cores as f64);
            r.set("instances", 1.0);
            r.set("ram", 512.0);
            n.resources = Some(r.to_resources());
            CompactNode::from(n)
        };
        let mut t = Tenants::default();
        let a = node(Some("t"), 2);
        t.replace(None, Some(&a));
        assert_eq!(t.get("t").used.get("cores"), 2.0);
        let before = t.get("t").changes;
        let b = node(Some("t"), 4);
        t.replace(Some(&a), Some(&b));
        assert_eq!(t.get("t").used.get("cores"), 4.0);
        assert!(t.get("t").changes > before);
        let c = node(None, 4);
        t.replace(Some(&b), Some(&c));
        assert_eq!(t.get("t").used.get("cores"), 0.0);
        assert_eq!(t.get("other").changes, 0);
        let mut reloaded = Tenants::default();
        reloaded.continue_from(&t);
        assert!(reloaded.get("t").changes > t.get("t").changes);
    }
}
