//! The integration tests of `nodepool-shared`: one test binary whose modules are the files
//! of this directory (`autotests = false`, see Cargo.toml). Run one module with
//! `./scripts/run-tests -p nodepool-shared --test integration zk_lock::`.
//!
//! Helpers (real ZooKeeper fixtures, bounded waits, test logging) are in
//! `nodepool_shared::testing`; ARCHITECTURE.md says how the suite is organised.

/// Hostile input for every reader of external data (records, config, clouds.yaml).
mod bad_input;
/// Real config files: values, defaults, YAML quirks, errors with positions.
mod config;
/// Records captured from Python Nodepool 11 read and re-serialised.
mod golden;
/// The captured Python Nodepool 11 records, for the modules that read them.
mod goldens;
/// The SSH host-key scan against a real OpenSSH server.
mod keyscan_sshd;
/// The workspace's own rules (no test harness in production builds).
mod workspace;
/// The tree cache against a real ZooKeeper.
mod zk_cache;
/// The raw ZooKeeper client: CRUD, TLS, multi.
mod zk_client;
/// Faults of a real 3-server ZooKeeper quorum.
mod zk_ensemble;
/// The kazoo-compatible lock and election, interop with kazoo.
mod zk_lock;
/// Session loss, server restarts, frozen servers.
mod zk_session;
/// The typed record store.
mod zk_store;

#[test]
fn every_test_file_is_a_module_of_this_binary() {
    nodepool_shared::testing::assert_all_test_files_declared(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests"),
        "integration.rs",
        include_str!("integration.rs"),
    );
}
