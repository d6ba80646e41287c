//! Builders for every statsd metric name Nodepool emits, so that the launcher, builder
//! and docs agree on one spelling. Names are exact; only the parts Python normalises
//! (requestor, tenant-limit names) go through [`normalize`]. The names of event metrics
//! (launches, leaks, API calls, builds, uploads, builder states) are [`Key`]s that also
//! name their Prometheus series; the node and request gauges are Prometheus-exported from
//! the launcher's cache at scrape time instead.

use super::prometheus::{Fam, Key};
use crate::model::NodeState;

/// Python's `normalize_statsd_name`: `.` (graphite hierarchy) and `:` (statsd delimiter)
/// become `_`.
pub fn normalize(name: &str) -> String {
    name.replace(['.', ':'], "_")
}

/// Launch outcome keys (`<result>` in the launch metrics).
pub mod result {
    /// Successful launch.
    pub const READY: &str = "ready";
    /// Generic Nodepool error.
    pub const ERROR_NODEPOOL: &str = "error.nodepool";
    /// Server went to an error status.
    pub const ERROR_STATUS: &str = "error.status";
    /// Network error.
    pub const ERROR_NETWORK: &str = "error.network";
    /// Host key scan failed.
    pub const ERROR_KEYSCAN: &str = "error.keyscan";
    /// No capacity.
    pub const ERROR_CAPACITY: &str = "error.capacity";
    /// SSH error.
    pub const ERROR_SSH: &str = "error.ssh";
    /// IP address error.
    pub const ERROR_IPADD: &str = "error.ipadd";
    /// Server create timed out.
    pub const ERROR_SERVER_CREATE_TIMEOUT: &str = "error.servercreatetimeout";
    /// Server delete timed out.
    pub const ERROR_SERVER_DELETE_TIMEOUT: &str = "error.serverdeletetimeout";
    /// Image wait timed out.
    pub const ERROR_IMAGE_TIMEOUT: &str = "error.imagetimeout";
    /// Cloud quota exceeded (node aborted).
    pub const ERROR_QUOTA: &str = "error.quota";
    /// ZooKeeper session lost.
    pub const ERROR_ZKSESSION: &str = "error.zksession";
    /// Anything else.
    pub const ERROR_UNKNOWN: &str = "error.unknown";
}

// ---- launcher: launches (c+ms) ----

/// `nodepool.launch.<result>`.
pub fn launch(result: &str) -> String {
    format!("nodepool.launch.{result}")
}

/// `nodepool.launch.provider.<provider>.<result>`.
pub fn launch_provider(provider: &str, result: &str) -> String {
    format!("nodepool.launch.provider.{provider}.{result}")
}

/// `nodepool.launch.provider.<provider>.<az>.<result>`.
pub fn launch_provider_az(provider: &str, az: &str, result: &str) -> String {
    format!("nodepool.launch.provider.{provider}.{az}.{result}")
}

/// `nodepool.launch.requestor.<requestor>.<result>` with the requestor normalised
/// (`NodePool:min-ready` → `NodePool_min-ready`).
pub fn launch_requestor(requestor: &str, result: &str) -> String {
    format!(
        "nodepool.launch.requestor.{}.{result}",
        normalize(requestor)
    )
}

/// `nodepool.launch.image.<image>.<result>` (documented by Nodepool; we emit it).
pub fn launch_image(image: &str, result: &str) -> String {
    format!("nodepool.launch.image.{image}.{result}")
}

/// All launch keys for one outcome, in Python's order: provider, global, provider+AZ
/// (when the node has an AZ), requestor (when the request has one). Each is sent as a
/// timer and a counter.
/// The first key also records the one Prometheus observation of the launch,
/// `nodepool_launch_duration_seconds{provider,az,requestor,result}`.
pub fn launch_keys(
    provider: &str,
    az: Option<&str>,
    requestor: Option<&str>,
    result: &str,
) -> Vec<Key> {
    let labels = vec![
        ("provider", provider.to_string()),
        ("az", az.unwrap_or("").to_string()),
        ("requestor", requestor.map(normalize).unwrap_or_default()),
        ("result", result.to_string()),
    ];
    let mut keys = vec![
        Key::new(
            launch_provider(provider, result),
            Fam::LaunchDuration,
            labels,
        ),
        Key::statsd_only(launch(result)),
    ];
    if let Some(az) = az.filter(|a| !a.is_empty()) {
        keys.push(Key::statsd_only(launch_provider_az(provider, az, result)));
    }
    if let Some(r) = requestor.filter(|r| !r.is_empty()) {
        keys.push(Key::statsd_only(launch_requestor(r, result)));
    }
    keys
}

// ---- launcher: node / request gauges ----

/// `nodepool.nodes.<state>`.
pub fn nodes(state: NodeState) -> String {
    format!("nodepool.nodes.{state}")
}

/// `nodepool.provider.<provider>.nodes.<state>`.
pub fn provider_nodes(provider: &str, state: NodeState) -> String {
    format!("nodepool.provider.{provider}.nodes.{state}")
}

