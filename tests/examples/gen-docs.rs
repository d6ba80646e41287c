//! Writes the man pages (clap_mangen) and shell completions (bash, zsh, fish) of every
//! binary the Debian package ships, from the binaries' own clap definitions:
//! `cargo run -p nodepool-tests --example gen-docs -- OUTDIR` gives `OUTDIR/man/*.1` and
//! `OUTDIR/completions/{bash,zsh,fish}/…`. Used by `scripts/package`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

fn commands() -> Vec<(&'static str, clap::Command)> {
    vec![
        (
            "nodepool-launcher",
            nodepool_daemon::service::args::LauncherArgs::command(),
        ),
        (
            "nodepool-builder",
            nodepool_daemon::service::args::BuilderArgs::command(),
        ),
        ("nodepool", nodepool_daemon::cli::args::Cli::command()),
        ("nodepool-tui", nodepool_tui::args::Args::command()),
    ]
}

fn write(out: &Path) -> std::io::Result<()> {
    let man = out.join("man");
    std::fs::create_dir_all(&man)?;
    for (name, cmd) in commands() {
        let cmd = cmd.name(name).version(nodepool_shared::version::LONG);
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
        std::fs::write(man.join(format!("{name}.1")), page)?;
        for (shell, dir, file) in [
            (Shell::Bash, "bash", name.to_string()),
            (Shell::Zsh, "zsh", format!("_{name}")),
            (Shell::Fish, "fish", format!("{name}.fish")),
        ] {
            let d = out.join("completions").join(dir);
            std::fs::create_dir_all(&d)?;
            let mut text = Vec::new();
            clap_complete::generate(shell, &mut cmd.clone(), name, &mut text);
            std::fs::write(d.join(file), text)?;
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let Some(out) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: gen-docs OUTDIR");
        return ExitCode::from(2);
    };
    match write(&out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gen-docs: {}: {e}", out.display());
            ExitCode::FAILURE
        }
    }
}
