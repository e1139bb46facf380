//! Provisioners: typed configuration of the `provisioners` entries kiln runs — `shell` (on
//! the machine being built), `file` (copy to or from it), `shell-local` (on the machine
//! running kiln) and `breakpoint` (pause until the user presses Enter) — with Packer 1.6's
//! options and defaults.

pub use super::ansible::{AnsibleConfig, AnsibleLocalConfig};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::decode::Fields;
use super::secret::Secret;
use super::shell_local::{
    self, ShellLocalConfig, ShellSource, decode_env, decode_env_var_format,
    decode_environment_vars, decode_exit_codes, decode_sources, error_count, existing_local_path,
    item, list_items, local_path,
};

/// Provisioner types kiln runs.
pub const PROVISIONER_TYPES: &[&str] = &[
    "shell",
    "file",
    "shell-local",
    "breakpoint",
    "ansible",
    "ansible-local",
];

/// The default `execute_command` of `shell`.
pub const DEFAULT_SHELL_EXECUTE_COMMAND: &str = "chmod +x {{.Path}}; {{.Vars}} {{.Path}}";

/// The default `execute_command` of `shell` when `use_env_var_file` is set.
pub const DEFAULT_SHELL_EXECUTE_COMMAND_ENV_FILE: &str =
    "chmod +x {{.Path}}; . {{.EnvVarFile}} && {{.Path}}";

/// The default `env_var_format` of `shell` when `use_env_var_file` is set (one `export` line
/// per variable in the sourced file).
pub const DEFAULT_ENV_FILE_VAR_FORMAT: &str = "export %s='%s'\n";

/// The default `remote_folder` of `shell`.
pub const DEFAULT_REMOTE_FOLDER: &str = "/tmp";

/// The default `start_retry_timeout` of `shell`.
pub const DEFAULT_START_RETRY_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// Context fields of `shell`'s `execute_command`, filled in on the machine being built:
/// `{{.Path}}` (the uploaded script), `{{.Vars}}` (formatted environment variables) and
/// `{{.EnvVarFile}}` (the uploaded variables file, with `use_env_var_file`).
const SHELL_EXECUTE_COMMAND_FIELDS: [(&str, Option<String>); 3] =
    [("Path", None), ("Vars", None), ("EnvVarFile", None)];

/// One provisioner of a recipe: what it does and the options every provisioner has.
#[derive(Debug, Clone, PartialEq)]
pub struct Provisioner {
    /// The type-specific configuration.
    pub kind: ProvisionerKind,
    /// `pause_before`: wait this long before running. `None` when unset or zero.
    pub pause_before: Option<Duration>,
    /// `max_retries`: run again up to this many times when it fails. Default 0.
    pub max_retries: u32,
    /// `timeout`: fail when one run takes longer. `None` when unset or zero (no limit).
    pub timeout: Option<Duration>,
    /// `kiln_cache` (kiln's own): `false` ends the step cache's prefix before this
    /// provisioner (one that must run every time: it fetches what changes upstream, say).
    /// Default true.
    pub kiln_cache: bool,
}

impl Provisioner {
    /// The provisioner's `type`, as written in recipes.
    pub fn type_name(&self) -> &'static str {
        self.kind.type_name()
    }

    /// Secrets held by this provisioner's configuration, for the log redactor. None today:
    /// provisioner options hold no credentials of their own (sensitive user variables used in
    /// them are registered by the recipe).
    pub fn secrets(&self) -> Vec<&Secret> {
        Vec::new()
    }
}

/// What a provisioner does.
#[derive(Debug, Clone, PartialEq)]
pub enum ProvisionerKind {
    /// `shell`: run scripts on the machine being built.
    Shell(ShellConfig),
    /// `file`: copy files to or from the machine being built.
    File(FileConfig),
    /// `shell-local`: run scripts on the machine running kiln.
    ShellLocal(ShellLocalConfig),
    /// `breakpoint`: pause until the user continues.
    Breakpoint(BreakpointConfig),
    /// `ansible`: the host's `ansible-playbook` against the VM.
    Ansible(AnsibleConfig),
    /// `ansible-local`: `ansible-playbook` run in the guest.
    AnsibleLocal(AnsibleLocalConfig),
}

