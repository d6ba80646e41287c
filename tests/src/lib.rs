//! End-to-end test harness: starts ZooKeeper, the OpenStack simulator and daemons on loopback.

pub mod builder_world;
pub mod daemons;
pub mod sim;
pub mod zuul;
