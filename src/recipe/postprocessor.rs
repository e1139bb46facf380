//! Post-processors: typed configuration of the `post-processors` entries kiln runs —
//! `shell-local`, `checksum`, `manifest`, `compress` and `exoscale-import` — with the options
//! and defaults of Packer 1.6 and of the exoscale-import plugin (0.5), plus a few kiln
//! additions for Exoscale (credential profile, bucket creation, object ACL).

use std::collections::BTreeMap;
use std::time::Duration;

use super::decode::{self, Fields};
use super::image_test::ImageTestConfig;
use super::json::Value;
use super::secret::Secret;
use super::shell_local::{
    self, Item, ShellLocalConfig, error_count, int, item, list_items, report,
};
pub use super::vagrant::{ArtificeConfig, VagrantConfig};
use super::vagrant::{decode_artifice, decode_vagrant};

/// Post-processor types kiln runs.
pub const POST_PROCESSOR_TYPES: &[&str] = &[
    "shell-local",
    "checksum",
    "manifest",
    "compress",
    "exoscale-import",
    "kiln-resize",
    "kiln-test",
    "vagrant",
    "artifice",
];

/// Post-processors of Packer 1.6 that kiln reads but does not run (cloud imports, Docker,
/// Vagrant Cloud, vSphere): a recipe with one validates with a warning, and `kiln build`
/// refuses it before anything starts unless `-except` skips it. Their options are not checked.
pub const NOT_RUN_POST_PROCESSOR_TYPES: &[&str] = &[
    "alicloud-import",
    "amazon-import",
    "digitalocean-import",
    "docker-import",
    "docker-push",
    "docker-save",
    "docker-tag",
    "googlecompute-export",
    "googlecompute-import",
    "ucloud-import",
    "vagrant-cloud",
    "vsphere",
    "vsphere-template",
    "yandex-export",
    "yandex-import",
];

/// The default `output` of `checksum`.
pub const DEFAULT_CHECKSUM_OUTPUT: &str =
    "packer_{{.BuildName}}_{{.BuilderType}}_{{.ChecksumType}}.checksum";

/// The default `output` of `manifest`.
pub const DEFAULT_MANIFEST_OUTPUT: &str = "packer-manifest.json";

/// The default `output` of `compress`. (Packer's default has no extension and is written as
/// a `.tar.gz`; kiln names the file for what it is.)
pub const DEFAULT_COMPRESS_OUTPUT: &str = "packer_{{.BuildName}}_{{.BuilderType}}.tar.gz";

/// The default `compression_level` of `compress`.
pub const DEFAULT_COMPRESSION_LEVEL: u32 = 6;

/// Exoscale zones kiln knows. Others are accepted only with a custom `api_endpoint`.
pub const EXOSCALE_ZONES: &[&str] = &[
    "ch-gva-2", "ch-dk-2", "de-fra-1", "de-muc-1", "at-vie-1", "at-vie-2", "bg-sof-1", "hr-zag-1",
];

/// The default `image_zone` (and template zone) of `exoscale-import`.
pub const DEFAULT_EXOSCALE_ZONE: &str = "ch-gva-2";

/// The default `api_environment` of `exoscale-import`.
pub const DEFAULT_API_ENVIRONMENT: &str = "api";

/// The default `api_timeout` of `exoscale-import` (template registration can take long).
pub const DEFAULT_API_TIMEOUT: Duration = Duration::from_secs(3600);

/// The API endpoint Packer 1.6's built-in exoscale-import used by default (the retired v1
/// "compute" API). Given explicitly, kiln warns and uses its own endpoint.
const LEGACY_API_ENDPOINTS: &[&str] = &[
    "https://api.exoscale.com/compute",
    "https://api.exoscale.ch/compute",
];

/// Context fields of `checksum`'s `output`, filled in when the checksum file is written.
const CHECKSUM_OUTPUT_FIELDS: [(&str, Option<String>); 3] = [
    ("BuildName", None),
    ("BuilderType", None),
    ("ChecksumType", None),
];

/// Context fields of `compress`'s `output`, filled in when the archive is written.
const COMPRESS_OUTPUT_FIELDS: [(&str, Option<String>); 2] =
    [("BuildName", None), ("BuilderType", None)];

/// One post-processor of a recipe.
#[derive(Debug, Clone, PartialEq)]
pub struct PostProcessor {
    /// `name`: a label for logs and `-only`/`-except` matching.
    pub name: Option<String>,
    /// `keep_input_artifact`: keep the artifact this post-processor consumed. `None` lets
    /// the post-processor decide (Packer's behaviour when unset).
    pub keep_input_artifact: Option<bool>,
    /// The type-specific configuration.
    pub kind: PostProcessorKind,
}

impl PostProcessor {
    /// The post-processor's `type`, as written in recipes.
    pub fn type_name(&self) -> &'static str {
        self.kind.type_name()
    }

    /// Secrets held by this post-processor's configuration (the Exoscale API secret when
    /// set), for the log redactor.
    pub fn secrets(&self) -> Vec<&Secret> {
        match &self.kind {
            PostProcessorKind::ExoscaleImport(c) if !c.api_secret.is_empty() => {
                vec![&c.api_secret]
            }
            _ => Vec::new(),
        }
    }
}

/// What a post-processor does.
#[derive(Debug, Clone, PartialEq)]
pub enum PostProcessorKind {
    /// `shell-local`: run commands or scripts on the machine running kiln.
    ShellLocal(ShellLocalConfig),
    /// `checksum`: write checksum files of the artifact's files.
    Checksum(ChecksumConfig),
    /// `manifest`: record the build's artifacts in a JSON file.
    Manifest(ManifestConfig),
    /// `compress`: pack the artifact's files into one archive.
    Compress(CompressConfig),
    /// `exoscale-import`: upload the image to SOS and register it as an Exoscale template.
    ExoscaleImport(ExoscaleImportConfig),
    /// `kiln-resize` (kiln's own): grow the image's virtual disk, never shrink it.
    Resize(ResizeConfig),
    /// `kiln-test` (kiln's own): boot the image on a throw-away overlay and check it.
    ImageTest(ImageTestConfig),
    /// `vagrant`: a Vagrant box for the `libvirt` provider.
    Vagrant(VagrantConfig),
    /// `artifice`: the artifact becomes the given files.
    Artifice(ArtificeConfig),
    /// A post-processor of Packer's that kiln does not run (see
    /// [`NOT_RUN_POST_PROCESSOR_TYPES`]).
    NotRun(&'static str),
}

impl PostProcessorKind {
    /// The `type` this configuration comes from.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::ShellLocal(_) => "shell-local",
            Self::Checksum(_) => "checksum",
            Self::Manifest(_) => "manifest",
            Self::Compress(_) => "compress",
            Self::ExoscaleImport(_) => "exoscale-import",
            Self::Resize(_) => "kiln-resize",
            Self::ImageTest(_) => "kiln-test",
            Self::Vagrant(_) => "vagrant",
            Self::Artifice(_) => "artifice",
            Self::NotRun(name) => name,
        }
    }
}

