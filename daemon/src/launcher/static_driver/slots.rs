//! Which slot each node of a static provider fills, and what a sync has to do about it
//! — pure functions over the configured hosts and the cached nodes, so the rules are
//! tested without ZooKeeper.
//!
//! A host with `max-parallel-jobs: n` has slots `0..n`; each holds at most one node. As
//! in Nodepool (`getRegisteredNodes`), the nodes of the provider that are not `building`
//! or `deleting` are placed by their `slot` when it is free and in range; the others (no
//! slot, a taken or out-of-range one) go to the host's first free slot, else past its
//! end (an excess after `max-parallel-jobs` was lowered). A node whose host (name,
//! username, port) is not configured any more belongs to no host.
//!
//! [`plan`] then says: register a node in every empty slot, remove the nodes past the
//! end and those of hosts no longer configured. Only nodes that are `ready`,
//! unallocated and unlocked are removed — the others (in use, held, handed to a
//! request) are removed once they come back and are deleted, and are then not
//! registered again.

use std::collections::BTreeMap;

use nodepool_shared::config::HostKey;
use nodepool_shared::model::{CompactNode, NodeId, NodeState};
use nodepool_shared::zk::CachedNode;

/// The host of a node record: `hostname`, `username`, `connection_port`.
pub fn host_of(node: &CompactNode) -> HostKey {
    HostKey {
        name: node.hostname().unwrap_or_default().to_string(),
        username: node.username().unwrap_or_default().to_string(),
        port: node.connection_port(),
    }
}

/// What the slot rules need to know of a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotNode {
    /// The node id.
    pub id: NodeId,
    /// Its host.
    pub host: HostKey,
    /// Its `slot`.
    pub slot: Option<i64>,
    /// Its state.
    pub state: NodeState,
    /// Whether it is `ready`, unallocated and unlocked (so it may be removed now).
    pub removable: bool,
}

impl SlotNode {
    /// From a cached node.
    pub fn of(n: &CachedNode) -> Self {
        let node = &n.node;
        SlotNode {
            id: node.id().clone(),
            host: host_of(node),
            slot: node.slot(),
            state: node.state(),
            removable: node.state() == NodeState::Ready
                && node.allocated_to().is_none()
                && !n.probably_locked(),
        }
    }
}

/// The slots of every host: configured hosts with `max-parallel-jobs` entries (`None` =
/// empty), possibly followed by excess nodes; unconfigured hosts with their nodes.
pub type Slots = BTreeMap<HostKey, Vec<Option<SlotNode>>>;

/// Places `nodes` (one provider's, any order) into the slots of the `configured` hosts
/// (host, `max-parallel-jobs`); see the module doc.
pub fn assign(configured: &[(HostKey, u32)], nodes: &[SlotNode]) -> Slots {
    let mut slots: Slots = configured
        .iter()
        .map(|(h, n)| (h.clone(), vec![None; *n as usize]))
        .collect();
    let mut sorted: Vec<&SlotNode> = nodes
        .iter()
        .filter(|n| !matches!(n.state, NodeState::Building | NodeState::Deleting))
        .collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    let mut unslotted = Vec::new();
    for n in sorted {
        let Some(host) = slots.get_mut(&n.host) else {
            slots.insert(n.host.clone(), Vec::new());
            unslotted.push(n);
            continue;
        };
        match n.slot.and_then(|s| usize::try_from(s).ok()) {
            Some(s) if s < host.len() && host[s].is_none() => host[s] = Some(n.clone()),
            _ => unslotted.push(n),
        }
    }
    for n in unslotted {
        let host = slots.entry(n.host.clone()).or_default();
        match host.iter().position(Option::is_none) {
            Some(free) => host[free] = Some(n.clone()),
            None => host.push(Some(n.clone())),
        }
    }
    slots
}

/// What a sync does, from [`assign`]'s result.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Empty slots of configured hosts, by host (slot numbers ascending).
    pub register: BTreeMap<HostKey, Vec<u32>>,
    /// Removable nodes past a host's `max-parallel-jobs` or of hosts no longer
    /// configured, to be marked `deleting`.
    pub remove: Vec<NodeId>,
    /// The nodes in the slots of configured hosts (candidates for an update).
    pub existing: BTreeMap<HostKey, Vec<NodeId>>,
}

