//! Asynchronous operations: read one, wait for one to finish (polling with backoff up to
//! the timeout).

use std::time::{Duration, Instant};

use reqwest::Method;

use super::client::Client;
use super::error::ApiError;
use super::model::{Operation, OperationState};

impl Client {
    /// `GET /operation/{id}`.
    pub async fn operation(&self, id: &str) -> Result<Operation, ApiError> {
        self.call(Method::GET, &["operation", id], &[], None).await
    }

    /// Polls `operation` until it leaves `pending`, as the client's [`PollSchedule`] says.
    /// `what` names the operation in errors ("registering template X"). Success returns
    /// the finished operation; failure, Exoscale's own timeout, and the schedule's timeout
    /// are errors.
    ///
    /// [`PollSchedule`]: super::backoff::PollSchedule
    pub async fn wait(&self, operation: Operation, what: &str) -> Result<Operation, ApiError> {
        let schedule = self.options().poll;
        let started = Instant::now();
        let mut delay: Option<Duration> = None;
        let mut current = operation;
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
            current = self.operation(&current.id).await?;
        }
    }
}
