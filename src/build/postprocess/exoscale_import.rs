//! `exoscale-import`: checks the image, uploads it to the SOS bucket (one read: upload and
//! MD5), registers it as a template in the first zone from a presigned URL, copies it to the
//! other zones in parallel, and deletes the uploaded object unless `skip_clean`.

use std::path::Path;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{BuildFacts, PostProcess, Processed};
use crate::build::artifact::Artifact;
use crate::build::event::{Event, Unit};
use crate::build::redact::Redactor;
use crate::build::runner::{BoxFuture, KeepReason, StepContext, StepError};
use crate::exoscale::model::boot_mode_name;
use crate::exoscale::{
    Client, ClientOptions, Credentials, RegisterTemplate, TemplateFilter, Visibility, zone,
};
use crate::image::qcow2;
use crate::objectstore::{ObjectStore, StoreConfig, UploadOptions};
use crate::recipe::postprocessor::{DEFAULT_API_ENVIRONMENT, ExoscaleImportConfig, ObjectAcl};
use crate::secrets::SecretsError;
use crate::secrets::profiles::Profiles;
use crate::secrets::resolve::{self, Request};

/// The environment variable overriding the SOS endpoint (`{zone}` replaced).
pub const SOS_ENDPOINT_ENV: &str = "EXOSCALE_SOS_ENDPOINT";

/// The smallest virtual size Exoscale registers.
pub const MIN_VIRTUAL_SIZE: u64 = 10 << 30;
/// The largest virtual size Exoscale registers.
pub const MAX_VIRTUAL_SIZE: u64 = 1000 << 30;
/// Above this virtual size kiln warns: parts of Exoscale's documentation give 100 GB as the
/// largest template, so a registration may fail after a long upload.
pub const WARN_VIRTUAL_SIZE: u64 = 100 << 30;

/// The `exoscale-import` post-processor.
pub struct ExoscaleImport(pub ExoscaleImportConfig);

/// What an import produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExoscaleArtifact {
    /// The template's name.
    pub name: String,
    /// (zone, template id), the registration zone first.
    pub templates: Vec<(String, String)>,
}

/// The `producer` of the artifacts `exoscale-import` makes.
pub const PRODUCER: &str = "exoscale-import";

/// The (zone, template id) pairs an `exoscale-import` artifact names (its id is
/// `zone:id,zone:id`); none for any other artifact.
pub fn template_ids(artifact: &Artifact) -> Vec<(String, String)> {
    if artifact.producer != PRODUCER {
        return Vec::new();
    }
    artifact
        .id
        .split(',')
        .filter_map(|pair| pair.split_once(':'))
        .filter(|(zone, id)| !zone.is_empty() && !id.is_empty())
        .map(|(zone, id)| (zone.to_string(), id.to_string()))
        .collect()
}

