use super::super::reload::Load;
use super::*;
use crate::model::RequestState;

fn stat(mzxid: i64) -> Stat {
    Stat {
        mzxid,
        ctime: 1000,
        mtime: 2000,
        ..crate::zk::IN_MEMORY_STAT
    }
}

fn node_update(id: &str, mzxid: i64, state: crate::model::NodeState) -> Update {
    let mut n = Node::new();
    n.set_state(state);
    n.id = NodeId::from(id);
    Update::Node(NodeId::from(id), Some(Arc::new(n.into())), stat(mzxid))
}

/// A live tree of `in-use` nodes (`mzxid` 5) with these lock contenders.
fn in_use_with_locks(ids: &[&str], locks: &[(&str, &str)]) -> Tree {
    let mut t = Tree::default();
    let mut out = Vec::new();
    for id in ids {
        t.apply(node_update(id, 5, crate::model::NodeState::InUse), &mut out);
    }
    for (id, contender) in locks {
        let path = ZkPath::NodeLock(NodeId::from(*id), Some(contender.to_string()));
        t.apply(Update::Present(path, true), &mut out);
    }
    t
}

#[test]
fn older_data_never_overwrites_newer() {
    use crate::model::NodeState::*;
    let mut t = Tree::default();
    let mut out = Vec::new();
    t.apply(node_update("0000000001", 5, Ready), &mut out);
    t.apply(node_update("0000000001", 3, Init), &mut out);
    let id = NodeId::from("0000000001");
    assert_eq!(t.nodes[&id].node.state(), Ready);
    assert_eq!(t.nodes[&id].node.id(), &id);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].change, Change::Added);
    t.apply(node_update("0000000001", 7, Used), &mut out);
    assert_eq!(out[1].change, Change::Updated);
    t.apply(Update::Gone(ZkPath::Node(id.clone())), &mut out);
    assert!(t.nodes.is_empty());
    assert_eq!(out[2].change, Change::Removed);
}

#[test]
fn lock_contenders_follow_presence() {
    use crate::model::NodeState::*;
    let mut t = Tree::default();
    let mut out = Vec::new();
    let id = NodeId::from("0000000001");
    let c = |n: &str| ZkPath::NodeLock(id.clone(), Some(n.to_string()));
    // A contender may be seen before the node's data.
    t.apply(Update::Present(c("b__lock__0000000002"), true), &mut out);
    t.apply(node_update("0000000001", 5, Ready), &mut out);
    t.apply(Update::Present(c("a__lock__0000000001"), true), &mut out);
    t.apply(Update::Present(c("junk"), true), &mut out);
    assert_eq!(
        t.nodes[&id].lock_contenders,
        ["a__lock__0000000001", "b__lock__0000000002"]
    );
    t.apply(Update::Present(c("b__lock__0000000002"), false), &mut out);
    assert_eq!(t.nodes[&id].lock_contenders, ["a__lock__0000000001"]);
    t.apply(
        Update::Present(ZkPath::NodeLock(id.clone(), None), false),
        &mut out,
    );
    assert!(!t.nodes[&id].probably_locked());
}

#[test]
fn a_single_contender_takes_one_slot() {
    use crate::model::NodeState::*;
    let mut t = Tree::default();
    let mut out = Vec::new();
    let id = NodeId::from("0000000001");
    t.apply(node_update("0000000001", 5, InUse), &mut out);
    let c = ZkPath::NodeLock(id.clone(), Some("a__lock__0000000001".to_string()));
    t.apply(Update::Present(c, true), &mut out);
    assert_eq!(t.nodes[&id].lock_contenders.len(), 1);
    assert_eq!(
        t.nodes[&id].lock_contenders.capacity(),
        1,
        "no spare slots kept for each of 90,000 locked nodes"
    );
}

