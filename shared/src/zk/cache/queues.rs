//! The sizes of the tree cache's two queues, split like Python Nodepool's three caches
//! (nodes, requests, images) so the launcher can send its `zk.*_cache.*_queue` gauges:
//!
//! * the **event queue** holds watch events received from ZooKeeper and not yet
//!   started (Zuul's TreeCache `_event_queue`);
//! * the **playback queue** holds events whose data is being read, waiting to be applied
//!   in order (`_playback_queue`).
//!
//! Both stay near zero while the cache keeps up; they grow when ZooKeeper answers slowly
//! or changes arrive faster than they are applied.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Which of Nodepool's caches a path belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CachePart {
    /// `/nodepool/nodes…` (nodes and their locks).
    Node,
    /// `/nodepool/requests…` and `/nodepool/requests-lock…`.
    Request,
    /// `/nodepool/images…` (images, builds, uploads, flags).
    Image,
}

impl CachePart {
    /// The part of `path`; `None` for paths outside the three (components, roots).
    pub fn of(path: &str) -> Option<CachePart> {
        let under = |root: &str| {
            path.strip_prefix(root)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        };
        if under("/nodepool/nodes") {
            Some(CachePart::Node)
        } else if under("/nodepool/requests") || under("/nodepool/requests-lock") {
            Some(CachePart::Request)
        } else if under("/nodepool/images") {
            Some(CachePart::Image)
        } else {
            None
        }
    }

    /// The gauge name part (`node`, `request`, `image`).
    pub fn name(self) -> &'static str {
        match self {
            CachePart::Node => "node",
            CachePart::Request => "request",
            CachePart::Image => "image",
        }
    }

    /// All three, in gauge order.
    pub const ALL: [CachePart; 3] = [CachePart::Node, CachePart::Request, CachePart::Image];

    fn index(self) -> usize {
        self as usize
    }
}

/// Which queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheQueue {
    /// Received, not yet started.
    Event,
    /// Being read, waiting to be applied in order.
    Playback,
}

impl CacheQueue {
    /// The gauge name part (`event`, `playback`).
    pub fn name(self) -> &'static str {
        match self {
            CacheQueue::Event => "event",
            CacheQueue::Playback => "playback",
        }
    }
}

/// The current queue sizes of one cache (updated by its sync task, read by anyone).
#[derive(Debug, Default)]
pub struct QueueSizes {
    counts: [[AtomicUsize; 2]; 3],
}

impl QueueSizes {
    fn slot(&self, part: CachePart, queue: CacheQueue) -> &AtomicUsize {
        &self.counts[part.index()][queue as usize]
    }

    /// Entries of `queue` for `part` now.
    pub fn get(&self, part: CachePart, queue: CacheQueue) -> usize {
        self.slot(part, queue).load(Ordering::Relaxed)
    }

    /// One more entry for `path` (paths outside the three parts are not counted).
    pub(crate) fn add(&self, path_part: Option<CachePart>, queue: CacheQueue) {
        if let Some(part) = path_part {
            self.slot(part, queue).fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One entry less.
    pub(crate) fn remove(&self, path_part: Option<CachePart>, queue: CacheQueue) {
        if let Some(part) = path_part {
            let _ =
                self.slot(part, queue)
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
    }

    /// Empties every queue (a resync drops what was queued).
    pub(crate) fn clear(&self) {
        for part in &self.counts {
            for q in part {
                q.store(0, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_and_counts() {
        assert_eq!(CachePart::of("/nodepool/nodes"), Some(CachePart::Node));
        assert_eq!(
            CachePart::of("/nodepool/nodes/0000000001/lock/x"),
            Some(CachePart::Node)
        );
        assert_eq!(
            CachePart::of("/nodepool/requests-lock/200-0000000001"),
            Some(CachePart::Request)
        );
        assert_eq!(
            CachePart::of("/nodepool/requests/200-0000000001"),
            Some(CachePart::Request)
        );
        assert_eq!(
            CachePart::of("/nodepool/images/ubuntu/builds"),
            Some(CachePart::Image)
        );
        assert_eq!(CachePart::of("/nodepool/nodesx"), None);
        assert_eq!(CachePart::of("/nodepool/components/launcher/h"), None);
        let q = QueueSizes::default();
        q.add(Some(CachePart::Image), CacheQueue::Event);
        q.add(Some(CachePart::Image), CacheQueue::Event);
        q.add(None, CacheQueue::Event);
        q.add(Some(CachePart::Node), CacheQueue::Playback);
        q.remove(Some(CachePart::Image), CacheQueue::Event);
        assert_eq!(q.get(CachePart::Image, CacheQueue::Event), 1);
        assert_eq!(q.get(CachePart::Node, CacheQueue::Playback), 1);
        assert_eq!(q.get(CachePart::Request, CacheQueue::Event), 0);
        q.remove(Some(CachePart::Request), CacheQueue::Event);
        assert_eq!(q.get(CachePart::Request, CacheQueue::Event), 0);
        q.clear();
        assert_eq!(q.get(CachePart::Image, CacheQueue::Event), 0);
    }
}
