//! Every ZooKeeper path Nodepool uses (the tree under `/nodepool`), as builders, and
//! [`classify`] which turns a path back into what it is — used by the tree caches, the
//! launcher, the CLI and the TUI so that nobody splits paths by hand.

use super::{BuildId, ComponentKind, NodeId, RequestId, UploadId};

/// Root of everything.
pub const ROOT: &str = "/nodepool";
/// Parent of node znodes.
pub const NODES: &str = "/nodepool/nodes";
/// Parent of request znodes.
pub const REQUESTS: &str = "/nodepool/requests";
/// Parent of request lock dirs.
pub const REQUEST_LOCKS: &str = "/nodepool/requests-lock";
/// Parent of image znodes.
pub const IMAGES: &str = "/nodepool/images";
/// Parent of the component kind directories.
pub const COMPONENTS: &str = "/nodepool/components";
/// The stats-worker election (a kazoo Lock dir).
pub const STATS_ELECTION: &str = "/nodepool/elections/stats";
/// Legacy (≤ 6.0) launcher registry; unused by Nodepool 11.
pub const LEGACY_LAUNCHERS: &str = "/nodepool/launchers";
/// Name of a lock directory below an object.
pub const LOCK: &str = "lock";

/// `/nodepool/nodes/<id>`.
pub fn node(id: &NodeId) -> String {
    format!("{NODES}/{id}")
}

/// Prefix for creating a node (persistent sequential): `/nodepool/nodes/`; ZooKeeper
/// appends the 10-digit id.
pub fn node_create_prefix() -> String {
    format!("{NODES}/")
}

/// `/nodepool/nodes/<id>/lock`.
pub fn node_lock(id: &NodeId) -> String {
    format!("{NODES}/{id}/{LOCK}")
}

/// `/nodepool/requests/<id>`.
pub fn request(id: &RequestId) -> String {
    format!("{REQUESTS}/{id}")
}

/// Prefix for creating a request with `precedence` (e.g. `100`, or `900` for min-ready):
/// `/nodepool/requests/<precedence>-`; ZooKeeper appends the sequence.
pub fn request_create_prefix(precedence: &str) -> String {
    format!("{REQUESTS}/{precedence}-")
}

/// `/nodepool/requests-lock/<id>`.
pub fn request_lock(id: &RequestId) -> String {
    format!("{REQUEST_LOCKS}/{id}")
}

/// `/nodepool/images/<image>`.
pub fn image(image: &str) -> String {
    format!("{IMAGES}/{image}")
}

/// `/nodepool/images/<image>/pause` (exists ⇔ paused).
pub fn image_pause(image: &str) -> String {
    format!("{IMAGES}/{image}/pause")
}

/// `/nodepool/images/<image>/request-build` (exists ⇔ manual build requested).
pub fn image_request_build(image: &str) -> String {
    format!("{IMAGES}/{image}/request-build")
}

/// `/nodepool/images/<image>/builds`.
pub fn builds(image: &str) -> String {
    format!("{IMAGES}/{image}/builds")
}

/// `/nodepool/images/<image>/builds/lock` (per-image build lock).
pub fn image_build_lock(image: &str) -> String {
    format!("{IMAGES}/{image}/builds/{LOCK}")
}

/// `/nodepool/images/<image>/builds/<build-id>`.
pub fn build(image: &str, build_id: &BuildId) -> String {
    format!("{IMAGES}/{image}/builds/{build_id}")
}

/// `/nodepool/images/<image>/builds/<build-id>/lock`.
pub fn build_lock(image: &str, build_id: &BuildId) -> String {
    format!("{IMAGES}/{image}/builds/{build_id}/{LOCK}")
}

/// `/nodepool/images/<image>/builds/<build-id>/providers`.
pub fn build_providers(image: &str, build_id: &BuildId) -> String {
    format!("{IMAGES}/{image}/builds/{build_id}/providers")
}

/// `/nodepool/images/<image>/builds/<build-id>/providers/<provider>/images` — the parent
/// of the uploads (sequential create prefix is this plus `/`).
pub fn provider_uploads(image: &str, build_id: &BuildId, provider: &str) -> String {
    format!("{IMAGES}/{image}/builds/{build_id}/providers/{provider}/images")
}

/// `…/providers/<provider>/images/lock` (per build+provider upload lock).
pub fn provider_upload_lock(image: &str, build_id: &BuildId, provider: &str) -> String {
    format!("{}/{LOCK}", provider_uploads(image, build_id, provider))
}

/// `…/providers/<provider>/images/<upload-id>`.
pub fn upload(image: &str, build_id: &BuildId, provider: &str, upload_id: &UploadId) -> String {
    format!(
        "{}/{upload_id}",
        provider_uploads(image, build_id, provider)
    )
}

