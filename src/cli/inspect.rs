//! `kiln inspect`: what a recipe will do — variables, builder, provisioners, post-processors.

use std::io::Write;

use clap::Args;
use serde_json::{Value as Json, json};

use super::RecipeArgs;
use crate::recipe::postprocessor::{PostProcessor, PostProcessorKind};
use crate::recipe::provisioner::{FileDirection, FileSource, Provisioner, ProvisionerKind};
use crate::recipe::qemu::QemuConfig;
use crate::recipe::secret::MASK;
use crate::recipe::shell_local::ShellSource;
use crate::recipe::template::{self, LoadOptions, Recipe};
use crate::recipe::units::{format_bytes, format_duration};
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
    show(&args.recipe.recipe, &options, args.recipe.json, out, err)
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
    show(&path, &options, false, out, err)
}

fn show(
    path: &std::path::Path,
    options: &LoadOptions,
    as_json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> std::io::Result<i32> {
    let recipe = match template::load_file(path, options) {
        Ok(r) => r,
        Err(diags) => {
            write!(err, "{diags}")?;
            writeln!(
                err,
                "{}: invalid; run `kiln validate` for details",
                path.display()
            )?;
            return Ok(1);
        }
    };
    for w in recipe.warnings.iter() {
        writeln!(err, "{w}")?;
    }
    if as_json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&to_json(&recipe)).unwrap_or_default()
        )?;
    } else {
        write_text(&recipe, out)?;
    }
    Ok(0)
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
    for build in &recipe.builds {
        writeln!(out, "\nBuild `{}`:", build.name)?;
        writeln!(out, "  builder qemu: {}", describe_builder(&build.builder))?;
        writeln!(out, "  provisioners:")?;
        if build.provisioners.is_empty() {
            writeln!(out, "    (none)")?;
        }
        for (i, p) in build.provisioners.iter().enumerate() {
            writeln!(out, "    {}. {}", i + 1, describe_provisioner(p))?;
        }
        if let Some(p) = &build.error_cleanup {
            writeln!(out, "  on error: {}", describe_provisioner(p))?;
        }
        writeln!(out, "  post-processor chains:")?;
        if build.post_processors.is_empty() {
            writeln!(out, "    (none)")?;
        }
        for (i, chain) in build.post_processors.iter().enumerate() {
            let steps: Vec<String> = chain.iter().map(describe_post_processor).collect();
            writeln!(out, "    {}. {}", i + 1, steps.join(" → "))?;
        }
    }
    Ok(())
}

fn describe_builder(q: &QemuConfig) -> String {
    let base = if q.disk_image { "disk image" } else { "ISO" };
    let size = match q.disk_size {
        Some(bytes) if !q.skip_resize_disk => format_bytes(bytes),
        _ => "base image's size".into(),
    };
    format!(
        "{base} {} ({}) → {}/{} ({}, {size}), {} CPU, {} MiB, accelerator {}, ssh as `{}` (timeout {})",
        q.iso_urls.join(" | "),
        q.iso_checksum,
        q.output_directory,
        q.vm_name,
        q.format.name(),
        q.cpus,
        q.memory,
        q.accelerator.name(),
        q.ssh.username,
        format_duration(q.ssh.timeout)
    )
}

fn describe_sources(sources: &[ShellSource]) -> String {
    sources
        .iter()
        .map(|s| match s {
            ShellSource::Inline(lines) => format!("{} inline command(s)", lines.len()),
            ShellSource::File(p) => format!("script {}", p.display()),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe_provisioner(p: &Provisioner) -> String {
    let what = match &p.kind {
        ProvisionerKind::Shell(s) => format!("shell: {}", describe_sources(&s.sources)),
        ProvisionerKind::ShellLocal(s) => format!("shell-local: {}", describe_sources(&s.sources)),
        ProvisionerKind::File(f) => {
            let from = match &f.source {
                FileSource::Paths(p) => p.join(", "),
                FileSource::Content(c) => format!("{} bytes of content", c.len()),
            };
            match f.direction {
                FileDirection::Upload => format!("file: upload {from} → {}", f.destination),
                FileDirection::Download => format!("file: download {from} → {}", f.destination),
            }
        }
        ProvisionerKind::Breakpoint(b) => format!(
            "breakpoint{}{}",
            if b.disable { " (disabled)" } else { "" },
            b.note
                .as_deref()
                .map(|n| format!(": {n}"))
                .unwrap_or_default()
        ),
    };
    let mut extras = Vec::new();
    if let Some(d) = p.pause_before {
        extras.push(format!("pause before {}", format_duration(d)));
    }
    if p.max_retries > 0 {
        extras.push(format!("{} retries", p.max_retries));
    }
    if let Some(d) = p.timeout {
        extras.push(format!("timeout {}", format_duration(d)));
    }
    if extras.is_empty() {
        what
    } else {
        format!("{what} ({})", extras.join(", "))
    }
}

fn describe_post_processor(pp: &PostProcessor) -> String {
    match &pp.kind {
        PostProcessorKind::ShellLocal(s) => {
            format!("shell-local ({})", describe_sources(&s.sources))
        }
        PostProcessorKind::Checksum(c) => {
            let types: Vec<&str> = c.checksum_types.iter().map(|t| t.name()).collect();
            format!("checksum ({})", types.join(", "))
        }
        PostProcessorKind::Manifest(m) => format!("manifest ({})", m.output),
        PostProcessorKind::Compress(c) => format!("compress ({})", c.output),
        PostProcessorKind::Resize(r) => {
            format!("kiln-resize (grow to {})", format_bytes(r.disk_size))
        }
        PostProcessorKind::ImageTest(t) => format!(
            "kiln-test (built-in checks: {}; {} check(s) of the recipe's own)",
            t.builtin_checks()
                .iter()
                .map(|c| c.name())
                .collect::<Vec<_>>()
                .join(", "),
            t.inline.len() + t.scripts.len()
        ),
        PostProcessorKind::ExoscaleImport(e) => format!(
            "exoscale-import (bucket {} in {}, template \"{}\" in {})",
            e.image_bucket,
            e.image_zone,
            e.template_name,
            e.template_zones.join(", ")
        ),
    }
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
                    "summary": describe_builder(&b.builder),
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
                    "summary": describe_provisioner(p),
                })).collect::<Vec<_>>(),
                "post_processors": b.post_processors.iter().map(|chain| chain.iter().map(|pp| json!({
                    "type": pp.kind.type_name(),
                    "summary": describe_post_processor(pp),
                })).collect::<Vec<_>>()).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "file": recipe.file,
        "description": recipe.description,
        "variables": variables,
        "builds": builds,
        "warnings": recipe.warnings,
    })
}
