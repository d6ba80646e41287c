//! Images: builds that failed since the last good one, images whose newest ready build
//! is older than a rebuild can explain, uploads stuck in `uploading`, paused images.

use std::collections::BTreeMap;

use crate::diagnostics::{
    format_duration, Inputs, Problem, ProblemKind, RecordKey, Severity, DEFAULT_UPLOAD_LIMIT,
};
use crate::model::{BuildState, UploadState};
use crate::zk::CachedBuild;

/// Appends the image problems.
pub fn check(i: &Inputs<'_>, out: &mut Vec<Problem>) {
    let mut by_image: BTreeMap<&str, Vec<&CachedBuild>> = BTreeMap::new();
    for b in &i.snapshot.builds {
        by_image.entry(b.build.image.as_str()).or_default().push(b);
    }
    for builds in by_image.values_mut() {
        // Newest first.
        builds.sort_by(|a, b| b.build.state_time.total_cmp(&a.build.state_time));
        failing(builds, out);
    }
    stale(i, &by_image, out);
    uploads(i, out);
    for image in &i.snapshot.paused {
        out.push(Problem::new(
            Severity::Info,
            ProblemKind::ImagePaused,
            format!("image {image} is paused: no builds until it is unpaused (uploads of existing builds go on)"),
            vec![RecordKey::Image(image.clone())],
            format!("`nodepool image-unpause {image}` resumes its builds."),
        ));
    }
}

/// The failed builds newer than the newest ready one (newest first).
pub fn failing_streak<'a>(newest_first: &[&'a CachedBuild]) -> Vec<&'a CachedBuild> {
    newest_first
        .iter()
        .filter(|b| matches!(b.build.state, BuildState::Failed | BuildState::Ready))
        .take_while(|b| b.build.state == BuildState::Failed)
        .copied()
        .collect()
}

fn failing(newest_first: &[&CachedBuild], out: &mut Vec<Problem>) {
    let streak = failing_streak(newest_first);
    let Some(oldest) = streak.last() else {
        return;
    };
    let image = &oldest.build.image;
    let has_ready = newest_first
        .iter()
        .any(|b| b.build.state == BuildState::Ready);
    let severity = if has_ready {
        Severity::Warning
    } else {
        Severity::Error
    };
    let n = streak.len();
    out.push(
        Problem::new(
            severity,
            ProblemKind::ImageBuildsFailing,
            format!(
                "image {image}: the last {} failed{}",
                if n == 1 { "build".to_string() } else { format!("{n} builds") },
                if has_ready { "" } else { ", and it has no ready build" }
            ),
            streak
                .iter()
                .map(|b| RecordKey::Build(b.build.image.clone(), b.build.id.clone()))
                .collect(),
            format!(
                "Read the build log in the builder's build-log-dir, fix the image, then `nodepool image-build {image}`."
            ),
        )
        .since(oldest.build.state_time),
    );
}

fn stale(i: &Inputs<'_>, by_image: &BTreeMap<&str, Vec<&CachedBuild>>, out: &mut Vec<Problem>) {
    for d in &i.config.diskimages {
        if d.paused || i.snapshot.paused.contains(&d.name) {
            continue;
        }
        let builds = by_image.get(d.name.as_str()).map_or(&[][..], Vec::as_slice);
        if builds.iter().any(|b| b.build.state == BuildState::Building)
            || !failing_streak(builds).is_empty()
        {
            // Being built, or reported as failing.
            continue;
        }
        let newest = builds.iter().find(|b| b.build.state == BuildState::Ready);
        let (summary, since) = match newest {
            None => (
                format!(
                    "image {} has no ready build and none is being built",
                    d.name
                ),
                None,
            ),
            Some(b) => {
                let age = i.now - b.build.state_time;
                let limit = (d.rebuild_age + d.build_timeout).as_secs_f64();
                if age <= limit {
                    continue;
                }
                (
                    format!(
                        "image {}: the newest ready build is {} old (rebuild-age {}, build-timeout {}) and none is being built",
                        d.name,
                        format_duration(age),
                        format_duration(d.rebuild_age.as_secs_f64()),
                        format_duration(d.build_timeout.as_secs_f64()),
                    ),
                    Some(b.build.state_time + d.rebuild_age.as_secs_f64()),
                )
            }
        };
        let mut p = Problem::new(
            Severity::Warning,
            ProblemKind::ImageStale,
            summary,
            vec![RecordKey::Image(d.name.clone())],
            format!(
                "Check that a nodepool-builder runs and read its log; `nodepool image-build {}` requests a build now.",
                d.name
            ),
        );
        if let Some(t) = since {
            p = p.since(t);
        }
        out.push(p);
    }
}

fn uploads(i: &Inputs<'_>, out: &mut Vec<Problem>) {
    for u in &i.snapshot.uploads {
        let up = &u.upload;
        if up.state != UploadState::Uploading {
            continue;
        }
        let limit = i
            .config
            .provider(&up.provider)
            .map_or(DEFAULT_UPLOAD_LIMIT, |p| {
                p.image_upload_timeout.as_secs_f64()
            });
        let age = i.now - up.state_time;
        if age <= limit {
            continue;
        }
        out.push(
            Problem::new(
                Severity::Warning,
                ProblemKind::UploadStuck,
                format!(
                    "upload {} of {}-{} to {} is uploading for {} (image-upload-timeout {})",
                    up.id,
                    up.image,
                    up.build_id,
                    up.provider,
                    format_duration(age),
                    format_duration(limit)
                ),
                vec![RecordKey::Upload((
                    up.image.clone(),
                    up.build_id.clone(),
                    up.provider.clone(),
                    up.id.clone(),
                ))],
                "Check the builder's log for the upload; its cleanup removes a dead upload once the upload's lock is free.",
            )
            .since(up.state_time),
        );
    }
}