/// The work for `slots` of the `configured` hosts; see the module doc.
pub fn plan(configured: &[(HostKey, u32)], slots: &Slots) -> Plan {
    let mut p = Plan::default();
    for (host, entries) in slots {
        let wanted = configured
            .iter()
            .find(|(h, _)| h == host)
            .map(|(_, n)| *n as usize);
        for (i, entry) in entries.iter().enumerate() {
            match (entry, wanted) {
                (None, Some(n)) if i < n => {
                    p.register.entry(host.clone()).or_default().push(i as u32)
                }
                (None, _) => {}
                (Some(node), Some(n)) if i < n => {
                    p.existing
                        .entry(host.clone())
                        .or_default()
                        .push(node.id.clone());
                }
                (Some(node), _) => {
                    if node.removable {
                        p.remove.push(node.id.clone());
                    }
                }
            }
        }
    }
    p.remove.sort();
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(name: &str) -> HostKey {
        HostKey {
            name: name.into(),
            username: "zuul".into(),
            port: 22,
        }
    }

    fn n(id: &str, host: &str, slot: Option<i64>, state: NodeState) -> SlotNode {
        SlotNode {
            id: NodeId::from(id),
            host: h(host),
            slot,
            state,
            removable: state == NodeState::Ready,
        }
    }

    fn ids(slots: &[Option<SlotNode>]) -> Vec<Option<&str>> {
        slots
            .iter()
            .map(|s| s.as_ref().map(|n| n.id.as_str()))
            .collect()
    }

    #[test]
    fn empty_slots_are_registered() {
        let conf = [(h("a"), 2), (h("b"), 1)];
        let nodes = [n("0000000001", "a", Some(1), NodeState::InUse)];
        let slots = assign(&conf, &nodes);
        assert_eq!(ids(&slots[&h("a")]), [None, Some("0000000001")]);
        let p = plan(&conf, &slots);
        assert_eq!(
            p.register,
            BTreeMap::from([(h("a"), vec![0]), (h("b"), vec![0])])
        );
        assert!(p.remove.is_empty());
        assert_eq!(p.existing[&h("a")], [NodeId::from("0000000001")]);
    }

    #[test]
    fn deleting_and_building_nodes_leave_their_slot_free() {
        let conf = [(h("a"), 1)];
        let nodes = [
            n("0000000001", "a", Some(0), NodeState::Deleting),
            n("0000000002", "a", Some(0), NodeState::Building),
        ];
        let p = plan(&conf, &assign(&conf, &nodes));
        assert_eq!(p.register[&h("a")], [0]);
    }

    #[test]
    fn lowered_max_parallel_jobs_removes_the_excess_ready_nodes_only() {
        let conf = [(h("a"), 1)];
        let nodes = [
            n("0000000001", "a", Some(0), NodeState::Ready),
            n("0000000002", "a", Some(1), NodeState::Ready),
            n("0000000003", "a", Some(2), NodeState::InUse),
        ];
        let slots = assign(&conf, &nodes);
        assert_eq!(
            ids(&slots[&h("a")]),
            [Some("0000000001"), Some("0000000002"), Some("0000000003")]
        );
        let p = plan(&conf, &slots);
        assert_eq!(p.remove, [NodeId::from("0000000002")]);
        assert!(p.register.is_empty());
    }

    #[test]
    fn nodes_of_removed_hosts_are_removed_when_ready() {
        let conf = [(h("a"), 1)];
        let nodes = [
            n("0000000001", "gone", Some(0), NodeState::Ready),
            n("0000000002", "gone", Some(1), NodeState::InUse),
            n("0000000003", "a", Some(0), NodeState::Ready),
        ];
        let p = plan(&conf, &assign(&conf, &nodes));
        assert_eq!(p.remove, [NodeId::from("0000000001")]);
        assert!(p.register.is_empty());
    }

    #[test]
    fn nodes_without_or_with_a_taken_slot_fill_the_first_free_one() {
        let conf = [(h("a"), 3)];
        let nodes = [
            n("0000000001", "a", Some(0), NodeState::Ready),
            n("0000000002", "a", Some(0), NodeState::Ready),
            n("0000000003", "a", None, NodeState::Ready),
        ];
        let slots = assign(&conf, &nodes);
        assert_eq!(
            ids(&slots[&h("a")]),
            [Some("0000000001"), Some("0000000002"), Some("0000000003")]
        );
        assert_eq!(
            plan(&conf, &slots),
            Plan {
                existing: BTreeMap::from([(
                    h("a"),
                    vec![
                        NodeId::from("0000000001"),
                        NodeId::from("0000000002"),
                        NodeId::from("0000000003")
                    ]
                )]),
                ..Plan::default()
            }
        );
    }
}
