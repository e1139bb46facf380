//! Publishing an image that already exists (`kiln publish`, the window's "Publish an
//! image…"): the `exoscale-import` post-processor run on it alone, by the build's runner. The
//! options are read by the recipe reader (same checks, defaults, zone names and length
//! limits as a recipe's), and the run has the same checks, upload, registration, copies,
//! cleanup, events, `build.log` and history as a build's last step.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use super::artifact::Artifact;
use super::event::{EventSink, Outcome};
use super::plan::{self, BuildReport};
use super::postprocess::exoscale_import::{ImageSource, check_image_from};
use super::postprocess::{BuildFacts, run_chains};
use crate::recipe::diag::Diagnostic;
use crate::recipe::postprocessor::ExoscaleImportConfig;
use crate::recipe::template::Build;
use crate::recipe::template::{LoadOptions, Recipe, load_str};

/// The build name a publication is recorded under (history, logs).
pub const PUBLISH_BUILD_NAME: &str = "publish";

/// What to publish and where: the options of `kiln publish`, each the `exoscale-import`
/// option named in [`FLAGS`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishRequest {
    /// The qcow2 image.
    pub image: PathBuf,
    /// `image_bucket`: the SOS bucket it is uploaded to.
    pub bucket: String,
    /// `image_zone`: the bucket's zone (default: the first template zone, else ch-gva-2).
    pub zone: Option<String>,
    /// `template_name`, interpolated like a recipe's (`{{isotime "2006-01-02"}}`).
    pub name: String,
    /// `template_zones` (default: the bucket's zone).
    pub template_zones: Vec<String>,
    /// `template_description`.
    pub description: Option<String>,
    /// `template_username`.
    pub username: Option<String>,
    /// `template_boot_mode`: `legacy` or `uefi`.
    pub boot_mode: Option<String>,
    /// `acl`: `private` or `public-read`.
    pub acl: Option<String>,
    /// `bucket_create`: create the bucket when it is missing.
    pub bucket_create: bool,
    /// `skip_clean`: leave the uploaded object in the bucket.
    pub keep_object: bool,
    /// `template_maintainer`.
    pub maintainer: Option<String>,
    /// `template_version`.
    pub version: Option<String>,
    /// `template_disable_password`.
    pub disable_password: bool,
    /// `template_disable_sshkey`.
    pub disable_sshkey: bool,
}

/// Each `exoscale-import` option `kiln publish` sets, and its command-line flag (errors name
/// the flag).
pub const FLAGS: &[(&str, &str)] = &[
    ("image_bucket", "--bucket"),
    ("image_zone", "--zone"),
    ("template_name", "--name"),
    ("template_zones", "--template-zones"),
    ("template_description", "--description"),
    ("template_username", "--username"),
    ("template_boot_mode", "--boot-mode"),
    ("acl", "--acl"),
    ("bucket_create", "--bucket-create"),
    ("skip_clean", "--keep-object"),
    ("template_maintainer", "--maintainer"),
    ("template_version", "--template-version"),
    ("template_disable_password", "--disable-password"),
    ("template_disable_sshkey", "--disable-sshkey"),
];

/// The flag that sets the option at `path` (`post-processors[0].template_zones[1]`), if any.
pub fn flag_for(path: &str) -> Option<&'static str> {
    let last = path.rsplit('.').next()?;
    let key = last.split('[').next()?;
    FLAGS.iter().find(|(k, _)| *k == key).map(|(_, flag)| *flag)
}

/// A problem with the request, worded for the command line: the flag, then what to do.
pub fn describe(diagnostic: &Diagnostic) -> String {
    match flag_for(&diagnostic.path) {
        Some(flag) => format!("{flag}: {}", diagnostic.message),
        None if diagnostic.path.is_empty() => diagnostic.message.clone(),
        None => format!("{}: {}", diagnostic.path, diagnostic.message),
    }
}

impl PublishRequest {
    /// The `exoscale-import` post-processor these options make. The image is the user's:
    /// it is kept (`keep_input_artifact`), never removed like a build's intermediate file.
    fn post_processor(&self) -> Value {
        let mut pp = Map::new();
        pp.insert("type".into(), json!("exoscale-import"));
        pp.insert("keep_input_artifact".into(), json!(true));
        let mut text = |key: &str, value: &Option<String>| {
            if let Some(v) = value {
                pp.insert(key.into(), json!(v));
            }
        };
        text("image_zone", &self.zone);
        text("template_description", &self.description);
        text("template_username", &self.username);
        text("template_boot_mode", &self.boot_mode);
        text("acl", &self.acl);
        text("template_maintainer", &self.maintainer);
        text("template_version", &self.version);
        pp.insert("image_bucket".into(), json!(self.bucket));
        pp.insert("template_name".into(), json!(self.name));
        if !self.template_zones.is_empty() {
            pp.insert("template_zones".into(), json!(self.template_zones));
        }
        for (key, on) in [
            ("bucket_create", self.bucket_create),
            ("skip_clean", self.keep_object),
            ("template_disable_password", self.disable_password),
            ("template_disable_sshkey", self.disable_sshkey),
        ] {
            if on {
                pp.insert(key.into(), json!(true));
            }
        }
        Value::Object(pp)
    }