impl ExoscaleArtifact {
    /// Packer-style artifact id: `zone:id` pairs separated by commas.
    pub fn id(&self) -> String {
        self.templates
            .iter()
            .map(|(zone, id)| format!("{zone}:{id}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A line the user can paste: the template per zone and how to look at it.
    pub fn summary(&self) -> String {
        let ids = self
            .templates
            .iter()
            .map(|(zone, id)| format!("{zone}={id}"))
            .collect::<Vec<_>>()
            .join(" ");
        let first = self
            .templates
            .first()
            .map(|(_, id)| id.as_str())
            .unwrap_or("");
        format!(
            "template \"{}\" registered: {ids} (see it with: kiln templates show {first})",
            self.name
        )
    }
}

impl PostProcess for ExoscaleImport {
    fn run<'a>(
        &'a self,
        ctx: &'a mut StepContext,
        input: &'a Artifact,
        facts: &'a BuildFacts,
    ) -> BoxFuture<'a, Result<Processed, StepError>> {
        Box::pin(async move {
            let image = input
                .main_file()
                .ok_or_else(|| StepError("the input artifact has no image to import".into()))?;
            // The image and the names first: nothing is contacted for an image Exoscale
            // would refuse.
            check_template_fields(&self.0)?;
            check_image_size(image, ctx)?;
            let credentials = resolve_credentials(&self.0, ctx.events().redactor())?;
            let key = format!("kiln/{}/{}", facts.run_uuid, file_name(image));
            // Set when the registration's outcome is unknown: Exoscale may still download
            // the object, so it must stay.
            let keep_object = KeepReason::default();
            if !self.0.skip_clean {
                // A cancelled build drops this step mid-way: the upload (or the finished
                // object, while the registration is polled) is removed after the steps.
                let store = ObjectStore::new(&store_config(&self.0, &credentials))
                    .map_err(|e| StepError(format!("exoscale-import: {e}")))?;
                let object = key.clone();
                ctx.defer_unless_kept(
                    format!("{key} in bucket {}", self.0.image_bucket),
                    keep_object.clone(),
                    move || async move {
                        store
                            .abort_pending(&object)
                            .await
                            .map_err(|e| e.to_string())?;
                        store.delete(&object).await.map_err(|e| e.to_string())
                    },
                );
            }
            let done =
                run_exoscale_import(&self.0, credentials, image, &key, &keep_object, ctx).await?;
            ctx.log(done.summary());
            Ok(Processed {
                artifact: Artifact {
                    producer: PRODUCER.into(),
                    id: done.id(),
                    files: Vec::new(),
                },
                // Packer's exoscale-import does not keep its input unless asked.
                keep_input_by_default: false,
                must_keep_input: false,
            })
        })
    }
}

fn file_name(image: &Path) -> String {
    image
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image.qcow2".into())
}

/// The credentials: the recipe's `api_key`/`api_secret`, else `EXOSCALE_API_KEY` /
/// `EXOSCALE_API_SECRET`, else the recipe's keyring `profile`, else the default profile (see
/// [`crate::secrets::resolve`]). The secret is registered with `redactor` as soon as it is
/// found.
pub fn resolve_credentials(
    config: &ExoscaleImportConfig,
    redactor: &Redactor,
) -> Result<Credentials, StepError> {
    resolve_credentials_with(
        config,
        redactor,
        |name| std::env::var(name).ok(),
        Profiles::platform,
    )
}

fn resolve_credentials_with(
    config: &ExoscaleImportConfig,
    redactor: &Redactor,
    environment: impl Fn(&str) -> Option<String>,
    open_profiles: impl FnOnce() -> Result<Profiles, SecretsError>,
) -> Result<Credentials, StepError> {
    if config.api_key.is_empty() != config.api_secret.is_empty() {
        return Err(StepError(
            "exoscale-import: set both `api_key` and `api_secret`, or neither (then EXOSCALE_API_KEY and EXOSCALE_API_SECRET, or the keyring `profile`, are used)".into(),
        ));
    }
    let request = Request {
        explicit: Some((config.api_key.as_str(), &config.api_secret)),
        profile: config.profile.as_deref(),
        profile_first: config.profile_first,
    };
    resolve::resolve_with(&request, redactor, environment, open_profiles)
        .map(|r| r.credentials)
        .map_err(|e| StepError(format!("exoscale-import: {e}")))
}

/// The SOS endpoint: the recipe's `sos_endpoint`, else `EXOSCALE_SOS_ENDPOINT`, else
/// `https://sos-<image_zone>.exo.io` (`{zone}` replaced by `image_zone`).
pub fn sos_endpoint(config: &ExoscaleImportConfig) -> String {
    if config.sos_endpoint.is_none()
        && let Some(env) = std::env::var(SOS_ENDPOINT_ENV)
            .ok()
            .filter(|v| !v.trim().is_empty())
    {
        return env.replace(zone::ZONE_PLACEHOLDER, &config.image_zone);
    }
    config.sos_endpoint()
}

/// The bucket the image is uploaded to.
fn store_config(config: &ExoscaleImportConfig, credentials: &Credentials) -> StoreConfig {
    StoreConfig {
        endpoint: sos_endpoint(config),
        zone: config.image_zone.clone(),
        bucket: config.image_bucket.clone(),
        credentials: credentials.clone(),
    }
}

/// The longest value the API takes in a template's text fields (`maxLength` in its OpenAPI
/// description).
const MAX_FIELD_CHARS: usize = 255;

/// The template's text fields as they will be sent (after interpolation) against the API's
/// limits, so a name made too long by its variables fails before an upload, not after it.
pub fn check_template_fields(config: &ExoscaleImportConfig) -> Result<(), StepError> {
    let optional = |v: &Option<String>| v.clone();
    let fields = [
        ("template_name", Some(config.template_name.clone()), true),
        (
            "template_description",
            Some(config.template_description.clone()).filter(|d| !d.is_empty()),
            false,
        ),
        (
            "template_username",
            optional(&config.template_username),
            true,
        ),
        (
            "template_maintainer",
            optional(&config.template_maintainer),
            true,
        ),
        ("template_version", optional(&config.template_version), true),
        ("template_build", optional(&config.template_build), true),
    ];
    for (key, value, non_empty) in fields {
        let Some(value) = value else { continue };
        let chars = value.chars().count();
        if chars > MAX_FIELD_CHARS {
            return Err(StepError(format!(
                "exoscale-import: `{key}` is {chars} characters long once interpolated (\"{}…\"); Exoscale takes at most {MAX_FIELD_CHARS}: shorten it or the variables in it",
                value.chars().take(40).collect::<String>()
            )));
        }
        if non_empty && value.trim().is_empty() {
            return Err(StepError(format!(
                "exoscale-import: `{key}` is empty once interpolated; Exoscale needs at least one character: set it, or the variables in it"
            )));
        }
    }
    Ok(())
}

/// What to do about an image Exoscale would refuse, worded for where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageSource {
    /// A recipe's build made it: the fix is in the recipe.
    Recipe,
    /// The user gave it (`kiln publish`): the fix is a `qemu-img` command.
    Given,
}

