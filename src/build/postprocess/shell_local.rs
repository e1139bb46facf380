//! The `shell-local` post-processor: the recipe's commands on this machine, with the artifact
//! in their environment. The artifact passes through unchanged.

use super::{BuildFacts, PostProcess, Processed};
use crate::build::artifact::Artifact;
use crate::build::local_shell;
use crate::build::runner::{BoxFuture, StepContext, StepError};
use crate::recipe::shell_local::ShellLocalConfig;

/// The `shell-local` post-processor.
pub struct ShellLocal(pub ShellLocalConfig);

/// The variables a post-processor's commands get: Packer's, plus kiln's `KILN_ARTIFACT` (the
/// artifact's main file) and `KILN_ARTIFACT_FILES` (all its files, one per line).
pub(crate) fn environment(facts: &BuildFacts, artifact: &Artifact) -> Vec<(String, String)> {
    let files: Vec<String> = artifact
        .files
        .iter()
        .map(|f| f.display().to_string())
        .collect();
    vec![
        ("PACKER_BUILD_NAME".into(), facts.build_name.clone()),
        ("PACKER_BUILDER_TYPE".into(), facts.builder_type.clone()),
        ("PACKER_RUN_UUID".into(), facts.run_uuid.clone()),
        (
            "KILN_ARTIFACT".into(),
            files.first().cloned().unwrap_or_default(),
        ),
        ("KILN_ARTIFACT_FILES".into(), files.join("\n")),
    ]
}

impl PostProcess for ShellLocal {
    fn run<'a>(
        &'a self,
        ctx: &'a mut StepContext,
        input: &'a Artifact,
        facts: &'a BuildFacts,
    ) -> BoxFuture<'a, Result<Processed, StepError>> {
        Box::pin(async move {
            if !self.0.runs_here() {
                ctx.log(format!(
                    "skipped: `only_on` lists {}, not this machine",
                    self.0.only_on.join(", ")
                ));
            } else {
                local_shell::run(ctx, &self.0, &environment(facts, input), &facts.scratch).await?;
            }
            Ok(Processed {
                artifact: input.clone(),
                keep_input_by_default: true,
                must_keep_input: true,
            })
        })
    }
}