    /// The publication as a recipe of one build (named [`PUBLISH_BUILD_NAME`]) whose only
    /// post-processor is the import: read by the recipe reader, so every option gets the
    /// checks a recipe's would. Every problem at once, each naming its flag.
    pub fn recipe(&self) -> Result<Recipe, Vec<String>> {
        let image = std::path::absolute(&self.image).unwrap_or_else(|_| self.image.clone());
        let mut problems = Vec::new();
        match std::fs::metadata(&image) {
            Ok(m) if m.is_file() => {
                if let Err(e) = check_image_from(&image, ImageSource::Given) {
                    problems.push(e.0.trim_start_matches("exoscale-import: ").to_string());
                }
            }
            Ok(_) => problems.push(format!(
                "{} is not a file: give a qcow2 image",
                image.display()
            )),
            Err(e) => problems.push(format!("cannot read the image {}: {e}", image.display())),
        }
        let file_name = image
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = json!({
            "description": format!("Publish {file_name}"),
            "builders": [{
                "type": "qemu",
                "name": PUBLISH_BUILD_NAME,
                "disk_image": true,
                "iso_url": image.to_string_lossy(),
                "iso_checksum": "none",
                "communicator": "none",
            }],
            "post-processors": [self.post_processor()],
        });
        let text = serde_json::to_string_pretty(&text).unwrap_or_default();
        let dir = image.parent().unwrap_or(Path::new("/")).to_path_buf();
        let recipe = match load_str("kiln publish", &text, &dir, &LoadOptions::default()) {
            Ok(recipe) => Some(recipe),
            Err(diagnostics) => {
                problems.extend(diagnostics.iter().filter(|d| d.is_error()).map(describe));
                None
            }
        };
        // The lengths the API takes, checked now rather than after the upload.
        for config in recipe.iter().flat_map(import_configs) {
            if let Err(e) = super::postprocess::exoscale_import::check_template_fields(config) {
                let key = e.0.split('`').nth(1).unwrap_or_default();
                let message = e.0.trim_start_matches("exoscale-import: ");
                problems.push(match flag_for(key) {
                    Some(flag) => format!("{flag}: {message}"),
                    None => message.to_string(),
                });
            }
        }
        match recipe {
            Some(recipe) if problems.is_empty() => Ok(recipe),
            _ => Err(problems),
        }
    }
}

/// The warnings about the options given (not about the stand-in builder around them),
/// worded for the command line.
pub fn option_warnings(recipe: &Recipe) -> Vec<String> {
    recipe
        .warnings
        .iter()
        .filter(|d| !d.is_error() && d.path.starts_with("post-processors"))
        .map(describe)
        .collect()
}

/// The `exoscale-import` options of every build of `recipe`.
fn import_configs(recipe: &Recipe) -> impl Iterator<Item = &ExoscaleImportConfig> {
    recipe.builds.iter().flat_map(Build::exoscale_imports)
}

/// Where a publication's logs go and which run it belongs to.
#[derive(Debug, Clone, Default)]
pub struct PublishOptions {
    /// Where logs go (default `$XDG_STATE_HOME/kiln/builds`).
    pub state_dir: Option<PathBuf>,
}

