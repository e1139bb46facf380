//! The `vagrant` post-processor's configuration (Packer's options, for the `libvirt` provider
//! a qemu artifact makes) and `artifice`'s.

use super::decode::Fields;
use super::shell_local::{Item, error_count, existing_local_path, int, item, list_items, report};

/// The default `output` of `vagrant`: `packer_{{.BuildName}}_{{.Provider}}.box`.
pub const DEFAULT_VAGRANT_OUTPUT: &str = "packer_{{ .BuildName }}_{{.Provider}}.box";

/// The only provider a qemu image makes a box for.
pub const VAGRANT_PROVIDER: &str = "libvirt";

/// Providers Packer's `vagrant` post-processor knows (for `provider_override` and
/// `override`); kiln makes `libvirt` boxes.
const PACKER_VAGRANT_PROVIDERS: &[&str] = &[
    "aws",
    "azure",
    "digitalocean",
    "docker",
    "google",
    "hyperv",
    "libvirt",
    "lxc",
    "parallels",
    "scaleway",
    "virtualbox",
    "vmware",
];

/// Context fields of `vagrant`'s `output` and of its Vagrantfile template.
pub const VAGRANT_FIELDS: [(&str, Option<String>); 3] = [
    ("BuildName", None),
    ("Provider", None),
    ("ArtifactId", None),
];

/// Configuration of the `vagrant` post-processor.
#[derive(Debug, Clone, PartialEq)]
pub struct VagrantConfig {
    /// `output`: the box's path; `{{.BuildName}}`, `{{.Provider}}`, `{{.ArtifactId}}` are
    /// filled in when it is written. Default [`DEFAULT_VAGRANT_OUTPUT`].
    pub output: String,
    /// `compression_level`: 0 (a plain tar) to 9; default 6 (Packer's `-1`).
    pub compression_level: u32,
    /// `vagrantfile_template`: a file whose contents go into the box's Vagrantfile after the
    /// provider's part (absolute path).
    pub vagrantfile_template: Option<String>,
    /// `include`: more files for the box's root (absolute paths).
    pub include: Vec<String>,
}

/// Configuration of the `artifice` post-processor: the artifact becomes `files`.
#[derive(Debug, Clone, PartialEq)]
pub struct ArtificeConfig {
    /// `files` (required): the new artifact's files (absolute paths; they are looked for
    /// when the post-processor runs, since earlier steps usually make them).
    pub files: Vec<String>,
}

/// Decodes `vagrant` (its `override` for `libvirt` was merged in by the caller).
pub(crate) fn decode_vagrant(f: &mut Fields<'_, '_>) -> Option<VagrantConfig> {
    let before = error_count(f);
    let output = f
        .string_with("output", &VAGRANT_FIELDS)
        .filter(|o| !o.is_empty())
        .unwrap_or_else(|| DEFAULT_VAGRANT_OUTPUT.to_string());
    let compression_level = match int(f, "compression_level") {
        None | Some(-1) => 6,
        Some(n @ 0..=9) => n as u32,
        Some(n) => {
            if let Some(m) = f.take("compression_level") {
                f.error_at(
                    m,
                    format!(
                        "`compression_level` {n} is out of range; use 0 (no compression) to 9 (smallest), default 6"
                    ),
                );
            }
            6
        }
    };
    let generated = f.bool("vagrantfile_template_generated").unwrap_or(false);
    let vagrantfile_template = match item(f, "vagrantfile_template").filter(|i| !i.value.is_empty())
    {
        None => None,
        Some(template) if generated => Some(super::shell_local::local_path(
            &f.scope().run.pwd,
            &template.value,
        )),
        Some(template) => existing_local_path(f, &template, "vagrantfile_template", false),
    };
    let include = list_items(f, "include")
        .unwrap_or_default()
        .into_iter()
        .filter(|i| !i.value.is_empty())
        .map(|i| super::shell_local::local_path(&f.scope().run.pwd, &i.value))
        .collect();
    if let Some(provider) = item(f, "provider_override").filter(|i| !i.value.is_empty()) {
        check_provider(f, &provider);
    }
    (error_count(f) == before).then_some(VagrantConfig {
        output,
        compression_level,
        vagrantfile_template,
        include,
    })
}

/// A `provider_override` other than `libvirt` cannot be honoured from a qemu image.
fn check_provider(f: &mut Fields<'_, '_>, provider: &Item) {
    if provider.value == VAGRANT_PROVIDER {
        return;
    }
    let skip = f
        .scope()
        .build_name
        .map(|b| format!(" (-except={b} skips this build)"))
        .unwrap_or_default();
    let message = if PACKER_VAGRANT_PROVIDERS.contains(&provider.value.as_str()) {
        format!(
            "kiln makes `libvirt` boxes from qemu images, not `{}` boxes{skip}",
            provider.value
        )
    } else {
        format!(
            "unknown provider \"{}\"; Packer's vagrant post-processor knows {}, and kiln makes `libvirt` boxes",
            provider.value,
            PACKER_VAGRANT_PROVIDERS.join(", ")
        )
    };
    report(f, provider.pos, &provider.path, message);
}

/// Decodes `artifice`.
pub(crate) fn decode_artifice(f: &mut Fields<'_, '_>) -> Option<ArtificeConfig> {
    let before = error_count(f);
    let files: Vec<String> = list_items(f, "files")
        .unwrap_or_default()
        .into_iter()
        .filter(|i| !i.value.is_empty())
        .map(|i| super::shell_local::local_path(&f.scope().run.pwd, &i.value))
        .collect();
    if files.is_empty() && error_count(f) == before {
        f.error_here("`files` is required: the files that become the artifact (paths relative to the working directory)");
    }
    (error_count(f) == before).then_some(ArtificeConfig { files })
}