/// A hash the `checksum` post-processor can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChecksumType {
    /// `md5`
    Md5,
    /// `sha1`
    Sha1,
    /// `sha224`
    Sha224,
    /// `sha256`
    Sha256,
    /// `sha384`
    Sha384,
    /// `sha512`
    Sha512,
}

impl ChecksumType {
    /// Every type, in the order Packer lists them.
    pub const ALL: [ChecksumType; 6] = [
        Self::Md5,
        Self::Sha1,
        Self::Sha224,
        Self::Sha256,
        Self::Sha384,
        Self::Sha512,
    ];

    /// The name used in recipes and in `{{.ChecksumType}}` (`sha256`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Md5 => "md5",
            Self::Sha1 => "sha1",
            Self::Sha224 => "sha224",
            Self::Sha256 => "sha256",
            Self::Sha384 => "sha384",
            Self::Sha512 => "sha512",
        }
    }

    /// The type called `name`, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// Configuration of the `checksum` post-processor.
#[derive(Debug, Clone, PartialEq)]
pub struct ChecksumConfig {
    /// `checksum_types`: which hashes to write, one file each. Default `[md5]`.
    pub checksum_types: Vec<ChecksumType>,
    /// `output`: the path of each checksum file. Default
    /// `packer_{{.BuildName}}_{{.BuilderType}}_{{.ChecksumType}}.checksum`; user variables are
    /// rendered, `{{.BuildName}}`, `{{.BuilderType}}` and `{{.ChecksumType}}` kept verbatim.
    pub output: String,
}

/// Configuration of the `manifest` post-processor.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestConfig {
    /// `output`: the manifest file. Default `packer-manifest.json`.
    pub output: String,
    /// `strip_path`: record only file names, not their directories. Default false.
    pub strip_path: bool,
    /// `strip_time`: leave out `build_time`. Default false.
    pub strip_time: bool,
    /// `custom_data`: extra key/value pairs recorded with the build.
    pub custom_data: BTreeMap<String, String>,
}

/// The archive and compression `compress` writes, from the output's extension (or `format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressFormat {
    /// `.tar.gz` or `.tgz`: a gzip-compressed tarball.
    TarGz,
    /// `.tar`: an uncompressed tarball.
    Tar,
    /// `.zip`: a zip archive.
    Zip,
    /// `.gz`: one file, gzip-compressed.
    Gz,
    /// `.tar.lz4`: an lz4-compressed tarball.
    TarLz4,
    /// `.lz4`: one file, lz4-compressed.
    Lz4,
    /// `.tar.xz`: an xz-compressed tarball.
    TarXz,
    /// `.xz`: one file, xz-compressed.
    Xz,
    /// `.tar.bgzf`: a tarball in blocked gzip (bgzf).
    TarBgzf,
    /// `.bgzf`: one file in blocked gzip.
    Bgzf,
}

impl CompressFormat {
    /// Every format with the extensions that select it, longest first within a family.
    pub const EXTENSIONS: [(&'static str, CompressFormat); 11] = [
        ("tar.gz", Self::TarGz),
        ("tgz", Self::TarGz),
        ("tar.lz4", Self::TarLz4),
        ("tar.xz", Self::TarXz),
        ("tar.bgzf", Self::TarBgzf),
        ("tar", Self::Tar),
        ("zip", Self::Zip),
        ("gz", Self::Gz),
        ("lz4", Self::Lz4),
        ("xz", Self::Xz),
        ("bgzf", Self::Bgzf),
    ];

    /// The format a file name's extension selects (case-insensitive), if any.
    pub fn from_file_name(name: &str) -> Option<Self> {
        let base = name.rsplit('/').next().unwrap_or(name).to_ascii_lowercase();
        Self::EXTENSIONS
            .iter()
            .find(|(ext, _)| {
                base.strip_suffix(ext)
                    .is_some_and(|stem| stem.ends_with('.') && stem.len() > 1)
            })
            .map(|(_, format)| *format)
    }

    /// The format a `format` option names (`tar.gz`, `.zip`, …), if any.
    pub fn from_name(name: &str) -> Option<Self> {
        let name = name.trim_start_matches('.').to_ascii_lowercase();
        Self::EXTENSIONS
            .iter()
            .find(|(ext, _)| *ext == name)
            .map(|(_, format)| *format)
    }

    /// Whether several files are packed into one archive (tar or zip); otherwise the artifact
    /// must be a single file, which is compressed on its own.
    pub fn is_archive(self) -> bool {
        matches!(
            self,
            Self::TarGz | Self::Tar | Self::Zip | Self::TarLz4 | Self::TarXz | Self::TarBgzf
        )
    }

    /// The canonical extension (`tar.gz`).
    pub fn extension(self) -> &'static str {
        Self::EXTENSIONS
            .iter()
            .find(|(_, f)| *f == self)
            .map(|(ext, _)| *ext)
            .unwrap_or("tar.gz")
    }
}

/// Configuration of the `compress` post-processor.
#[derive(Debug, Clone, PartialEq)]
pub struct CompressConfig {
    /// `output`: the archive path. Default `packer_{{.BuildName}}_{{.BuilderType}}.tar.gz`;
    /// user variables are rendered, `{{.BuildName}}` and `{{.BuilderType}}` kept verbatim.
    pub output: String,
    /// The archive format: from `format` when given, else from `output`'s extension.
    pub format: CompressFormat,
    /// `compression_level`: 1 (fastest) to 9 (smallest). Default 6; 0 and -1 also mean the
    /// default, as in Packer.
    pub compression_level: u32,
}