#[test]
fn a_cached_nodes_contenders_are_kept_once() {
    use crate::model::NodeState::*;
    let mut t = Tree::default();
    let mut out = Vec::new();
    let id = NodeId::from("0000000001");
    let c = |n: &str| ZkPath::NodeLock(id.clone(), Some(n.to_string()));
    t.apply(Update::Present(c("b__lock__0000000002"), true), &mut out);
    assert_eq!(
        t.node_locks[&id].len(),
        1,
        "kept for the id until the node is cached"
    );
    t.apply(node_update("0000000001", 5, Ready), &mut out);
    t.apply(Update::Present(c("a__lock__0000000001"), true), &mut out);
    t.apply(node_update("0000000001", 6, InUse), &mut out);
    assert!(
        t.node_locks.is_empty(),
        "no second copy: {:?}",
        t.node_locks
    );
    assert_eq!(
        t.nodes[&id].lock_contenders,
        ["a__lock__0000000001", "b__lock__0000000002"]
    );
    // The znode emptied: its contenders stay with the id, and come back with data.
    t.apply(Update::Node(id.clone(), None, stat(7)), &mut out);
    assert_eq!(t.node_locks[&id].len(), 2);
    t.apply(node_update("0000000001", 8, Ready), &mut out);
    assert!(t.node_locks.is_empty());
    assert_eq!(t.nodes[&id].lock_contenders.len(), 2);
    let mut other = Tree::default();
    out.clear();
    other.replace_with(std::mem::take(&mut t), &mut out, usize::MAX);
    let locks = out.iter().filter(|e| e.kind == CacheKind::NodeLock).count();
    assert_eq!(
        locks, 2,
        "a reload reports the contenders of cached nodes: {out:?}"
    );
}

#[test]
fn a_load_reuses_unchanged_nodes_and_reports_contender_changes() {
    let mut live = in_use_with_locks(
        &["0000000001", "0000000002", "0000000003"],
        &[
            ("0000000001", "a__lock__0000000001"),
            ("0000000002", "b__lock__0000000001"),
        ],
    );
    let mut out = Vec::new();
    let c = |id: &str, n: &str| ZkPath::NodeLock(NodeId::from(id), Some(n.to_string()));
    let node = |t: &Tree, id: &str| t.nodes[&NodeId::from(id)].clone();
    let (one, two, three) = (
        node(&live, "0000000001"),
        node(&live, "0000000002"),
        node(&live, "0000000003"),
    );
    // A reload: 1 unchanged; 2's lock now held by someone else; 3 locked meanwhile.
    let mut new = Tree::default();
    let lock = |n: &str| vec![n.to_string(), "not-a-contender".to_string()];
    new.put_loaded_node(
        LoadedNode::Unchanged(one.clone()),
        one.stat,
        lock("a__lock__0000000001"),
    );
    new.put_loaded_node(
        LoadedNode::Unchanged(two.clone()),
        two.stat,
        lock("c__lock__0000000002"),
    );
    new.put_loaded_node(
        LoadedNode::Unchanged(three.clone()),
        three.stat,
        lock("d__lock__0000000003"),
    );
    assert!(
        Arc::ptr_eq(&node(&new, "0000000001"), &one),
        "unchanged: the same cached node"
    );
    assert!(
        Arc::ptr_eq(&node(&new, "0000000002").node, &two.node),
        "the record is shared"
    );
    assert_eq!(
        node(&new, "0000000002").lock_contenders,
        ["c__lock__0000000002"]
    );
    assert_eq!(node(&new, "0000000003").lock_contenders.capacity(), 1);
    out.clear();
    let _old = live.replace_with(new, &mut out, usize::MAX);
    let mut got: Vec<_> = out.iter().map(|e| (e.path.clone(), e.change)).collect();
    got.sort_by_key(|g| format!("{g:?}"));
    assert_eq!(
        got,
        [
            (c("0000000002", "b__lock__0000000001"), Change::Removed),
            (c("0000000002", "c__lock__0000000002"), Change::Added),
            (c("0000000003", "d__lock__0000000003"), Change::Added),
        ]
    );
}

fn request_update(id: &str, mzxid: i64, rp: i64, state: RequestState) -> Update {
    let r = NodeRequest {
        id: RequestId::from(id),
        relative_priority: rp,
        state,
        ..NodeRequest::default()
    };
    Update::Request(RequestId::from(id), r, stat(mzxid))
}