/// `…/providers/<provider>/images/<upload-id>/lock`.
pub fn upload_lock(
    image: &str,
    build_id: &BuildId,
    provider: &str,
    upload_id: &UploadId,
) -> String {
    format!(
        "{}/{upload_id}/{LOCK}",
        provider_uploads(image, build_id, provider)
    )
}

/// `/nodepool/components/<kind>`.
pub fn components(kind: ComponentKind) -> String {
    format!("{COMPONENTS}/{}", kind.as_str())
}

/// `/nodepool/components/<kind>/<name>` (`name` = hostname + sequence).
pub fn component(kind: ComponentKind, name: &str) -> String {
    format!("{COMPONENTS}/{}/{name}", kind.as_str())
}

/// Prefix for registering a component (ephemeral sequential):
/// `/nodepool/components/<kind>/<hostname>`.
pub fn component_create_prefix(kind: ComponentKind, hostname: &str) -> String {
    component(kind, hostname)
}

/// What a ZooKeeper path denotes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ZkPath {
    /// `/nodepool/nodes/<id>`.
    Node(NodeId),
    /// `/nodepool/nodes/<id>/lock` (`None`) or a contender below it (`Some(child name)`).
    NodeLock(NodeId, Option<String>),
    /// `/nodepool/requests/<id>`.
    Request(RequestId),
    /// `/nodepool/requests-lock/<id>` (`None`) or a contender below it.
    RequestLock(RequestId, Option<String>),
    /// `/nodepool/images/<image>`.
    Image(String),
    /// `/nodepool/images/<image>/pause`.
    Pause(String),
    /// `/nodepool/images/<image>/request-build`.
    RequestBuild(String),
    /// `/nodepool/images/<image>/builds/<build-id>`.
    Build(String, BuildId),
    /// `/nodepool/images/<image>/builds/<build-id>/providers/<provider>/images/<upload-id>`.
    Upload {
        /// Image name.
        image: String,
        /// Build id.
        build_id: BuildId,
        /// Provider name.
        provider: String,
        /// Upload id.
        upload_id: UploadId,
    },
    /// `/nodepool/components/<kind>/<name>`.
    Component(ComponentKind, String),
    /// Anything else: roots, intermediate dirs, image/build/upload lock dirs and their
    /// contenders, paths outside `/nodepool`.
    Other,
}