impl ProvisionerKind {
    /// The `type` this configuration comes from.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Shell(_) => "shell",
            Self::File(_) => "file",
            Self::ShellLocal(_) => "shell-local",
            Self::Breakpoint(_) => "breakpoint",
            Self::Ansible(_) => "ansible",
            Self::AnsibleLocal(_) => "ansible-local",
        }
    }
}

/// Configuration of the `shell` provisioner.
#[derive(Debug, Clone, PartialEq)]
pub struct ShellConfig {
    /// What to run, in order: one [`ShellSource::Inline`] (`inline`) or one
    /// [`ShellSource::File`] per script (`script`, `scripts`). Never empty.
    pub sources: Vec<ShellSource>,
    /// `environment_vars`: `KEY=VALUE` pairs, split at the first `=`, in order.
    pub environment_vars: Vec<(String, String)>,
    /// `env`: more environment variables, by name.
    pub env: BTreeMap<String, String>,
    /// `env_var_format`: printf-style format with two `%s` (name, value) used to build
    /// `{{.Vars}}`. Default `%s='%s' `, or `export %s='%s'\n` with `use_env_var_file`.
    pub env_var_format: String,
    /// `execute_command`: the command that runs one uploaded script. Default
    /// `chmod +x {{.Path}}; {{.Vars}} {{.Path}}` (with `use_env_var_file`:
    /// `chmod +x {{.Path}}; . {{.EnvVarFile}} && {{.Path}}`). User variables are already
    /// rendered; `{{.Path}}`, `{{.Vars}}` and `{{.EnvVarFile}}` are kept verbatim.
    pub execute_command: String,
    /// `inline_shebang`: the interpreter line of the script made from `inline`. Default
    /// `/bin/sh -e`.
    pub inline_shebang: String,
    /// `remote_folder`: the directory scripts are uploaded to. Default `/tmp`.
    pub remote_folder: String,
    /// `remote_file`: the file name scripts are uploaded as. Default (`None`):
    /// `script_NNNN.sh` with a random number, as Packer does.
    pub remote_file: Option<String>,
    /// `remote_path`: the full upload path; overrides `remote_folder` and `remote_file`.
    pub remote_path: Option<String>,
    /// `expect_disconnect`: a lost connection (e.g. a reboot) does not fail the step.
    /// Default false.
    pub expect_disconnect: bool,
    /// `start_retry_timeout`: how long to keep retrying to start a script (e.g. while the
    /// machine reboots). Default 5 minutes.
    pub start_retry_timeout: Duration,
    /// `valid_exit_codes`: exit statuses that count as success. Default `[0]`.
    pub valid_exit_codes: Vec<i32>,
    /// `skip_clean`: leave uploaded scripts on the machine. Default false.
    pub skip_clean: bool,
    /// `binary`: upload scripts as they are, without converting CRLF line endings to LF.
    /// Default false.
    pub binary: bool,
    /// `use_env_var_file`: write the environment variables to a file that is uploaded and
    /// sourced, instead of putting them on the command line. Default false.
    pub use_env_var_file: bool,
    /// `pause_after`: wait this long after the scripts ran. `None` when unset or zero.
    pub pause_after: Option<Duration>,
}

impl ShellConfig {
    /// Where a script is uploaded on the machine: `remote_path`, else
    /// `remote_folder/remote_file`, else `remote_folder/script_<serial>.sh`.
    pub fn remote_script_path(&self, serial: u32) -> String {
        if let Some(path) = &self.remote_path {
            return path.clone();
        }
        let file = match &self.remote_file {
            Some(file) => file.clone(),
            None => format!("script_{serial}.sh"),
        };
        format!("{}/{file}", self.remote_folder.trim_end_matches('/'))
    }
}

/// Which way the `file` provisioner copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileDirection {
    /// From the machine running kiln to the machine being built (the default).
    Upload,
    /// From the machine being built to the machine running kiln.
    Download,
}

/// What the `file` provisioner copies.
#[derive(Debug, Clone, PartialEq)]
pub enum FileSource {
    /// `source` or `sources`. For uploads these are local paths, made absolute (relative ones
    /// are resolved from the working directory) with any trailing `/` kept (it means "the
    /// directory's contents"); for downloads, paths on the machine being built, as written.
    Paths(Vec<String>),
    /// `content`: text written to `destination` (upload only).
    Content(String),
}