#[test]
fn waiting_requests_are_kept_in_priority_order() {
    use RequestState::*;
    let mut t = Tree::default();
    let mut out = Vec::new();
    t.apply(request_update("200-0000000001", 1, 0, Requested), &mut out);
    t.apply(request_update("100-0000000003", 1, 0, Requested), &mut out);
    t.apply(request_update("100-0000000002", 1, 1, Requested), &mut out);
    t.apply(request_update("100-0000000004", 1, 0, Pending), &mut out);
    let ids = |t: &Tree| -> Vec<String> {
        t.requested
            .values()
            .map(|r| r.request.id.to_string())
            .collect()
    };
    assert_eq!(
        ids(&t),
        ["100-0000000003", "100-0000000002", "200-0000000001"]
    );
    // Zuul revises a relative priority; a request leaves when no longer requested.
    t.apply(request_update("100-0000000002", 2, 0, Requested), &mut out);
    t.apply(request_update("100-0000000003", 2, 0, Pending), &mut out);
    assert_eq!(ids(&t), ["100-0000000002", "200-0000000001"]);
    t.apply(
        Update::Gone(ZkPath::Request(RequestId::from("200-0000000001"))),
        &mut out,
    );
    assert_eq!(ids(&t), ["100-0000000002"]);
}

#[test]
fn tenant_usage_follows_applied_nodes() {
    use crate::model::NodeState::*;
    let node = |id: &str, mzxid: i64, tenant: Option<&str>| {
        let mut n = Node::new();
        n.set_state(Ready);
        n.id = NodeId::from(id);
        n.tenant_name = tenant.map(str::to_string);
        let mut m = serde_json::Map::new();
        m.insert("cores".into(), 2.into());
        m.insert("instances".into(), 1.into());
        m.insert("ram".into(), 1024.into());
        n.resources = Some(m);
        Update::Node(NodeId::from(id), Some(Arc::new(n.into())), stat(mzxid))
    };
    let mut t = Tree::default();
    let mut out = Vec::new();
    t.apply(node("0000000001", 1, Some("t")), &mut out);
    t.apply(node("0000000002", 1, Some("t")), &mut out);
    t.apply(node("0000000003", 1, None), &mut out);
    assert_eq!(t.tenants.get("t").used.get("cores"), 4.0);
    t.apply(node("0000000002", 2, None), &mut out);
    assert_eq!(t.tenants.get("t").used.get("instances"), 1.0);
    let before = t.tenants.get("t").changes;
    t.apply(
        Update::Gone(ZkPath::Node(NodeId::from("0000000001"))),
        &mut out,
    );
    assert_eq!(t.tenants.get("t").used.get("instances"), 0.0);
    assert!(t.tenants.get("t").changes > before);
}

/// What the launcher's scans found before the cache kept [`NodeIndex`]: the sums
/// and ready sets worked out from every cached node.
fn scan_sum(t: &Tree, keep: impl Fn(&CachedNode) -> bool) -> super::super::NodeSum {
    let mut sum = super::super::NodeSum::default();
    for n in t.nodes.values().filter(|n| keep(n)) {
        match n.node.standard_resources() {
            Some(r) => {
                sum.standard_nodes += 1;
                for (s, v) in sum.standard.iter_mut().zip(r) {
                    *s += v;
                }
            }
            None => {
                sum.other.insert(n.id().clone());
            }
        }
    }
    sum
}

fn scan_ready(t: &Tree, provider: &str, pool: &str, label: &str) -> BTreeSet<NodeId> {
    t.nodes
        .values()
        .filter(|n| {
            let node = &n.node;
            node.state() == crate::model::NodeState::Ready
                && node.allocated_to().is_none()
                && node.provider() == Some(provider)
                && node.pool() == Some(pool)
                && node.has_label(label)
                && !n.probably_locked()
        })
        .map(|n| n.id().clone())
        .collect()
}

const PROVIDERS: [&str; 2] = ["p0", "p1"];
const POOLS: [&str; 2] = ["main", "second"];
const LABELS: [&str; 3] = ["l0", "l1", "l2"];
const REQUESTS: [&str; 3] = ["100-0000000001", "100-0000000002", "200-0000000003"];
const TENANTS: [&str; 3] = ["t0", "t1", "none"];

/// Asserts that two usages are the same number for every resource either names.
fn assert_same_usage(got: &QuotaInformation, want: &QuotaInformation, what: &str) {
    for k in got
        .keys()
        .chain(want.keys())
        .chain(["cores", "instances", "ram"])
    {
        assert_eq!(got.get(k), want.get(k), "{k} of {what}: {got} vs {want}");
    }
}

