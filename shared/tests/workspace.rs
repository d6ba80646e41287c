//! The workspace's own rules, checked where a mistake would otherwise go unnoticed: the
//! test harness stays out of production builds, and the one-binary test layout cannot
//! silently skip tests.

use std::process::Command;

/// `nodepool_shared::testing` and what only it needs (`tempfile`) are behind the
/// `testing` feature, which only tests enable: the daemons' and the TUI's own dependency
/// tree has neither.
#[test]
fn production_builds_carry_no_test_harness() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "-p",
            "nodepool-daemon",
            "-p",
            "nodepool-tui",
            "-e",
            "normal",
            "--prefix",
            "none",
            "-f",
            "{p} {f}",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cargo tree: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shared: Vec<&str> = tree
        .lines()
        .filter(|l| l.starts_with("nodepool-shared "))
        .collect();
    assert!(
        !shared.is_empty(),
        "nodepool-shared not in the tree:\n{tree}"
    );
    for line in shared {
        assert!(
            !line.contains("testing"),
            "a production build enables the harness: {line}"
        );
    }
    assert!(
        !tree.lines().any(|l| l.starts_with("tempfile ")),
        "tempfile is in a production dependency tree:\n{tree}"
    );
}

/// A child test that does not exist (or is filtered out) must fail the parent, not pass
/// with "0 passed".
#[test]
fn a_child_test_that_does_not_run_fails_its_parent() {
    let r = std::panic::catch_unwind(|| {
        nodepool_shared::testing::run_test_in_child("workspace::no_such_test", &[])
    });
    assert!(
        r.is_err(),
        "run_test_in_child passed without running a test"
    );
}
