//! `kiln publish IMAGE`: publish a qcow2 image kiln did not build (another builder's, a
//! vendor's, an earlier build's) as an Exoscale template, with the `exoscale-import`
//! post-processor's checks, upload, registration, copies and cleanup — the same code, the
//! same progress output, the same history.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::build::{cancel_on_ctrl_c, follow, write_summary};
use crate::build::event::{EventSink, Outcome};
use crate::build::publish::{PublishOptions, PublishRequest, run_publish};
use crate::build::redact::Redactor;
use crate::history::{self, Origin, Recorder, Recording};

/// Arguments of `kiln publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The qcow2 image (virtual size 10 GiB–1000 GiB; `qemu-img resize` it first if smaller).
    #[arg(value_name = "IMAGE")]
    pub image: PathBuf,
    /// The SOS bucket the image is uploaded to (it must exist unless --bucket-create).
    #[arg(long, value_name = "BUCKET")]
    pub bucket: String,
    /// The bucket's zone; default: the first of --template-zones, else ch-gva-2.
    #[arg(long, value_name = "ZONE")]
    pub zone: Option<String>,
    /// The template's name; `{{isotime "2006-01-02"}}` puts the date in it, as in a recipe.
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// The zones to register the template in (comma-separated); the first registers it,
    /// the others get copies. Default: the bucket's zone.
    #[arg(long = "template-zones", value_name = "ZONES", value_delimiter = ',')]
    pub template_zones: Vec<String>,
    /// The template's description.
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    /// The user instances of the template log in as (e.g. `debian`).
    #[arg(long, value_name = "USER")]
    pub username: Option<String>,
    /// How instances boot.
    #[arg(long = "boot-mode", value_name = "legacy|uefi")]
    pub boot_mode: Option<String>,
    /// The keyring credentials profile to use (before EXOSCALE_API_KEY/SECRET); default:
    /// EXOSCALE_API_KEY/SECRET, else the default profile.
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
    /// Who may read the uploaded object: `private` (default: Exoscale downloads it from a
    /// presigned URL) or `public-read`.
    #[arg(long, value_name = "private|public-read")]
    pub acl: Option<String>,
    /// Create the bucket when it does not exist.
    #[arg(long = "bucket-create")]
    pub bucket_create: bool,
    /// Leave the uploaded object in the bucket after the registration.
    #[arg(long = "keep-object")]
    pub keep_object: bool,
    /// The template's maintainer.
    #[arg(long, value_name = "TEXT")]
    pub maintainer: Option<String>,
    /// The template's version.
    #[arg(long = "template-version", value_name = "TEXT")]
    pub template_version: Option<String>,
    /// Instances of the template get no password reset.
    #[arg(long = "disable-password")]
    pub disable_password: bool,
    /// Instances of the template get no SSH key installed.
    #[arg(long = "disable-sshkey")]
    pub disable_sshkey: bool,
}

impl PublishArgs {
    /// The request these arguments make.
    pub fn request(&self) -> PublishRequest {
        PublishRequest {
            image: self.image.clone(),
            bucket: self.bucket.clone(),
            zone: self.zone.clone(),
            name: self.name.clone(),
            template_zones: self.template_zones.clone(),
            description: self.description.clone(),
            username: self.username.clone(),
            boot_mode: self.boot_mode.clone(),
            acl: self.acl.clone(),
            bucket_create: self.bucket_create,
            keep_object: self.keep_object,
            maintainer: self.maintainer.clone(),
            version: self.template_version.clone(),
            disable_password: self.disable_password,
            disable_sshkey: self.disable_sshkey,
        }
    }
}

/// Runs `kiln publish`; returns the exit code (0 published, 1 failed, 130 cancelled).
pub fn run(args: &PublishArgs, out: &mut dyn Write, err: &mut dyn Write) -> std::io::Result<i32> {
    let choices = super::ChoiceArgs {
        ssh_key: None,
        profile: args.profile.clone(),
    };
    let choices = match choices.choices() {
        Ok(c) => c,
        Err(why) => {
            writeln!(err, "kiln: {why}; nothing was published")?;
            return Ok(1);
        }
    };
    let mut recipe = match args.request().recipe() {
        Ok(recipe) => recipe,
        Err(problems) => {
            for problem in &problems {
                writeln!(err, "kiln publish: {problem}")?;
            }
            writeln!(err, "kiln publish: nothing was published")?;
            return Ok(1);
        }
    };
    for build in &mut recipe.builds {
        choices.apply(build);
    }
    for warning in crate::build::publish::option_warnings(&recipe) {
        writeln!(err, "kiln publish: warning: {warning}")?;
    }
    let Some(build) = recipe.builds.first().cloned() else {
        return Ok(1);
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let cancel = cancel_on_ctrl_c(&runtime);
    let (events, mut rx) = EventSink::channel(Redactor::new());
    let (mut recording, warn) = Recording::start(
        &history::default_path(),
        Recorder::new(&args.image, &recipe, &build, Origin::Cli),
    );
    if let Some(warn) = warn {
        writeln!(err, "kiln: warning: {warn}")?;
    }
    let task = {
        let recipe = recipe.clone();
        runtime.spawn(async move {
            run_publish(&recipe, &PublishOptions::default(), events, cancel).await
        })
    };
    let durations = follow(&runtime, &mut rx, &mut recording, out, false, None)?;
    let report = runtime
        .block_on(task)
        .map_err(|e| std::io::Error::other(format!("the publish task failed: {e}")))?;
    let (record, warn) = recording.finish(&report);
    if let Some(warn) = warn {
        writeln!(err, "kiln: warning: {warn}")?;
    }
    write_summary(out, &build.name, &durations)?;
    for (zone, id) in &report.templates {
        writeln!(out, "  template: {zone} {id}")?;
    }
    let code = match &report.outcome {
        Outcome::Done | Outcome::Skipped(_) => 0,
        Outcome::Cancelled => 130,
        Outcome::Failed(why) => {
            writeln!(
                err,
                "kiln: publishing {} failed: {why}",
                args.image.display()
            )?;
            1
        }
    };
    writeln!(out, "  logs: {}", report.log_dir.display())?;
    if let Some(id) = record.id {
        writeln!(out, "  history: #{id} (kiln history)")?;
    }
    Ok(code)
}
