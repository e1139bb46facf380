//! Asynchronous operations: read one, wait for one to finish (polling with backoff up to
//! the timeout).

use std::time::{Duration, Instant};

use reqwest::Method;

use super::client::Client;
use super::error::ApiError;
use super::model::{Operation, OperationState};

/// How many polls in a row may fail (each after the client's own retries) before the wait
/// gives up: Exoscale goes on with the operation meanwhile, so one failed poll is no reason
/// to stop (egoscale v3 tolerates 5 as well).
pub const POLL_ERRORS_TOLERATED: u32 = 5;

impl Client {
    /// `GET /operation/{id}`.
    pub async fn operation(&self, id: &str) -> Result<Operation, ApiError> {
        self.call(Method::GET, &["operation", id], &[], None).await
    }

    /// Polls `operation` until it leaves `pending`, as the client's [`PollSchedule`] says.
    /// `what` names the operation in errors ("registering template X"). Success returns
    /// the finished operation; failure, Exoscale's own timeout, and the schedule's timeout
    /// are errors. A poll that fails is tried again at the next interval, up to
    /// [`POLL_ERRORS_TOLERATED`] failures in a row (a refused key ends the wait at once).
    ///
    /// [`PollSchedule`]: super::backoff::PollSchedule
    pub async fn wait(&self, operation: Operation, what: &str) -> Result<Operation, ApiError> {
        let schedule = self.options().poll;
        let started = Instant::now();
        let mut delay: Option<Duration> = None;
        let mut current = operation;
        let mut failed_polls = 0;
        loop {
            match current.state {
                OperationState::Success => return Ok(current),
                OperationState::Failure | OperationState::Timeout => {
                    return Err(ApiError::OperationFailed {
                        id: current.id,
                        what: what.to_string(),
                        state: current.state.as_str().to_string(),
                        reason: current.reason,
                        message: current.message,
                    });
                }
                OperationState::Pending => {}
            }
            let elapsed = started.elapsed();
            if elapsed >= schedule.timeout {
                return Err(ApiError::OperationTimeout {
                    id: current.id,
                    what: what.to_string(),
                    waited: elapsed,
                });
            }
            let next = schedule.next_delay(delay);
            delay = Some(next);
            tokio::time::sleep(next.min(schedule.timeout - elapsed)).await;
            tracing::debug!("polling operation {} ({what})", current.id);
            match self.operation(&current.id).await {
                Ok(read) => {
                    current = read;
                    failed_polls = 0;
                }
                Err(e @ ApiError::Forbidden { .. }) => return Err(e),
                Err(e) => {
                    failed_polls += 1;
                    if failed_polls >= POLL_ERRORS_TOLERATED {
                        return Err(ApiError::OperationUnknown {
                            id: current.id,
                            what: what.to_string(),
                            zone: self.zone().to_string(),
                            failed_polls,
                            last: e.to_string(),
                        });
                    }
                    tracing::warn!(
                        "polling operation {} ({what}) failed ({failed_polls} in a row, giving up after {POLL_ERRORS_TOLERATED}): {e}",
                        current.id
                    );
                }
            }
        }
    }
}
