//! Keeps the launcher's resident memory close to its live heap (docs/benchmarks.md,
//! "Launcher at scale").
//!
//! With glibc's allocator a process keeps the pages it frees: in every thread's arena,
//! until `malloc_trim`. The launcher's live heap hardly grows once its cache is loaded
//! (156 MiB at 100,000 nodes, counted with heaptrack), but its resident set grew by
//! 15 – 20 MiB within seconds of `ready` (the pool workers' first passes over 5,000
//! requests), by tens of MiB after a `/node-list` or a cache reload, and stayed there.
//! So [`trim_freed_memory`] runs beside the launcher: every [`CHECK_EVERY`], if the
//! anonymous resident memory grew by [`TRIM_GROWTH`] since the last trim and has
//! stopped growing (less than [`SETTLED`] since the last look: not in the middle of a
//! cache load, whose freed pages would only be faulted in again), it hands the free
//! pages back (`malloc_trim(0)`, a few ms on a blocking thread). An idle launcher does
//! nothing but read `/proc/self/statm`.
//!
//! Tried and not kept: a fixed `M_MMAP_THRESHOLD` of 128 KiB (big blocks mapped on
//! their own): 2 – 3 MiB less at rest with one launcher, within the noise once the trim
//! runs; and mimalloc instead of glibc: 250 MiB at rest instead of 196 MiB.
//!
//! [`limit_arenas`] also keeps glibc to [`ARENAS`] malloc arenas instead of up to
//! eight per core: the cache's records are decoded on pool threads, and with an arena
//! per thread the launcher's long-lived data and each load's short-lived buffers spread
//! over many arenas whose partly used pages no trim can return. With 100,000 nodes one
//! arena lowered the RSS 10 s after a reload from 189 – 192 to 179 – 188 MiB and its
//! peak from 198 – 202 to 194 – 198 MiB, at the same CPU (docs/benchmarks.md).
//!
//! Elsewhere (not glibc) the trim and the arena limit are no-ops.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How often the resident memory is looked at.
pub const CHECK_EVERY: Duration = Duration::from_secs(5);

/// Growth of the anonymous resident memory that makes it trim.
pub const TRIM_GROWTH: u64 = 4 * 1024 * 1024;

/// Growth between two looks under which the memory counts as settled.
pub const SETTLED: u64 = 1024 * 1024;

/// Malloc arenas the launcher keeps (glibc's default: up to eight per core).
pub const ARENAS: i32 = 1;

/// Limits glibc's malloc arenas to [`ARENAS`], unless `MALLOC_ARENA_MAX` is set in the
/// environment (glibc's own setting wins). Call before starting any thread.
pub fn limit_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a malloc parameter; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
    }
}

/// Returns the free pages of every arena to the system.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions; it only walks glibc's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Anonymous resident bytes of this process (resident minus file-backed pages, from
/// `/proc/self/statm`), or `None` where there is no such file.
pub fn anon_resident() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let mut fields = statm.split_whitespace().skip(1);
    let resident: u64 = fields.next()?.parse().ok()?;
    let shared: u64 = fields.next()?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(resident.saturating_sub(shared) * u64::try_from(page).ok()?)
}

/// When to trim: the anonymous resident memory after the last trim (or its lowest
/// since), and at the last look.
#[derive(Debug, Default)]
pub struct Trimmer {
    baseline: Option<u64>,
    last: Option<u64>,
}

impl Trimmer {
    /// True if `resident` grew by [`TRIM_GROWTH`] over the baseline and by less than
    /// [`SETTLED`] since the last look. The caller trims, then reports the resident
    /// memory after it with [`Trimmer::trimmed`].
    pub fn should_trim(&mut self, resident: u64) -> bool {
        let settled = self
            .last
            .replace(resident)
            .is_some_and(|last| resident < last.saturating_add(SETTLED));
        match self.baseline {
            Some(b) if resident >= b.saturating_add(TRIM_GROWTH) => settled,
            Some(b) if resident >= b => false,
            _ => {
                self.baseline = Some(resident);
                false
            }
        }
    }

    /// Records the resident memory after a trim.
    pub fn trimmed(&mut self, resident: u64) {
        self.baseline = Some(resident);
        self.last = Some(resident);
    }
}

/// Trims freed memory whenever the resident memory grew (see the module doc) until
/// `cancel` fires.
pub async fn trim_freed_memory(cancel: CancellationToken) {
    let mut trimmer = Trimmer::default();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(CHECK_EVERY) => {}
        }
        let Some(before) = anon_resident() else {
            return;
        };
        if !trimmer.should_trim(before) {
            continue;
        }
        if tokio::task::spawn_blocking(release_freed_memory)
            .await
            .is_err()
        {
            return;
        }
        let after = anon_resident().unwrap_or(before);
        tracing::debug!(
            before_mib = before >> 20,
            after_mib = after >> 20,
            "returned freed memory to the system"
        );
        trimmer.trimmed(after);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_after_growth_only() {
        let mib = 1024 * 1024;
        let mut t = Trimmer::default();
        assert!(!t.should_trim(100 * mib), "first look sets the baseline");
        assert!(!t.should_trim(103 * mib));
        assert!(!t.should_trim(104 * mib), "grown by 4 MiB, still growing");
        assert!(
            t.should_trim(104 * mib + mib / 2),
            "grown by 4 MiB, settled"
        );
        t.trimmed(101 * mib);
        assert!(!t.should_trim(101 * mib));
        // Still growing (a cache load): not yet.
        assert!(!t.should_trim(110 * mib));
        assert!(!t.should_trim(130 * mib));
        assert!(t.should_trim(130 * mib));
        t.trimmed(100 * mib);
        // A lower reading lowers the baseline.
        assert!(!t.should_trim(90 * mib));
        assert!(!t.should_trim(94 * mib));
        assert!(t.should_trim(94 * mib));
    }

    /// Freed small blocks stay resident until [`release_freed_memory`]; afterwards the
    /// anonymous resident memory is down by most of them. (Run on a thread of its own,
    /// so the blocks live in one arena; the margins leave room for other tests.)
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn release_returns_freed_small_blocks() {
        std::thread::spawn(|| {
            let mib = 1024 * 1024;
            let mut blocks: Vec<Vec<u8>> = (0..64 * 256).map(|_| vec![1u8; 4096]).collect();
            // Free all but every 64th block: 63 MiB in free chunks between live ones.
            let mut i = 0;
            blocks.retain(|_| {
                i += 1;
                i % 64 == 0
            });
            let before = anon_resident().unwrap();
            release_freed_memory();
            let after = anon_resident().unwrap();
            drop(blocks);
            assert!(
                before > after + 32 * mib,
                "before {} MiB, after {} MiB",
                before / mib,
                after / mib
            );
        })
        .join()
        .unwrap();
    }
}
