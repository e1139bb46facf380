//! Packer's chain semantics, one step per post-processor.
//!
//! - Every chain starts from the builder's artifact; within a chain each post-processor gets
//!   the previous one's artifact.
//! - `keep_input_artifact` (or, unset, the post-processor's own default) decides whether the
//!   input is kept. For the first post-processor of a chain the input is the builder's
//!   artifact, which is kept when any chain's first post-processor keeps it. A post-processor
//!   whose output refers to its input (checksum, manifest, shell-local, kiln-resize) always
//!   keeps it, as in Packer.
//! - The last artifact of every chain is a result.
//!
//! Unlike Packer, kiln removes the files of unkept artifacts only after the last
//! post-processor succeeded, and never a file that a kept artifact still lists (Packer's
//! checksum-then-compress chain deletes the image it was told to keep). When a
//! post-processor fails, the build fails and every file written so far stays.

use std::collections::BTreeSet;
use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

use super::{BuildFacts, PostProcess};
use crate::build::artifact::Artifact;
use crate::build::event::{EventSink, Outcome};
use crate::build::runner::{self, BoxFuture, Step, StepContext, StepDone, StepError};
use crate::recipe::postprocessor::PostProcessor;

/// The post-processors' share of a build's state.
#[derive(Debug, Clone)]
pub struct PostState {
    /// About the build.
    pub facts: BuildFacts,
    /// The builder's artifact (set before the first post-processor runs).
    pub builder: Option<Artifact>,
    /// The running chain's current artifact.
    current: Option<Artifact>,
    /// Some chain's first post-processor keeps the builder's artifact.
    keep_builder: bool,
    /// Artifacts that are results: kept.
    results: Vec<Artifact>,
    /// Intermediate artifacts whose files are removed after the last post-processor.
    discarded: Vec<Artifact>,
    /// The artifacts of the build once every post-processor ran, builder's first when kept.
    pub artifacts: Vec<Artifact>,
    /// (zone, template id) of every template an `exoscale-import` registered, kept even when
    /// a later post-processor fails (the template exists all the same).
    pub published: Vec<(String, String)>,
}

impl PostState {
    /// A state for a build described by `facts`, with the builder's artifact when known.
    pub fn new(facts: BuildFacts, builder: Option<Artifact>) -> Self {
        Self {
            facts,
            builder,
            current: None,
            keep_builder: false,
            results: Vec::new(),
            discarded: Vec::new(),
            artifacts: Vec::new(),
            published: Vec::new(),
        }
    }
}

/// Gives post-processor steps their part of a build's state.
pub trait HasPostState: Send {
    /// The post-processors' state.
    fn post_state(&mut self) -> &mut PostState;
}

impl HasPostState for PostState {
    fn post_state(&mut self) -> &mut PostState {
        self
    }
}

/// Where a post-processor sits in the build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// 1-based number among all post-processors, and their count (for the step name).
    pub number: (usize, usize),
    /// Index within its chain.
    pub in_chain: usize,
    /// The chain's length.
    pub chain_len: usize,
}

/// One post-processor as a build step.
pub struct PostStep {
    position: Position,
    config: PostProcessor,
    implementation: Box<dyn PostProcess>,
}

impl PostStep {
    /// The steps for `chains`, or the types `kiln build` cannot run yet.
    pub fn for_chains(chains: &[Vec<PostProcessor>]) -> Result<Vec<PostStep>, Vec<String>> {
        let total = chains.iter().map(Vec::len).sum();
        let mut steps = Vec::with_capacity(total);
        let mut missing = Vec::new();
        for chain in chains {
            for (in_chain, config) in chain.iter().enumerate() {
                let later = &chain[in_chain + 1..];
                let Some(implementation) = super::implementation_in_chain(&config.kind, later)
                else {
                    missing.push(format!("the `{}` post-processor", config.type_name()));
                    continue;
                };
                steps.push(PostStep {
                    position: Position {
                        number: (steps.len() + 1, total),
                        in_chain,
                        chain_len: chain.len(),
                    },
                    config: config.clone(),
                    implementation,
                });
            }
        }
        if missing.is_empty() {
            Ok(steps)
        } else {
            Err(missing)
        }
    }