/// Configuration of `kiln-resize`, kiln's own post-processor: grow the artifact's virtual
/// disk to `disk_size`. Shrinking is refused before the file is touched (shrinking cuts off
/// the file system on the disk; hashicorp/packer#5969).
#[derive(Debug, Clone, PartialEq)]
pub struct ResizeConfig {
    /// `disk_size` (required): the new virtual size in bytes, written like the qemu
    /// builder's `disk_size` (`"10G"`, a bare number is MiB).
    pub disk_size: u64,
}

/// The template boot mode of `exoscale-import`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootMode {
    /// `legacy`: BIOS boot (the default).
    Legacy,
    /// `uefi`: UEFI boot.
    Uefi,
}

/// The access control of the image object kiln uploads to SOS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectAcl {
    /// `private` (kiln's default): the template is registered from a pre-signed URL.
    Private,
    /// `public-read`: what Packer and the exoscale-import plugin always do.
    PublicRead,
}

/// Configuration of the `exoscale-import` post-processor.
#[derive(Debug, Clone, PartialEq)]
pub struct ExoscaleImportConfig {
    /// `api_endpoint` (kiln: an override; Packer 1.6 had this option): the Exoscale API v2
    /// base URL, in which `{zone}` is replaced by the zone talked to. `None`: derived from
    /// `api_environment` (see [`ExoscaleImportConfig::api_endpoint_for`]).
    pub api_endpoint: Option<String>,
    /// `api_environment`: the API host prefix. Default `api`.
    pub api_environment: String,
    /// `api_key`: the API key. May be empty: credentials are then resolved later (environment,
    /// keyring `profile`).
    pub api_key: String,
    /// `api_secret`: the API secret. May be empty, like `api_key`.
    pub api_secret: Secret,
    /// `api_timeout`: how long to wait for API operations. Default 1 hour. A number is read
    /// as seconds (the plugin's unit); a string as a duration (`"90m"`).
    pub api_timeout: Duration,
    /// `image_bucket` (required): the SOS bucket the image is uploaded to.
    pub image_bucket: String,
    /// `image_zone`: the zone of the bucket. Default: the first template zone.
    pub image_zone: String,
    /// `sos_endpoint`: the SOS URL (`{zone}` is replaced by `image_zone`). `None`:
    /// `https://sos-<image_zone>.exo.io` (see [`ExoscaleImportConfig::sos_endpoint`]).
    pub sos_endpoint: Option<String>,
    /// `template_zones` (or the older `template_zone`): the zones the template is registered
    /// in; the first one registers it, the others get copies. Default: `image_zone` when
    /// given, else `ch-gva-2`. Never empty, no duplicates.
    pub template_zones: Vec<String>,
    /// `template_name` (required): the template's name.
    pub template_name: String,
    /// `template_description`: the template's description. Default empty.
    pub template_description: String,
    /// `template_username`: the user to log in as on instances of the template.
    pub template_username: Option<String>,
    /// `template_boot_mode`: `legacy` (default) or `uefi`.
    pub template_boot_mode: BootMode,
    /// `template_disable_password`: instances do not get a password reset. Default false.
    pub template_disable_password: bool,
    /// `template_disable_sshkey`: instances do not get an SSH key installed. Default false.
    pub template_disable_sshkey: bool,
    /// `template_maintainer`: the template's maintainer.
    pub template_maintainer: Option<String>,
    /// `template_version`: the template's version.
    pub template_version: Option<String>,
    /// `template_build`: the template's build.
    pub template_build: Option<String>,
    /// `skip_clean`: leave the uploaded image in the bucket. Default false.
    pub skip_clean: bool,
    /// `profile` (kiln): the credentials profile in the keyring, when `api_key` is empty.
    pub profile: Option<String>,
    /// Whether `profile` comes before `EXOSCALE_API_KEY`/`EXOSCALE_API_SECRET`: set when the
    /// user chose the profile for this build (the window's form, `kiln build --profile`); a
    /// recipe's own `profile` comes after the environment, so it runs unchanged in CI.
    pub profile_first: bool,
    /// `bucket_create` (kiln): create `image_bucket` when it does not exist. Default false
    /// (Packer requires an existing bucket).
    pub bucket_create: bool,
    /// `acl` (kiln): `private` (default) or `public-read` (Packer's behaviour).
    pub acl: ObjectAcl,
}

impl ExoscaleImportConfig {
    /// The API v2 base URL for `zone`: `api_endpoint` with `{zone}` replaced, or
    /// `https://<api_environment>-<zone>.exoscale.com/v2`.
    pub fn api_endpoint_for(&self, zone: &str) -> String {
        match &self.api_endpoint {
            Some(endpoint) => endpoint.replace("{zone}", zone),
            None => format!("https://{}-{zone}.exoscale.com/v2", self.api_environment),
        }
    }

    /// The SOS URL: `sos_endpoint` with `{zone}` replaced by `image_zone`, or
    /// `https://sos-<image_zone>.exo.io`.
    pub fn sos_endpoint(&self) -> String {
        match &self.sos_endpoint {
            Some(endpoint) => endpoint.replace("{zone}", &self.image_zone),
            None => format!("https://sos-{}.exo.io", self.image_zone),
        }
    }
}