/// Configuration of the `file` provisioner.
#[derive(Debug, Clone, PartialEq)]
pub struct FileConfig {
    /// What is copied: exactly one of `source`, `sources` or `content`.
    pub source: FileSource,
    /// `destination` (required): where it goes — a path on the machine being built for
    /// uploads; for downloads a local path, made absolute like upload sources. A trailing `/`
    /// means a directory.
    pub destination: String,
    /// `direction`: `upload` (default) or `download`.
    pub direction: FileDirection,
    /// `generated`: local sources are created during the build, so they are not checked now.
    /// Default false.
    pub generated: bool,
}

/// Configuration of the `breakpoint` provisioner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakpointConfig {
    /// `disable`: do not pause (the step only prints that it is disabled). Default false.
    pub disable: bool,
    /// `note`: shown while paused.
    pub note: Option<String>,
}

/// Decodes a provisioner of type `ty` (already checked to be in [`PROVISIONER_TYPES`]).
/// `type`, `only`, `except` and `override` were consumed by the caller. Returns `None` when
/// anything is wrong (every problem is reported through `f`).
pub(crate) fn decode(ty: &str, f: &mut Fields<'_, '_>) -> Option<Provisioner> {
    let before = error_count(f);
    let pause_before = f.duration("pause_before").filter(|d| !d.is_zero());
    let max_retries = f.uint("max_retries").unwrap_or(0);
    let max_retries = match u32::try_from(max_retries) {
        Ok(n) => n,
        Err(_) => {
            if let Some(m) = f.take("max_retries") {
                f.error_at(
                    m,
                    format!("{max_retries} retries is too many; use a small number such as 3"),
                );
            }
            0
        }
    };
    let timeout = f.duration("timeout").filter(|d| !d.is_zero());
    let kiln_cache = f.bool("kiln_cache").unwrap_or(true);
    let kind = match ty {
        "shell" => decode_shell(f).map(ProvisionerKind::Shell),
        "file" => decode_file(f).map(ProvisionerKind::File),
        "shell-local" => shell_local::decode(f).map(ProvisionerKind::ShellLocal),
        "breakpoint" => Some(ProvisionerKind::Breakpoint(BreakpointConfig {
            disable: f.bool("disable").unwrap_or(false),
            note: f.string("note").filter(|n| !n.is_empty()),
        })),
        "ansible" => super::ansible::decode_ansible(f).map(ProvisionerKind::Ansible),
        "ansible-local" => {
            super::ansible::decode_ansible_local(f).map(ProvisionerKind::AnsibleLocal)
        }
        other => {
            f.error_here(format!(
                "unknown provisioner type \"{other}\"; kiln runs: {}",
                PROVISIONER_TYPES.join(", ")
            ));
            None
        }
    };
    let kind = kind?;
    (error_count(f) == before).then_some(Provisioner {
        kind,
        pause_before,
        max_retries,
        timeout,
        kiln_cache,
    })
}

fn decode_shell(f: &mut Fields<'_, '_>) -> Option<ShellConfig> {
    let before = error_count(f);
    let sources = decode_sources(f, false);
    let environment_vars = decode_environment_vars(f);
    let env = decode_env(f);
    let use_env_var_file = f.bool("use_env_var_file").unwrap_or(false);
    let (default_format, default_command) = if use_env_var_file {
        (
            DEFAULT_ENV_FILE_VAR_FORMAT,
            DEFAULT_SHELL_EXECUTE_COMMAND_ENV_FILE,
        )
    } else {
        (
            shell_local::DEFAULT_ENV_VAR_FORMAT,
            DEFAULT_SHELL_EXECUTE_COMMAND,
        )
    };
    let env_var_format = decode_env_var_format(f, default_format);
    let execute_command = f
        .string_with("execute_command", &SHELL_EXECUTE_COMMAND_FIELDS)
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| default_command.to_string());
    let inline_shebang = f
        .string("inline_shebang")
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| shell_local::DEFAULT_INLINE_SHEBANG.to_string());
    let remote_folder = f
        .string("remote_folder")
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEFAULT_REMOTE_FOLDER.to_string());
    let remote_file = f.string("remote_file").filter(|s| !s.is_empty());
    let remote_path = f.string("remote_path").filter(|s| !s.is_empty());
    let expect_disconnect = f.bool("expect_disconnect").unwrap_or(false);
    let start_retry_timeout = f
        .duration("start_retry_timeout")
        .filter(|d| !d.is_zero())
        .unwrap_or(DEFAULT_START_RETRY_TIMEOUT);
    let valid_exit_codes = decode_exit_codes(f);
    let skip_clean = f.bool("skip_clean").unwrap_or(false);
    let binary = f.bool("binary").unwrap_or(false);
    let pause_after = f.duration("pause_after").filter(|d| !d.is_zero());

    let sources = sources?;
    (error_count(f) == before).then_some(ShellConfig {
        sources,
        environment_vars,
        env,
        env_var_format,
        execute_command,
        inline_shebang,
        remote_folder,
        remote_file,
        remote_path,
        expect_disconnect,
        start_retry_timeout,
        valid_exit_codes,
        skip_clean,
        binary,
        use_env_var_file,
        pause_after,
    })
}

