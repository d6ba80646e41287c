//! What one diskimage-builder run is: the plain inputs ([`DibSpec`], mapped from the
//! configuration by the caller), and from them the exact command line and environment
//! Nodepool uses. Running it is [`super::run`]'s job.
//!
//! Nodepool formats the whole command as one string and splits it shell-style, so the
//! elements, `dib-cmd` and even the output path are subject to word splitting; this
//! module does the same so the argv is identical.
//!
//! `%p` in `dib-cmd` is the only substitution (every occurrence; there is no escape and
//! no other `%` sequence means anything). Nodepool replaces it with the directory of its
//! Python package, so that a script shipped next to the code (its CI's
//! `%p/tests/fake-image-create`) is found without knowing where Nodepool is installed;
//! here it is the directory of the `nodepool-builder` executable
//! ([`DibSpec::program_dir`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::shell_words::{self, SplitError};

/// `dib-cmd` default.
pub const DEFAULT_DIB_CMD: &str = "disk-image-create";
/// Options passed to qemu-img by diskimage-builder when qcow2 is requested.
pub const DEFAULT_QEMU_IMG_OPTIONS: &str = "compat=0.10";
/// `build-log-dir` default.
pub const DEFAULT_BUILD_LOG_DIR: &str = "/var/log/nodepool/builds";
/// `build-log-retention` default.
pub const DEFAULT_BUILD_LOG_RETENTION: i64 = 7;
/// `build-timeout` default (8 h).
pub const DEFAULT_BUILD_TIMEOUT: Duration = Duration::from_secs(28_800);
/// How long a timed-out or cancelled build gets between SIGTERM and SIGKILL.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(10);

/// Everything needed to run one image build, independent of the config types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DibSpec {
    /// Diskimage name (`<image>` in file and log names).
    pub image_name: String,
    /// Build id (32 hex digits), the ZooKeeper build znode name.
    pub build_id: String,
    /// The `dib-cmd` string, split shell-style together with the rest of the command.
    pub dib_cmd: String,
    /// Elements, in order.
    pub elements: Vec<String>,
    /// `release`; `DIB_RELEASE` is set only when present.
    pub release: Option<String>,
    /// `env-vars` (plus secure-file additions), applied last.
    pub env_vars: BTreeMap<String, String>,
    /// Formats to build (`-t`), in sorted order.
    pub formats: BTreeSet<String>,
    /// `images-dir`.
    pub images_dir: PathBuf,
    /// `elements-dir`, exported as `ELEMENTS_PATH`.
    pub elements_dir: Option<PathBuf>,
    /// `build-log-dir`.
    pub build_log_dir: PathBuf,
    /// `build-log-retention`: logs of this image kept before a build; negative keeps all.
    pub build_log_retention: i64,
    /// `build-timeout`.
    pub build_timeout: Duration,
    /// Value of `--qemu-img-options` (only passed when qcow2 is requested).
    pub qemu_img_options: String,
    /// Time between SIGTERM and SIGKILL of the process group on timeout/cancellation.
    pub kill_grace: Duration,
    /// What `%p` in `dib-cmd` stands for: the directory of the running executable
    /// ([`program_dir`]) unless set otherwise.
    pub program_dir: PathBuf,
}

/// The directory of the running executable (`.` if it cannot be found): what `%p` in
/// `dib-cmd` stands for.
pub fn program_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("."))
}

/// `dib_cmd` with every `%p` replaced by `program_dir`.
pub fn expand_dib_cmd(dib_cmd: &str, program_dir: &Path) -> String {
    dib_cmd.replace("%p", &program_dir.display().to_string())
}