/// Checks that Exoscale will accept `image`: qcow2, not preallocated, virtual size within
/// 10 GiB–1000 GiB. Returns the virtual size.
pub fn check_image(image: &Path) -> Result<u64, StepError> {
    check_image_from(image, ImageSource::Recipe)
}

/// [`check_image`], its errors saying what to do about an image from `source`.
pub fn check_image_from(image: &Path, source: ImageSource) -> Result<u64, StepError> {
    let shown = image.display();
    let opened = qcow2::Image::open(image).map_err(|e| {
        let fix = match source {
            ImageSource::Recipe => "set \"format\": \"qcow2\" in the builder".to_string(),
            ImageSource::Given => format!("convert it with `qemu-img convert -O qcow2 {shown} {}.qcow2`", image.with_extension("").display()),
        };
        StepError(format!(
            "exoscale-import: {shown} is not a usable qcow2 image ({e}): Exoscale registers qcow2 only; {fix}"
        ))
    })?;
    let size = opened.header.size;
    if !(MIN_VIRTUAL_SIZE..=MAX_VIRTUAL_SIZE).contains(&size) {
        let fix = match source {
            ImageSource::Recipe => "add a kiln-resize post-processor with \"disk_size\": \"10G\" before exoscale-import (or set the builder's disk_size)".to_string(),
            ImageSource::Given if size < MIN_VIRTUAL_SIZE => format!("grow it with `qemu-img resize {shown} 10G` first"),
            ImageSource::Given => "publish a smaller image".to_string(),
        };
        return Err(StepError(format!(
            "exoscale-import: {shown}'s virtual size is {size} bytes; Exoscale needs 10 GiB–1000 GiB: {fix}"
        )));
    }
    let guest_clusters = opened.header.guest_clusters();
    let mapped = opened.clusters.len() as u64;
    if guest_clusters > 0 && mapped >= guest_clusters && opened.counts().0 == 0 {
        return Err(StepError(format!(
            "exoscale-import: {} is preallocated (every cluster is allocated): upload a sparse image instead — set \"disk_compression\" or run `qemu-img convert -O qcow2` on it",
            image.display()
        )));
    }
    Ok(size)
}

