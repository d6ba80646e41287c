//! The builder's decisions as pure functions over records and configuration (docs/builder.md):
//! which formats an image needs, whether it needs a build, which build to upload,
//! and which builds and uploads cleanup keeps. The workers read ZooKeeper, call these,
//! and act; keeping the rules here makes them testable without ZooKeeper.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use nodepool_shared::config::{Config, DiskImage};
use nodepool_shared::model::{BuildId, BuildState, ImageBuild, ImageUpload, UploadId, UploadState};

/// How many ready builds per image, and ready uploads per image and provider, cleanup
/// keeps.
pub const KEEP: usize = 2;

/// The formats `image` must be built in: its `formats` plus the upload format of every
/// provider listing it (`format_of(provider name)`). Empty → the image is never built.
pub fn required_formats(
    config: &Config,
    image: &DiskImage,
    format_of: impl Fn(&str) -> String,
) -> BTreeSet<String> {
    let mut set: BTreeSet<String> = image.formats.iter().cloned().collect();
    for p in &config.providers {
        if p.diskimage(&image.name).is_some() {
            set.insert(format_of(&p.name));
        }
    }
    set
}

/// Why an image needs a build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BuildReason {
    /// No `ready` build exists.
    NoReadyBuild,
    /// The newest ready build is at least `rebuild-age` old.
    TooOld,
    /// The newest ready build lacks these formats.
    MissingFormats(BTreeSet<String>),
    /// `request-build` is set.
    Requested,
}

impl std::fmt::Display for BuildReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuildReason::NoReadyBuild => f.write_str("no ready build"),
            BuildReason::TooOld => f.write_str("newest ready build older than rebuild-age"),
            BuildReason::MissingFormats(m) => {
                let m: Vec<&str> = m.iter().map(String::as_str).collect();
                write!(f, "newest ready build lacks formats {}", m.join(","))
            }
            BuildReason::Requested => f.write_str("build requested"),
        }
    }
}

/// The newest build in `state` (by `state_time`, then id).
pub fn newest(builds: &[ImageBuild], state: BuildState) -> Option<&ImageBuild> {
    builds.iter().filter(|b| b.state == state).max_by(|a, b| {
        a.state_time
            .total_cmp(&b.state_time)
            .then_with(|| a.id.as_str().cmp(b.id.as_str()))
    })
}

/// Whether (and why) an image with these builds needs a new one at `now` (epoch s).
/// `required` empty → never.
pub fn build_reason(
    builds: &[ImageBuild],
    required: &BTreeSet<String>,
    rebuild_age: Duration,
    requested: bool,
    now: f64,
) -> Option<BuildReason> {
    if required.is_empty() {
        return None;
    }
    if requested {
        return Some(BuildReason::Requested);
    }
    let Some(ready) = newest(builds, BuildState::Ready) else {
        return Some(BuildReason::NoReadyBuild);
    };
    if now - ready.state_time >= rebuild_age.as_secs_f64() {
        return Some(BuildReason::TooOld);
    }
    let have: BTreeSet<String> = ready.formats.iter().cloned().collect();
    let missing: BTreeSet<String> = required.difference(&have).cloned().collect();
    if !missing.is_empty() {
        return Some(BuildReason::MissingFormats(missing));
    }
    None
}

/// When (epoch s) the newest ready build becomes too old; `None` without one.
pub fn rebuild_due(builds: &[ImageBuild], rebuild_age: Duration) -> Option<f64> {
    newest(builds, BuildState::Ready).map(|b| b.state_time + rebuild_age.as_secs_f64())
}

/// The builds cleanup keeps for an image: the [`KEEP`] newest `ready` ones, none if
/// the image is no longer configured.
pub fn kept_builds(builds: &[ImageBuild], in_config: bool) -> BTreeSet<BuildId> {
    if !in_config {
        return BTreeSet::new();
    }
    let mut ready: Vec<&ImageBuild> = builds
        .iter()
        .filter(|b| b.state == BuildState::Ready)
        .collect();
    ready.sort_by(|a, b| b.state_time.total_cmp(&a.state_time));
    ready.into_iter().take(KEEP).map(|b| b.id.clone()).collect()
}

/// The uploads cleanup keeps for one image and provider: the [`KEEP`] newest `ready`
/// uploads over all builds that are not being deleted (none if the provider no longer
/// lists the image). Keys are (build id, upload id).
pub fn recent_uploads(
    uploads: &[(ImageUpload, BuildState)],
    provider_lists_image: bool,
) -> BTreeSet<(BuildId, UploadId)> {
    if !provider_lists_image {
        return BTreeSet::new();
    }
    let mut ready: Vec<&ImageUpload> = uploads
        .iter()
        .filter(|(u, bs)| u.state == UploadState::Ready && *bs != BuildState::Deleting)
        .map(|(u, _)| u)
        .collect();
    ready.sort_by(|a, b| b.state_time.total_cmp(&a.state_time));
    ready
        .into_iter()
        .take(KEEP)
        .map(|u| (u.build_id.clone(), u.id.clone()))
        .collect()
}

