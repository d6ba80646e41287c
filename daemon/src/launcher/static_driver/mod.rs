//! The static driver: fixed hosts (bare metal, special hardware, other architectures)
//! served as Python Nodepool 11's `static` driver serves them, beside the OpenStack
//! providers of the same launcher.
//!
//! Nothing is launched. Every slot of every configured host (`max-parallel-jobs` of
//! them) is registered as a `ready` node with the host's keys; a request is fulfilled
//! from those nodes; a node Zuul returns (`used`) is deleted by the DeletedNodeWorker
//! like any other — without a cloud call — and its slot is registered again with a
//! new node; a host removed from the config has its free nodes removed at once and its
//! busy ones once they come back.
//!
//! * [`check`]: resolving a host, scanning its keys, the liveness check.
//! * [`slots`]: which slot each node fills; what a sync has to do (pure).
//! * [`provider`]: a started static provider and its sync pass.
//! * [`sync`]: the task that runs the sync on node and config changes.
//! * [`pool_worker`]: the pool worker (registration, assignment pass, label quota).
//! * [`handler`]: one accepted request.
//!
//! How the launcher holds a static provider next to the cloud ones is the provider seam
//! in `runtime` ([`StartedProvider`](super::runtime::StartedProvider)).

pub mod check;
pub mod handler;
pub mod pool_worker;
pub mod provider;
pub mod slots;
pub mod sync;

pub use provider::{StaticProvider, STATIC_LAUNCHER};