/// Decodes a post-processor of type `ty` (already checked to be in
/// [`POST_PROCESSOR_TYPES`]). `type`, `only` and `except` were consumed by the caller.
/// Returns `None` when anything is wrong (every problem is reported through `f`).
pub(crate) fn decode(ty: &str, f: &mut Fields<'_, '_>) -> Option<PostProcessor> {
    let before = error_count(f);
    let name = f.string("name").filter(|n| !n.is_empty());
    let keep_input_artifact = f.bool("keep_input_artifact");
    let kind = match ty {
        "shell-local" => decode_shell_local(f).map(PostProcessorKind::ShellLocal),
        "checksum" => decode_checksum(f).map(PostProcessorKind::Checksum),
        "manifest" => Some(PostProcessorKind::Manifest(ManifestConfig {
            output: f
                .string("output")
                .filter(|o| !o.is_empty())
                .unwrap_or_else(|| DEFAULT_MANIFEST_OUTPUT.to_string()),
            strip_path: f.bool("strip_path").unwrap_or(false),
            strip_time: f.bool("strip_time").unwrap_or(false),
            custom_data: f.string_map("custom_data").unwrap_or_default(),
        })),
        "compress" => decode_compress(f).map(PostProcessorKind::Compress),
        "exoscale-import" => decode_exoscale_import(f).map(PostProcessorKind::ExoscaleImport),
        "kiln-resize" => decode_resize(f).map(PostProcessorKind::Resize),
        "kiln-test" => super::image_test::decode(f).map(PostProcessorKind::ImageTest),
        "vagrant" => decode_vagrant(f).map(PostProcessorKind::Vagrant),
        "artifice" => decode_artifice(f).map(PostProcessorKind::Artifice),
        not_run if NOT_RUN_POST_PROCESSOR_TYPES.contains(&not_run) => {
            let name = NOT_RUN_POST_PROCESSOR_TYPES
                .iter()
                .find(|t| **t == not_run)
                .copied()
                .unwrap_or("unknown");
            f.take_all();
            let shown = f.string("name").unwrap_or_else(|| name.to_string());
            f.warning_here(format!(
                "kiln does not run the `{name}` post-processor (its options are not checked): `kiln build` stops before starting unless it is skipped with -except={shown}"
            ));
            Some(PostProcessorKind::NotRun(name))
        }
        other => {
            f.error_here(format!(
                "unknown post-processor type \"{other}\"; kiln runs: {}",
                POST_PROCESSOR_TYPES.join(", ")
            ));
            None
        }
    };
    let kind = kind?;
    (error_count(f) == before).then_some(PostProcessor {
        name,
        keep_input_artifact,
        kind,
    })
}

fn decode_shell_local(f: &mut Fields<'_, '_>) -> Option<ShellLocalConfig> {
    let mut config = shell_local::decode(f)?;
    // Before Packer merged the shell-local post-processor with the provisioner, its
    // `execute_command` was one string run through `sh -c`; Packer still prepends that to a
    // one-element command.
    if config.execute_command.len() == 1 {
        config
            .execute_command
            .splice(0..0, ["sh".to_string(), "-c".to_string()]);
    }
    Some(config)
}

fn decode_resize(f: &mut Fields<'_, '_>) -> Option<ResizeConfig> {
    let Some(m) = f.take("disk_size") else {
        f.error_here(
            "`disk_size` is required: the size to grow the disk to, like \"10G\" (a bare \
             number is MiB)",
        );
        return None;
    };
    let text = f.string("disk_size")?;
    match super::units::parse_disk_size(&text) {
        Ok(0) => {
            f.error_at(m, "`disk_size` must be larger than 0, like \"10G\"");
            None
        }
        Ok(disk_size) => Some(ResizeConfig { disk_size }),
        Err(why) => {
            f.error_at(m, why);
            None
        }
    }
}

fn decode_checksum(f: &mut Fields<'_, '_>) -> Option<ChecksumConfig> {
    let before = error_count(f);
    let given = f.has("checksum_types");
    let mut checksum_types = Vec::new();
    for Item { value, pos, path } in list_items(f, "checksum_types").unwrap_or_default() {
        match ChecksumType::from_name(&value) {
            Some(t) => {
                if !checksum_types.contains(&t) {
                    checksum_types.push(t);
                }
            }
            None => {
                let names = ChecksumType::ALL.map(ChecksumType::name);
                let hint = match decode::suggest(&value.to_ascii_lowercase(), names) {
                    Some(s) => format!(" (did you mean \"{s}\"?)"),
                    None => String::new(),
                };
                report(
                    f,
                    pos,
                    &path,
                    format!(
                        "unknown checksum type \"{value}\"; use any of: {}{hint}",
                        names.join(", ")
                    ),
                );
            }
        }
    }
    if checksum_types.is_empty()
        && given
        && error_count(f) == before
        && let Some(m) = f.take("checksum_types")
    {
        f.warn_at(
            m,
            "`checksum_types` is empty, so no checksum file is written; list e.g. [\"sha256\"] \
             or remove the option for md5",
        );
    }
    if !given {
        checksum_types.push(ChecksumType::Md5);
    }
    let output = f
        .string_with("output", &CHECKSUM_OUTPUT_FIELDS)
        .filter(|o| !o.is_empty())
        .unwrap_or_else(|| DEFAULT_CHECKSUM_OUTPUT.to_string());
    (error_count(f) == before).then_some(ChecksumConfig {
        checksum_types,
        output,
    })
}

