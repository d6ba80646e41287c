//! The request locks this launcher is trying or holds right now, so that of its pool
//! workers one at a time tries a request's lock, and none while another holds it.
//!
//! Every pool worker wakes on the cache event of a new request, and before any of them
//! holds its lock the cache shows no contender: each would try it. One try is a lock
//! dir and contender multi, the re-read, and for all but the first the recipe's
//! contender create, listing and delete (kazoo's non-blocking `Lock.acquire`): with 20
//! pools in each of 3 launchers that was ~50 tries, ~420 ZooKeeper requests and ~220
//! writes (each a watch event to every launcher's cache) per request, where one try per
//! launcher decides the same. A try that takes the lock stays open as long as the lock
//! is held (its [`Trying`] is attached to the lock), so no sibling tries it while this
//! launcher's cache has not shown the new contender yet, however far the cache lags.
//! A pool worker that finds a sibling trying looks at the request again in its next
//! pass: by then the cache shows the sibling's contender (the lock is held) or the
//! request changed, or the sibling failed and it tries itself. The lock recipe and what
//! Nodepool's pool workers do are unchanged; only tries that could not succeed are
//! left out.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use nodepool_shared::model::RequestId;
use nodepool_shared::sync::MutexExt;

/// The requests whose lock a pool worker of this launcher is trying or holds.
#[derive(Debug, Default)]
pub struct RequestTries {
    trying: Arc<Mutex<HashSet<RequestId>>>,
}

/// Held while one pool worker tries or holds a request's lock; ends the try when
/// dropped. It owns what it needs, so it can go with the lock into a handler.
#[derive(Debug)]
pub struct Trying {
    trying: Arc<Mutex<HashSet<RequestId>>>,
    id: RequestId,
}

impl RequestTries {
    /// Starts trying `id`'s lock, or `None` while another pool worker of this launcher
    /// is trying or holding it.
    pub fn begin(&self, id: &RequestId) -> Option<Trying> {
        self.trying
            .lock_or_recover()
            .insert(id.clone())
            .then(|| Trying {
                trying: self.trying.clone(),
                id: id.clone(),
            })
    }

    /// How many requests are being tried or held.
    pub fn len(&self) -> usize {
        self.trying.lock_or_recover().len()
    }

    /// Whether no request is being tried or held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Trying {
    fn drop(&mut self) {
        self.trying.lock_or_recover().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_try_per_request_at_a_time() {
        let tries = RequestTries::default();
        let a = RequestId::from("200-0000000001");
        let b = RequestId::from("200-0000000002");
        let first = tries.begin(&a).expect("nobody tries it yet");
        assert!(tries.begin(&a).is_none(), "a sibling is trying it");
        let other = tries.begin(&b).expect("another request is independent");
        drop(first);
        assert!(tries.begin(&a).is_some(), "the try ended with its guard");
        drop(other);
        assert!(tries.is_empty());
    }
}