/// Fails when the bucket lives in another zone than `image_zone`: each zone has its own
/// object store, and an upload there would fail (or a presigned URL point nowhere).
async fn check_bucket_zone(
    config: &ExoscaleImportConfig,
    store: &ObjectStore,
) -> Result<(), StepError> {
    match store.bucket_zone().await {
        Some(zone) if zone != config.image_zone => Err(StepError(format!(
            "exoscale-import: bucket {} is in zone {zone}, not in {} (`image_zone`; each zone has its own object store): set image_zone to {zone} (kiln publish: --zone {zone}), or use a bucket in {}",
            config.image_bucket, config.image_zone, config.image_zone
        ))),
        _ => Ok(()),
    }
}

/// How long the checks before a build may take (the API and the object store answer in
/// well under a second when they can be reached at all).
pub const PREFLIGHT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// What can be checked of an `exoscale-import` before the build starts, in seconds rather
/// than after the download, the boot and the provisioning: the credentials resolve, the
/// bucket is there (or `bucket_create` will make it), and the API answers a signed call
/// with them. Nothing is created or changed. Returns what was found, for the log.
pub async fn preflight(
    config: &ExoscaleImportConfig,
    redactor: &Redactor,
) -> Result<String, StepError> {
    check_template_fields(config)?;
    let credentials = resolve_credentials(config, redactor)?;
    let (registrar, store) = registrar_and_store(config, &credentials)?;
    let checks = async {
        let exists = store
            .bucket_exists()
            .await
            .map_err(|e| StepError(format!("exoscale-import: {e}")))?;
        if !exists && !config.bucket_create {
            return Err(StepError(format!(
                "exoscale-import: {}",
                crate::objectstore::StoreError::NoBucket {
                    bucket: config.image_bucket.clone(),
                    endpoint: sos_endpoint(config),
                }
            )));
        }
        if exists {
            check_bucket_zone(config, &store).await?;
        }
        registrar
            .list_templates(&TemplateFilter {
                visibility: Some(Visibility::Private),
                family: None,
            })
            .await
            .map_err(|e| {
                StepError(format!(
                    "exoscale-import: checking the API credentials: {e}"
                ))
            })?;
        Ok(exists)
    };
    let exists = tokio::time::timeout(PREFLIGHT_TIMEOUT, checks)
        .await
        .map_err(|_| {
            StepError(format!(
                "exoscale-import: the API or the object store ({}) did not answer within {} s: check the network",
                sos_endpoint(config),
                PREFLIGHT_TIMEOUT.as_secs()
            ))
        })??;
    Ok(format!(
        "exoscale-import: the credentials (key {}) answer the API in {}; bucket {} {}",
        credentials.key(),
        registrar.zone(),
        config.image_bucket,
        if exists {
            "is there"
        } else {
            "will be created (bucket_create)"
        }
    ))
}

/// [`check_image`], and a warning for a virtual size over [`WARN_VIRTUAL_SIZE`].
fn check_image_size(image: &Path, ctx: &StepContext) -> Result<(), StepError> {
    let size = check_image(image)?;
    if size > WARN_VIRTUAL_SIZE {
        ctx.events().send(Event::Warning(format!(
            "exoscale-import: {}'s virtual size is {} GiB; parts of Exoscale's documentation give 100 GB as the largest template, so the registration may fail after the upload: a smaller disk_size is safer",
            image.display(),
            size >> 30
        )));
    }
    Ok(())
}

