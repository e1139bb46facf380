//! `kiln validate`: every problem of a recipe, with its place.

use std::io::Write;

use clap::Args;

use super::RecipeArgs;
use crate::recipe::diag::Diagnostics;
use crate::recipe::template;

/// Arguments of `kiln validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The recipe and its variables.
    #[command(flatten)]
    pub recipe: RecipeArgs,
}

/// Runs `kiln validate`; returns the exit code (0 valid, 1 invalid).
pub fn run(args: &ValidateArgs, out: &mut dyn Write, err: &mut dyn Write) -> std::io::Result<i32> {
    let choices = match args.recipe.choices.choices() {
        Ok(c) => c,
        Err(why) => {
            writeln!(err, "kiln: {why}")?;
            return Ok(1);
        }
    };
    let result = template::load_file(&args.recipe.recipe, &args.recipe.load_options());
    let (valid, mut diags) = match result {
        Ok(mut recipe) => {
            // The chosen key is checked against the recipe's own cloud-init data.
            let pwd = std::env::current_dir()?;
            let mut problems = Vec::new();
            for build in &mut recipe.builds {
                choices.apply(build);
                if let Some(problem) = crate::build::choices::key_problem(build, &pwd) {
                    problems.push(format!("build `{}`: {problem}", build.name));
                }
            }
            let mut diags = recipe.warnings;
            for problem in &problems {
                diags.error("", None, "", problem.clone());
            }
            (problems.is_empty(), diags)
        }
        Err(diags) => (false, diags),
    };
    diags.sort();
    if args.recipe.json {
        let report = serde_json::json!({
            "valid": valid,
            "errors": diags.errors().count(),
            "warnings": diags.warnings().count(),
            "notes": diags.notes().count(),
            "diagnostics": diags,
        });
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        )?;
    } else {
        print_text(
            &diags,
            valid,
            &args.recipe.recipe.display().to_string(),
            out,
            err,
        )?;
    }
    Ok(if valid { 0 } else { 1 })
}

fn print_text(
    diags: &Diagnostics,
    valid: bool,
    file: &str,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> std::io::Result<()> {
    for d in diags.errors() {
        writeln!(err, "{d}")?;
    }
    for d in diags.warnings() {
        writeln!(err, "{d}")?;
    }
    for d in diags.notes() {
        writeln!(err, "{d}")?;
    }
    let (errors, warnings) = (diags.errors().count(), diags.warnings().count());
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    if valid {
        writeln!(out, "{file}: valid ({})", plural(warnings, "warning"))?;
    } else {
        writeln!(
            err,
            "{file}: invalid ({}, {})",
            plural(errors, "error"),
            plural(warnings, "warning")
        )?;
    }
    Ok(())
}