/// Asserts that the index equals a from-scratch scan (`what` says after which edit).
fn assert_index_matches_scan(t: &Tree, what: &str) {
    let empty = super::super::NodeSum::default();
    let mut ready_entries = 0;
    for p in PROVIDERS {
        let want = scan_sum(t, |n| n.node.provider() == Some(p));
        let got = t.node_index.provider_sum(p).unwrap_or(&empty);
        assert_eq!(got, &want, "provider {p} after {what}");
        for pool in POOLS {
            let want = scan_sum(t, |n| {
                n.node.provider() == Some(p) && n.node.pool() == Some(pool)
            });
            let got = t.node_index.pool_sum(p, pool).unwrap_or(&empty);
            assert_eq!(got, &want, "provider {p} pool {pool} after {what}");
            for label in LABELS {
                let want = scan_ready(t, p, pool, label);
                let got = t
                    .node_index
                    .ready(p, pool, label)
                    .cloned()
                    .unwrap_or_default();
                assert_eq!(got, want, "ready {p}/{pool}/{label} after {what}");
                ready_entries += want.len();
            }
            let reusable: BTreeSet<NodeId> = t
                .nodes
                .values()
                .filter(|n| {
                    n.node.provider() == Some(p)
                        && n.node.pool() == Some(pool)
                        && n.node.labels().next().is_some()
                        && NodeIndex::reusable(n)
                })
                .map(|n| n.id().clone())
                .collect();
            assert_eq!(
                t.node_index.pool_reusable(p, pool),
                reusable,
                "reusable in {p}/{pool} after {what}"
            );
            let deleting = t
                .nodes
                .values()
                .filter(|n| {
                    n.node.provider() == Some(p)
                        && n.node.pool() == Some(pool)
                        && n.node.state() == crate::model::NodeState::Deleting
                })
                .count() as u64;
            assert_eq!(
                t.node_index.pool_deleting(p, pool),
                deleting,
                "deleting in {p}/{pool} after {what}"
            );
        }
    }
    assert_eq!(
        t.node_index.ready_entries(),
        ready_entries,
        "no entry for anything but a reusable node after {what}"
    );
    let unheld: BTreeSet<NodeId> = t
        .nodes
        .values()
        .filter(|n| NodeIndex::unheld(n))
        .map(|n| n.id().clone())
        .collect();
    assert_eq!(t.node_index.unheld_ids(), &unheld, "unheld after {what}");
    for r in REQUESTS {
        let want: Vec<NodeId> = t
            .nodes
            .values()
            .filter(|n| n.node.allocated_to() == Some(r))
            .map(|n| n.id().clone())
            .collect();
        let got: Vec<NodeId> = t
            .allocated_nodes(&RequestId::from(r))
            .iter()
            .map(|n| n.id().clone())
            .collect();
        assert_eq!(got, want, "nodes allocated to {r} after {what}");
    }
    let allocated = t
        .nodes
        .values()
        .filter(|n| n.node.allocated_to().is_some())
        .count();
    assert_eq!(
        t.allocations.len(),
        allocated,
        "one entry per allocated node after {what}"
    );
    for tenant in TENANTS {
        for claimed in [&REQUESTS[..0], &REQUESTS[..1], &REQUESTS[1..]] {
            let claimed: Vec<RequestId> = claimed.iter().map(|r| RequestId::from(*r)).collect();
            let got = t.tenant_usage_without(tenant, &claimed).used;
            let want = t.tenant_usage_by_scan(tenant, &claimed);
            assert_same_usage(
                &got,
                &want,
                &format!("{tenant} without {claimed:?} after {what}"),
            );
        }
    }
    assert_eq!(
        t.node_index.counts(),
        &scan_counts(t),
        "node counts after {what}"
    );
}

/// The node counts as the stats worker and min-ready counted them by a scan.
fn scan_counts(t: &Tree) -> super::super::NodeCounts {
    use super::super::derived::state_index;
    let mut c = super::super::NodeCounts::default();
    for n in t.nodes.values() {
        let node = &n.node;
        let i = state_index(node.state());
        c.all[i] += 1;
        if let Some(p) = node.provider() {
            c.by_provider.entry(p.to_string()).or_default()[i] += 1;
        }
        let labels: BTreeSet<&str> = node.labels().collect();
        for l in labels {
            c.by_label.entry(l.to_string()).or_default()[i] += 1;
            if node.state() == crate::model::NodeState::Ready && node.allocated_to().is_none() {
                *c.ready_unallocated.entry(l.to_string()).or_default() += 1;
            }
        }
    }
    c
}