fn decode_file(f: &mut Fields<'_, '_>) -> Option<FileConfig> {
    let before = error_count(f);
    let direction = match f.one_of("direction", &["upload", "download"]).as_deref() {
        Some("download") => FileDirection::Download,
        _ => FileDirection::Upload,
    };
    let generated = f.bool("generated").unwrap_or(false);
    // Packer treats an empty `source` and an empty `sources` as unset; `content` may be empty
    // (an empty file).
    let source = item(f, "source").filter(|s| !s.value.is_empty());
    let sources = list_items(f, "sources").filter(|s| !s.is_empty());
    let content_given = f.has("content");
    let content = f.string("content");
    let destination = f.string("destination").filter(|d| !d.is_empty());

    let mut given: Vec<&'static str> = Vec::new();
    if source.is_some() {
        given.push("source");
    }
    if sources.is_some() {
        given.push("sources");
    }
    if content_given {
        given.push("content");
    }
    let mut ok = true;
    match given.as_slice() {
        [] => {
            ok = false;
            f.error_here(
                "give one of `source` (a path), `sources` (several paths) or `content` (text to \
                 write to `destination`)",
            );
        }
        [_] => {}
        [first, second, ..] => {
            ok = false;
            let (first, second) = (*first, *second);
            if let Some(m) = f.take(second) {
                f.error_at(
                    m,
                    format!(
                        "give only one of `source`, `sources` or `content`: this step sets both \
                         `{first}` and `{second}`"
                    ),
                );
            }
        }
    }
    if content_given
        && direction == FileDirection::Download
        && let Some(m) = f.take("content")
    {
        ok = false;
        f.error_at(
            m,
            "`content` can only be uploaded: remove `\"direction\": \"download\"` or name the \
             file to download with `source`",
        );
    }
    let Some(destination) = destination else {
        f.error_here(
            "`destination` is required: where the file goes (a path on the machine being built \
             for uploads, a local path for downloads)",
        );
        return None;
    };
    if !ok {
        return None;
    }

    let items: Vec<_> = source
        .into_iter()
        .chain(sources.into_iter().flatten())
        .collect();
    if items.len() > 1
        && !destination.ends_with('/')
        && let Some(m) = f.take("destination")
    {
        f.warn_at(
            m,
            "with several sources, `destination` should be a directory ending in `/`; otherwise \
             each file overwrites the previous one",
        );
    }
    let pwd = f.scope().run.pwd.as_str();
    let (source, destination) = match (content, direction) {
        (Some(text), _) => (FileSource::Content(text), destination),
        (None, FileDirection::Download) => (
            FileSource::Paths(items.into_iter().map(|i| i.value).collect()),
            local_path(pwd, &destination),
        ),
        (None, FileDirection::Upload) if generated => (
            FileSource::Paths(items.iter().map(|i| local_path(pwd, &i.value)).collect()),
            destination,
        ),
        (None, FileDirection::Upload) => {
            let mut paths = Vec::with_capacity(items.len());
            for item in &items {
                if let Some(path) = existing_local_path(f, item, "source", true) {
                    paths.push(path);
                }
            }
            (FileSource::Paths(paths), destination)
        }
    };
    (error_count(f) == before).then_some(FileConfig {
        source,
        destination,
        direction,
        generated,
    })
}

