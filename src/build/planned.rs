//! The plan of a build as one value: the build as it will run (the form's or the command
//! line's choices applied) and the steps the runner will run, in order. `kiln inspect` and
//! the window's Plan show it, [`super::plan::run_build`] runs its steps, and the history
//! records the same step list (the runner announces it in `BuildStarted`), so the three
//! never read the recipe three ways.

use super::breakpoint::Resume;
use super::describe;
use super::postprocess::PostStep;
use super::runner::Step;
use super::state::BuildState;
use super::stepcache::CachePoint;
use super::steps::{
    BaseImage, Boot, BootCommand, CdFiles, Compact, Connect, Disk, Floppy, Http, Provision, Seed,
    Shutdown,
};
use crate::recipe::template::Build;

/// What a plan needs besides the build.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// `--force`: replace a non-empty output directory.
    pub force: bool,
    /// How breakpoints wait for the front end (`None`: a build that cannot wait).
    pub resume: Option<Resume>,
}

/// A build's plan.
pub struct Plan {
    /// The build as it will run.
    pub build: Build,
    /// The steps, in the order they run.
    pub steps: Vec<Box<dyn Step<BuildState>>>,
}

impl Plan {
    /// The plan of `build`; `Err` names the post-processors kiln cannot run yet.
    pub fn new(build: &Build, options: &PlanOptions) -> Result<Plan, Vec<String>> {
        let post_steps = PostStep::for_chains(&build.post_processors)?;
        let count = build.provisioners.len();
        let mut steps: Vec<Box<dyn Step<BuildState>>> = vec![
            Box::new(BaseImage),
            Box::new(Disk {
                force: options.force,
            }),
            Box::new(Seed),
            Box::new(Http),
            Box::new(CdFiles),
            Box::new(Floppy),
            Box::new(Boot),
            Box::new(BootCommand),
            Box::new(CachePoint {
                point: 0,
                inner: Box::new(Connect),
            }),
        ];
        for (i, p) in build.provisioners.iter().enumerate() {
            steps.push(Box::new(CachePoint {
                point: i + 1,
                inner: Box::new(Provision {
                    number: (i + 1, count),
                    provisioner: p.clone(),
                    build_name: build.name.clone(),
                    resume: options.resume.clone(),
                }),
            }));
        }
        steps.push(Box::new(Shutdown));
        steps.push(Box::new(Compact));
        for step in post_steps {
            steps.push(Box::new(step));
        }
        Ok(Plan {
            build: build.clone(),
            steps,
        })
    }

    /// The steps' names, in order (what the runner announces and the history records).
    pub fn step_names(&self) -> Vec<String> {
        self.steps.iter().map(|s| s.name()).collect()
    }

    /// The plan in words: the builder, the provisioners, the post-processor chains, then
    /// the steps that will run, numbered.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = describe::plan_lines(&self.build);
        lines.push("steps:".into());
        for (i, name) in self.step_names().iter().enumerate() {
            lines.push(format!("  {}. {name}", i + 1));
        }
        lines
    }
}

/// The plan of `build` in words, or what kiln cannot run in it.
pub fn plan_lines(build: &Build) -> Vec<String> {
    match Plan::new(build, &PlanOptions::default()) {
        Ok(plan) => plan.lines(),
        Err(missing) => {
            let mut lines = describe::plan_lines(build);
            lines.push(format!(
                "steps: none — `kiln build` does not run {} yet",
                missing.join(", ")
            ));
            lines
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build_of(extra: serde_json::Value) -> Build {
        let mut recipe = serde_json::json!({
            "builders": [{"type": "qemu", "iso_url": "x.qcow2", "iso_checksum": "none",
                          "disk_image": true, "ssh_username": "debian"}],
        });
        if let (Some(r), Some(extra)) = (recipe.as_object_mut(), extra.as_object()) {
            r.extend(extra.clone());
        }
        crate::recipe::template::load_str(
            "r.json",
            &recipe.to_string(),
            std::path::Path::new("/tmp"),
            &Default::default(),
        )
        .unwrap_or_else(|d| panic!("{d}"))
        .builds
        .remove(0)
    }

    #[test]
    fn the_plan_lists_every_step_in_the_order_the_runner_runs_them() {
        let build = build_of(serde_json::json!({
            "provisioners": [{"type": "shell", "inline": ["true"]}, {"type": "file", "content": "x", "destination": "/tmp/x"}],
            "post-processors": [[{"type": "checksum"}, {"type": "manifest"}]]
        }));
        let plan = Plan::new(&build, &PlanOptions::default()).unwrap();
        assert_eq!(
            plan.step_names(),
            [
                "Base image",
                "Disk",
                "Seed",
                "HTTP server",
                "CD",
                "Floppy",
                "Boot",
                "Boot command",
                "Connect",
                "Provision 1/2: shell",
                "Provision 2/2: file",
                "Shut down",
                "Compact",
                "Post-processor 1/2: checksum",
                "Post-processor 2/2: manifest",
            ]
        );
        let lines = plan.lines();
        let steps_at = lines.iter().position(|l| l == "steps:").unwrap();
        assert_eq!(lines[steps_at + 10], "  10. Provision 1/2: shell");
        assert!(lines[0].starts_with("builder qemu: "), "{lines:?}");
    }

    #[test]
    fn a_post_processor_kiln_cannot_run_is_named_instead_of_steps() {
        let build = build_of(serde_json::json!({
            "post-processors": [{"type": "vsphere-template", "host": "h"}]
        }));
        let lines = plan_lines(&build);
        assert!(
            lines
                .last()
                .is_some_and(|l| l.starts_with("steps: none") && l.contains("vsphere-template")),
            "{lines:?}"
        );
    }
}
