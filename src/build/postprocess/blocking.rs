//! Long file work (hashing, compressing) on a blocking thread, with progress reported to the
//! step and a stop flag that is raised when the step is cancelled or dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::build::event::Unit;
use crate::build::runner::{StepContext, StepError};

/// The message of the error [`Work::check`] returns.
pub const CANCELLED: &str = "cancelled";

/// How often progress is reported.
const TICK: Duration = Duration::from_millis(200);

/// What the blocking work sees: where to count bytes, and whether to stop.
#[derive(Debug, Default)]
pub struct Work {
    done: AtomicU64,
    stop: AtomicBool,
}

impl Work {
    /// Counts `n` more bytes done.
    pub fn advance(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }

    /// Fails with "cancelled" once the step was cancelled; call it between chunks.
    pub fn check(&self) -> std::io::Result<()> {
        if self.stop.load(Ordering::Relaxed) {
            // Not `Interrupted`: `io::copy` retries on that.
            Err(std::io::Error::other(CANCELLED))
        } else {
            Ok(())
        }
    }
}

/// Raises the stop flag when dropped (the step's future was dropped: cancel).
struct StopOnDrop(Arc<Work>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::Relaxed);
    }
}

/// Runs `job` on a blocking thread, reporting `total` bytes of progress to `ctx`.
pub async fn run<T: Send + 'static>(
    ctx: &StepContext,
    total: u64,
    job: impl FnOnce(&Work) -> Result<T, String> + Send + 'static,
) -> Result<T, StepError> {
    let work = Arc::new(Work::default());
    let guard = StopOnDrop(work.clone());
    let shared = work.clone();
    let mut handle = tokio::task::spawn_blocking(move || job(&shared));
    let mut tick = tokio::time::interval(TICK);
    let result = loop {
        tokio::select! {
            joined = &mut handle => break joined,
            _ = tick.tick() => ctx.progress(work.done.load(Ordering::Relaxed), Some(total), Unit::Bytes),
            _ = ctx.cancel().cancelled() => {
                work.stop.store(true, Ordering::Relaxed);
                // Let the thread notice and clean up before the step ends.
                let _ = (&mut handle).await;
                return Err(StepError("cancelled".into()));
            }
        }
    };
    drop(guard);
    ctx.progress(work.done.load(Ordering::Relaxed), Some(total), Unit::Bytes);
    result
        .map_err(|e| StepError(format!("the worker thread failed: {e}")))?
        .map_err(StepError)
}