impl DibSpec {
    /// A spec with Nodepool's defaults for everything but the names and directories;
    /// `formats` and `elements` start empty.
    pub fn new(
        image_name: impl Into<String>,
        build_id: impl Into<String>,
        images_dir: impl Into<PathBuf>,
        build_log_dir: impl Into<PathBuf>,
    ) -> Self {
        Self {
            image_name: image_name.into(),
            build_id: build_id.into(),
            dib_cmd: DEFAULT_DIB_CMD.to_string(),
            elements: Vec::new(),
            release: None,
            env_vars: BTreeMap::new(),
            formats: BTreeSet::new(),
            images_dir: images_dir.into(),
            elements_dir: None,
            build_log_dir: build_log_dir.into(),
            build_log_retention: DEFAULT_BUILD_LOG_RETENTION,
            build_timeout: DEFAULT_BUILD_TIMEOUT,
            qemu_img_options: DEFAULT_QEMU_IMG_OPTIONS.to_string(),
            kill_grace: DEFAULT_KILL_GRACE,
            program_dir: program_dir(),
        }
    }

    /// `<image>-<build-id>`, the stem of every output file.
    pub fn base_name(&self) -> String {
        format!("{}-{}", self.image_name, self.build_id)
    }

    /// `<images-dir>/<image>-<build-id>`, the `-o` argument and `DIB_IMAGE_FILENAME`.
    pub fn output_base(&self) -> PathBuf {
        self.images_dir.join(self.base_name())
    }

    /// `<build-log-dir>/<image>-<build-id>.log`.
    pub fn log_path(&self) -> PathBuf {
        self.build_log_dir.join(format!("{}.log", self.base_name()))
    }

