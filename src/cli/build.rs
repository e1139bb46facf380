//! `kiln build`: run a recipe headless — steps with durations, provisioner output, a summary.
//! Ctrl-C cancels cleanly (cleanups run); a second Ctrl-C stops at once.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use tokio_util::sync::CancellationToken;

use super::args;
use super::progress::{self, Bars};
use crate::build::breakpoint::Resume;
use crate::build::event::{Event, EventSink, Outcome};
use crate::build::log::LineFormatter;
use crate::build::plan::{BuildOptions, run_build};
use crate::build::redact::Redactor;
use crate::build::runner::OnError;
use crate::history::{self, Origin, Recorder, Recording};
use crate::recipe::template::{self, LoadOptions};
use crate::recipe::units::format_bytes;

/// Arguments of `kiln build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The recipe (a Packer legacy-JSON template).
    #[arg(value_name = "RECIPE")]
    pub recipe: PathBuf,
    /// Set a variable: `-var name=value`. Repeatable.
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = args::parse_var)]
    pub vars: Vec<(String, String)>,
    /// Read variables from a JSON file. Repeatable; later files win, `-var` beats them all.
    #[arg(long = "var-file", value_name = "FILE")]
    pub var_files: Vec<PathBuf>,
    /// Which builds: `-only`/`-except`, as Packer takes them.
    #[command(flatten)]
    pub selection: super::SelectionArgs,
    /// The SSH key and Exoscale credentials of the build.
    #[command(flatten)]
    pub choices: super::ChoiceArgs,
    /// Replace a non-empty output directory.
    #[arg(long)]
    pub force: bool,
    /// Also print the VM's serial console (it is always in the build's serial.log).
    #[arg(long)]
    pub console: bool,
    /// After a failure: `cleanup` removes what the build made; `abort` keeps the disk and
    /// the scratch files for debugging and says where (the VM is stopped either way).
    #[arg(long = "on-error", value_enum, default_value_t = OnErrorArg::Cleanup, value_name = "cleanup|abort")]
    pub on_error: OnErrorArg,
    /// Use the step cache: resume the VM from the last step whose inputs did not change, and
    /// save it after Connect and each provisioner for the next build (`kiln cache` lists it).
    #[arg(long, conflicts_with = "no_cache")]
    pub cache: bool,
    /// Build from the base image, without the step cache (the default for now).
    #[arg(long = "no-cache")]
    pub no_cache: bool,
    /// With --cache: run provisioner N and the ones after it again, even when cached.
    #[arg(long = "from", value_name = "N", requires = "cache", value_parser = clap::value_parser!(u32).range(1..))]
    pub from: Option<u32>,
}

/// The values of `--on-error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnErrorArg {
    /// Remove everything the failed build made.
    Cleanup,
    /// Keep the disk and scratch files for debugging.
    Abort,
}

/// `1 build`, `2 builds`.
fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

