//! Where a daemon's config comes from, and how it notices a change: Python Nodepool
//! reloads when the modification time of the config or the secure file changes.

use std::path::PathBuf;
use std::time::SystemTime;

use super::{Config, ConfigError};

/// The `-c` config file and the optional `-s` secure file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigSource {
    /// Main config file (`nodepool.yaml`).
    pub path: PathBuf,
    /// Secure file, if any.
    pub secure: Option<PathBuf>,
}

/// Modification times of both files (`None` = missing or unreadable); compare two stamps
/// to decide whether to reload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigStamp {
    /// mtime of the main file.
    pub config: Option<SystemTime>,
    /// mtime of the secure file.
    pub secure: Option<SystemTime>,
}

impl ConfigSource {
    /// A source with the given files.
    pub fn new(path: impl Into<PathBuf>, secure: Option<PathBuf>) -> Self {
        ConfigSource {
            path: path.into(),
            secure,
        }
    }

    /// The current modification times.
    pub fn stamp(&self) -> ConfigStamp {
        let mtime = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        ConfigStamp {
            config: mtime(&self.path),
            secure: self.secure.as_ref().and_then(mtime),
        }
    }

    /// Reads and validates both files.
    pub fn load(&self) -> Result<Config, ConfigError> {
        Config::load(&self.path, self.secure.as_deref())
    }
}