/// The cloud image name from `image-name-format`: `{image_name}`, `{timestamp}` (int
/// epoch seconds) and `{upload_id}` are replaced; `{{`/`}}` are literal braces.
pub fn image_name(format: &str, image: &str, timestamp: u64, upload_id: &str) -> String {
    let mut out = String::new();
    let mut rest = format;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
            continue;
        }
        let key = tail
            .strip_prefix('{')
            .and_then(|t| t.find('}').map(|end| (&t[..end], &t[end + 1..])));
        match key {
            Some(("image_name", r)) => {
                out.push_str(image);
                rest = r;
            }
            Some(("timestamp", r)) => {
                out.push_str(&timestamp.to_string());
                rest = r;
            }
            Some(("upload_id", r)) => {
                out.push_str(upload_id);
                rest = r;
            }
            _ => {
                out.push_str(&tail[..1]);
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Glance properties of an upload: diskimage `metadata`, then provider diskimage `meta`,
/// then the nodepool keys (later wins). Non-string values become their JSON text.
pub fn image_properties(
    metadata: &serde_json::Map<String, serde_json::Value>,
    meta: &serde_json::Map<String, serde_json::Value>,
    build_id: &str,
    upload_id: &str,
    provider: &str,
) -> BTreeMap<String, String> {
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut props: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in metadata.iter().chain(meta.iter()) {
        props.insert(k.clone(), text(v));
    }
    props.insert("nodepool_build_id".into(), build_id.into());
    props.insert("nodepool_upload_id".into(), upload_id.into());
    props.insert("nodepool_provider_name".into(), provider.into());
    props
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(id: &str, state: BuildState, t: f64, formats: &[&str]) -> ImageBuild {
        let mut b = ImageBuild::new("img", BuildId::from(id));
        b.state = state;
        b.state_time = t;
        b.formats = formats.iter().map(|s| s.to_string()).collect();
        b
    }

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn build_reasons() {
        let day = Duration::from_secs(86400);
        let req = set(&["qcow2"]);
        assert_eq!(build_reason(&[], &set(&[]), day, true, 0.0), None);
        assert_eq!(
            build_reason(&[], &req, day, false, 0.0),
            Some(BuildReason::NoReadyBuild)
        );
        let failed = [build("a", BuildState::Failed, 10.0, &["qcow2"])];
        assert_eq!(
            build_reason(&failed, &req, day, false, 20.0),
            Some(BuildReason::NoReadyBuild)
        );
        let ok = [
            build("a", BuildState::Ready, 100.0, &["qcow2"]),
            build("b", BuildState::Ready, 50.0, &["raw"]),
        ];
        assert_eq!(build_reason(&ok, &req, day, false, 200.0), None);
        assert_eq!(
            build_reason(&ok, &req, day, true, 200.0),
            Some(BuildReason::Requested)
        );
        assert_eq!(
            build_reason(&ok, &req, day, false, 100.0 + 86400.0),
            Some(BuildReason::TooOld)
        );
        assert_eq!(
            build_reason(&ok, &set(&["qcow2", "raw"]), day, false, 200.0),
            Some(BuildReason::MissingFormats(set(&["raw"])))
        );
        assert_eq!(rebuild_due(&ok, day), Some(100.0 + 86400.0));
    }

    #[test]
    fn kept() {
        let builds = [
            build("a", BuildState::Ready, 1.0, &[]),
            build("b", BuildState::Ready, 3.0, &[]),
            build("c", BuildState::Failed, 4.0, &[]),
            build("d", BuildState::Ready, 2.0, &[]),
        ];
        let k = kept_builds(&builds, true);
        assert_eq!(k, [BuildId::from("b"), BuildId::from("d")].into());
        assert!(kept_builds(&builds, false).is_empty());
    }

    #[test]
    fn recent() {
        let up = |b: &str, u: u64, st: UploadState, t: f64| {
            let mut x = ImageUpload::new("img", BuildId::from(b), "p");
            x.id = UploadId::from_sequence(u);
            x.state = st;
            x.state_time = t;
            x
        };
        let list = vec![
            (up("a", 1, UploadState::Ready, 1.0), BuildState::Ready),
            (up("b", 2, UploadState::Ready, 2.0), BuildState::Ready),
            (up("c", 3, UploadState::Ready, 3.0), BuildState::Deleting),
            (up("d", 4, UploadState::Failed, 4.0), BuildState::Ready),
            (up("e", 5, UploadState::Ready, 0.5), BuildState::Ready),
        ];
        let r = recent_uploads(&list, true);
        assert_eq!(
            r,
            [
                (BuildId::from("a"), UploadId::from_sequence(1)),
                (BuildId::from("b"), UploadId::from_sequence(2))
            ]
            .into()
        );
        assert!(recent_uploads(&list, false).is_empty());
    }

    #[test]
    fn names_and_properties() {
        assert_eq!(
            image_name("{image_name}-{timestamp}", "ubuntu", 17, "0000000001"),
            "ubuntu-17"
        );
        assert_eq!(
            image_name("np-{upload_id}-{{x}}-{other}", "u", 1, "0000000002"),
            "np-0000000002-{x}-{other}"
        );
        let mut md = serde_json::Map::new();
        md.insert("a".into(), "1".into());
        md.insert("n".into(), serde_json::json!(5));
        md.insert("nodepool_build_id".into(), "bad".into());
        let mut meta = serde_json::Map::new();
        meta.insert("a".into(), "2".into());
        let p = image_properties(&md, &meta, "bid", "0000000001", "prov");
        assert_eq!(p["a"], "2");
        assert_eq!(p["n"], "5");
        assert_eq!(p["nodepool_build_id"], "bid");
        assert_eq!(p["nodepool_upload_id"], "0000000001");
        assert_eq!(p["nodepool_provider_name"], "prov");
    }
}