    /// The command as one string, exactly as Nodepool formats (and logs) it:
    /// `<dib-cmd> -x -t <fmts> --checksum --no-tmpfs [--qemu-img-options '<opts>'] -o <base> <elements>`,
    /// with `%p` in `dib-cmd` expanded.
    pub fn command_line(&self) -> String {
        let types = self.formats.iter().cloned().collect::<Vec<_>>().join(",");
        let qemu = if self.formats.contains("qcow2") {
            format!(
                "--qemu-img-options '{}'",
                self.qemu_img_options.replace('\'', r#"'"'"'"#)
            )
        } else {
            String::new()
        };
        format!(
            "{} -x -t {} --checksum --no-tmpfs {} -o {} {}",
            expand_dib_cmd(&self.dib_cmd, &self.program_dir),
            types,
            qemu,
            self.output_base().display(),
            self.elements.join(" ")
        )
    }

    /// The argv: [`Self::command_line`] split shell-style.
    pub fn argv(&self) -> Result<Vec<String>, SplitError> {
        shell_words::split(&self.command_line())
    }

    /// Variables added to the daemon's environment, in the order Nodepool sets them
    /// (later entries win): `DIB_RELEASE`, `DIB_IMAGE_NAME`, `DIB_IMAGE_FILENAME`,
    /// `ELEMENTS_PATH`, then `env-vars`.
    pub fn env_overrides(&self) -> Vec<(String, String)> {
        let mut env = Vec::new();
        if let Some(release) = &self.release {
            env.push(("DIB_RELEASE".to_string(), release.clone()));
        }
        env.push(("DIB_IMAGE_NAME".to_string(), self.image_name.clone()));
        env.push((
            "DIB_IMAGE_FILENAME".to_string(),
            self.output_base().display().to_string(),
        ));
        if let Some(dir) = &self.elements_dir {
            env.push(("ELEMENTS_PATH".to_string(), dir.display().to_string()));
        }
        env.extend(self.env_vars.iter().map(|(k, v)| (k.clone(), v.clone())));
        env
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> DibSpec {
        let mut s = DibSpec::new(
            "ubuntu-noble",
            "0123456789abcdef0123456789abcdef",
            "/opt/images",
            "/var/log/b",
        );
        s.elements = vec!["ubuntu-minimal".into(), "vm".into(), "simple-init".into()];
        s
    }

    #[test]
    fn command_line_with_qcow2_has_qemu_options() {
        let mut s = spec();
        s.formats = ["raw", "qcow2", "vhd"]
            .iter()
            .map(|f| f.to_string())
            .collect();
        assert_eq!(
            s.command_line(),
            "disk-image-create -x -t qcow2,raw,vhd --checksum --no-tmpfs --qemu-img-options 'compat=0.10' \
             -o /opt/images/ubuntu-noble-0123456789abcdef0123456789abcdef ubuntu-minimal vm simple-init"
        );
        assert_eq!(
            s.argv().expect("argv"),
            [
                "disk-image-create",
                "-x",
                "-t",
                "qcow2,raw,vhd",
                "--checksum",
                "--no-tmpfs",
                "--qemu-img-options",
                "compat=0.10",
                "-o",
                "/opt/images/ubuntu-noble-0123456789abcdef0123456789abcdef",
                "ubuntu-minimal",
                "vm",
                "simple-init",
            ]
        );
    }

    #[test]
    fn command_line_without_qcow2_has_no_qemu_options() {
        let mut s = spec();
        s.formats = ["raw".to_string()].into();
        s.dib_cmd = "env FOO='a b' /usr/bin/disk-image-create".into();
        assert_eq!(
            s.command_line(),
            "env FOO='a b' /usr/bin/disk-image-create -x -t raw --checksum --no-tmpfs  \
             -o /opt/images/ubuntu-noble-0123456789abcdef0123456789abcdef ubuntu-minimal vm simple-init"
        );
        let argv = s.argv().expect("argv");
        assert_eq!(
            argv[..4],
            ["env", "FOO=a b", "/usr/bin/disk-image-create", "-x"]
        );
        assert!(!argv.iter().any(|a| a.contains("qemu")));
    }

    #[test]
    fn environment_order_and_optional_entries() {
        let mut s = spec();
        let names = |s: &DibSpec| {
            s.env_overrides()
                .into_iter()
                .map(|(k, _)| k)
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&s), ["DIB_IMAGE_NAME", "DIB_IMAGE_FILENAME"]);
        s.release = Some("24.04".into());
        s.elements_dir = Some("/etc/nodepool/elements".into());
        s.env_vars
            .insert("DIB_IMAGE_NAME".into(), "override".into());
        s.env_vars.insert("TMPDIR".into(), "/opt/tmp".into());
        let env = s.env_overrides();
        assert_eq!(
            env,
            [
                ("DIB_RELEASE".to_string(), "24.04".to_string()),
                ("DIB_IMAGE_NAME".into(), "ubuntu-noble".into()),
                (
                    "DIB_IMAGE_FILENAME".into(),
                    "/opt/images/ubuntu-noble-0123456789abcdef0123456789abcdef".into()
                ),
                ("ELEMENTS_PATH".into(), "/etc/nodepool/elements".into()),
                ("DIB_IMAGE_NAME".into(), "override".into()),
                ("TMPDIR".into(), "/opt/tmp".into()),
            ]
        );
    }

    #[test]
    fn percent_p_is_the_program_directory() {
        let mut s = spec();
        s.formats = ["raw".to_string()].into();
        s.program_dir = PathBuf::from("/opt/nodepool/bin");
        s.dib_cmd = "%p/fake-image-create --from %p/../share %%p 100%".into();
        let argv = s.argv().expect("argv");
        assert_eq!(
            argv[..4],
            [
                "/opt/nodepool/bin/fake-image-create",
                "--from",
                "/opt/nodepool/bin/../share",
                "%/opt/nodepool/bin",
            ]
        );
        assert_eq!(argv[4], "100%");
        assert!(s
            .command_line()
            .starts_with("/opt/nodepool/bin/fake-image-create "));
        // A directory with a space is split like the rest of the command (as Nodepool).
        s.program_dir = PathBuf::from("/a b");
        assert_eq!(s.argv().expect("argv")[..2], ["/a", "b/fake-image-create"]);
        // The default is the running executable's directory.
        let exe_dir = std::env::current_exe()
            .unwrap()
            .parent()
            .unwrap()
            .to_path_buf();
        assert_eq!(program_dir(), exe_dir);
        assert_eq!(DibSpec::new("i", "b", "/x", "/y").program_dir, exe_dir);
    }

    #[test]
    fn paths() {
        let s = spec();
        assert_eq!(
            s.log_path(),
            PathBuf::from("/var/log/b/ubuntu-noble-0123456789abcdef0123456789abcdef.log")
        );
        assert_eq!(
            s.base_name(),
            "ubuntu-noble-0123456789abcdef0123456789abcdef"
        );
    }
}
