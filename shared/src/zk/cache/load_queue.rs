//! The znodes a full load has still to read, kept compact.
//!
//! Listing `/nodepool/nodes` queues every node at once. As one path string each, the
//! queue of 100,000 nodes took ~8.5 MiB (the strings and the deque's doublings) at the
//! moment the load's memory peaks; here a directory's waiting children are its path
//! and their names joined in one string (~1.1 MiB), and a batch's paths are built when
//! the batch is taken.

use std::collections::VecDeque;

use crate::zk::client::join;

/// Paths still to read, in the order they were queued (the load is breadth first).
#[derive(Debug, Default)]
pub(super) struct LoadQueue {
    dirs: VecDeque<Dir>,
    len: usize,
}

/// Children of one directory still to read.
#[derive(Debug)]
struct Dir {
    parent: String,
    /// The names, each followed by `/` (a znode name never contains one).
    names: String,
    /// Where the next name starts in `names`.
    next: usize,
}

impl LoadQueue {
    /// A queue holding `path` alone.
    pub(super) fn with_path(path: &str) -> Self {
        let mut q = Self::default();
        match path.rsplit_once('/') {
            Some((parent, name)) if !name.is_empty() => q.push(parent, name),
            _ => q.push("", path.trim_start_matches('/')),
        }
        q
    }

    /// Queues `parent`/`name`.
    pub(super) fn push(&mut self, parent: &str, name: &str) {
        debug_assert!(!name.contains('/'), "a znode name: {name}");
        match self.dirs.back_mut() {
            Some(d) if d.parent == parent => d.names.push_str(name),
            _ => {
                let mut names = String::with_capacity(name.len() + 1);
                names.push_str(name);
                self.dirs.push_back(Dir {
                    parent: parent.to_string(),
                    names,
                    next: 0,
                });
            }
        }
        if let Some(d) = self.dirs.back_mut() {
            d.names.push('/');
        }
        self.len += 1;
    }

    /// Takes up to `n` paths from the front.
    pub(super) fn take(&mut self, n: usize) -> Vec<String> {
        let mut out = Vec::with_capacity(n.min(self.len));
        while out.len() < n {
            let Some(d) = self.dirs.front_mut() else {
                break;
            };
            while out.len() < n && d.next < d.names.len() {
                let rest = &d.names[d.next..];
                let end = rest.find('/').unwrap_or(rest.len());
                out.push(join_root(&d.parent, &rest[..end]));
                d.next += end + 1;
            }
            if d.next >= d.names.len() {
                self.dirs.pop_front();
            }
        }
        self.len -= out.len();
        out
    }

    /// Paths queued.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// `parent`/`name`, with `""` as the parent of a top-level znode.
fn join_root(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        format!("/{name}")
    } else {
        join(parent, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_come_out_in_the_order_they_went_in_across_batches() {
        let mut q = LoadQueue::with_path("/nodepool");
        assert_eq!(q.take(10), ["/nodepool"]);
        assert!(q.is_empty());
        q.push("/nodepool", "nodes");
        q.push("/nodepool", "requests");
        q.push("/nodepool/images", "ubuntu");
        q.push("/nodepool", "late");
        assert_eq!(q.len(), 4);
        assert_eq!(
            q.take(3),
            [
                "/nodepool/nodes",
                "/nodepool/requests",
                "/nodepool/images/ubuntu"
            ]
        );
        assert_eq!(q.len(), 1);
        q.push("/nodepool/nodes", "0000000001");
        assert_eq!(q.take(1), ["/nodepool/late"]);
        assert_eq!(q.take(5), ["/nodepool/nodes/0000000001"]);
        assert!(q.is_empty());
        assert!(q.take(5).is_empty());
    }

    #[test]
    fn a_large_listing_is_taken_in_batches() {
        let mut q = LoadQueue::default();
        for i in 0..1_000 {
            q.push("/nodepool/nodes", &format!("{i:010}"));
        }
        let mut all = Vec::new();
        while !q.is_empty() {
            let batch = q.take(250);
            assert!(batch.len() <= 250);
            all.extend(batch);
        }
        assert_eq!(all.len(), 1_000);
        assert_eq!(all[0], "/nodepool/nodes/0000000000");
        assert_eq!(all[999], "/nodepool/nodes/0000000999");
        assert_eq!(q.dirs.len(), 0, "drained directories are dropped");
    }

    #[test]
    fn the_root_and_top_level_paths() {
        assert_eq!(LoadQueue::with_path("/").take(1), ["/"]);
        assert_eq!(LoadQueue::with_path("/a").take(1), ["/a"]);
        assert_eq!(LoadQueue::with_path("/a/b/c").take(1), ["/a/b/c"]);
    }
}
