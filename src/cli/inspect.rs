//! `kiln inspect`: what a recipe will do — variables, builder, provisioners, post-processors.

use std::io::Write;

use clap::Args;
use serde_json::{Value as Json, json};

use super::RecipeArgs;
use crate::build::describe;
use crate::recipe::secret::MASK;
use crate::recipe::template::{self, LoadOptions, Recipe};
use crate::recipe::vars::{VarSource, Variable};

/// Arguments of `kiln inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The recipe and its variables.
    #[command(flatten)]
    pub recipe: RecipeArgs,
}

/// Runs `kiln inspect`; returns the exit code (0 shown, 1 the recipe has errors).
pub fn run(args: &InspectArgs, out: &mut dyn Write, err: &mut dyn Write) -> std::io::Result<i32> {
    let options = LoadOptions {
        required_is_warning: true,
        ..args.recipe.load_options()
    };
    let choices = match args.recipe.choices.choices() {
        Ok(c) => c,
        Err(why) => {
            writeln!(err, "kiln: {why}")?;
            return Ok(1);
        }
    };
    show(
        &args.recipe.recipe,
        &options,
        &choices,
        args.recipe.json,
        out,
        err,
    )
}

/// What `kiln` without a subcommand does until the window exists: shows the default recipe.
pub fn run_default(out: &mut dyn Write, err: &mut dyn Write) -> std::io::Result<i32> {
    let path = crate::recipes::default_recipe();
    writeln!(
        err,
        "kiln: the desktop window is not part of this version yet; showing the default recipe \
         ({}). Try `kiln --help`.",
        path.display()
    )?;
    let options = LoadOptions {
        required_is_warning: true,
        ..LoadOptions::default()
    };
    show(
        &path,
        &options,
        &crate::build::choices::BuildChoices::default(),
        false,
        out,
        err,
    )
}

fn show(
    path: &std::path::Path,
    options: &LoadOptions,
    choices: &crate::build::choices::BuildChoices,
    as_json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> std::io::Result<i32> {
    // An invalid recipe is shown as far as it could be read, its problems listed after it.
    let mut recipe = match template::load_file_partial(path, options) {
        Ok(r) => r,
        Err(diags) => {
            write!(err, "{diags}")?;
            writeln!(
                err,
                "{}: invalid: nothing could be read ({})",
                path.display(),
                count(diags.errors().count(), "error")
            )?;
            return Ok(1);
        }
    };
    for build in &mut recipe.builds {
        choices.apply(build);
    }
    let diags = &recipe.warnings;
    let valid = !diags.has_errors();
    if as_json {
        let mut report = to_json(&recipe);
        report["valid"] = json!(valid);
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        )?;
    } else {
        write_text(&recipe, out)?;
    }
    if as_json {
        for d in diags.iter() {
            writeln!(err, "{d}")?;
        }
    } else if !diags.is_empty() {
        writeln!(out, "\nProblems:")?;
        for d in diags.errors().chain(diags.warnings()).chain(diags.notes()) {
            writeln!(out, "  {d}")?;
        }
    }
    if valid {
        return Ok(0);
    }
    writeln!(
        err,
        "{}: invalid ({}, {}): shown as far as it could be read",
        path.display(),
        count(diags.errors().count(), "error"),
        count(diags.warnings().count(), "warning")
    )?;
    Ok(1)
}

/// `1 error`, `2 errors`.
fn count(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

fn shown_value(v: &Variable) -> String {
    if v.sensitive && !v.value.is_empty() {
        MASK.to_string()
    } else {
        v.value.clone()
    }
}

fn source_name(v: &Variable) -> String {
    match &v.source {
        VarSource::Default if v.required => "required, not set".into(),
        VarSource::Default if !v.env_names.is_empty() => {
            format!("default, from env {}", v.env_names.join(", "))
        }
        VarSource::Default => "default".into(),
        VarSource::VarFile(f) => format!("var-file {f}"),
        VarSource::CommandLine => "-var".into(),
    }
}

fn write_text(recipe: &Recipe, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "{}", recipe.file)?;
    if let Some(d) = &recipe.description {
        writeln!(out, "  {d}")?;
    }
    writeln!(out, "\nVariables:")?;
    if recipe.variables.is_empty() {
        writeln!(out, "  (none)")?;
    }
    let width = recipe
        .variables
        .iter()
        .map(|v| v.name.len())
        .max()
        .unwrap_or(0);
    for v in &recipe.variables {
        let sensitive = if v.sensitive { " (sensitive)" } else { "" };
        writeln!(
            out,
            "  {:width$} = {:?}  [{}]{sensitive}",
            v.name,
            shown_value(v),
            source_name(v)
        )?;
    }
    if !recipe.skipped.is_empty() {
        writeln!(out, "\nNot run by kiln:")?;
        for skipped in &recipe.skipped {
            writeln!(out, "  {}", skipped.describe())?;
        }
    }
    for build in &recipe.builds {
        writeln!(out, "\nBuild `{}`:", build.name)?;
        for line in crate::build::planned::plan_lines(build)
            .into_iter()
            .chain(describe::host_lines(build, None))
        {
            writeln!(out, "  {line}")?;
        }
    }
    Ok(())
}

fn to_json(recipe: &Recipe) -> Json {
    let variables: Vec<Json> = recipe
        .variables
        .iter()
        .map(|v| {
            json!({
                "name": v.name,
                "value": shown_value(v),
                "default": if v.sensitive { v.default.as_ref().map(|_| MASK.to_string()) } else { v.default.clone() },
                "required": v.required,
                "declared": v.declared,
                "sensitive": v.sensitive,
                "source": source_name(v),
                "env": v.env_names,
            })
        })
        .collect();
    let builds: Vec<Json> = recipe
        .builds
        .iter()
        .map(|b| {
            json!({
                "name": b.name,
                "builder": {
                    "type": "qemu",
                    "summary": describe::builder(&b.builder),
                    "iso_urls": b.builder.iso_urls,
                    "iso_checksum": b.builder.iso_checksum.to_string(),
                    "output_directory": b.builder.output_directory,
                    "vm_name": b.builder.vm_name,
                    "format": b.builder.format.name(),
                    "disk_size": b.builder.disk_size,
                    "cpus": b.builder.cpus,
                    "memory": b.builder.memory,
                },
                "provisioners": b.provisioners.iter().map(|p| json!({
                    "type": p.kind.type_name(),
                    "summary": describe::provisioner(p),
                })).collect::<Vec<_>>(),
                "post_processors": b.post_processors.iter().map(|chain| chain.iter().map(|pp| json!({
                    "type": pp.kind.type_name(),
                    "summary": describe::post_processor(pp),
                })).collect::<Vec<_>>()).collect::<Vec<_>>(),
            })
        })
        .collect();
    let skipped: Vec<Json> = recipe
        .skipped
        .iter()
        .map(|s| {
            json!({
                "name": s.name,
                "type": s.builder_type,
                "reason": s.reason.describe(&s.builder_type),
            })
        })
        .collect();
    json!({
        "file": recipe.file,
        "description": recipe.description,
        "variables": variables,
        "builds": builds,
        "skipped": skipped,
        "warnings": recipe.warnings,
    })
}
