//! The `breakpoint` provisioner's pause, and the "continue" control a front end holds: the
//! engine sends [`Event::Paused`] and waits until the front end calls [`Resume::resume`]
//! (the CLI after Enter, the GUI from a button).

use std::sync::Arc;

use tokio::sync::Notify;

use super::event::Event;
use super::runner::{StepContext, StepDone, StepError};
use crate::recipe::provisioner::BreakpointConfig;

/// Continues a build paused at a breakpoint. Cheap to clone; the front end keeps one and
/// gives one to the build (`BuildOptions::resume`).
#[derive(Debug, Clone, Default)]
pub struct Resume(Arc<Notify>);

impl Resume {
    /// A control no one pressed yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Lets the paused build go on (or the next breakpoint, if pressed early: one press
    /// releases one pause).
    pub fn resume(&self) {
        self.0.notify_one();
    }

    /// Waits until someone presses continue (engine doubles in tests wait here too).
    pub async fn wait(&self) {
        self.0.notified().await;
    }
}

/// What the user is told when a breakpoint cannot wait for them.
pub fn cannot_wait(which: &str) -> String {
    format!(
        "{which} is a breakpoint, which waits for the user to continue, but nobody can: kiln \
         is not running on a terminal (or CI=true). Set \"disable\": true on it, or remove it"
    )
}

/// Pauses at breakpoint `which` (e.g. "provisioner 3") until `resume` fires; fails at once
/// when there is no one to continue.
pub async fn pause(
    ctx: &StepContext,
    config: &BreakpointConfig,
    which: &str,
    resume: Option<&Resume>,
) -> Result<StepDone, StepError> {
    if config.disable {
        ctx.log("breakpoint disabled (\"disable\": true); continuing");
        return Ok(StepDone::Skipped("disabled".into()));
    }
    let Some(resume) = resume else {
        return Err(StepError(cannot_wait(which)));
    };
    ctx.events().send(Event::Paused {
        index: ctx.index(),
        note: config.note.clone(),
    });
    resume.wait().await;
    ctx.log("continued");
    Ok(StepDone::Done)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::build::event::EventSink;
    use crate::build::redact::Redactor;

    fn config(disable: bool) -> BreakpointConfig {
        BreakpointConfig {
            disable,
            note: Some("look at the VM".into()),
        }
    }

    #[tokio::test]
    async fn waits_until_resumed() {
        let (sink, mut rx) = EventSink::channel(Redactor::new());
        let ctx = StepContext::detached(4, sink, CancellationToken::new());
        let resume = Resume::new();
        let cfg = config(false);
        let paused = pause(&ctx, &cfg, "provisioner 5", Some(&resume));
        tokio::pin!(paused);
        // Not done before the front end continues.
        assert!(
            tokio::time::timeout(Duration::from_millis(200), &mut paused)
                .await
                .is_err()
        );
        assert_eq!(
            rx.try_recv().unwrap(),
            Event::Paused {
                index: 4,
                note: Some("look at the VM".into())
            }
        );
        resume.resume();
        let done = tokio::time::timeout(Duration::from_secs(5), paused)
            .await
            .expect("resumed");
        assert_eq!(done, Ok(StepDone::Done));
    }

    #[tokio::test]
    async fn without_a_front_end_it_fails_and_names_the_way_out() {
        let (sink, _rx) = EventSink::channel(Redactor::new());
        let ctx = StepContext::detached(0, sink, CancellationToken::new());
        let err = pause(&ctx, &config(false), "provisioner 2", None)
            .await
            .unwrap_err();
        assert!(err.0.starts_with("provisioner 2 is a breakpoint"), "{err}");
        assert!(err.0.contains("\"disable\": true"), "{err}");
    }

    #[tokio::test]
    async fn disabled_skips_with_a_line() {
        let (sink, mut rx) = EventSink::channel(Redactor::new());
        let ctx = StepContext::detached(0, sink, CancellationToken::new());
        let done = pause(&ctx, &config(true), "provisioner 1", None).await;
        assert_eq!(done, Ok(StepDone::Skipped("disabled".into())));
        assert!(
            matches!(rx.try_recv().unwrap(), Event::Log { line, .. } if line.contains("disabled"))
        );
    }
}