/// A random node record: provider and pool (sometimes none), state, labels,
/// allocation, and `resources` standard, in another form, or none.
fn random_node(rng: &mut impl rand::Rng, id: &str) -> CompactNode {
    random_record(rng, id).into()
}

/// [`random_node`] as a record.
fn random_record(rng: &mut impl rand::Rng, id: &str) -> Node {
    use crate::model::NodeState::*;
    let mut n = Node::new();
    n.id = NodeId::from(id);
    let pick = |rng: &mut dyn rand::RngCore, k: usize| (rng.next_u32() as usize) % k;
    n.provider = (pick(rng, 6) > 0).then(|| PROVIDERS[pick(rng, 2)].to_string());
    n.pool = (pick(rng, 6) > 0).then(|| POOLS[pick(rng, 2)].to_string());
    n.set_state([Ready, Ready, Ready, InUse, Building, Deleting, Used, Hold][pick(rng, 8)]);
    n.node_type = LABELS
        .iter()
        .filter(|_| pick(rng, 2) == 0)
        .map(|l| l.to_string())
        .collect();
    if pick(rng, 8) == 0 {
        // A label listed twice counts once.
        n.node_type.push(LABELS[pick(rng, 3)].to_string());
    }
    n.allocated_to = (pick(rng, 3) == 0).then(|| RequestId::from(REQUESTS[pick(rng, 3)]));
    n.tenant_name = [None, Some("t0"), Some("t0"), Some("t1")][pick(rng, 4)].map(str::to_string);
    let mut m = serde_json::Map::new();
    match pick(rng, 5) {
        0 => {}
        1 => {
            m.insert("cores".into(), 1.5.into());
            m.insert("instances".into(), 1.into());
            m.insert("ram".into(), 512.into());
            n.resources = Some(m);
        }
        2 => {
            m.insert("cores".into(), (pick(rng, 8) as i64).into());
            m.insert("instances".into(), 1.into());
            m.insert("ram".into(), 2048.into());
            m.insert("gpu".into(), (pick(rng, 3) as i64).into());
            n.resources = Some(m);
        }
        _ => {
            m.insert("cores".into(), (pick(rng, 8) as i64).into());
            m.insert("instances".into(), 1.into());
            m.insert("ram".into(), (1024 * pick(rng, 8) as i64).into());
            n.resources = Some(m);
        }
    }
    n
}

