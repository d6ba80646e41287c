//! Python logger names for our tracing targets, Python's numeric levels, and the
//! aliases that let a logging config written for Python Nodepool name our code.
//!
//! Every event gets one dotted Python-style logger name derived from its tracing target
//! (a module path): `nodepool_daemon::launcher::pool_worker` → `nodepool.launcher.pool_worker`,
//! `zookeeper_client::session` → `kazoo.client.session`. The table below maps crate and
//! module prefixes onto the families a Nodepool operator already configures: `nodepool`
//! (our own code), `openstack` and `keystoneauth` (our OpenStack client, which replaces
//! openstacksdk), `kazoo` (the ZooKeeper client), `requests` and `urllib3` (HTTP).

/// Prefix of a tracing target → the Python logger name it becomes. First match wins, so
/// longer prefixes come first.
const TARGET_NAMES: &[(&str, &str)] = &[
    ("nodepool_daemon::launcher", "nodepool.launcher"),
    ("nodepool_daemon::builder", "nodepool.builder"),
    ("nodepool_daemon::webapp", "nodepool.web"),
    ("nodepool_daemon::cli", "nodepool.cmd"),
    ("nodepool_daemon", "nodepool"),
    ("nodepool_shared::cloud::auth", "keystoneauth.auth"),
    ("nodepool_shared::cloud::clouds_yaml", "openstack.config"),
    ("nodepool_shared::cloud", "openstack"),
    ("nodepool_shared", "nodepool"),
    ("nodepool_tui", "nodepool.tui"),
    ("nodepool_tests", "nodepool.tests"),
    ("zookeeper_client", "kazoo.client"),
    ("reqwest", "requests"),
    ("hyper_util", "urllib3.hyper_util"),
    ("hyper", "urllib3.hyper"),
    ("h2", "urllib3.h2"),
];

/// Logger names used by Python Nodepool 11 (class-named loggers) → the name of the
/// module of ours that does that job. Names not listed are used as they are.
const PYTHON_ALIASES: &[(&str, &str)] = &[
    ("nodepool.NodePool", "nodepool.launcher.daemon"),
    ("nodepool.PoolWorker", "nodepool.launcher.pool_worker"),
    ("nodepool.NodeLauncher", "nodepool.launcher.node_launch"),
    (
        "nodepool.StateMachineNodeLauncher",
        "nodepool.launcher.node_launch",
    ),
    (
        "nodepool.driver.NodeRequestHandler",
        "nodepool.launcher.handler",
    ),
    ("nodepool.driver", "nodepool.launcher"),
    ("nodepool.DeletedNodeWorker", "nodepool.launcher.deleter"),
    ("nodepool.CleanupWorker", "nodepool.launcher.cleanup"),
    ("nodepool.StatsWorker", "nodepool.launcher.stats_worker"),
    (
        "nodepool.builder.BuildWorker",
        "nodepool.builder.build_worker",
    ),
    ("nodepool.builder.UploadWorker", "nodepool.builder.upload"),
    ("nodepool.builder.CleanupWorker", "nodepool.builder.cleanup"),
    (
        "nodepool.builder.NodePoolBuilder",
        "nodepool.builder.daemon",
    ),
    ("nodepool.zk.ZooKeeper", "nodepool.zk"),
    ("nodepool.zk", "nodepool.zk"),
    ("nodepool.web", "nodepool.web"),
    ("nodepool.WebApp", "nodepool.web"),
    ("kazoo", "kazoo"),
    ("openstack", "openstack"),
    ("keystoneauth", "keystoneauth"),
    ("keystoneauth1", "keystoneauth"),
    ("requests", "requests"),
    ("urllib3", "urllib3"),
];

/// The Python logger name of a tracing target.
pub fn python_name(target: &str) -> String {
    for (prefix, name) in TARGET_NAMES {
        if let Some(rest) = target.strip_prefix(prefix) {
            if rest.is_empty() {
                return (*name).to_string();
            }
            if let Some(rest) = rest.strip_prefix("::") {
                return format!("{name}.{}", rest.replace("::", "."));
            }
        }
    }
    target.replace("::", ".")
}

/// A logger name from a config → the name our events carry (Python's class-named
/// loggers become our module names; `nodepool.PoolWorker.cloud1-main` →
/// `nodepool.launcher.pool_worker`, a per-pool name we cannot tell apart).
pub fn config_name(name: &str) -> String {
    for (py, ours) in PYTHON_ALIASES {
        if name == *py {
            return (*ours).to_string();
        }
        if let Some(rest) = name.strip_prefix(py) {
            if rest.starts_with('.') {
                // Class-named loggers carry instance suffixes (pool names, worker
                // numbers): they all go to the one module.
                return if py.chars().any(|c| c.is_ascii_uppercase()) {
                    (*ours).to_string()
                } else {
                    format!("{ours}{rest}")
                };
            }
        }
    }
    name.to_string()
}