/// Uploads (the image and the names already checked), registers in the first zone, copies to the others, cleans up. The
/// uploaded object is deleted afterwards (also on failure) unless `skip_clean`.
pub async fn run_exoscale_import(
    config: &ExoscaleImportConfig,
    credentials: Credentials,
    image: &Path,
    key: &str,
    keep_object: &KeepReason,
    ctx: &StepContext,
) -> Result<ExoscaleArtifact, StepError> {
    let cancel = ctx.cancel();
    let (registrar, store) = registrar_and_store(config, &credentials)?;

    // Fail before the upload when the bucket or the credentials are wrong.
    let created = cancellable(cancel, store.ensure_bucket(config.bucket_create))
        .await?
        .map_err(|e| StepError(format!("exoscale-import: {e}")))?;
    if created {
        ctx.log(format!("created bucket {}", config.image_bucket));
    } else {
        cancellable(cancel, check_bucket_zone(config, &store)).await??;
    }
    cancellable(
        cancel,
        registrar.list_templates(&TemplateFilter {
            visibility: Some(Visibility::Private),
            family: None,
        }),
    )
    .await?
    .map_err(|e| {
        StepError(format!(
            "exoscale-import: checking the API credentials: {e}"
        ))
    })?;

    let uploaded = upload(config, &store, image, key, ctx).await;
    let result = match uploaded {
        Ok(md5) => {
            register_everywhere(config, &store, key, &md5, &registrar, keep_object, ctx).await
        }
        Err(e) => Err(e),
    };
    // A kept object is reported once, by the deferred cleanup `run` registered.
    if keep_object.reason().is_none() && !config.skip_clean {
        // Also after a failure or cancel: nothing stays in the bucket.
        match store.delete(key).await {
            Ok(()) => ctx.log(format!("removed {key} from bucket {}", config.image_bucket)),
            Err(e) => ctx.log(format!("could not remove {key}: {e}")),
        }
    }
    result
}

async fn upload(
    config: &ExoscaleImportConfig,
    store: &ObjectStore,
    image: &Path,
    key: &str,
    ctx: &StepContext,
) -> Result<String, StepError> {
    let options = UploadOptions {
        public_read: config.acl == ObjectAcl::PublicRead,
        ..UploadOptions::default()
    };
    let report = |p: crate::objectstore::UploadProgress| {
        ctx.progress(p.done, Some(p.total), Unit::Bytes);
    };
    ctx.log(format!(
        "uploading {} to bucket {} as {key}",
        image.display(),
        config.image_bucket
    ));
    let receipt = store
        .upload_file(image, key, &options, &report, ctx.cancel())
        .await
        .map_err(|e| StepError(format!("exoscale-import: {e}")))?;
    ctx.log(format!(
        "uploaded {} bytes in {} parts, MD5 {}",
        receipt.size, receipt.parts, receipt.md5
    ));
    Ok(receipt.md5)
}