    fn keep_input(&self, ctx: &StepContext, default: bool, forced: bool) -> bool {
        match self.config.keep_input_artifact {
            Some(false) if forced => {
                ctx.log(format!(
                    "the {} post-processor keeps its input artifact (its output refers to it); \
                     `keep_input_artifact: false` is ignored",
                    self.config.type_name()
                ));
                true
            }
            Some(keep) => keep,
            None => default || forced,
        }
    }
}

impl<S: HasPostState> Step<S> for PostStep {
    fn name(&self) -> String {
        let (n, total) = self.position.number;
        match &self.config.name {
            Some(name) => format!(
                "Post-processor {n}/{total}: {} ({name})",
                self.config.type_name()
            ),
            None => format!("Post-processor {n}/{total}: {}", self.config.type_name()),
        }
    }

    fn run<'a>(
        &'a mut self,
        ctx: &'a mut StepContext,
        state: &'a mut S,
    ) -> BoxFuture<'a, Result<StepDone, StepError>> {
        Box::pin(async move {
            let state = state.post_state();
            if self.position.in_chain == 0 {
                state.current = state.builder.clone();
            }
            let input = state.current.clone().ok_or_else(|| {
                StepError("there is no artifact to process (the build produced none)".into())
            })?;
            let processed = self.implementation.run(ctx, &input, &state.facts).await?;
            state
                .published
                .extend(super::exoscale_import::template_ids(&processed.artifact));
            let keep = self.keep_input(
                ctx,
                processed.keep_input_by_default,
                processed.must_keep_input,
            );
            if self.position.in_chain == 0 {
                state.keep_builder |= keep;
            } else if keep {
                state.results.push(input);
            } else {
                state.discarded.push(input);
            }
            if self.position.in_chain + 1 == self.position.chain_len {
                state.results.push(processed.artifact);
                state.current = None;
            } else {
                state.current = Some(processed.artifact);
            }
            if self.position.number.0 == self.position.number.1 {
                finish(ctx, state);
            }
            Ok(StepDone::Done)
        })
    }
}

/// After the last post-processor: removes the files of unkept artifacts that no kept artifact
/// lists, and records the build's artifacts.
fn finish(ctx: &StepContext, state: &mut PostState) {
    let mut kept: Vec<Artifact> = Vec::new();
    let mut removed: Vec<Artifact> = std::mem::take(&mut state.discarded);
    if let Some(builder) = state.builder.clone() {
        if state.keep_builder {
            kept.push(builder);
        } else {
            removed.push(builder);
        }
    }
    for result in std::mem::take(&mut state.results) {
        if !kept.contains(&result) {
            kept.push(result);
        }
    }
    let kept_files: BTreeSet<&PathBuf> = kept.iter().flat_map(|a| &a.files).collect();
    let mut done = BTreeSet::new();
    for artifact in &removed {
        for file in &artifact.files {
            if kept_files.contains(file) || !done.insert(file.clone()) {
                continue;
            }
            match std::fs::remove_file(file) {
                Ok(()) => ctx.log(format!(
                    "removed {} (an input artifact that is not kept: set \
                     \"keep_input_artifact\": true to keep it)",
                    file.display()
                )),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => ctx
                    .events()
                    .send(crate::build::event::Event::Warning(format!(
                        "cannot remove {}: {e}",
                        file.display()
                    ))),
            }
        }
    }
    state.artifacts = kept;
}

/// How [`run_chains`] ended.
#[derive(Debug, Clone, PartialEq)]
pub struct PostOutcome {
    /// How the run ended.
    pub outcome: Outcome,
    /// The artifacts after the post-processors (empty unless it succeeded).
    pub artifacts: Vec<Artifact>,
    /// (zone, template id) of every template an `exoscale-import` registered, also when a
    /// later post-processor failed.
    pub published: Vec<(String, String)>,
}