/// Classifies `path` (absolute, relative to the chroot). A final component named `lock`
/// never denotes a build or upload, as in Python's cache parser.
pub fn classify(path: &str) -> ZkPath {
    let Some(rest) = path.strip_prefix("/nodepool/") else {
        return ZkPath::Other;
    };
    let parts: Vec<&str> = rest.split('/').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return ZkPath::Other;
    }
    match parts.as_slice() {
        ["nodes", id] => ZkPath::Node(NodeId::from(*id)),
        ["nodes", id, "lock"] => ZkPath::NodeLock(NodeId::from(*id), None),
        ["nodes", id, "lock", child] => {
            ZkPath::NodeLock(NodeId::from(*id), Some(child.to_string()))
        }
        ["requests", id] => ZkPath::Request(RequestId::from(*id)),
        ["requests-lock", id] => ZkPath::RequestLock(RequestId::from(*id), None),
        ["requests-lock", id, child] => {
            ZkPath::RequestLock(RequestId::from(*id), Some(child.to_string()))
        }
        ["images", img] => ZkPath::Image(img.to_string()),
        ["images", img, "pause"] => ZkPath::Pause(img.to_string()),
        ["images", img, "request-build"] => ZkPath::RequestBuild(img.to_string()),
        ["images", img, "builds", bid] if *bid != LOCK => {
            ZkPath::Build(img.to_string(), BuildId::from(*bid))
        }
        ["images", img, "builds", bid, "providers", prov, "images", uid]
            if *bid != LOCK && *uid != LOCK =>
        {
            ZkPath::Upload {
                image: img.to_string(),
                build_id: BuildId::from(*bid),
                provider: prov.to_string(),
                upload_id: UploadId::from(*uid),
            }
        }
        ["components", kind, name] => match ComponentKind::from_wire(kind) {
            Some(k) => ZkPath::Component(k, name.to_string()),
            None => ZkPath::Other,
        },
        _ => ZkPath::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders() {
        let n = NodeId::from("0000004772");
        assert_eq!(node(&n), "/nodepool/nodes/0000004772");
        assert_eq!(node_lock(&n), "/nodepool/nodes/0000004772/lock");
        assert_eq!(node_create_prefix(), "/nodepool/nodes/");
        let r = RequestId::from("100-0000003350");
        assert_eq!(request(&r), "/nodepool/requests/100-0000003350");
        assert_eq!(request_lock(&r), "/nodepool/requests-lock/100-0000003350");
        assert_eq!(request_create_prefix("900"), "/nodepool/requests/900-");
        assert_eq!(image("ubuntu"), "/nodepool/images/ubuntu");
        assert_eq!(image_pause("ubuntu"), "/nodepool/images/ubuntu/pause");
        assert_eq!(
            image_request_build("ubuntu"),
            "/nodepool/images/ubuntu/request-build"
        );
        assert_eq!(builds("ubuntu"), "/nodepool/images/ubuntu/builds");
        assert_eq!(
            image_build_lock("ubuntu"),
            "/nodepool/images/ubuntu/builds/lock"
        );
        let b = BuildId::from("abc");
        assert_eq!(build("ubuntu", &b), "/nodepool/images/ubuntu/builds/abc");
        assert_eq!(
            build_lock("ubuntu", &b),
            "/nodepool/images/ubuntu/builds/abc/lock"
        );
        assert_eq!(
            provider_uploads("ubuntu", &b, "p"),
            "/nodepool/images/ubuntu/builds/abc/providers/p/images"
        );
        assert_eq!(
            provider_upload_lock("ubuntu", &b, "p"),
            "/nodepool/images/ubuntu/builds/abc/providers/p/images/lock"
        );
        let u = UploadId::from("0000000001");
        assert_eq!(
            upload("ubuntu", &b, "p", &u),
            "/nodepool/images/ubuntu/builds/abc/providers/p/images/0000000001"
        );
        assert_eq!(
            upload_lock("ubuntu", &b, "p", &u),
            "/nodepool/images/ubuntu/builds/abc/providers/p/images/0000000001/lock"
        );
        assert_eq!(components(ComponentKind::Pool), "/nodepool/components/pool");
        assert_eq!(
            component(ComponentKind::Launcher, "vm0000000002"),
            "/nodepool/components/launcher/vm0000000002"
        );
        assert_eq!(STATS_ELECTION, "/nodepool/elections/stats");
    }

    #[test]
    fn classify_round_trips_builders() {
        let n = NodeId::from("0000004351");
        let r = RequestId::from("100-0000002905");
        let b = BuildId::from("0123456789abcdef0123456789abcdef");
        let u = UploadId::from("0000000003");
        assert_eq!(classify(&node(&n)), ZkPath::Node(n.clone()));
        assert_eq!(classify(&node_lock(&n)), ZkPath::NodeLock(n.clone(), None));
        assert_eq!(
            classify("/nodepool/nodes/0000004351/lock/9f54667cbcfc403587c22e036a44174b__lock__0000000000"),
            ZkPath::NodeLock(n.clone(), Some("9f54667cbcfc403587c22e036a44174b__lock__0000000000".into()))
        );
        assert_eq!(classify(&request(&r)), ZkPath::Request(r.clone()));
        assert_eq!(
            classify(&request_lock(&r)),
            ZkPath::RequestLock(r.clone(), None)
        );
        assert_eq!(
            classify("/nodepool/requests-lock/100-0000002905/23c1__lock__0000000000"),
            ZkPath::RequestLock(r.clone(), Some("23c1__lock__0000000000".into()))
        );
        assert_eq!(classify(&image("ubuntu")), ZkPath::Image("ubuntu".into()));
        assert_eq!(
            classify(&image_pause("ubuntu")),
            ZkPath::Pause("ubuntu".into())
        );
        assert_eq!(
            classify(&image_request_build("ubuntu")),
            ZkPath::RequestBuild("ubuntu".into())
        );
        assert_eq!(
            classify(&build("ubuntu", &b)),
            ZkPath::Build("ubuntu".into(), b.clone())
        );
        assert_eq!(
            classify(&upload("ubuntu", &b, "prov", &u)),
            ZkPath::Upload {
                image: "ubuntu".into(),
                build_id: b.clone(),
                provider: "prov".into(),
                upload_id: u.clone()
            }
        );
        assert_eq!(
            classify(&component(ComponentKind::Pool, "vm0000000002")),
            ZkPath::Component(ComponentKind::Pool, "vm0000000002".into())
        );
        for other in [
            "/nodepool",
            "/nodepool/",
            "/nodepool/nodes",
            "/nodepool/nodes/",
            "/nodepool/requests",
            "/zuul/nodes/1",
            "/nodepool/images/ubuntu/builds",
            &image_build_lock("ubuntu"),
            &build_lock("ubuntu", &b),
            &provider_uploads("ubuntu", &b, "prov"),
            &provider_upload_lock("ubuntu", &b, "prov"),
            &upload_lock("ubuntu", &b, "prov", &u),
            "/nodepool/components/scheduler/x0000000001",
            "/nodepool/components/pool",
            STATS_ELECTION,
            "/nodepool/nodes/1/lock/a/b",
        ] {
            assert_eq!(classify(other), ZkPath::Other, "{other}");
        }
    }
}