#[test]
fn node_index_follows_random_edits() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(17);
    let mut t = Tree::default();
    let mut out = Vec::new();
    let mut mzxid = 1;
    for step in 0..4000 {
        // Two ids that are not plain 10-digit sequences (kept apart by `Allocations`).
        let id = match rng.random_range(0..40) {
            38 => "000000038".to_string(),
            39 => "node-39".to_string(),
            i => format!("{i:010}"),
        };
        let nid = NodeId::from(id.as_str());
        let contender = format!("{:032x}__lock__{:010}", rng.random_range(0..3), 0);
        mzxid += 1;
        let (what, update) = match rng.random_range(0..10) {
            0..=4 => (
                "node data",
                Update::Node(nid, Some(Arc::new(random_node(&mut rng, &id))), stat(mzxid)),
            ),
            5 => ("node gone", Update::Gone(ZkPath::Node(nid))),
            6 => ("node emptied", Update::Node(nid, None, stat(mzxid))),
            7 => (
                "contender added",
                Update::Present(ZkPath::NodeLock(nid, Some(contender)), true),
            ),
            8 => (
                "contender removed",
                Update::Present(ZkPath::NodeLock(nid, Some(contender)), false),
            ),
            _ => (
                "lock dir removed",
                Update::Present(ZkPath::NodeLock(nid, None), false),
            ),
        };
        t.apply(update, &mut out);
        assert_index_matches_scan(&t, &format!("step {step}: {what} {id}"));
    }
    assert!(
        t.node_index.ready_entries() > 0,
        "the edits left some reusable node"
    );
    // A full load builds a fresh tree as the load does (`put_loaded_node`, records
    // decoded anew or kept from the live tree); it replaces the live one with its index.
    let mut loaded = Tree::default();
    for (i, n) in t.nodes.values().enumerate() {
        let record = if i % 2 == 0 {
            LoadedNode::Read(n.node.clone())
        } else {
            LoadedNode::Unchanged(n.clone())
        };
        loaded.put_loaded_node(record, n.stat, n.lock_contenders.clone());
    }
    assert_index_matches_scan(&loaded, "the loaded tree");
    let mut live = Tree::default();
    live.apply(
        node_update("0000000099", 1, crate::model::NodeState::Ready),
        &mut out,
    );
    live.replace_with(loaded, &mut out, usize::MAX);
    assert_index_matches_scan(&live, "a full reload");
    assert_eq!(live.nodes.len(), t.nodes.len());
    // A reload as a patch of a live tree that holds half of the nodes as they are
    // (kept, not decoded again), the other half without their lock contenders, and
    // a node that is gone since.
    let mut live = Tree::default();
    live.apply(
        node_update("0000000099", 1, crate::model::NodeState::Ready),
        &mut out,
    );
    for (i, n) in t.nodes.values().enumerate() {
        if i % 2 == 0 {
            live.apply(
                Update::Node(n.id().clone(), Some(n.node.clone()), n.stat),
                &mut out,
            );
        } else {
            live.store_node(n.id().clone(), n);
        }
    }
    assert_index_matches_scan(&live, "the live tree before the patch");
    let mut patch = Load::for_tree(&live);
    let ids: Vec<String> = t.nodes.keys().map(|id| id.to_string()).collect();
    patch.list_nodes(&live, &ids);
    for n in t.nodes.values() {
        let kept = live.nodes[n.id()].clone();
        patch.put_node(
            LoadedNode::Unchanged(kept),
            n.stat,
            n.lock_contenders.clone(),
        );
    }
    live.replace_with_load(patch, &mut out, usize::MAX);
    assert_index_matches_scan(&live, "a reload as a patch");
    assert_eq!(live.nodes, t.nodes);
}

/// A tenant's usage less its nodes allocated to claimed requests, from the running
/// total and the index of allocations, is the number the launcher's scan found: over
/// random fleets (built by random edits, so that the totals went up and down) and
/// random sets of claimed requests, some without nodes.
#[test]
fn tenant_usage_without_claimed_requests_equals_a_scan() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(1717);
    let requests: Vec<RequestId> = (1..=12)
        .map(|i| RequestId::from(format!("100-{i:010}")))
        .collect();
    for fleet in 0..40 {
        let mut t = Tree::default();
        let mut out = Vec::new();
        let ids = rng.random_range(1..120);
        for step in 0..rng.random_range(0..400) {
            let id = format!("{:010}", rng.random_range(0..ids));
            let nid = NodeId::from(id.as_str());
            let update = if rng.random_range(0..6) == 0 {
                Update::Gone(ZkPath::Node(nid))
            } else {
                let mut n = random_record(&mut rng, &id);
                n.allocated_to = (rng.random_range(0..3) > 0)
                    .then(|| requests[rng.random_range(0..requests.len())].clone());
                Update::Node(nid, Some(Arc::new(n.into())), stat(step + 2))
            };
            t.apply(update, &mut out);
        }
        for _ in 0..20 {
            let claimed: Vec<RequestId> = requests
                .iter()
                .filter(|_| rng.random_range(0..3) == 0)
                .cloned()
                .collect();
            for tenant in TENANTS {
                let got = t.tenant_usage_without(tenant, &claimed).used;
                let want = t.tenant_usage_by_scan(tenant, &claimed);
                assert_same_usage(
                    &got,
                    &want,
                    &format!("fleet {fleet}: {tenant} without {claimed:?}"),
                );
            }
        }
    }
}