/// `nodepool.label.<label>.nodes.<state>`.
pub fn label_nodes(label: &str, state: NodeState) -> String {
    format!("nodepool.label.{label}.nodes.{state}")
}

/// `nodepool.provider.<provider>.pool.<pool>.addressable_requests`.
pub fn addressable_requests(provider: &str, pool: &str) -> String {
    format!("nodepool.provider.{provider}.pool.{pool}.addressable_requests")
}

/// `nodepool.provider.<provider>.max_servers`.
pub fn provider_max_servers(provider: &str) -> String {
    format!("nodepool.provider.{provider}.max_servers")
}

/// `nodepool.tenant_limits.<tenant>.<limit>`, both parts normalised.
pub fn tenant_limit(tenant: &str, limit: &str) -> String {
    format!(
        "nodepool.tenant_limits.{}.{}",
        normalize(tenant),
        normalize(limit)
    )
}

/// `nodepool.provider.<provider>.leaked.<resource>` where `resource` is the plural
/// (`instances`, `ports`, `floatingips`, `images`, `volumes`, …).
pub fn leaked(provider: &str, resource: &str) -> Key {
    Key::new(
        format!("nodepool.provider.{provider}.leaked.{resource}"),
        Fam::Leaked,
        vec![("provider", provider.into()), ("resource", resource.into())],
    )
}

/// `nodepool.launcher.<hostname>.zk.client.connection_queue`.
pub fn zk_connection_queue(hostname: &str) -> String {
    format!("nodepool.launcher.{hostname}.zk.client.connection_queue")
}

/// `nodepool.launcher.<hostname>.zk.<cache>_cache.<queue>_queue` with `cache` one of
/// `node`, `request`, `image` and `queue` one of `event`, `playback`.
pub fn zk_cache_queue(hostname: &str, cache: &str, queue: &str) -> String {
    format!("nodepool.launcher.{hostname}.zk.{cache}_cache.{queue}_queue")
}

/// `nodepool.task.<provider>.<service>.<method>.<operation>`: cloud API call timer
/// (c+ms), e.g. `nodepool.task.prov.compute.POST.servers`.
pub fn task(provider: &str, service: &str, method: &str, operation: &str) -> Key {
    Key::new(
        format!("nodepool.task.{provider}.{service}.{method}.{operation}"),
        Fam::ApiDuration,
        vec![
            ("provider", provider.into()),
            ("service", service.into()),
            ("method", method.into()),
            ("operation", operation.into()),
        ],
    )
}

// ---- builder ----

/// `nodepool.dib_image_build.<image>.<ext>.size` (gauge, bytes).
pub fn dib_image_build_size(image: &str, ext: &str) -> Key {
    Key::new(
        format!("nodepool.dib_image_build.{image}.{ext}.size"),
        Fam::BuildSize,
        vec![("image", image.into()), ("format", ext.into())],
    )
}

/// `nodepool.dib_image_build.<image>.status.duration` (timer).
pub fn dib_image_build_duration(image: &str) -> Key {
    Key::new(
        format!("nodepool.dib_image_build.{image}.status.duration"),
        Fam::BuildDuration,
        vec![("image", image.into())],
    )
}

/// `nodepool.dib_image_build.<image>.status.rc` (gauge).
pub fn dib_image_build_rc(image: &str) -> Key {
    Key::new(
        format!("nodepool.dib_image_build.{image}.status.rc"),
        Fam::BuildRc,
        vec![("image", image.into())],
    )
}

/// `nodepool.dib_image_build.<image>.status.last_build` (gauge, epoch seconds).
pub fn dib_image_build_last_build(image: &str) -> Key {
    Key::new(
        format!("nodepool.dib_image_build.{image}.status.last_build"),
        Fam::BuildLast,
        vec![("image", image.into())],
    )
}

/// `nodepool.image_update.<image>.<provider>` (c+ms, successful upload).
pub fn image_update(image: &str, provider: &str) -> Key {
    Key::new(
        format!("nodepool.image_update.{image}.{provider}"),
        Fam::UploadDuration,
        vec![("image", image.into()), ("provider", provider.into())],
    )
}

/// `nodepool.builder.<host>.image.<image>.build.state` (gauge: 0 idle, 1 building,
/// 3 paused).
pub fn builder_build_state(host: &str, image: &str) -> Key {
    Key::new(
        format!("nodepool.builder.{host}.image.{image}.build.state"),
        Fam::BuildState,
        vec![("image", image.into())],
    )
}

/// `nodepool.builder.<host>.image.<image>.provider.<provider>.upload.state` (gauge:
/// 0 idle, 2 uploading, 3 paused).
pub fn builder_upload_state(host: &str, image: &str, provider: &str) -> Key {
    Key::new(
        format!("nodepool.builder.{host}.image.{image}.provider.{provider}.upload.state"),
        Fam::UploadState,
        vec![("image", image.into()), ("provider", provider.into())],
    )
}

