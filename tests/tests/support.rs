//! Support for the modules of this test binary that needs the daemon crate: the launcher
//! running in-process. Everything else is in `nodepool_shared::testing` and this crate's
//! library.

use nodepool_daemon::launcher::daemon::{run, LauncherOptions};
use nodepool_shared::testing::step;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// `nodepool-launcher` running in this process (`launcher::daemon::run`); stopped through
/// its cancellation token, as SIGINT stops the binary.
pub struct Launcher {
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl Launcher {
    /// Starts the launcher with `opts` on this runtime; a run that ends in an error fails
    /// the test when it is stopped.
    pub fn start(opts: LauncherOptions) -> Launcher {
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        let task = tokio::spawn(async move {
            run(opts, c).await.expect("launcher run");
        });
        Launcher { cancel, task }
    }

    /// Cancels it and waits (bounded) until it has stopped.
    pub async fn stop(self) {
        self.cancel.cancel();
        step("the launcher stops", self.task)
            .await
            .expect("launcher task");
    }
}