/// Whether someone can answer "press Enter": standard input is a terminal and `CI` is not
/// `true`.
fn interactive() -> bool {
    std::io::stdin().is_terminal()
        && !std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Runs `kiln build`; returns the exit code (0 built, 1 failed, 130 cancelled).
pub fn run(args: &BuildArgs, out: &mut dyn Write, err: &mut dyn Write) -> std::io::Result<i32> {
    let options = LoadOptions {
        vars: args.vars.clone(),
        var_files: args.var_files.clone(),
        selection: args.selection.selection(),
        ..LoadOptions::default()
    };
    let choices = match args.choices.choices() {
        Ok(c) => c,
        Err(why) => {
            writeln!(err, "kiln: {why}; nothing was built")?;
            return Ok(1);
        }
    };
    let mut recipe = match template::load_file(&args.recipe, &options) {
        Ok(r) => r,
        Err(diags) => {
            write!(err, "{diags}")?;
            writeln!(err, "{}: invalid; nothing was built", args.recipe.display())?;
            return Ok(1);
        }
    };
    let pwd = std::env::current_dir()?;
    for build in &mut recipe.builds {
        choices.apply(build);
        if let Some(problem) = crate::build::choices::key_problem(build, &pwd) {
            writeln!(
                err,
                "kiln: build `{}`: {problem}; nothing was built",
                build.name
            )?;
            return Ok(1);
        }
    }
    for w in recipe.warnings.iter() {
        writeln!(err, "{w}")?;
    }
    if !recipe.skipped.is_empty() {
        let runs: Vec<&str> = recipe.builds.iter().map(|b| b.name.as_str()).collect();
        let skips: Vec<String> = recipe.skipped.iter().map(|s| s.describe()).collect();
        writeln!(
            out,
            "==> kiln runs {}: {}; skips {}",
            plural(runs.len(), "build"),
            runs.join(", "),
            skips.join(", ")
        )?;
    }
    let runtime = tokio::runtime::Runtime::new()?;
    let cancel = cancel_on_ctrl_c(&runtime);
    // A breakpoint waits for Enter only where someone can press it.
    let resume = interactive().then(Resume::new);
    let run_uuid = uuid::Uuid::new_v4().to_string();
    let mut code = 0;
    for build in &recipe.builds {
        let (events, mut rx) = EventSink::channel(Redactor::new());
        let build_options = BuildOptions {
            force: args.force,
            on_error: match args.on_error {
                OnErrorArg::Cleanup => OnError::Cleanup,
                OnErrorArg::Abort => OnError::Abort,
            },
            resume: resume.clone(),
            run_uuid: Some(run_uuid.clone()),
            step_cache: args.cache && !args.no_cache,
            rerun_from: args.from.map(|n| n as usize),
            ..BuildOptions::default()
        };
        // The history: a file that cannot be written is a warning, never a failed build.
        let (mut recording, warn) = Recording::start(
            &history::default_path(),
            Recorder::new(&args.recipe, &recipe, build, Origin::Cli),
        );
        if let Some(warn) = warn {
            writeln!(err, "kiln: warning: {warn}")?;
        }
        let task = {
            let recipe = recipe.clone();
            let build = build.clone();
            let cancel = cancel.clone();
            runtime.spawn(async move {
                run_build(&recipe, &build, &build_options, events, cancel).await
            })
        };
        let durations = follow(
            &runtime,
            &mut rx,
            &mut recording,
            out,
            args.console,
            resume.as_ref(),
        )?;
        let report = runtime
            .block_on(task)
            .map_err(|e| std::io::Error::other(format!("the build task failed: {e}")))?;
        let (record, warn) = recording.finish(&report);
        if let Some(warn) = warn {
            writeln!(err, "kiln: warning: {warn}")?;
        }
        write_summary(out, &build.name, &durations)?;
        match &report.outcome {
            Outcome::Done => {
                let mut shown = std::collections::BTreeSet::new();
                for artifact in &report.artifacts {
                    for file in artifact.files.iter().filter(|f| shown.insert(*f)) {
                        let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
                        writeln!(
                            out,
                            "  artifact: {} ({}, from {})",
                            file.display(),
                            format_bytes(size),
                            artifact.producer
                        )?;
                    }
                }
            }
            Outcome::Cancelled => code = 130,
            Outcome::Failed(why) => {
                writeln!(err, "kiln: build `{}` failed: {why}", build.name)?;
                code = 1;
            }
            _ => {}
        }
        writeln!(out, "  logs: {}", report.log_dir.display())?;
        if let Some(id) = record.id {
            writeln!(out, "  history: build #{id} (kiln history)")?;
        }
        if code != 0 {
            break;
        }
    }
    Ok(code)
}

/// A token cancelled by the first Ctrl-C (the run then cleans up); a second Ctrl-C ends
/// the process at once.
pub(super) fn cancel_on_ctrl_c(runtime: &tokio::runtime::Runtime) -> CancellationToken {
    let cancel = CancellationToken::new();
    let ctrl_c = cancel.clone();
    runtime.spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\nkiln: cancelling — cleaning up (press Ctrl-C again to stop at once)");
            ctrl_c.cancel();
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    cancel
}

/// How each step of a run ended: its name, how long it took, its outcome.
pub(super) type StepTimes = Vec<(String, Duration, Outcome)>;

/// Prints a run's events as they come (lines, progress bars, a breakpoint's "press Enter"),
/// feeds them to the history `recording`, and returns the steps' times once the run's sink
/// is closed. The console is printed only when `console` (it is always in serial.log).
pub(super) fn follow(
    runtime: &tokio::runtime::Runtime,
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Event>,
    recording: &mut Recording,
    out: &mut dyn Write,
    console: bool,
    resume: Option<&Resume>,
) -> std::io::Result<StepTimes> {
    let mut formatter = LineFormatter::new();
    let mut bars = Bars::new(progress::bars_wanted());
    let mut durations: Vec<(String, Duration, Outcome)> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    while let Some(event) = runtime.block_on(rx.recv()) {
        recording.observe(&event);
        match &event {
            Event::BuildStarted { steps, .. } => names = steps.clone(),
            Event::StepFinished {
                index,
                outcome,
                duration,
            } => {
                durations.push((
                    names.get(*index).cloned().unwrap_or_default(),
                    *duration,
                    outcome.clone(),
                ));
            }
            Event::Console(_) if !console => continue,
            _ => {}
        }
        bars.update(&event);
        if bars.enabled() && matches!(event, Event::Progress { .. }) {
            continue;
        }
        if let Some(line) = formatter.line(&event) {
            bars.suspend(|| -> std::io::Result<()> {
                writeln!(out, "{line}")?;
                out.flush()
            })?;
        }
        if let (Event::Paused { .. }, Some(resume)) = (&event, resume) {
            writeln!(
                out,
                "    press Enter to continue (Ctrl-C cancels the build)"
            )?;
            out.flush()?;
            let resume = resume.clone();
            std::thread::spawn(move || {
                let mut line = String::new();
                if std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
                    resume.resume();
                }
            });
        }
    }
    drop(bars);
    Ok(durations)
}

/// Writes the table of step times that ends a run's output.
pub(super) fn write_summary(
    out: &mut dyn Write,
    name: &str,
    durations: &StepTimes,
) -> std::io::Result<()> {
    writeln!(out, "\nSummary of `{name}`:")?;
    for (name, duration, outcome) in durations {
        let mark = match outcome {
            Outcome::Done => "ok",
            Outcome::Skipped(_) => "skipped",
            Outcome::Failed(_) => "FAILED",
            Outcome::Cancelled => "cancelled",
        };
        writeln!(
            out,
            "  {name:<28} {:>8.1} s  {mark}",
            duration.as_secs_f64()
        )?;
    }
    Ok(())
}