fn known_extensions() -> String {
    CompressFormat::EXTENSIONS
        .iter()
        .map(|(ext, _)| format!(".{ext}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn decode_compress(f: &mut Fields<'_, '_>) -> Option<CompressConfig> {
    let before = error_count(f);
    let output_member = f.take("output");
    let output = f
        .string_with("output", &COMPRESS_OUTPUT_FIELDS)
        .filter(|o| !o.is_empty())
        .unwrap_or_else(|| DEFAULT_COMPRESS_OUTPUT.to_string());
    let format_item = item(f, "format").filter(|i| !i.value.is_empty());
    let level = int(f, "compression_level");

    let format = match &format_item {
        Some(Item { value, pos, path }) => {
            let format = CompressFormat::from_name(value);
            if format.is_none() {
                report(
                    f,
                    *pos,
                    path,
                    format!(
                        "unknown archive format \"{value}\"; use one of: {}",
                        CompressFormat::EXTENSIONS
                            .iter()
                            .map(|(ext, _)| *ext)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
            format
        }
        None => {
            let format = CompressFormat::from_file_name(&output);
            if format.is_none() {
                let message = format!(
                    "cannot tell the archive format of \"{output}\" from its extension; end \
                     `output` with one of {} or set `format`",
                    known_extensions()
                );
                match output_member {
                    Some(m) => f.error_at(m, message),
                    None => f.error_here(message),
                }
            }
            format
        }
    };

    let compression_level = match level {
        None => DEFAULT_COMPRESSION_LEVEL,
        Some(-1) => DEFAULT_COMPRESSION_LEVEL,
        Some(0) => {
            if let Some(m) = f.take("compression_level") {
                f.warn_at(
                    m,
                    "`compression_level` 0 means the default level 6 (as in Packer); use 1 for \
                     the fastest compression",
                );
            }
            DEFAULT_COMPRESSION_LEVEL
        }
        Some(n @ 1..=9) => n as u32,
        Some(n) => {
            if let Some(m) = f.take("compression_level") {
                f.error_at(
                    m,
                    format!(
                        "`compression_level` {n} is out of range; use 1 (fastest) to 9 \
                         (smallest), default 6"
                    ),
                );
            }
            DEFAULT_COMPRESSION_LEVEL
        }
    };
    let format = format?;
    (error_count(f) == before).then_some(CompressConfig {
        output,
        format,
        compression_level,
    })
}

/// Checks one zone name; with a custom API endpoint any non-blank name goes.
fn check_zone(f: &mut Fields<'_, '_>, zone: &Item, custom_endpoint: bool) -> bool {
    if EXOSCALE_ZONES.contains(&zone.value.as_str())
        || (custom_endpoint && !zone.value.trim().is_empty())
    {
        return true;
    }
    let hint = match decode::suggest(&zone.value, EXOSCALE_ZONES.iter().copied()) {
        Some(s) => format!(" (did you mean \"{s}\"?)"),
        None => String::new(),
    };
    report(
        f,
        zone.pos,
        &zone.path,
        format!(
            "unknown Exoscale zone \"{}\"; use one of: {}{hint} (set `api_endpoint` to use \
             another zone)",
            zone.value,
            EXOSCALE_ZONES.join(", ")
        ),
    );
    false
}

/// `api_timeout`: a number of seconds (the plugin's `int`) or a duration string.
fn decode_api_timeout(f: &mut Fields<'_, '_>) -> Option<Duration> {
    let m = f.take("api_timeout")?;
    if let Value::Number(_) = m.value.value {
        return f.uint("api_timeout").map(Duration::from_secs);
    }
    let it = item(f, "api_timeout")?;
    if let Ok(secs) = it.value.trim().parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    match super::units::parse_duration(&it.value) {
        Ok(d) => Some(d),
        Err(why) => {
            f.error_at(
                m,
                format!(
                    "expected a number of seconds or a duration like \"1h\", got \"{}\": {why}",
                    it.value
                ),
            );
            None
        }
    }
}

fn required(
    f: &mut Fields<'_, '_>,
    key: &'static str,
    value: Option<String>,
    what: &str,
) -> String {
    match value.filter(|v| !v.trim().is_empty()) {
        Some(v) => v,
        None => {
            let message = format!("`{key}` is required: {what}");
            match f.take(key) {
                Some(m) => f.error_at(m, message),
                None => f.error_here(message),
            }
            String::new()
        }
    }
}

fn decode_exoscale_import(f: &mut Fields<'_, '_>) -> Option<ExoscaleImportConfig> {
    let before = error_count(f);
    let mut api_endpoint = f.string("api_endpoint").filter(|e| !e.trim().is_empty());
    if let Some(endpoint) = &api_endpoint
        && LEGACY_API_ENDPOINTS.contains(&endpoint.trim_end_matches('/'))
        && let Some(m) = f.take("api_endpoint")
    {
        f.warn_at(
            m,
            "ignored: this is the retired v1 API endpoint Packer 1.6 used; kiln talks to API v2 \
             and picks each zone's endpoint itself — remove the option",
        );
        api_endpoint = None;
    }
    let custom_endpoint = api_endpoint.is_some();
    let api_environment = f
        .string("api_environment")
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| DEFAULT_API_ENVIRONMENT.to_string());
    let api_key = f.string("api_key").unwrap_or_default();
    let api_secret = Secret::new(f.string("api_secret").unwrap_or_default());
    let api_timeout = decode_api_timeout(f)
        .filter(|d| !d.is_zero())
        .unwrap_or(DEFAULT_API_TIMEOUT);
    let image_bucket = f.string("image_bucket");
    let image_bucket = required(
        f,
        "image_bucket",
        image_bucket,
        "the name of the SOS bucket the image is uploaded to",
    );
    let template_name = f.string("template_name");
    let template_name = required(
        f,
        "template_name",
        template_name,
        "the name the template is registered under",
    );

    let image_zone = item(f, "image_zone").filter(|z| !z.value.is_empty());
    let template_zone = item(f, "template_zone").filter(|z| !z.value.is_empty());
    let template_zones = list_items(f, "template_zones").filter(|z| !z.is_empty());
    let mut zones_ok = true;
    for zone in image_zone
        .iter()
        .chain(template_zone.iter())
        .chain(template_zones.iter().flatten())
    {
        zones_ok &= check_zone(f, zone, custom_endpoint);
    }
    if template_zone.is_some()
        && template_zones.is_some()
        && let Some(m) = f.take("template_zone")
    {
        zones_ok = false;
        f.error_at(
            m,
            "give either `template_zone` (deprecated) or `template_zones`, not both: list every \
             zone in `template_zones`",
        );
    }
    let mut zones: Vec<String> = match (template_zones, template_zone, &image_zone) {
        (Some(list), _, _) => list.into_iter().map(|z| z.value).collect(),
        (None, Some(zone), _) => vec![zone.value],
        (None, None, Some(zone)) => vec![zone.value.clone()],
        (None, None, None) => vec![DEFAULT_EXOSCALE_ZONE.to_string()],
    };
    let mut seen = Vec::with_capacity(zones.len());
    zones.retain(|z| {
        let new = !seen.contains(z);
        if new {
            seen.push(z.clone());
        }
        new
    });
    let image_zone = image_zone
        .map(|z| z.value)
        .unwrap_or_else(|| zones[0].clone());

    let sos_endpoint = f.string("sos_endpoint").filter(|e| !e.trim().is_empty());
    let template_description = f.string("template_description").unwrap_or_default();
    let template_username = f.string("template_username").filter(|u| !u.is_empty());
    let template_boot_mode = match f
        .one_of("template_boot_mode", &["legacy", "uefi"])
        .as_deref()
    {
        Some("uefi") => BootMode::Uefi,
        _ => BootMode::Legacy,
    };
    let template_disable_password = f.bool("template_disable_password").unwrap_or(false);
    let template_disable_sshkey = f.bool("template_disable_sshkey").unwrap_or(false);
    let template_maintainer = f.string("template_maintainer").filter(|s| !s.is_empty());
    let template_version = f.string("template_version").filter(|s| !s.is_empty());
    let template_build = f.string("template_build").filter(|s| !s.is_empty());
    let skip_clean = f.bool("skip_clean").unwrap_or(false);
    let profile = f.string("profile").filter(|p| !p.is_empty());
    let bucket_create = f.bool("bucket_create").unwrap_or(false);
    let acl = match f.one_of("acl", &["private", "public-read"]).as_deref() {
        Some("public-read") => ObjectAcl::PublicRead,
        _ => ObjectAcl::Private,
    };
    if !api_key.is_empty()
        && api_secret.is_empty()
        && let Some(m) = f.take("api_key")
    {
        f.warn_at(
            m,
            "`api_key` is set but `api_secret` is empty; the secret will be looked up like the \
             key's (environment, keyring)",
        );
    }

    if !zones_ok {
        return None;
    }
    (error_count(f) == before).then_some(ExoscaleImportConfig {
        api_endpoint,
        api_environment,
        api_key,
        api_secret,
        api_timeout,
        image_bucket,
        image_zone,
        sos_endpoint,
        template_zones: zones,
        template_name,
        template_description,
        template_username,
        template_boot_mode,
        template_disable_password,
        template_disable_sshkey,
        template_maintainer,
        template_version,
        template_build,
        skip_clean,
        profile,
        profile_first: false,
        bucket_create,
        acl,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::json;

    use super::*;
    use crate::recipe::diag::Diagnostics;
    use crate::recipe::shell_local::testkit::{errors, run, warnings};

    fn pp(ty: &str, obj: serde_json::Value) -> (Option<PostProcessor>, Diagnostics) {
        run(
            obj,
            Path::new("/work"),
            "post-processors[0][1]",
            &format!("post-processor {ty}"),
            |f| decode(ty, f),
        )
    }

    fn exo(obj: serde_json::Value) -> (Option<ExoscaleImportConfig>, Diagnostics) {
        let (p, diags) = pp("exoscale-import", obj);
        let c = p.map(|p| match p.kind {
            PostProcessorKind::ExoscaleImport(c) => c,
            other => panic!("not exoscale-import: {other:?}"),
        });
        (c, diags)
    }

    fn compress(obj: serde_json::Value) -> (Option<CompressConfig>, Diagnostics) {
        let (p, diags) = pp("compress", obj);
        let c = p.map(|p| match p.kind {
            PostProcessorKind::Compress(c) => c,
            other => panic!("not compress: {other:?}"),
        });
        (c, diags)
    }

    #[test]
    fn common_options() {
        let (p, diags) = pp(
            "manifest",
            json!({"name": "record", "keep_input_artifact": true}),
        );
        assert!(diags.is_empty(), "{diags}");
        let p = p.unwrap();
        assert_eq!(p.name.as_deref(), Some("record"));
        assert_eq!(p.keep_input_artifact, Some(true));
        assert_eq!(p.type_name(), "manifest");
        assert!(p.secrets().is_empty());
        let (p, _) = pp("manifest", json!({}));
        assert_eq!(p.unwrap().keep_input_artifact, None);
    }

    #[test]
    fn manifest_defaults_and_options() {
        let (p, diags) = pp("manifest", json!({}));
        assert!(diags.is_empty(), "{diags}");
        assert_eq!(
            p.unwrap().kind,
            PostProcessorKind::Manifest(ManifestConfig {
                output: "packer-manifest.json".into(),
                strip_path: false,
                strip_time: false,
                custom_data: BTreeMap::new(),
            })
        );
        let (p, diags) = pp(
            "manifest",
            json!({"output": "out/m.json", "strip_path": true, "strip_time": "1", "custom_data": {"commit": "abc"}}),
        );
        assert!(diags.is_empty(), "{diags}");
        let PostProcessorKind::Manifest(m) = p.unwrap().kind else {
            panic!()
        };
        assert_eq!(m.output, "out/m.json");
        assert!(m.strip_path && m.strip_time);
        assert_eq!(m.custom_data.get("commit").map(String::as_str), Some("abc"));
    }

    #[test]
    fn checksum_defaults_and_types() {
        let (p, diags) = pp("checksum", json!({}));
        assert!(diags.is_empty(), "{diags}");
        assert_eq!(
            p.unwrap().kind,
            PostProcessorKind::Checksum(ChecksumConfig {
                checksum_types: vec![ChecksumType::Md5],
                output: "packer_{{.BuildName}}_{{.BuilderType}}_{{.ChecksumType}}.checksum".into(),
            })
        );
        let (p, diags) = pp(
            "checksum",
            json!({"checksum_types": ["sha256", "sha512", "sha256"], "output": "out/{{.BuildName}}.{{.ChecksumType}}"}),
        );
        assert!(diags.is_empty(), "{diags}");
        let PostProcessorKind::Checksum(c) = p.unwrap().kind else {
            panic!()
        };
        assert_eq!(
            c.checksum_types,
            [ChecksumType::Sha256, ChecksumType::Sha512]
        );
        assert_eq!(c.output, "out/{{.BuildName}}.{{.ChecksumType}}");
    }

    #[test]
    fn checksum_errors() {
        let (p, diags) = pp("checksum", json!({"checksum_types": ["sha256", "SHA-1"]}));
        assert!(p.is_none());
        let d = diags.errors().next().unwrap();
        assert_eq!(d.path, "post-processors[0][1].checksum_types[1]");
        assert_eq!((d.line, d.col), (Some(2), Some(15)));
        assert_eq!(
            d.message,
            "unknown checksum type \"SHA-1\"; use any of: md5, sha1, sha224, sha256, sha384, sha512 (did you mean \"sha1\"?)"
        );

        let (p, diags) = pp("checksum", json!({"checksum_types": []}));
        assert!(p.unwrap().type_name() == "checksum");
        assert!(warnings(&diags)[0].contains("no checksum file is written"));
    }

    #[test]
    fn compress_formats_from_extensions() {
        let (c, diags) = compress(json!({}));
        assert!(diags.is_empty(), "{diags}");
        let c = c.unwrap();
        assert_eq!(c.output, "packer_{{.BuildName}}_{{.BuilderType}}.tar.gz");
        assert_eq!((c.format, c.compression_level), (CompressFormat::TarGz, 6));

        for (name, format) in [
            ("a.tgz", CompressFormat::TarGz),
            ("out/{{.BuildName}}.tar", CompressFormat::Tar),
            ("a.zip", CompressFormat::Zip),
            ("disk.qcow2.gz", CompressFormat::Gz),
            ("a.lz4", CompressFormat::Lz4),
            ("a.tar.lz4", CompressFormat::TarLz4),
            ("a.XZ", CompressFormat::Xz),
            ("a.tar.xz", CompressFormat::TarXz),
            ("a.bgzf", CompressFormat::Bgzf),
            ("a.tar.bgzf", CompressFormat::TarBgzf),
        ] {
            assert_eq!(CompressFormat::from_file_name(name), Some(format), "{name}");
        }
        assert_eq!(CompressFormat::from_file_name(".gz"), None);
        assert_eq!(CompressFormat::from_file_name("dir.tar/file"), None);
        assert!(CompressFormat::TarXz.is_archive() && !CompressFormat::Xz.is_archive());
        assert_eq!(CompressFormat::Gz.extension(), "gz");

        let (c, diags) =
            compress(json!({"output": "image.raw", "format": ".tar.xz", "compression_level": "9"}));
        assert!(diags.is_empty(), "{diags}");
        let c = c.unwrap();
        assert_eq!((c.format, c.compression_level), (CompressFormat::TarXz, 9));
    }

    #[test]
    fn compress_errors() {
        let (c, diags) = compress(json!({"output": "image.7z"}));
        assert!(c.is_none());
        let e = errors(&diags);
        assert_eq!(
            e,
            [
                "post-processors[0][1].output: cannot tell the archive format of \"image.7z\" from its extension; end `output` with one of .tar.gz, .tgz, .tar.lz4, .tar.xz, .tar.bgzf, .tar, .zip, .gz, .lz4, .xz, .bgzf or set `format`"
            ]
        );

        let (c, diags) = compress(json!({"format": "rar"}));
        assert!(c.is_none());
        assert!(errors(&diags)[0].contains("format: unknown archive format \"rar\""));

        let (c, diags) = compress(json!({"compression_level": 10}));
        assert!(c.is_none());
        assert!(errors(&diags)[0].contains("`compression_level` 10 is out of range"));

        let (c, diags) = compress(json!({"compression_level": -1}));
        assert_eq!(c.unwrap().compression_level, 6);
        assert!(diags.is_empty());
        let (c, diags) = compress(json!({"compression_level": 0}));
        assert_eq!(c.unwrap().compression_level, 6);
        assert!(warnings(&diags)[0].contains("0 means the default level 6"));
    }

    #[test]
    fn shell_local_post_processor() {
        let (p, diags) = pp(
            "shell-local",
            json!({"inline": ["echo hi"], "execute_command": "{{.Vars}} bash {{.Script}}", "keep_input_artifact": false}),
        );
        assert!(diags.is_empty(), "{diags}");
        let p = p.unwrap();
        assert_eq!(p.keep_input_artifact, Some(false));
        let PostProcessorKind::ShellLocal(c) = p.kind else {
            panic!()
        };
        // A single string is Packer's old form: it runs through `sh -c`.
        assert_eq!(
            c.execute_command,
            ["sh", "-c", "{{.Vars}} bash {{.Script}}"]
        );
        let (p, diags) = pp(
            "shell-local",
            json!({"command": "ls", "execute_command": ["{{.Vars}} bash {{.Script}}"]}),
        );
        assert!(diags.is_empty(), "{diags}");
        let PostProcessorKind::ShellLocal(c) = p.unwrap().kind else {
            panic!()
        };
        assert_eq!(
            c.execute_command,
            ["sh", "-c", "{{.Vars}} bash {{.Script}}"]
        );
        assert_eq!(
            c.sources,
            vec![shell_local::ShellSource::Inline(vec!["ls".into()])]
        );
    }

    #[test]
    fn exoscale_defaults() {
        let (c, diags) = exo(json!({"image_bucket": "templates", "template_name": "debian-12"}));
        assert!(diags.is_empty(), "{diags}");
        let c = c.unwrap();
        assert_eq!(c.api_endpoint, None);
        assert_eq!(c.api_environment, "api");
        assert_eq!(
            c.api_endpoint_for("de-fra-1"),
            "https://api-de-fra-1.exoscale.com/v2"
        );
        assert!(c.api_key.is_empty() && c.api_secret.is_empty());
        assert_eq!(c.api_timeout, Duration::from_secs(3600));
        assert_eq!(c.image_zone, "ch-gva-2");
        assert_eq!(c.template_zones, ["ch-gva-2"]);
        assert_eq!(c.sos_endpoint, None);
        assert_eq!(c.sos_endpoint(), "https://sos-ch-gva-2.exo.io");
        assert_eq!(c.template_description, "");
        assert_eq!(c.template_boot_mode, BootMode::Legacy);
        assert_eq!(c.acl, ObjectAcl::Private);
        assert!(
            !c.bucket_create
                && !c.skip_clean
                && !c.template_disable_password
                && !c.template_disable_sshkey
        );
        assert_eq!(
            (
                c.template_username,
                c.template_maintainer,
                c.template_version,
                c.template_build,
                c.profile
            ),
            (None, None, None, None, None)
        );
    }

    #[test]
    fn exoscale_options_are_read_and_the_secret_is_masked() {
        let (p, diags) = pp(
            "exoscale-import",
            json!({
                "api_key": "EXOabc",
                "api_secret": "s3cr3t",
                "api_environment": "ppapi",
                "api_timeout": 7200,
                "image_bucket": "tpl",
                "image_zone": "de-fra-1",
                "template_zones": ["de-fra-1", "at-vie-1", "de-fra-1"],
                "sos_endpoint": "https://sos-{zone}.example.net",
                "template_name": "n",
                "template_description": "d",
                "template_username": "debian",
                "template_boot_mode": "uefi",
                "template_disable_password": true,
                "template_disable_sshkey": true,
                "template_maintainer": "ops",
                "template_version": "1.2",
                "template_build": "42",
                "skip_clean": true,
                "profile": "prod",
                "bucket_create": true,
                "acl": "public-read"
            }),
        );
        assert!(diags.is_empty(), "{diags}");
        let p = p.unwrap();
        assert_eq!(p.secrets().len(), 1);
        assert_eq!(p.secrets()[0].expose(), "s3cr3t");
        assert!(!format!("{p:?}").contains("s3cr3t"));
        let PostProcessorKind::ExoscaleImport(c) = p.kind else {
            panic!()
        };
        assert_eq!(c.api_key, "EXOabc");
        assert_eq!(
            c.api_endpoint_for("at-vie-1"),
            "https://ppapi-at-vie-1.exoscale.com/v2"
        );
        assert_eq!(c.api_timeout, Duration::from_secs(7200));
        assert_eq!(c.image_zone, "de-fra-1");
        assert_eq!(c.template_zones, ["de-fra-1", "at-vie-1"]);
        assert_eq!(c.sos_endpoint(), "https://sos-de-fra-1.example.net");
        assert_eq!(c.template_boot_mode, BootMode::Uefi);
        assert!(
            c.template_disable_password
                && c.template_disable_sshkey
                && c.skip_clean
                && c.bucket_create
        );
        assert_eq!(c.template_build.as_deref(), Some("42"));
        assert_eq!(c.profile.as_deref(), Some("prod"));
        assert_eq!(c.acl, ObjectAcl::PublicRead);
    }

    #[test]
    fn exoscale_zone_fallbacks() {
        let base = |extra: serde_json::Value| {
            let mut obj = json!({"image_bucket": "b", "template_name": "t"});
            obj.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            exo(obj)
        };
        // Packer 1.6 / plugin 0.1: template_zone; the image goes to the same zone.
        let (c, _) = base(json!({"template_zone": "de-muc-1"}));
        let c = c.unwrap();
        assert_eq!(
            (c.image_zone.as_str(), c.template_zones.clone()),
            ("de-muc-1", vec!["de-muc-1".to_string()])
        );
        // Plugin ≥ 0.2: image_zone defaults to the first template zone.
        let (c, _) = base(json!({"template_zones": ["bg-sof-1", "hr-zag-1"]}));
        assert_eq!(c.unwrap().image_zone, "bg-sof-1");
        // Only image_zone: the template is registered there.
        let (c, _) = base(json!({"image_zone": "at-vie-2"}));
        assert_eq!(c.unwrap().template_zones, ["at-vie-2"]);
        // Both template_zone and template_zones: an error.
        let (c, diags) = base(json!({"template_zone": "de-muc-1", "template_zones": ["ch-dk-2"]}));
        assert!(c.is_none());
        assert!(
            errors(&diags)[0]
                .contains("give either `template_zone` (deprecated) or `template_zones`")
        );
        // api_timeout as a duration string or numeric string.
        let (c, _) = base(json!({"api_timeout": "90m"}));
        assert_eq!(c.unwrap().api_timeout, Duration::from_secs(5400));
        let (c, _) = base(json!({"api_timeout": "600"}));
        assert_eq!(c.unwrap().api_timeout, Duration::from_secs(600));
    }

    #[test]
    fn exoscale_errors() {
        let (c, diags) = exo(
            json!({"template_zones": ["ch-gva2"], "template_boot_mode": "bios", "acl": "public"}),
        );
        assert!(c.is_none());
        let e = errors(&diags);
        assert_eq!(e.len(), 5, "{e:?}");
        assert!(e[0].ends_with(
            "`image_bucket` is required: the name of the SOS bucket the image is uploaded to"
        ));
        assert!(
            e[1].ends_with(
                "`template_name` is required: the name the template is registered under"
            )
        );
        assert!(e[2].starts_with(
            "post-processors[0][1].template_zones[0]: unknown Exoscale zone \"ch-gva2\""
        ));
        assert!(e[2].contains("(did you mean \"ch-gva-2\"?)"));
        assert!(e[3].contains(
            "template_boot_mode: \"bios\" is not a valid value; use one of: legacy, uefi"
        ));
        assert!(
            e[4].contains("acl: \"public\" is not a valid value; use one of: private, public-read")
        );

        let (c, diags) =
            exo(json!({"image_bucket": "b", "template_name": "t", "api_timeout": "soon"}));
        assert!(c.is_none());
        assert!(errors(&diags)[0].contains("expected a number of seconds or a duration"));
    }

    #[test]
    fn exoscale_custom_endpoint_allows_any_zone() {
        let (c, diags) = exo(json!({
            "image_bucket": "b", "template_name": "t",
            "api_endpoint": "https://{zone}.api.lab.internal/v2",
            "template_zones": ["lab-1"]
        }));
        assert!(diags.is_empty(), "{diags}");
        let c = c.unwrap();
        assert_eq!(
            c.api_endpoint_for("lab-1"),
            "https://lab-1.api.lab.internal/v2"
        );
        assert_eq!(c.sos_endpoint(), "https://sos-lab-1.exo.io");

        // Packer 1.6's v1 endpoint is dropped with a warning, so zones are checked again.
        let (c, diags) = exo(json!({
            "image_bucket": "b", "template_name": "t", "template_description": "required in 1.6",
            "api_endpoint": "https://api.exoscale.com/compute"
        }));
        assert_eq!(c.unwrap().api_endpoint, None);
        assert!(warnings(&diags)[0].contains("retired v1 API endpoint"));
    }

    #[test]
    fn exoscale_unknown_option() {
        let (_, diags) =
            exo(json!({"image_bucket": "b", "template_name": "t", "template_zonez": ["ch-gva-2"]}));
        let e = errors(&diags);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("unknown option `template_zonez` for post-processor exoscale-import (did you mean `template_zone"), "{e:?}");
    }
}
