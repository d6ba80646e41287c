//! The statsd metrics of a finished build (docs/metrics.md): image sizes on success, and
//! duration, rc and last-build time for every build.

use std::collections::BTreeMap;

use nodepool_shared::stats::{names, Statsd};

use super::run::{BuildOutcome, BuildResult};

/// Emits `nodepool.dib_image_build.<image>.<ext>.size` for each of `sizes` (only when
/// the build succeeded), then `….status.duration`, `….status.rc` (negative codes as 0)
/// and `….status.last_build` (`now_epoch`, seconds).
pub fn report_build(
    statsd: &Statsd,
    image: &str,
    outcome: &BuildOutcome,
    sizes: &BTreeMap<String, u64>,
    now_epoch: u64,
) {
    if outcome.result == BuildResult::Succeeded {
        for (ext, size) in sizes {
            statsd.gauge(&names::dib_image_build_size(image, ext), *size);
        }
    }
    statsd.timing(&names::dib_image_build_duration(image), outcome.duration);
    statsd.gauge(
        &names::dib_image_build_rc(image),
        u64::try_from(outcome.rc).unwrap_or(0),
    );
    statsd.gauge(&names::dib_image_build_last_build(image), now_epoch);
}
