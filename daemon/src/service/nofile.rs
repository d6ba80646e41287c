//! The daemons' limit of open files, raised from the soft limit to the hard one at start
//! (as Go's runtime does for every program).
//!
//! A launcher holds a socket per ZooKeeper session, per cloud connection, per host-key
//! scan in flight and per web API client; a builder one per upload and per build log.
//! The soft limit is 1,024 by default (systemd's `LimitNOFILE=` default too), while the
//! hard limit is usually far higher (524,288 under systemd), so a busy launcher could
//! fail a launch with "Too many open files" for no reason an operator chose.
//! `select(2)`, the one API that breaks above 1,024 descriptors, is used by nothing in
//! these daemons.

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, and logs what it did. A failure is
/// logged and ignored: the daemon runs on with the limit it was given.
pub fn raise_open_files_limit() {
    let before = match rlimit::Resource::NOFILE.get() {
        Ok((soft, _)) => soft,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the limit of open files");
            return;
        }
    };
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(after) if after > before => {
            tracing::info!("limit of open files raised from {before} to {after} (the hard limit)");
        }
        Ok(_) => tracing::debug!("limit of open files: {before}"),
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the limit of open files from {before}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::raise_open_files_limit;

    /// Runs in a child process (the limit is per process): the soft limit ends at the
    /// hard one.
    #[test]
    fn soft_limit_goes_to_the_hard_limit() {
        if std::env::var_os("NOFILE_TEST_CHILD").is_some() {
            let (soft, hard) = rlimit::Resource::NOFILE.get().unwrap();
            assert!(soft < hard, "the parent set soft {soft} < hard {hard}");
            raise_open_files_limit();
            let (soft, after_hard) = rlimit::Resource::NOFILE.get().unwrap();
            assert_eq!((soft, after_hard), (hard, hard));
            return;
        }
        let exe = std::env::current_exe().unwrap();
        let mut cmd = std::process::Command::new(exe);
        cmd.args([
            "--exact",
            "service::nofile::tests::soft_limit_goes_to_the_hard_limit",
            "--nocapture",
        ])
        .env("NOFILE_TEST_CHILD", "1");
        let (_, hard) = rlimit::Resource::NOFILE.get().unwrap();
        let soft = 256.min(hard.saturating_sub(1)).max(64);
        // SAFETY: only setrlimit(2) between fork and exec.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(move || {
                rlimit::Resource::NOFILE.set(soft, hard)?;
                Ok(())
            });
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("1 passed"),
            "the child ran the test: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
