//! `kiln history`: the builds recorded in the history (by the window and by `kiln build`),
//! newest first, as a table or as JSON.

use std::io::Write;

use chrono::Local;
use clap::Args;

use crate::history::{self, BuildRecord, History, RunOutcome};
use crate::recipe::units::format_elapsed;

/// Arguments of `kiln history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// How many builds to list.
    #[arg(long, short = 'n', default_value_t = 20, value_name = "N")]
    pub limit: usize,
    /// Print machine-readable JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn outcome_text(outcome: &RunOutcome) -> &'static str {
    match outcome {
        RunOutcome::Unfinished => "unfinished",
        RunOutcome::Interrupted => "interrupted",
        RunOutcome::Done => "done",
        RunOutcome::Failed(_) => "FAILED",
        RunOutcome::Cancelled => "cancelled",
    }
}

fn json(record: &BuildRecord) -> serde_json::Value {
    serde_json::json!({
        "id": record.id,
        "recipe": record.recipe,
        "build": record.build_name,
        "origin": record.origin.as_str(),
        "started": record.started.to_rfc3339(),
        "ended": record.ended.map(|t| t.to_rfc3339()),
        "duration_s": record.duration.map(|d| d.as_secs_f64()),
        "outcome": record.outcome.as_str(),
        "message": record.outcome.message(),
        "stopped_at": record.stopped_at,
        "log_dir": record.log_dir,
        "steps": record.steps.iter().map(|s| serde_json::json!({
            "name": s.name,
            "outcome": s.end.as_str(),
            "detail": s.detail,
            "duration_s": s.duration.map(|d| d.as_secs_f64()),
        })).collect::<Vec<_>>(),
        "variables": record.variables.iter().map(|v| serde_json::json!({
            "name": v.name,
            "value": v.value,
            "sensitive": v.sensitive,
            "origin": v.origin.as_str(),
        })).collect::<Vec<_>>(),
        "artifacts": record.artifacts.iter().map(|a| serde_json::json!({
            "producer": a.producer,
            "path": a.path,
        })).collect::<Vec<_>>(),
        "templates": record.templates.iter().map(|(zone, id)| serde_json::json!({
            "zone": zone,
            "id": id,
            "name": record.template_name,
        })).collect::<Vec<_>>(),
        "checks": record.checks.iter().map(|c| serde_json::json!({
            "name": c.name,
            "passed": c.passed,
            "detail": c.detail,
        })).collect::<Vec<_>>(),
    })
}

/// Runs `kiln history`: exit 0, or 1 when the history cannot be read.
pub fn run(args: &HistoryArgs, out: &mut dyn Write, err: &mut dyn Write) -> std::io::Result<i32> {
    let path = history::default_path();
    let records = match History::open_existing(&path).and_then(|h| match h {
        Some(h) => h.recent(args.limit),
        None => Ok(Vec::new()),
    }) {
        Ok(records) => records,
        Err(e) => {
            writeln!(err, "kiln: {e}")?;
            return Ok(1);
        }
    };
    if args.json {
        let list: Vec<_> = records.iter().map(json).collect();
        writeln!(out, "{}", serde_json::Value::Array(list))?;
        return Ok(0);
    }
    if records.is_empty() {
        writeln!(
            out,
            "No build recorded yet (the history is {}).",
            path.display()
        )?;
        return Ok(0);
    }
    writeln!(
        out,
        "{:>5}  {:<16}  {:>8}  {:<10}  {:<32}  RESULT",
        "#", "STARTED", "DURATION", "OUTCOME", "RECIPE / BUILD"
    )?;
    for r in &records {
        let started = r.started.with_timezone(&Local).format("%Y-%m-%d %H:%M");
        let duration = r.duration.map(format_elapsed).unwrap_or_else(|| "-".into());
        let result = match &r.outcome {
            RunOutcome::Failed(why) => match &r.stopped_at {
                Some(step) if !why.starts_with(&format!("{step}:")) => format!("{step}: {why}"),
                _ => why.clone(),
            },
            RunOutcome::Cancelled => match &r.stopped_at {
                Some(step) => format!("cancelled at {step}"),
                None => "cancelled".into(),
            },
            RunOutcome::Interrupted => match r.running_step() {
                Some(step) => format!("{step}: the kiln running it stopped (killed or crashed)"),
                None => "the kiln running it stopped (killed or crashed)".into(),
            },
            _ => {
                let mut parts = Vec::new();
                if let Some(a) = r.main_artifact() {
                    parts.push(a.path.display().to_string());
                }
                if !r.templates.is_empty() {
                    parts.push(match &r.template_name {
                        Some(name) => format!("template “{name}” {}", r.templates_text()),
                        None => format!("templates {}", r.templates_text()),
                    });
                }
                parts.join(" · ")
            }
        };
        writeln!(
            out,
            "{:>5}  {started:<16}  {duration:>8}  {:<10}  {:<32}  {result}",
            r.id.unwrap_or_default(),
            outcome_text(&r.outcome),
            format!("{} / {}", r.recipe_name(), r.build_name),
        )?;
    }
    Ok(0)
}