async fn register_everywhere(
    config: &ExoscaleImportConfig,
    store: &ObjectStore,
    key: &str,
    md5: &str,
    registrar: &Client,
    keep_object: &KeepReason,
    ctx: &StepContext,
) -> Result<ExoscaleArtifact, StepError> {
    let url = match config.acl {
        ObjectAcl::PublicRead => public_url(&sos_endpoint(config), &config.image_bucket, key),
        // Valid for the whole registration, with a margin.
        ObjectAcl::Private => store
            .presigned_get(key, config.api_timeout + Duration::from_secs(600))
            .await
            .map_err(|e| StepError(format!("exoscale-import: {e}")))?,
    };
    let request = RegisterTemplate {
        name: config.template_name.clone(),
        url,
        checksum: md5.to_string(),
        ssh_key_enabled: !config.template_disable_sshkey,
        password_enabled: !config.template_disable_password,
        description: Some(config.template_description.clone()).filter(|d| !d.is_empty()),
        default_user: config.template_username.clone(),
        boot_mode: Some(boot_mode_name(config.template_boot_mode)),
        build: config.template_build.clone(),
        version: config.template_version.clone(),
        maintainer: config.template_maintainer.clone(),
    };
    ctx.log(format!(
        "registering template \"{}\" in {}",
        config.template_name,
        registrar.zone()
    ));
    let template = cancellable(ctx.cancel(), registrar.register_template(&request))
        .await?
        .map_err(|e| {
            if !e.outcome_unknown() {
                return StepError(format!("exoscale-import: {e}"));
            }
            // Exoscale downloads the image while it registers: removing it now would make
            // a registration that is still running fail.
            keep_object.set(format!(
                "the registration may still finish and downloads it; delete it once `kiln templates list --zone {}` shows \"{}\"",
                registrar.zone(),
                config.template_name
            ));
            StepError(format!(
                "exoscale-import: {e}. The image stays in bucket {} as {key} for that registration",
                config.image_bucket
            ))
        })?;
    let mut templates = vec![(registrar.zone().to_string(), template.id.clone())];

    // One zone at a time, as Packer does: Exoscale may answer a copy of a template that is
    // being copied elsewhere with `busy` or `conflict`.
    for zone in config.template_zones.iter().skip(1) {
        let id = cancellable(ctx.cancel(), registrar.copy_template(&template.id, zone))
            .await?
            .map_err(|e| {
                StepError(format!(
                    "exoscale-import: the template is registered in {} ({}) but copying it to {zone} failed: {e}",
                    registrar.zone(),
                    template.id
                ))
            })?;
        ctx.log(format!("copied to {zone}: {id}"));
        templates.push((zone.clone(), id));
    }
    Ok(ExoscaleArtifact {
        name: config.template_name.clone(),
        templates,
    })
}

/// The API endpoint to use instead of each zone's standard one (`{zone}` in it replaced):
/// the recipe's `api_endpoint`, else its `api_environment` when it is not the default `api`
/// (Packer's `https://{env}-{zone}.exoscale.com/v2`), else `EXOSCALE_API_ENDPOINT` (given as
/// `from_env`). The recipe's settings win over the environment, as they do for credentials.
pub fn api_endpoint_override(
    config: &ExoscaleImportConfig,
    from_env: Option<String>,
) -> Option<String> {
    let recipe_endpoint = config
        .api_endpoint
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty());
    if let Some(endpoint) = recipe_endpoint {
        return Some(endpoint.to_string());
    }
    let environment = config.api_environment.trim();
    if !environment.is_empty() && environment != DEFAULT_API_ENVIRONMENT {
        return Some(format!(
            "https://{environment}-{}.exoscale.com/v2",
            zone::ZONE_PLACEHOLDER
        ));
    }
    from_env
}

/// The API client of the first template zone (where the template is registered) and the
/// bucket, with the recipe's endpoints and `api_timeout`.
fn registrar_and_store(
    config: &ExoscaleImportConfig,
    credentials: &Credentials,
) -> Result<(Client, ObjectStore), StepError> {
    let first_zone = config
        .template_zones
        .first()
        .ok_or_else(|| StepError("exoscale-import: no template zone".into()))?;
    let options = ClientOptions::with_api_timeout(config.api_timeout);
    let registrar = api_client(first_zone, config, credentials, options)?;
    let store = ObjectStore::new(&store_config(config, credentials))
        .map_err(|e| StepError(format!("exoscale-import: {e}")))?;
    Ok((registrar, store))
}

/// A client of `zone`'s API: at the recipe's endpoint when it sets one (`api_endpoint`, an
/// `api_environment`), else where `EXOSCALE_API_ENDPOINT` says (see
/// [`Client::with_endpoint_setting`]), else the zone's own.
fn api_client(
    zone: &str,
    config: &ExoscaleImportConfig,
    credentials: &Credentials,
    options: ClientOptions,
) -> Result<Client, StepError> {
    match api_endpoint_override(config, None) {
        Some(endpoint) => Client::new(zone, Some(&endpoint), credentials.clone(), options),
        None => Client::from_environment(zone, credentials.clone(), options),
    }
    .map_err(|e| StepError(format!("exoscale-import: {e}")))
}