impl ProvisionerKind {
    /// Local files this provisioner reads before the build starts: script files of `shell`
    /// and `shell-local`.
    pub fn local_scripts(&self) -> Vec<&PathBuf> {
        let sources = match self {
            Self::Shell(c) => &c.sources,
            Self::ShellLocal(c) => &c.sources,
            Self::File(_) | Self::Breakpoint(_) | Self::Ansible(_) | Self::AnsibleLocal(_) => {
                return Vec::new();
            }
        };
        sources
            .iter()
            .filter_map(|s| match s {
                ShellSource::File(p) => Some(p),
                ShellSource::Inline(_) => None,
            })
            .collect()
    }
}

/// Context fields rendered only when a command runs (kept verbatim when build values are
/// filled in before).
const PER_RUN_FIELDS: [(&str, Option<String>); 5] = [
    ("Path", None),
    ("Vars", None),
    ("EnvVarFile", None),
    ("Script", None),
    ("Command", None),
];

impl ProvisionerKind {
    /// This provisioner with the build's values (`{{ build `Port` }}`, …) filled in wherever
    /// they were kept for the run: commands, inline lines, environment, file paths, Ansible's
    /// arguments. `values` are `(interp::build_field(name), value)` pairs.
    pub fn with_build_values(
        &self,
        values: &[(String, String)],
    ) -> Result<ProvisionerKind, String> {
        let mut fields: Vec<(&str, Option<String>)> = values
            .iter()
            .map(|(n, v)| (n.as_str(), Some(v.clone())))
            .collect();
        fields.extend(PER_RUN_FIELDS.iter().cloned());
        let render = |s: &str| -> Result<String, String> {
            if !s.contains("{{") {
                return Ok(s.to_string());
            }
            super::interp::render_fields(s, &fields).map_err(|e| e.to_string())
        };
        let render_all =
            |v: &[String]| -> Result<Vec<String>, String> { v.iter().map(|s| render(s)).collect() };
        let render_pairs = |v: &[(String, String)]| -> Result<Vec<(String, String)>, String> {
            v.iter().map(|(k, x)| Ok((k.clone(), render(x)?))).collect()
        };
        let render_sources = |v: &[ShellSource]| -> Result<Vec<ShellSource>, String> {
            v.iter()
                .map(|s| match s {
                    ShellSource::Inline(lines) => Ok(ShellSource::Inline(render_all(lines)?)),
                    other => Ok(other.clone()),
                })
                .collect()
        };
        let mut out = self.clone();
        match &mut out {
            Self::Shell(c) => {
                c.sources = render_sources(&c.sources)?;
                c.environment_vars = render_pairs(&c.environment_vars)?;
                c.execute_command = render(&c.execute_command)?;
                for v in c.env.values_mut() {
                    *v = render(v)?;
                }
            }
            Self::ShellLocal(c) => {
                c.sources = render_sources(&c.sources)?;
                c.environment_vars = render_pairs(&c.environment_vars)?;
                c.execute_command = render_all(&c.execute_command)?;
                for v in c.env.values_mut() {
                    *v = render(v)?;
                }
            }
            Self::File(c) => {
                c.destination = render(&c.destination)?;
                c.source = match &c.source {
                    FileSource::Paths(p) => FileSource::Paths(render_all(p)?),
                    FileSource::Content(t) => FileSource::Content(render(t)?),
                };
            }
            Self::Ansible(c) => {
                c.extra_arguments = render_all(&c.extra_arguments)?;
                c.ansible_env_vars = render_pairs(&c.ansible_env_vars)?;
                c.ansible_ssh_extra_args = render_all(&c.ansible_ssh_extra_args)?;
            }
            Self::AnsibleLocal(c) => {
                c.extra_arguments = render_all(&c.extra_arguments)?;
                c.command = render(&c.command)?;
            }
            Self::Breakpoint(c) => {
                if let Some(note) = &c.note {
                    c.note = Some(render(note)?);
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::json;

    use super::*;
    use crate::recipe::diag::Diagnostics;
    use crate::recipe::shell_local::testkit::{errors, run, warnings};

    fn prov(ty: &str, obj: serde_json::Value, pwd: &Path) -> (Option<Provisioner>, Diagnostics) {
        run(
            obj,
            pwd,
            "provisioners[0]",
            &format!("provisioner {ty}"),
            |f| decode(ty, f),
        )
    }

    fn shell(p: Option<Provisioner>) -> ShellConfig {
        match p.expect("decoded").kind {
            ProvisionerKind::Shell(c) => c,
            other => panic!("not shell: {other:?}"),
        }
    }

    fn file(p: Option<Provisioner>) -> FileConfig {
        match p.expect("decoded").kind {
            ProvisionerKind::File(c) => c,
            other => panic!("not file: {other:?}"),
        }
    }

    #[test]
    fn shell_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let (p, diags) = prov("shell", json!({"inline": ["apt-get update"]}), dir.path());
        assert!(diags.is_empty(), "{diags}");
        let p = p.unwrap();
        assert_eq!((p.pause_before, p.max_retries, p.timeout), (None, 0, None));
        assert_eq!(p.type_name(), "shell");
        assert!(p.secrets().is_empty());
        let c = shell(Some(p));
        assert_eq!(
            c.sources,
            vec![ShellSource::Inline(vec!["apt-get update".into()])]
        );
        assert_eq!(c.execute_command, "chmod +x {{.Path}}; {{.Vars}} {{.Path}}");
        assert_eq!(c.env_var_format, "%s='%s' ");
        assert_eq!(c.inline_shebang, "/bin/sh -e");
        assert_eq!(c.remote_folder, "/tmp");
        assert_eq!((c.remote_file.clone(), c.remote_path.clone()), (None, None));
        assert_eq!(c.remote_script_path(42), "/tmp/script_42.sh");
        assert_eq!(c.start_retry_timeout, Duration::from_secs(300));
        assert_eq!(c.valid_exit_codes, [0]);
        assert!(!c.expect_disconnect && !c.skip_clean && !c.binary && !c.use_env_var_file);
        assert_eq!(c.pause_after, None);
    }

    #[test]
    fn shell_options_are_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("setup.sh"), "true").unwrap();
        let (p, diags) = prov(
            "shell",
            json!({
                "script": "setup.sh",
                "pause_before": "10s",
                "max_retries": "3",
                "timeout": "5m",
                "environment_vars": ["DEBIAN_FRONTEND=noninteractive"],
                "env": {"LANG": "C"},
                "use_env_var_file": true,
                "execute_command": "echo 'p' | sudo -S sh -c '{{ .Vars }} {{ .Path }}'",
                "inline_shebang": "/bin/bash -e",
                "remote_folder": "/var/tmp/",
                "remote_file": "kiln.sh",
                "expect_disconnect": true,
                "start_retry_timeout": "15m",
                "valid_exit_codes": [0, 2300218],
                "skip_clean": true,
                "binary": "true",
                "pause_after": "30s"
            }),
            dir.path(),
        );
        assert!(diags.is_empty(), "{diags}");
        let p = p.unwrap();
        assert_eq!(p.pause_before, Some(Duration::from_secs(10)));
        assert_eq!(p.max_retries, 3);
        assert_eq!(p.timeout, Some(Duration::from_secs(300)));
        assert_eq!(p.kind.local_scripts(), vec![&dir.path().join("setup.sh")]);
        let c = shell(Some(p));
        assert_eq!(
            c.sources,
            vec![ShellSource::File(dir.path().join("setup.sh"))]
        );
        assert_eq!(
            c.environment_vars,
            vec![("DEBIAN_FRONTEND".into(), "noninteractive".into())]
        );
        assert_eq!(c.env.len(), 1);
        assert!(c.use_env_var_file);
        assert_eq!(c.env_var_format, "export %s='%s'\n");
        assert_eq!(
            c.execute_command,
            "echo 'p' | sudo -S sh -c '{{ .Vars }} {{ .Path }}'"
        );
        assert_eq!(c.inline_shebang, "/bin/bash -e");
        assert_eq!(c.remote_script_path(1), "/var/tmp/kiln.sh");
        assert!(c.expect_disconnect && c.skip_clean && c.binary);
        assert_eq!(c.start_retry_timeout, Duration::from_secs(900));
        assert_eq!(c.valid_exit_codes, [0, 2300218]);
        assert_eq!(c.pause_after, Some(Duration::from_secs(30)));
    }

    #[test]
    fn env_var_file_changes_the_default_command() {
        let dir = tempfile::tempdir().unwrap();
        let (p, _) = prov(
            "shell",
            json!({"inline": ["x"], "use_env_var_file": true, "remote_path": "/root/s.sh"}),
            dir.path(),
        );
        let c = shell(p);
        assert_eq!(
            c.execute_command,
            "chmod +x {{.Path}}; . {{.EnvVarFile}} && {{.Path}}"
        );
        assert_eq!(c.remote_script_path(7), "/root/s.sh");
    }

    #[test]
    fn shell_needs_exactly_one_source() {
        let dir = tempfile::tempdir().unwrap();
        let (p, diags) = prov("shell", json!({"remote_folder": "/x"}), dir.path());
        assert!(p.is_none());
        let e = errors(&diags);
        assert_eq!(
            e,
            [
                "provisioners[0]: give one of `inline` (commands to run), `script` (a script file) or `scripts` (several script files)"
            ]
        );

        std::fs::write(dir.path().join("a.sh"), "").unwrap();
        let (p, diags) = prov(
            "shell",
            json!({"inline": ["x"], "script": "a.sh", "scripts": ["a.sh"]}),
            dir.path(),
        );
        assert!(p.is_none());
        let e = errors(&diags);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with(
                "provisioners[0].script: give only one of `inline`, `script` or `scripts`"
            ),
            "{e:?}"
        );
        // `command` belongs to shell-local only.
        let (_, diags) = prov("shell", json!({"command": "x"}), dir.path());
        assert!(
            errors(&diags)
                .iter()
                .any(|e| e.contains("unknown option `command`"))
        );
    }