#[test]
fn empty_and_corrupt_nodes() {
    let id = NodeId::from("0000000001");
    let mut t = Tree::default();
    let mut out = Vec::new();
    let u = decode(
        "/nodepool/nodes/0000000001",
        ZkPath::Node(id.clone()),
        Some((Vec::new(), stat(1))),
    );
    t.apply(u, &mut out);
    assert!(t.nodes.is_empty());
    assert!(t.empty_nodes.contains(&id));
    let u = decode(
        "/nodepool/nodes/0000000001",
        ZkPath::Node(id.clone()),
        Some((b"{x".to_vec(), stat(2))),
    );
    t.apply(u, &mut out);
    assert_eq!(t.corrupt.len(), 1);
    t.apply(
        node_update("0000000001", 3, crate::model::NodeState::Ready),
        &mut out,
    );
    assert!(t.corrupt.is_empty());
    assert!(t.empty_nodes.is_empty());
    assert_eq!(t.nodes.len(), 1);
}

#[test]
fn replace_reports_differences() {
    use crate::model::NodeState::*;
    let mut live = Tree::default();
    let mut out = Vec::new();
    live.apply(node_update("0000000001", 1, Ready), &mut out);
    live.apply(node_update("0000000002", 1, Ready), &mut out);
    live.apply(Update::Present(ZkPath::Pause("img".into()), true), &mut out);
    let mut new = Tree::default();
    new.apply(node_update("0000000002", 4, Used), &mut out);
    new.apply(node_update("0000000003", 4, Init), &mut out);
    out.clear();
    live.replace_with(new, &mut out, usize::MAX);
    let mut got: Vec<_> = out
        .iter()
        .map(|e| (e.kind, e.path.clone(), e.change))
        .collect();
    got.sort_by_key(|g| format!("{g:?}"));
    let n = |s: &str| ZkPath::Node(NodeId::from(s));
    let mut want = vec![
        (CacheKind::Node, n("0000000001"), Change::Removed),
        (CacheKind::Node, n("0000000002"), Change::Updated),
        (CacheKind::Node, n("0000000003"), Change::Added),
        (
            CacheKind::ImagePause,
            ZkPath::Pause("img".into()),
            Change::Removed,
        ),
    ];
    want.sort_by_key(|g| format!("{g:?}"));
    assert_eq!(got, want);
    assert_eq!(live.nodes.len(), 2);
}

#[test]
fn replace_stops_reporting_past_its_limit_but_replaces_everything() {
    use crate::model::NodeState::*;
    let mut live = Tree::default();
    let mut out = Vec::new();
    live.apply(Update::Present(ZkPath::Pause("img".into()), true), &mut out);
    let mut new = Tree::default();
    for i in 1..=50 {
        let id = format!("{i:010}");
        let Update::Node(_, Some(node), _) = node_update(&id, 4, InUse) else {
            unreachable!("a node update")
        };
        new.put_loaded_node(
            LoadedNode::Read(node),
            stat(4),
            vec![format!("a__lock__{i:010}")],
        );
    }
    out.clear();
    live.replace_with(new, &mut out, 7);
    assert_eq!(out.len(), 8, "the limit and one more: {out:?}");
    assert_eq!(live.nodes.len(), 50);
    assert!(live.paused.is_empty(), "replaced past the limit too");
    assert_eq!(
        live.nodes[&NodeId::from("0000000050")].lock_contenders,
        ["a__lock__0000000050"]
    );
}

