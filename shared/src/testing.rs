//! Placeholder: test harness (real ZooKeeper processes on loopback) used by tests across the workspace.
