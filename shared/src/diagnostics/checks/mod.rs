//! The inspections, one module per kind of record; each appends its problems.

pub mod components;
pub mod images;
pub mod nodes;
pub mod requests;

use crate::zk::CachedRequest;

use super::snapshot::znode_time;

/// When a request was created: its `created_time` (Zuul and the launcher write it),
/// else its znode's `ctime`, else its `state_time`.
pub fn created(r: &CachedRequest) -> f64 {
    r.request
        .created_time
        .filter(|t| t.is_finite() && *t > 0.0)
        .or_else(|| znode_time(r.stat.ctime))
        .unwrap_or(r.request.state_time)
}
