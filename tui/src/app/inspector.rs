//! The inspections, run off the UI thread.
//!
//! The inspections look at every record ([`nodepool_shared::diagnostics::inspect`]): at
//! 100,000 nodes that is 15–20 ms on a quiet machine and several times that under load,
//! longer than a frame, and it came at least once a second (ages change). Run on the
//! UI thread it delayed the frame after a clock tick and any key pressed meanwhile.
//! Here the console hands a copy of the inputs (the snapshot is shared `Arc`s: copying
//! 100,000 of them takes well under a millisecond) to one thread of its own, which sends
//! the problems back as [`AppEvent::Problems`]; while one inspection runs, newer data
//! only marks the problems stale and the next clock tick inspects again, so the thread
//! never falls behind. Without an inspector (tests, benches) the app inspects inline.

use std::collections::BTreeMap;
use std::sync::{mpsc, Arc};

use nodepool_shared::diagnostics::{inspect, Inputs, LockOwners, Problem};
use tokio::sync::mpsc::UnboundedSender;

use super::AppEvent;
use crate::data::{ConfigInfo, Snapshot};

/// What one inspection looks at, owned so that it can move to another thread.
#[derive(Debug)]
pub struct InspectJob {
    /// The cached records.
    pub snapshot: Snapshot,
    /// The configuration's promises.
    pub config: ConfigInfo,
    /// The clock the ages are measured at.
    pub now: f64,
    /// Owners of the lock contenders, when read.
    pub lock_owners: Option<Arc<LockOwners>>,
    /// Since when each label has been below `min-ready`.
    pub below_min_ready: BTreeMap<String, f64>,
}

impl InspectJob {
    /// Runs every inspection.
    pub fn run(&self) -> Vec<Problem> {
        let mut inputs = Inputs::new(&self.snapshot, &self.config, self.now);
        inputs.lock_owners = self.lock_owners.as_deref();
        inputs.below_min_ready = Some(&self.below_min_ready);
        inspect(&inputs)
    }
}

/// The handle of the inspection thread; the thread ends when the handle is dropped.
#[derive(Debug)]
pub struct Inspector {
    jobs: mpsc::Sender<InspectJob>,
}

impl Inspector {
    /// Starts the thread; results go to `tx` as [`AppEvent::Problems`].
    pub fn start(tx: UnboundedSender<AppEvent>) -> std::io::Result<Inspector> {
        let (jobs, rx) = mpsc::channel::<InspectJob>();
        std::thread::Builder::new()
            .name("inspections".into())
            .spawn(move || {
                for job in rx {
                    let problems = job.run();
                    if tx.send(AppEvent::Problems(job.now, problems)).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Inspector { jobs })
    }

    /// Hands `job` to the thread; false if the thread is gone.
    pub fn submit(&self, job: InspectJob) -> bool {
        self.jobs.send(job).is_ok()
    }
}
