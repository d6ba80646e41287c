//! The end-to-end tests: one test binary whose modules are the files of this directory
//! (`autotests = false`, see Cargo.toml). Run one module with
//! `./scripts/run-tests -p nodepool-tests --test integration launcher_e2e::`.
//!
//! Helpers: `nodepool_shared::testing` (ZooKeeper, bounded waits, logs, statsd), this
//! crate's library (the OpenStack simulator, the fake Zuul, daemon processes, the
//! builder's world) and [`support`] (the launcher in-process). Tests that start daemons
//! and DIB as processes run one at a time (`testing::bounded_serial`).
//! ARCHITECTURE.md says how the suite is organised.

/// The builder's cleanup paths, in-process.
mod builder_cleanup;
/// The builder end to end: the binary and in-process.
mod builder_e2e;
/// Builder faults: kill -9, ZooKeeper restart and freeze, cloud errors.
mod builder_faults;
/// What starts and stops the builder's scheduler.
mod builder_schedule;
/// The OpenStack driver against the simulator, one HTTP request per operation.
mod cloud_openstack;
/// Launcher faults with the real binary.
mod faults;
/// The launcher's cloud half against the simulator.
mod launcher_cloud;
/// The launcher end to end, in-process, playing Zuul.
mod launcher_e2e;
/// The launcher's formerly known gaps.
mod launcher_gaps;
/// The launcher's housekeeping tasks.
mod launcher_housekeeping;
/// python-openstackclient against the simulator.
mod openstack_cli;
/// `scripts/run-local` end to end.
mod run_local;
/// Secrets never reach logs or error messages.
mod secrets;
/// The daemons as services: flags, pidfile, systemd notify, logging config, Prometheus,
/// packages, Python Nodepool beside ours.
mod service;
/// The simulator over HTTP.
mod sim_api;
/// Simulator benchmarks (ignored by default).
mod sim_bench;
/// The simulator as a separate process.
mod sim_process;
/// The launcher's in-process handle shared by the modules above.
mod support;
/// Builder, launcher and CLI together.
mod system_e2e;
/// The fake Zuul and the `zuul-sim` binary.
mod zuul_sim;

#[test]
fn every_test_file_is_a_module_of_this_binary() {
    nodepool_shared::testing::assert_all_test_files_declared(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests"),
        "integration.rs",
        include_str!("integration.rs"),
    );
}