/// Runs post-processor `chains` on `artifact` as a build of their own (its events go to
/// `events`): what `kiln build` does after compaction, usable on any existing image.
pub async fn run_chains(
    chains: &[Vec<PostProcessor>],
    artifact: Artifact,
    facts: BuildFacts,
    events: EventSink,
    cancel: CancellationToken,
) -> Result<PostOutcome, Vec<String>> {
    let build_name = facts.build_name.clone();
    let steps: Vec<Box<dyn Step<PostState>>> = PostStep::for_chains(chains)?
        .into_iter()
        .map(|s| Box::new(s) as Box<dyn Step<PostState>>)
        .collect();
    let mut state = PostState::new(facts, Some(artifact.clone()));
    let outcome = runner::run(
        &build_name,
        steps,
        &mut state,
        events,
        cancel,
        runner::OnError::Cleanup,
    )
    .await;
    let artifacts = match (&outcome, chains.is_empty()) {
        (Outcome::Done, true) => vec![artifact],
        (Outcome::Done, false) => std::mem::take(&mut state.artifacts),
        _ => Vec::new(),
    };
    Ok(PostOutcome {
        outcome,
        artifacts,
        published: state.published,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::postprocess::Processed;
    use crate::build::redact::Redactor;
    use crate::recipe::template::{LoadOptions, load_str};
    use std::path::Path;

    /// A post-processor that returns a fixed artifact, or fails.
    struct Fake(Option<Artifact>);

    impl PostProcess for Fake {
        fn run<'a>(
            &'a self,
            _ctx: &'a mut StepContext,
            _input: &'a Artifact,
            _facts: &'a BuildFacts,
        ) -> BoxFuture<'a, Result<Processed, StepError>> {
            Box::pin(async move {
                match &self.0 {
                    Some(artifact) => Ok(Processed {
                        artifact: artifact.clone(),
                        keep_input_by_default: true,
                        must_keep_input: false,
                    }),
                    None => Err(StepError("the second post-processor failed".into())),
                }
            })
        }
    }

    #[tokio::test]
    async fn registered_templates_are_kept_when_a_later_post_processor_fails() {
        let recipe = load_str(
            "r.json",
            r#"{
              "builders": [{"type": "qemu", "iso_url": "x.qcow2", "iso_checksum": "none",
                            "disk_image": true, "ssh_username": "debian"}],
              "post-processors": [[
                {"type": "shell-local", "inline": ["true"]},
                {"type": "shell-local", "inline": ["true"]}
              ]]
            }"#,
            Path::new("/tmp"),
            &LoadOptions::default(),
        )
        .unwrap();
        let build = &recipe.builds[0];
        let mut steps = PostStep::for_chains(&build.post_processors).unwrap();
        let imported = Artifact {
            producer: crate::build::postprocess::exoscale_import::PRODUCER.into(),
            id: "ch-gva-2:aaa,de-fra-1:bbb".into(),
            files: Vec::new(),
        };
        steps[0].implementation = Box::new(Fake(Some(imported)));
        steps[1].implementation = Box::new(Fake(None));
        let dir = tempfile::tempdir().unwrap();
        let facts = BuildFacts {
            build_name: build.name.clone(),
            builder_type: "qemu".into(),
            run_uuid: "run".into(),
            scratch: dir.path().to_path_buf(),
            logs: dir.path().to_path_buf(),
            builder: std::sync::Arc::new(build.builder.clone()),
            qemu_binary: PathBuf::new(),
            accel: None,
        };
        let mut state = PostState::new(facts, Some(Artifact::builder(dir.path().join("i"))));
        let (sink, _rx) = EventSink::channel(Redactor::new());
        let steps: Vec<Box<dyn Step<PostState>>> = steps
            .into_iter()
            .map(|s| Box::new(s) as Box<dyn Step<PostState>>)
            .collect();
        let outcome = runner::run(
            "b",
            steps,
            &mut state,
            sink,
            CancellationToken::new(),
            runner::OnError::Cleanup,
        )
        .await;
        assert!(matches!(outcome, Outcome::Failed(_)), "{outcome:?}");
        assert!(state.artifacts.is_empty(), "no artifacts after a failure");
        assert_eq!(
            state.published,
            [
                ("ch-gva-2".to_string(), "aaa".to_string()),
                ("de-fra-1".to_string(), "bbb".to_string())
            ]
        );
    }
}