/// Publishes the image of `recipe` (made by [`PublishRequest::recipe`], with the build's
/// choices applied): its events go to `events` and to `build.log` in a new log directory.
pub async fn run_publish(
    recipe: &Recipe,
    options: &PublishOptions,
    events: EventSink,
    cancel: CancellationToken,
) -> BuildReport {
    let log_dir = options
        .state_dir
        .clone()
        .unwrap_or_else(plan::default_state_dir)
        .join(plan::new_run_id());
    let failed = |why: String| BuildReport::nothing(Outcome::Failed(why), log_dir.clone());
    let Some(build) = recipe.builds.first() else {
        return failed("there is nothing to publish".into());
    };
    let image = PathBuf::from(build.builder.iso_urls.first().cloned().unwrap_or_default());
    if let Err(e) = plan::private_dir(&log_dir) {
        return failed(format!(
            "cannot create the log directory {}: {e}",
            log_dir.display()
        ));
    }
    let scratch = log_dir.join("scratch");
    if let Err(e) = plan::private_dir(&scratch) {
        return failed(format!(
            "cannot create the scratch directory {}: {e}",
            scratch.display()
        ));
    }
    for secret in recipe.secrets() {
        events.redactor().register(&secret);
    }
    let (inner, forward) = plan::log_to_file(&log_dir, events);
    let facts = BuildFacts {
        build_name: build.name.clone(),
        builder_type: "qemu".into(),
        run_uuid: uuid::Uuid::new_v4().to_string(),
        scratch: scratch.clone(),
        logs: log_dir.clone(),
        builder: std::sync::Arc::new(build.builder.clone()),
        qemu_binary: PathBuf::new(),
        accel: None,
    };
    let result = run_chains(
        &build.post_processors,
        Artifact::builder(&image),
        facts,
        inner.clone(),
        cancel,
    )
    .await;
    let _ = std::fs::remove_dir_all(&scratch);
    let report = match result {
        Ok(done) => {
            let outcome = match done.outcome {
                Outcome::Failed(why) => Outcome::Failed(inner.redactor().redact(&why)),
                other => other,
            };
            BuildReport {
                artifact: (outcome == Outcome::Done).then(|| image.clone()),
                outcome,
                artifacts: done.artifacts,
                log_dir: log_dir.clone(),
                templates: done.published,
            }
        }
        Err(missing) => failed(format!(
            "kiln cannot run {}; nothing was published",
            missing.join(", ")
        )),
    };
    drop(inner);
    let _ = forward.await;
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::postprocessor::PostProcessorKind;

    /// A qcow2 image of `size` (virtual) made by qemu-img.
    fn qcow2_image(dir: &Path, size: &str) -> PathBuf {
        let path = dir.join("disk.qcow2");
        let ok = std::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&path)
            .arg(size)
            .status()
            .expect("qemu-img (qemu-utils) runs");
        assert!(ok.success());
        path
    }

    #[test]
    fn an_image_exoscale_would_refuse_is_named_with_the_command_that_fixes_it() {
        let dir = tempfile::tempdir().unwrap();
        let small = qcow2_image(dir.path(), "1G");
        let problems = request(&small).recipe().unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].ends_with(&format!(
                "grow it with `qemu-img resize {} 10G` first",
                small.display()
            )),
            "{problems:?}"
        );
        let raw = dir.path().join("disk.raw");
        std::fs::write(&raw, vec![0u8; 4096]).unwrap();
        let problems = request(&raw).recipe().unwrap_err();
        assert!(
            problems[0].contains(
                "Exoscale registers qcow2 only; convert it with `qemu-img convert -O qcow2"
            ),
            "{problems:?}"
        );
    }

    fn request(image: &Path) -> PublishRequest {
        PublishRequest {
            image: image.to_path_buf(),
            bucket: "images".into(),
            zone: Some("de-fra-1".into()),
            name: "Debian 12 {{isotime \"2006-01-02\"}}".into(),
            ..PublishRequest::default()
        }
    }

    #[test]
    fn the_options_become_an_exoscale_import_that_keeps_the_image() {
        let dir = tempfile::tempdir().unwrap();
        let image = qcow2_image(dir.path(), "10G");
        let mut req = request(&image);
        req.template_zones = vec!["de-fra-1".into(), "ch-gva-2".into()];
        req.acl = Some("public-read".into());
        let recipe = req.recipe().unwrap_or_else(|p| panic!("{p:?}"));
        let build = &recipe.builds[0];
        assert_eq!(build.name, PUBLISH_BUILD_NAME);
        let pp = &build.post_processors[0][0];
        assert_eq!(
            pp.keep_input_artifact,
            Some(true),
            "the user's image is kept"
        );
        let PostProcessorKind::ExoscaleImport(config) = &pp.kind else {
            panic!("{:?}", pp.kind);
        };
        assert_eq!(config.image_bucket, "images");
        assert_eq!(config.image_zone, "de-fra-1");
        assert_eq!(config.template_zones, ["de-fra-1", "ch-gva-2"]);
        let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
        assert_eq!(config.template_name, format!("Debian 12 {today}"));
        assert_eq!(
            config.acl,
            crate::recipe::postprocessor::ObjectAcl::PublicRead
        );
    }

    #[test]
    fn every_problem_is_reported_at_once_by_its_flag() {
        let dir = tempfile::tempdir().unwrap();
        let mut req = request(&dir.path().join("missing.qcow2"));
        req.zone = Some("ch-gva-3".into());
        req.template_zones = vec!["ch-gva-3".into()];
        req.boot_mode = Some("bios".into());
        let problems = req.recipe().unwrap_err();
        let all = problems.join("\n");
        assert!(all.contains("cannot read the image"), "{all}");
        assert!(
            all.contains("--zone: unknown Exoscale zone \"ch-gva-3\""),
            "{all}"
        );
        assert!(
            all.contains("--template-zones: unknown Exoscale zone"),
            "{all}"
        );
        assert!(all.contains("--boot-mode: "), "{all}");
    }

    #[test]
    fn a_name_too_long_for_the_api_is_refused_before_anything_starts() {
        let dir = tempfile::tempdir().unwrap();
        let image = qcow2_image(dir.path(), "10G");
        let mut req = request(&image);
        req.name = format!("{}{{{{isotime \"2006\"}}}}", "x".repeat(252));
        let problems = req.recipe().unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("--name: `template_name` is 256 characters long"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_flag_is_found_from_the_option_path() {
        assert_eq!(flag_for("post-processors[0].image_zone"), Some("--zone"));
        assert_eq!(
            flag_for("post-processors[0][0].template_zones[1]"),
            Some("--template-zones")
        );
        assert_eq!(flag_for("builders[0].iso_url"), None);
    }
}