/// Whether a config's logger name can match any event of ours: its first component
/// names one of the families of [`TARGET_NAMES`] or any crate we link (which we cannot
/// list, so any name whose family is not a known Python-only library passes).
pub fn matches_something(name: &str) -> bool {
    let family = name.split('.').next().unwrap_or(name);
    !PYTHON_ONLY.contains(&family)
}

/// Python libraries Nodepool's logging configs name that have no counterpart here.
const PYTHON_ONLY: &[&str] = &[
    "paramiko",
    "stevedore",
    "dogpile",
    "iso8601",
    "cachecontrol",
    "botocore",
    "boto3",
    "azure",
    "google",
    "ibm_cloud_sdk_core",
    "kubernetes",
    "sqlalchemy",
    "yappi",
    "alembic",
    "asyncio",
    "concurrent",
    "py.warnings",
    "cherrypy",
];

/// Python's numeric levels. TRACE (5) is ours: tracing has one level below DEBUG.
pub mod level {
    /// Below everything: a NOTSET handler passes all.
    pub const NOTSET: u8 = 0;
    /// tracing's TRACE.
    pub const TRACE: u8 = 5;
    /// DEBUG.
    pub const DEBUG: u8 = 10;
    /// INFO.
    pub const INFO: u8 = 20;
    /// WARNING.
    pub const WARNING: u8 = 30;
    /// ERROR.
    pub const ERROR: u8 = 40;
    /// CRITICAL (nothing of ours logs at it; a filter at it silences a logger).
    pub const CRITICAL: u8 = 50;
}

/// A tracing level as a Python level.
pub fn from_tracing(l: &tracing::Level) -> u8 {
    match *l {
        tracing::Level::TRACE => level::TRACE,
        tracing::Level::DEBUG => level::DEBUG,
        tracing::Level::INFO => level::INFO,
        tracing::Level::WARN => level::WARNING,
        tracing::Level::ERROR => level::ERROR,
    }
}

/// Python's `levelname` of a level number.
pub fn level_name(l: u8) -> &'static str {
    match l {
        0 => "NOTSET",
        1..=5 => "TRACE",
        6..=10 => "DEBUG",
        11..=20 => "INFO",
        21..=30 => "WARNING",
        31..=40 => "ERROR",
        _ => "CRITICAL",
    }
}

/// A level as written in a config: a Python level name (`DEBUG`, `INFO`, `WARNING`,
/// `WARN`, `ERROR`, `CRITICAL`, `FATAL`, `NOTSET`, and our `TRACE`; any case) or a number.
pub fn parse_level(s: &str) -> Option<u8> {
    let v = match s.trim().to_ascii_uppercase().as_str() {
        "NOTSET" => level::NOTSET,
        "TRACE" => level::TRACE,
        "DEBUG" => level::DEBUG,
        "INFO" => level::INFO,
        "WARNING" | "WARN" => level::WARNING,
        "ERROR" => level::ERROR,
        "CRITICAL" | "FATAL" => level::CRITICAL,
        other => return other.parse::<u8>().ok(),
    };
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_to_python_names() {
        assert_eq!(
            python_name("nodepool_daemon::launcher::pool_worker"),
            "nodepool.launcher.pool_worker"
        );
        assert_eq!(python_name("nodepool_daemon::builder"), "nodepool.builder");
        assert_eq!(
            python_name("nodepool_shared::zk::client"),
            "nodepool.zk.client"
        );
        assert_eq!(
            python_name("nodepool_shared::cloud::transport"),
            "openstack.transport"
        );
        assert_eq!(
            python_name("nodepool_shared::cloud::auth"),
            "keystoneauth.auth"
        );
        assert_eq!(
            python_name("zookeeper_client::session"),
            "kazoo.client.session"
        );
        assert_eq!(
            python_name("hyper_util::client"),
            "urllib3.hyper_util.client"
        );
        assert_eq!(python_name("tokio::task"), "tokio.task");
        // A prefix only matches whole path segments.
        assert_eq!(python_name("nodepool_daemonx::a"), "nodepool_daemonx.a");
    }

    #[test]
    fn python_logger_names_to_ours() {
        assert_eq!(config_name("nodepool"), "nodepool");
        assert_eq!(
            config_name("nodepool.PoolWorker.cloud1-main"),
            "nodepool.launcher.pool_worker"
        );
        assert_eq!(config_name("nodepool.NodePool"), "nodepool.launcher.daemon");
        assert_eq!(config_name("keystoneauth1.session"), "keystoneauth.session");
        assert_eq!(config_name("kazoo.client"), "kazoo.client");
        assert!(matches_something("kazoo.client"));
        assert!(!matches_something("paramiko.transport"));
    }

    #[test]
    fn levels() {
        assert_eq!(parse_level("WARN"), Some(level::WARNING));
        assert_eq!(parse_level("debug"), Some(level::DEBUG));
        assert_eq!(parse_level("15"), Some(15));
        assert_eq!(parse_level("LOUD"), None);
        assert_eq!(level_name(level::WARNING), "WARNING");
        assert_eq!(from_tracing(&tracing::Level::WARN), 30);
    }
}
