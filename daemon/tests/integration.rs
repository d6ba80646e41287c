//! The integration tests of `nodepool-daemon` (launcher, builder, CLI, web API): one test
//! binary whose modules are the files of this directory (`autotests = false`, see
//! Cargo.toml). Run one module with
//! `./scripts/run-tests -p nodepool-daemon --test integration cli::`.
//!
//! Helpers are in `nodepool_shared::testing` and the `nodepool-tests` crate;
//! ARCHITECTURE.md says how the suite is organised.

/// The builder's local half: fake DIB, process groups, `qemu-img`, statsd.
mod builder_local;
/// The `nodepool` binary against a real ZooKeeper.
mod cli;
/// The operator documentation's examples run and validate.
mod docs;
/// The launcher's web API over HTTP.
mod webapp;

#[test]
fn every_test_file_is_a_module_of_this_binary() {
    nodepool_shared::testing::assert_all_test_files_declared(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests"),
        "integration.rs",
        include_str!("integration.rs"),
    );
}
