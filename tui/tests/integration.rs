//! The integration tests of `nodepool-tui`: one test binary whose modules are the files of
//! this directory (`autotests = false`, see Cargo.toml). Run one module with
//! `./scripts/run-tests -p nodepool-tui --test integration snapshots::`.
//!
//! Snapshots are in `snapshots/`, named `integration__<module>__<name>.snap` (insta's
//! naming for this binary). ARCHITECTURE.md says how the suite is organised.

/// Every console action against a real ZooKeeper.
mod actions_zk;
/// The App as a pure state machine.
mod app_events;
/// The fixed records and clock of the App and snapshot tests.
mod common;
/// The real binary in tmux against a real ZooKeeper.
mod e2e_tmux;
/// Snapshots of every view at 80×24 and 120×40.
mod snapshots;

#[test]
fn every_test_file_is_a_module_of_this_binary() {
    nodepool_shared::testing::assert_all_test_files_declared(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests"),
        "integration.rs",
        include_str!("integration.rs"),
    );
}
