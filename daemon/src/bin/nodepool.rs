//! `nodepool`: the operator CLI (see `nodepool_daemon::cli` and docs/cli.md).

fn main() -> std::process::ExitCode {
    nodepool_daemon::cli::main()
}
