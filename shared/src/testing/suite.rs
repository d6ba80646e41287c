//! The layout of the integration tests: each crate's tests are the modules of ONE test
//! binary (`tests/integration.rs`, `autotests = false` in the crate's Cargo.toml), so a
//! build links one test executable per crate instead of one per file. The price is that
//! cargo no longer picks up a new `tests/*.rs` by itself; [`assert_all_test_files_declared`]
//! makes a forgotten `mod` line a failing test instead of tests that silently never run.

use std::path::Path;

/// Panics unless every `*.rs` file and every directory with a `mod.rs` directly in
/// `tests_dir` (the binary's root file excepted) is declared as `mod <name>;` in the
/// root file, whose text is `root_text` and whose file name is `root_name`.
pub fn assert_all_test_files_declared(tests_dir: &Path, root_name: &str, root_text: &str) {
    let entries = std::fs::read_dir(tests_dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", tests_dir.display()));
    let mut missing = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let module = if path.is_dir() && path.join("mod.rs").is_file() {
            file_name
        } else if let Some(stem) = file_name.strip_suffix(".rs") {
            if file_name == root_name {
                continue;
            }
            stem.to_string()
        } else {
            continue;
        };
        let declared = root_text
            .lines()
            .map(str::trim)
            .any(|l| l == format!("mod {module};") || l == format!("pub mod {module};"));
        if !declared {
            missing.push(module);
        }
    }
    missing.sort();
    assert!(
        missing.is_empty(),
        "{} declares no `mod` for {missing:?} in {}: those tests would never be built or run",
        root_name,
        tests_dir.display()
    );
}

/// The variable [`run_test_in_child`] sets to the name of the test the child runs.
pub const CHILD_TEST_VAR: &str = "NODEPOOL_TEST_CHILD";

/// Runs the test `name` (its full path in this test binary, e.g. `config::x_in_child`) in
/// a child process of the current test executable, with `env` added and
/// [`CHILD_TEST_VAR`] set to `name`; panics with the child's output unless exactly that
/// one test ran and passed.
///
/// For tests that need process-wide state, such as environment variables: changing the
/// environment while other tests' threads read it is undefined behaviour, and all tests
/// of a binary share one process. The child test is `#[ignore]`d (so it never runs by
/// itself) and returns at once when [`is_child_test`] is false.
pub fn run_test_in_child(name: &str, env: &[(&str, &str)]) {
    let exe = std::env::current_exe().expect("current test executable");
    let out = std::process::Command::new(exe)
        .args([name, "--exact", "--ignored", "--test-threads", "1"])
        .env(CHILD_TEST_VAR, name)
        .envs(env.iter().copied())
        .output()
        .expect("run the test executable");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed"),
        "{name} in a child process: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether this process is the child [`run_test_in_child`] started for test `name`.
pub fn is_child_test(name: &str) -> bool {
    std::env::var(CHILD_TEST_VAR).is_ok_and(|v| v == name)
}