#[test]
fn a_reload_patch_keeps_unchanged_nodes_and_reports_contender_changes() {
    let mut live = in_use_with_locks(
        &["0000000001", "0000000002", "0000000003", "0000000004"],
        &[
            ("0000000001", "a__lock__0000000001"),
            ("0000000002", "b__lock__0000000001"),
            ("0000000004", "e__lock__0000000001"),
        ],
    );
    let mut out = Vec::new();
    let c = |id: &str, n: &str| ZkPath::NodeLock(NodeId::from(id), Some(n.to_string()));
    let node = |t: &Tree, id: &str| t.nodes[&NodeId::from(id)].clone();
    let (one, two, three) = (
        node(&live, "0000000001"),
        node(&live, "0000000002"),
        node(&live, "0000000003"),
    );
    // A reload: 1 unchanged; 2's lock now held by someone else; 3 locked meanwhile;
    // 4 gone (with its lock).
    let mut load = Load::for_tree(&live);
    let ids = ["0000000001", "0000000002", "0000000003"].map(String::from);
    load.list_nodes(&live, &ids);
    let lock = |n: &str| vec![n.to_string(), "not-a-contender".to_string()];
    load.put_node(
        LoadedNode::Unchanged(one.clone()),
        one.stat,
        lock("a__lock__0000000001"),
    );
    load.put_node(
        LoadedNode::Unchanged(two.clone()),
        two.stat,
        lock("c__lock__0000000002"),
    );
    load.put_node(
        LoadedNode::Unchanged(three.clone()),
        three.stat,
        lock("d__lock__0000000003"),
    );
    assert_eq!(load.node_steps(), 2, "nothing kept for the unchanged node");
    out.clear();
    let _old = live.replace_with_load(load, &mut out, usize::MAX);
    assert!(
        Arc::ptr_eq(&node(&live, "0000000001"), &one),
        "unchanged: the same cached node"
    );
    assert!(
        Arc::ptr_eq(&node(&live, "0000000002").node, &two.node),
        "the record is shared"
    );
    assert_eq!(
        node(&live, "0000000002").lock_contenders,
        ["c__lock__0000000002"]
    );
    assert_eq!(node(&live, "0000000003").lock_contenders.capacity(), 1);
    assert!(!live.nodes.contains_key(&NodeId::from("0000000004")));
    let mut got: Vec<_> = out.iter().map(|e| (e.path.clone(), e.change)).collect();
    got.sort_by_key(|g| format!("{g:?}"));
    let mut want = vec![
        (c("0000000002", "b__lock__0000000001"), Change::Removed),
        (c("0000000002", "c__lock__0000000002"), Change::Added),
        (c("0000000003", "d__lock__0000000003"), Change::Added),
        (c("0000000004", "e__lock__0000000001"), Change::Removed),
        (ZkPath::Node(NodeId::from("0000000004")), Change::Removed),
    ];
    want.sort_by_key(|g| format!("{g:?}"));
    assert_eq!(got, want);
}

#[test]
fn a_reload_patch_reports_differences_and_replaces_the_rest() {
    use crate::model::NodeState::*;
    let mut live = Tree::default();
    let mut out = Vec::new();
    live.apply(node_update("0000000001", 1, Ready), &mut out);
    live.apply(node_update("0000000002", 1, Ready), &mut out);
    live.apply(Update::Present(ZkPath::Pause("img".into()), true), &mut out);
    let mut new = Load::for_tree(&live);
    new.list_nodes(&live, &["0000000002".into(), "0000000003".into()]);
    new.apply(node_update("0000000002", 4, Used));
    new.apply(node_update("0000000003", 4, Init));
    new.apply(Update::Present(ZkPath::Image("img2".into()), true));
    out.clear();
    live.replace_with_load(new, &mut out, usize::MAX);
    let mut got: Vec<_> = out
        .iter()
        .map(|e| (e.kind, e.path.clone(), e.change))
        .collect();
    got.sort_by_key(|g| format!("{g:?}"));
    let n = |s: &str| ZkPath::Node(NodeId::from(s));
    let mut want = vec![
        (CacheKind::Node, n("0000000001"), Change::Removed),
        (CacheKind::Node, n("0000000002"), Change::Updated),
        (CacheKind::Node, n("0000000003"), Change::Added),
        (
            CacheKind::ImagePause,
            ZkPath::Pause("img".into()),
            Change::Removed,
        ),
        (
            CacheKind::Image,
            ZkPath::Image("img2".into()),
            Change::Added,
        ),
    ];
    want.sort_by_key(|g| format!("{g:?}"));
    assert_eq!(got, want);
    assert_eq!(live.nodes.len(), 2);
    assert_eq!(live.nodes[&NodeId::from("0000000002")].node.state(), Used);
    assert!(live.paused.is_empty());
    assert!(live.images.contains("img2"));
}

#[test]
fn a_reload_without_the_nodes_dir_forgets_every_node() {
    use crate::model::NodeState::*;
    let mut live = Tree::default();
    let mut out = Vec::new();
    live.apply(node_update("0000000001", 1, Ready), &mut out);
    live.apply(
        Update::Node(NodeId::from("0000000002"), None, stat(1)),
        &mut out,
    );
    let load = Load::for_tree(&live);
    out.clear();
    live.replace_with_load(load, &mut out, usize::MAX);
    assert!(live.nodes.is_empty());
    assert!(live.empty_nodes.is_empty());
    assert_eq!(
        live.node_index.counts(),
        Tree::default().node_index.counts()
    );
}