/// Runs `work` unless the build is cancelled first.
async fn cancellable<T>(
    cancel: &CancellationToken,
    work: impl std::future::Future<Output = T>,
) -> Result<T, StepError> {
    tokio::select! {
        out = work => Ok(out),
        () = cancel.cancelled() => Err(StepError("cancelled".into())),
    }
}

/// The URL of a public-read object: each part of the key percent-encoded (RFC 3986), so an
/// image named `my image#2.qcow2` is fetched as such rather than cut at `#`.
fn public_url(endpoint: &str, bucket: &str, key: &str) -> String {
    let mut url = format!("{}/{bucket}", endpoint.trim_end_matches('/'));
    for segment in key.split('/') {
        url.push('/');
        for byte in segment.bytes() {
            if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                url.push(byte as char);
            } else {
                url.push_str(&format!("%{byte:02X}"));
            }
        }
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::secret::Secret;

    #[test]
    fn template_fields_over_the_api_limits_fail_before_anything_is_uploaded() {
        let mut c = config("", "", None);
        assert!(check_template_fields(&c).is_ok());
        c.template_name = "é".repeat(255);
        assert!(check_template_fields(&c).is_ok(), "255 characters fit");
        c.template_name = format!("Debian 12 {}", "x".repeat(250));
        let e = check_template_fields(&c).unwrap_err().0;
        assert!(
            e.contains("`template_name` is 260 characters long once interpolated"),
            "{e}"
        );
        assert!(e.contains("at most 255"), "{e}");
        c.template_name = "t".into();
        c.template_description = "d".repeat(256);
        let e = check_template_fields(&c).unwrap_err().0;
        assert!(e.contains("`template_description` is 256"), "{e}");
        c.template_description = String::new();
        assert!(check_template_fields(&c).is_ok(), "no description is fine");
        c.template_username = Some(" ".into());
        let e = check_template_fields(&c).unwrap_err().0;
        assert!(e.contains("`template_username` is empty"), "{e}");
    }

    #[test]
    fn the_api_endpoint_comes_from_the_recipe_then_api_environment_then_the_environment() {
        let env = || Some("http://10.0.0.9/{zone}/v2".to_string());
        let mut c = config("", "", None);
        assert_eq!(api_endpoint_override(&c, None), None, "each zone's own");
        assert_eq!(api_endpoint_override(&c, env()), env());
        c.api_environment = "ppapi".into();
        let packers = "https://ppapi-{zone}.exoscale.com/v2";
        assert_eq!(api_endpoint_override(&c, env()).as_deref(), Some(packers));
        assert_eq!(
            zone::api_base("de-fra-1", Some(packers)).unwrap().as_str(),
            "https://ppapi-de-fra-1.exoscale.com/v2"
        );
        c.api_endpoint = Some(" http://127.0.0.1:1/{zone}/v2 ".into());
        assert_eq!(
            api_endpoint_override(&c, env()).as_deref(),
            Some("http://127.0.0.1:1/{zone}/v2")
        );
    }

    #[test]
    fn public_urls_escape_each_part_of_the_key() {
        assert_eq!(
            public_url(
                "https://sos-de-fra-1.exo.io/",
                "images",
                "kiln/run-1/debian.qcow2"
            ),
            "https://sos-de-fra-1.exo.io/images/kiln/run-1/debian.qcow2"
        );
        assert_eq!(
            public_url("http://127.0.0.1:3900", "b", "kiln/r/my image#2 (é)?.qcow2"),
            "http://127.0.0.1:3900/b/kiln/r/my%20image%232%20%28%C3%A9%29%3F.qcow2"
        );
    }

    fn config(key: &str, secret: &str, profile: Option<&str>) -> ExoscaleImportConfig {
        let mut obj = serde_json::json!({"image_bucket": "b", "template_name": "t"});
        if !key.is_empty() {
            obj["api_key"] = key.into();
        }
        if !secret.is_empty() {
            obj["api_secret"] = secret.into();
        }
        if let Some(profile) = profile {
            obj["profile"] = profile.into();
        }
        let (decoded, diags) = crate::recipe::shell_local::testkit::run(
            obj,
            Path::new("/work"),
            "post-processors[0]",
            "post-processor exoscale-import",
            |f| crate::recipe::postprocessor::decode("exoscale-import", f),
        );
        match decoded.map(|p| p.kind) {
            Some(crate::recipe::postprocessor::PostProcessorKind::ExoscaleImport(c)) => c,
            other => panic!("not an exoscale-import config: {other:?} {diags}"),
        }
    }

    fn env(name: &str) -> Option<String> {
        match name {
            "EXOSCALE_API_KEY" => Some("EXOenv".into()),
            "EXOSCALE_API_SECRET" => Some("env-secret".into()),
            _ => None,
        }
    }

    fn no_keyring() -> Result<Profiles, SecretsError> {
        Err(SecretsError::KeyringUnavailable {
            reason: "no D-Bus session bus".into(),
        })
    }

    #[test]
    fn recipe_credentials_win_over_the_environment() {
        let c = config("EXOrecipe", "recipe-secret", None);
        let redactor = Redactor::new();
        let creds = resolve_credentials_with(&c, &redactor, env, no_keyring).unwrap();
        assert_eq!(creds.key(), "EXOrecipe");
        assert_eq!(redactor.redact("recipe-secret"), "********");
    }

    #[test]
    fn the_environment_beats_the_recipe_profile_so_ci_needs_no_keyring() {
        let c = config("", "", Some("work"));
        let creds = resolve_credentials_with(&c, &Redactor::new(), env, no_keyring).unwrap();
        assert_eq!(creds.key(), "EXOenv");
    }

    #[test]
    fn a_recipe_profile_is_loaded_from_the_keyring() {
        let dir = tempfile::tempdir().unwrap();
        let profiles = Profiles::new(
            crate::secrets::Vault::with_store(keyring_core::mock::Store::new().unwrap()),
            dir.path().join("config.toml"),
        );
        profiles
            .save(
                "work",
                "ch-gva-2",
                &Credentials::new("EXOwork", Secret::new("work-secret")).unwrap(),
                false,
            )
            .unwrap();
        let redactor = Redactor::new();
        let creds = resolve_credentials_with(
            &config("", "", Some("work")),
            &redactor,
            |_| None,
            || Ok(profiles.clone()),
        )
        .unwrap();
        assert_eq!(creds.key(), "EXOwork");
        assert_eq!(redactor.redact("work-secret"), "********");
    }

    #[test]
    fn half_credentials_and_missing_ones_are_clear_errors() {
        let half = resolve_credentials_with(
            &config("EXOk", "", None),
            &Redactor::new(),
            |_| None,
            no_keyring,
        )
        .unwrap_err();
        assert!(
            half.0.contains("both `api_key` and `api_secret`"),
            "{}",
            half.0
        );
        let profile = resolve_credentials_with(
            &config("", "", Some("work")),
            &Redactor::new(),
            |_| None,
            no_keyring,
        )
        .unwrap_err();
        assert!(
            profile.0.contains("the OS keyring is not reachable"),
            "{}",
            profile.0
        );
        let none = resolve_credentials_with(
            &config("", "", None),
            &Redactor::new(),
            |_| None,
            no_keyring,
        )
        .unwrap_err();
        assert!(none.0.contains("EXOSCALE_API_KEY"), "{}", none.0);
    }
}
