//! End-to-end test harness: starts ZooKeeper, the OpenStack simulator and daemons on loopback.

pub mod sim;
pub mod zuul;
