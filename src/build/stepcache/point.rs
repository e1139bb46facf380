//! A step after which the VM can be saved (Connect, each provisioner): skipped when the
//! build resumes after it, followed by a snapshot when the build saves there.

use crate::build::runner::{BoxFuture, Step, StepContext, StepDone, StepError};
use crate::build::state::BuildState;

/// Wraps the step that ends at cache point `point` (0: Connect, N: provisioner N).
pub struct CachePoint {
    /// The point.
    pub point: usize,
    /// The step.
    pub inner: Box<dyn Step<BuildState>>,
}

impl Step<BuildState> for CachePoint {
    fn name(&self) -> String {
        self.inner.name()
    }

    fn run<'a>(
        &'a mut self,
        ctx: &'a mut StepContext,
        state: &'a mut BuildState,
    ) -> BoxFuture<'a, Result<StepDone, StepError>> {
        Box::pin(async move {
            let restored = state.restored_point();
            if self.point > 0 && restored.is_some_and(|r| self.point <= r) {
                let note = state
                    .cache
                    .as_ref()
                    .map(|c| c.cached_note())
                    .unwrap_or_default();
                return Ok(StepDone::Skipped(note));
            }
            let done = self.inner.run(ctx, state).await?;
            if self.point == 0 && restored.is_some() {
                super::run::set_guest_clock(ctx, state).await;
            }
            if let Some(mut cache) = state.cache.take() {
                if cache.saves_at(self.point) && !ctx.cancel().is_cancelled() {
                    cache.save(ctx, state, self.point).await;
                }
                state.cache = Some(cache);
            }
            Ok(done)
        })
    }
}