    #[test]
    fn missing_scripts_are_reported_each() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ok.sh"), "").unwrap();
        let (p, diags) = prov(
            "shell",
            json!({"scripts": ["ok.sh", "missing.sh", "/nowhere/abs.sh"]}),
            dir.path(),
        );
        assert!(p.is_none());
        let all: Vec<_> = diags.errors().collect();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].path, "provisioners[0].scripts[1]");
        assert_eq!((all[0].line, all[0].col), (Some(2), Some(15)));
        assert!(all[0].message.contains("script file `missing.sh` not found (relative paths are resolved from the working directory"));
        assert!(
            all[0]
                .message
                .contains("use {{template_dir}}/missing.sh to point next to the recipe")
        );
        assert_eq!(all[1].message, "script file `/nowhere/abs.sh` not found");
    }

    #[test]
    fn bad_common_options() {
        let dir = tempfile::tempdir().unwrap();
        let (p, diags) = prov(
            "shell",
            json!({"inline": ["x"], "pause_before": 10, "max_retries": -1, "timeout": "soon", "start_retry_timeout": "1d"}),
            dir.path(),
        );
        assert!(p.is_none());
        let e = errors(&diags);
        assert_eq!(e.len(), 4, "{e:?}");
        assert!(e[0].contains("pause_before: expected a duration like \"20m\", got the number 10"));
        assert!(e[1].contains("max_retries: expected a whole number"));
        assert!(e[2].contains("timeout: expected a duration"));
        assert!(e[3].contains("unknown unit `d`"));
    }

    #[test]
    fn file_upload() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("files")).unwrap();
        std::fs::write(dir.path().join("motd"), "hi").unwrap();
        let (p, diags) = prov(
            "file",
            json!({"source": "files/", "destination": "/etc/kiln/"}),
            dir.path(),
        );
        assert!(diags.is_empty(), "{diags}");
        let c = file(p);
        assert_eq!(
            c.source,
            FileSource::Paths(vec![format!("{}/files/", dir.path().display())])
        );
        assert_eq!(c.destination, "/etc/kiln/");
        assert_eq!(c.direction, FileDirection::Upload);
        assert!(!c.generated);

        let (p, diags) = prov(
            "file",
            json!({"sources": ["motd", "files"], "destination": "/etc/motd"}),
            dir.path(),
        );
        assert!(
            file(p).source
                == FileSource::Paths(vec![
                    format!("{}/motd", dir.path().display()),
                    format!("{}/files", dir.path().display()),
                ])
        );
        assert!(warnings(&diags)[0].contains("directory ending in `/`"));
    }

    #[test]
    fn file_sources_must_exist_unless_generated() {
        let dir = tempfile::tempdir().unwrap();
        let (p, diags) = prov(
            "file",
            json!({"source": "out/app.tar", "destination": "/tmp/app.tar"}),
            dir.path(),
        );
        assert!(p.is_none());
        assert!(
            errors(&diags)[0].starts_with(
                "provisioners[0].source: source `out/app.tar` not found (relative paths"
            )
        );

        let (p, diags) = prov(
            "file",
            json!({"source": "out/app.tar", "destination": "/tmp/app.tar", "generated": true}),
            dir.path(),
        );
        assert!(diags.is_empty(), "{diags}");
        assert!(file(p).generated);
    }

    #[test]
    fn file_download_and_content() {
        let dir = tempfile::tempdir().unwrap();
        let (p, diags) = prov(
            "file",
            json!({"source": "/var/log/cloud-init.log", "destination": "logs/", "direction": "download"}),
            dir.path(),
        );
        assert!(diags.is_empty(), "{diags}");
        let c = file(p);
        assert_eq!(c.direction, FileDirection::Download);
        assert_eq!(
            c.source,
            FileSource::Paths(vec!["/var/log/cloud-init.log".into()])
        );
        assert_eq!(c.destination, format!("{}/logs/", dir.path().display()));

        let (p, diags) = prov(
            "file",
            json!({"content": "", "destination": "/etc/cloud/cloud-init.disabled"}),
            dir.path(),
        );
        assert!(diags.is_empty(), "{diags}");
        assert_eq!(file(p).source, FileSource::Content(String::new()));

        let (p, diags) = prov(
            "file",
            json!({"content": "x", "destination": "y", "direction": "download"}),
            dir.path(),
        );
        assert!(p.is_none());
        assert!(errors(&diags)[0].contains("`content` can only be uploaded"));
    }

    #[test]
    fn file_errors() {
        let dir = tempfile::tempdir().unwrap();
        let (p, diags) = prov("file", json!({"destination": "/x"}), dir.path());
        assert!(p.is_none());
        assert!(errors(&diags)[0].contains("give one of `source`"));

        let (p, diags) = prov("file", json!({"content": "x"}), dir.path());
        assert!(p.is_none());
        assert!(errors(&diags)[0].contains("`destination` is required"));

        let (p, diags) = prov(
            "file",
            json!({"content": "x", "source": "/etc/hosts", "destination": "/x"}),
            dir.path(),
        );
        assert!(p.is_none());
        assert!(errors(&diags)[0].contains("this step sets both `source` and `content`"));

        let (p, diags) = prov(
            "file",
            json!({"content": "x", "destination": "/x", "direction": "uplaod"}),
            dir.path(),
        );
        assert!(p.is_none());
        let e = errors(&diags);
        assert_eq!(
            e,
            [
                "provisioners[0].direction: \"uplaod\" is not a valid value; use one of: upload, download (did you mean \"upload\"?)"
            ]
        );
    }

    #[test]
    fn breakpoint_and_shell_local() {
        let dir = tempfile::tempdir().unwrap();
        let (p, diags) = prov(
            "breakpoint",
            json!({"note": "check /etc", "disable": false}),
            dir.path(),
        );
        assert!(diags.is_empty(), "{diags}");
        assert_eq!(
            p.unwrap().kind,
            ProvisionerKind::Breakpoint(BreakpointConfig {
                disable: false,
                note: Some("check /etc".into())
            })
        );

        let (p, diags) = prov(
            "shell-local",
            json!({"inline": ["echo done"], "timeout": "1m"}),
            dir.path(),
        );
        assert!(diags.is_empty(), "{diags}");
        let p = p.unwrap();
        assert_eq!(p.timeout, Some(Duration::from_secs(60)));
        assert_eq!(p.type_name(), "shell-local");
        assert!(matches!(p.kind, ProvisionerKind::ShellLocal(_)));
    }

    #[test]
    fn unknown_options_get_suggestions() {
        let dir = tempfile::tempdir().unwrap();
        let (p, diags) = prov(
            "shell",
            json!({"inline": ["x"], "enviroment_vars": ["A=1"], "_comment": "ok"}),
            dir.path(),
        );
        // The decoder succeeds; `finish` reports the stray key.
        assert!(p.is_some());
        let e = errors(&diags);
        assert_eq!(
            e,
            [
                "provisioners[0].enviroment_vars: unknown option `enviroment_vars` for provisioner shell (did you mean `environment_vars`?)"
            ]
        );
    }
}