/// Builder state gauge values.
pub mod builder_state {
    /// Idle.
    pub const IDLE: u64 = 0;
    /// Building.
    pub const BUILDING: u64 = 1;
    /// Uploading.
    pub const UPLOADING: u64 = 2;
    /// Paused.
    pub const PAUSED: u64 = 3;
}

/// `nodepool.image.<image>.image_build_requests` (gauge).
pub fn image_build_requests(image: &str) -> Key {
    Key::new(
        format!("nodepool.image.{image}.image_build_requests"),
        Fam::BuildRequests,
        vec![("image", image.into())],
    )
}

/// `nodepool.image_build_requests` (gauge, total).
pub const IMAGE_BUILD_REQUESTS: &str = "nodepool.image_build_requests";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launcher_names() {
        assert_eq!(launch("ready"), "nodepool.launch.ready");
        assert_eq!(
            launch_provider("p", result::ERROR_QUOTA),
            "nodepool.launch.provider.p.error.quota"
        );
        assert_eq!(
            launch_provider_az("p", "az1", "ready"),
            "nodepool.launch.provider.p.az1.ready"
        );
        assert_eq!(
            launch_requestor("NodePool:min-ready", "ready"),
            "nodepool.launch.requestor.NodePool_min-ready.ready"
        );
        assert_eq!(
            launch_requestor("zuul.example.org", "ready"),
            "nodepool.launch.requestor.zuul_example_org.ready"
        );
        assert_eq!(
            launch_image("ubuntu", "ready"),
            "nodepool.launch.image.ubuntu.ready"
        );
        assert_eq!(
            launch_keys("p", Some("az1"), Some("a:b"), "ready"),
            [
                "nodepool.launch.provider.p.ready",
                "nodepool.launch.ready",
                "nodepool.launch.provider.p.az1.ready",
                "nodepool.launch.requestor.a_b.ready",
            ]
        );
        assert_eq!(launch_keys("p", None, Some(""), "ready").len(), 2);
        assert_eq!(nodes(NodeState::InUse), "nodepool.nodes.in-use");
        assert_eq!(
            provider_nodes("p", NodeState::Ready),
            "nodepool.provider.p.nodes.ready"
        );
        assert_eq!(
            label_nodes("l", NodeState::Deleted),
            "nodepool.label.l.nodes.deleted"
        );
        assert_eq!(
            addressable_requests("p", "main"),
            "nodepool.provider.p.pool.main.addressable_requests"
        );
        assert_eq!(provider_max_servers("p"), "nodepool.provider.p.max_servers");
        assert_eq!(
            tenant_limit("ten.ant", "volume-gb"),
            "nodepool.tenant_limits.ten_ant.volume-gb"
        );
        assert_eq!(leaked("p", "ports"), "nodepool.provider.p.leaked.ports");
        use crate::stats::prometheus::{Fam, MetricKey};
        let s = leaked("p", "ports").series().cloned().unwrap();
        assert_eq!(s.fam, Fam::Leaked);
        assert_eq!(
            s.labels,
            [
                ("provider", "p".to_string()),
                ("resource", "ports".to_string())
            ]
        );
        let keys = launch_keys("p", Some("az1"), Some("a:b"), "error.quota");
        let s = keys[0].series().unwrap();
        assert_eq!(s.fam, Fam::LaunchDuration);
        assert_eq!(s.labels[2], ("requestor", "a_b".to_string()));
        assert!(
            keys[1..].iter().all(|k| k.series().is_none()),
            "one observation per launch"
        );
        assert_eq!(
            zk_connection_queue("h"),
            "nodepool.launcher.h.zk.client.connection_queue"
        );
        assert_eq!(
            zk_cache_queue("h", "node", "event"),
            "nodepool.launcher.h.zk.node_cache.event_queue"
        );
        assert_eq!(
            task("p", "compute", "POST", "servers"),
            "nodepool.task.p.compute.POST.servers"
        );
    }

    #[test]
    fn builder_names() {
        assert_eq!(
            dib_image_build_size("u", "qcow2"),
            "nodepool.dib_image_build.u.qcow2.size"
        );
        assert_eq!(
            dib_image_build_duration("u"),
            "nodepool.dib_image_build.u.status.duration"
        );
        assert_eq!(
            dib_image_build_rc("u"),
            "nodepool.dib_image_build.u.status.rc"
        );
        assert_eq!(
            dib_image_build_last_build("u"),
            "nodepool.dib_image_build.u.status.last_build"
        );
        assert_eq!(image_update("u", "p"), "nodepool.image_update.u.p");
        assert_eq!(
            builder_build_state("h", "u"),
            "nodepool.builder.h.image.u.build.state"
        );
        assert_eq!(
            builder_upload_state("h", "u", "p"),
            "nodepool.builder.h.image.u.provider.p.upload.state"
        );
        assert_eq!(
            image_build_requests("u"),
            "nodepool.image.u.image_build_requests"
        );
        assert_eq!(IMAGE_BUILD_REQUESTS, "nodepool.image_build_requests");
    }
}
