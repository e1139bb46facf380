//! What the user chooses for one build beyond the recipe: the SSH key kiln logs in with and
//! the Exoscale credentials `exoscale-import` uses. Both front ends take them (the window's
//! build form; `kiln build --ssh-key NAME --profile NAME`), check them before anything starts
//! (an unknown name, or a key the recipe's own cloud-init seed does not authorise) and apply
//! them to the build's configuration, so the engine runs the build as chosen.

use std::path::{Path, PathBuf};

use crate::qemu::cmdline::{recipe_seed, user_supplies_drives};
use crate::recipe::postprocessor::PostProcessorKind;
use crate::recipe::secret::Secret;
use crate::recipe::template::Build;
use crate::secrets::config::Config;
use crate::ssh::KeyPair;

/// The SSH key of a build.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum KeyChoice {
    /// What the recipe says: its `ssh_private_key_file` or `ssh_private_key_keyring`, else a
    /// new temporary key.
    #[default]
    Recipe,
    /// A new temporary key for this build (kiln's default).
    Temporary,
    /// A key of the OS keyring, by name.
    Keyring(String),
    /// A private key file.
    File(PathBuf),
    /// A key of the ssh-agent at `SSH_AUTH_SOCK`, by fingerprint (`SHA256:…`); `None`: every
    /// key it holds (Packer's `ssh_agent_auth`). The agent signs; kiln never holds the key.
    Agent(Option<String>),
}

/// The Exoscale credentials of a build.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CredentialsChoice {
    /// What the recipe says (its `api_key`/`api_secret`, else the environment, else its
    /// `profile`, else the default profile).
    #[default]
    Recipe,
    /// `EXOSCALE_API_KEY` and `EXOSCALE_API_SECRET`.
    Environment,
    /// A keyring profile, by name (before the environment: the user chose it).
    Profile(String),
}

/// The choices of one build (the window remembers them per recipe: names and paths only,
/// never a secret).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct BuildChoices {
    /// The SSH key.
    pub ssh_key: KeyChoice,
    /// The Exoscale credentials.
    pub credentials: CredentialsChoice,
    /// Resume from the step cache and save the VM after each step (`kiln build --cache`).
    pub step_cache: bool,
}

impl KeyChoice {
    /// Reads `--ssh-key`: `temporary` (a new key), `agent` (the ssh-agent's keys),
    /// `agent:SHA256:…` or `SHA256:…` (one agent key), a name the keyring holds, else a
    /// private key file; anything else is refused, listing the keyring's keys.
    pub fn parse(text: &str, config: &Config) -> Result<KeyChoice, String> {
        if text == "temporary" {
            return Ok(KeyChoice::Temporary);
        }
        if text == "agent" {
            return Ok(KeyChoice::Agent(None));
        }
        if let Some(fingerprint) = text
            .strip_prefix("agent:")
            .or_else(|| text.starts_with("SHA256:").then_some(text))
        {
            if !fingerprint.starts_with("SHA256:") || fingerprint.len() < 8 {
                return Err(format!(
                    "--ssh-key {text}: an agent key is named by its fingerprint, `agent:SHA256:…` as `kiln keys list` shows it"
                ));
            }
            return Ok(KeyChoice::Agent(Some(fingerprint.to_string())));
        }
        if config.keys.contains_key(text) {
            return Ok(KeyChoice::Keyring(text.to_string()));
        }
        let path = expand_home(text);
        if path.is_file() {
            return Ok(KeyChoice::File(path));
        }
        Err(format!(
            "--ssh-key {text}: no key of that name in the OS keyring (keys: {}) and no such file; give a keyring key's name, a private key file, `agent` (the ssh-agent's keys) or `temporary`",
            config.key_names()
        ))
    }

    /// In words, for the form and the log.
    pub fn describe(&self) -> String {
        match self {
            KeyChoice::Recipe => "as the recipe says".into(),
            KeyChoice::Temporary => "a new temporary key for this build".into(),
            KeyChoice::Keyring(name) => format!("keyring key `{name}`"),
            KeyChoice::File(path) => format!("key file {}", path.display()),
            KeyChoice::Agent(Some(fingerprint)) => format!("ssh-agent key {fingerprint}"),
            KeyChoice::Agent(None) => "the ssh-agent's keys".into(),
        }
    }
}

impl CredentialsChoice {
    /// Reads `--profile`: a profile the config names; else refused, listing them.
    pub fn parse_profile(name: &str, config: &Config) -> Result<CredentialsChoice, String> {
        if config.profiles.contains_key(name) {
            Ok(CredentialsChoice::Profile(name.to_string()))
        } else {
            Err(format!(
                "--profile {name}: no such credentials profile (profiles: {}); add it in the Credentials place or with `kiln credentials set {name}`",
                config.profile_names()
            ))
        }
    }

    /// In words, for the form and the log.
    pub fn describe(&self) -> String {
        match self {
            CredentialsChoice::Recipe => "as the recipe says".into(),
            CredentialsChoice::Environment => "EXOSCALE_API_KEY and EXOSCALE_API_SECRET".into(),
            CredentialsChoice::Profile(name) => format!("profile `{name}`"),
        }
    }
}

/// `~/x` → `$HOME/x`.
fn expand_home(text: &str) -> PathBuf {
    match (text.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        _ => PathBuf::from(text),
    }
}

impl BuildChoices {
    /// The build as chosen: the key and the credentials written into its configuration.
    pub fn apply(&self, build: &mut Build) {
        let ssh = &mut build.builder.ssh;
        if self.ssh_key != KeyChoice::Recipe {
            ssh.private_key_file = None;
            ssh.private_key_keyring = None;
            ssh.agent_auth = false;
            ssh.agent_key = None;
        }
        match &self.ssh_key {
            KeyChoice::Recipe | KeyChoice::Temporary => {}
            KeyChoice::Keyring(name) => ssh.private_key_keyring = Some(name.clone()),
            KeyChoice::File(path) => ssh.private_key_file = Some(path.display().to_string()),
            KeyChoice::Agent(fingerprint) => {
                ssh.agent_auth = true;
                ssh.agent_key = fingerprint.clone();
            }
        }
        if self.credentials == CredentialsChoice::Recipe {
            return;
        }
        for pp in build.post_processors.iter_mut().flatten() {
            if let PostProcessorKind::ExoscaleImport(config) = &mut pp.kind {
                config.api_key.clear();
                config.api_secret = Secret::new(String::new());
                match &self.credentials {
                    CredentialsChoice::Profile(name) => {
                        config.profile = Some(name.clone());
                        config.profile_first = true;
                    }
                    _ => {
                        config.profile = None;
                        config.profile_first = false;
                    }
                }
            }
        }
    }
}

/// Whether `build` publishes to Exoscale (has an `exoscale-import` post-processor).
pub fn publishes(build: &Build) -> bool {
    build.exoscale_imports().next().is_some()
}

/// The `ssh-… AAAA…` public keys in `text` (cloud-config's `ssh_authorized_keys`, an
/// `authorized_keys` file), as `(algorithm, base64)` pairs.
fn public_keys_in(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let words: Vec<&str> = text
        .split(|c: char| {
            c.is_whitespace() || c == '"' || c == '\'' || c == ',' || c == '[' || c == ']'
        })
        .filter(|w| !w.is_empty())
        .collect();
    for pair in words.windows(2) {
        let (algorithm, blob) = (pair[0], pair[1]);
        if (algorithm.starts_with("ssh-") || algorithm.starts_with("ecdsa-sha2-"))
            && blob.starts_with("AAAA")
        {
            out.push((algorithm.to_string(), blob.to_string()));
        }
    }
    out
}

/// The texts of the recipe's own cloud-init data kiln can read: `http_content`,
/// `cd_content`, `floppy_content`, and `user-data` files in `http_directory` (relative to
/// `pwd`).
fn own_seed_texts(build: &Build, pwd: &Path) -> Vec<(String, String)> {
    let config = &build.builder;
    let mut out: Vec<(String, String)> = Vec::new();
    for (what, map) in [
        ("http_content", &config.http_content),
        ("cd_content", &config.cd_content),
        ("floppy_content", &config.floppy_content),
    ] {
        for (path, text) in map {
            out.push((format!("{what} {path}"), text.clone()));
        }
    }
    if let Some(dir) = &config.http_directory {
        let file = pwd.join(dir).join("user-data");
        if let Ok(text) = std::fs::read_to_string(&file) {
            out.push((file.display().to_string(), text));
        }
    }
    out
}

/// What stops the chosen key from logging in, found before the build starts: a recipe that
/// brings its own cloud-init data authorises the keys written in it, so another key would
/// be refused and the build would wait out `ssh_timeout` at Connect. `None` when the key
/// will do (kiln's own seed authorises any key; `{{ .SSHPublicKey }}` offers the chosen one)
/// or when kiln cannot tell (a `seed.img` made beforehand).
pub fn key_problem(build: &Build, pwd: &Path) -> Option<String> {
    key_problem_with(build, pwd, |name| {
        Config::load(&crate::secrets::config::default_path())
            .ok()
            .and_then(|c| c.keys.get(name).map(|k| k.public_key.clone()))
    })
}

/// [`key_problem`] with the public half of a keyring key found by `keyring_public` (the
/// window asks its own keyring listing); a keyring key it does not know is not judged.
pub fn key_problem_with(
    build: &Build,
    pwd: &Path,
    keyring_public: impl Fn(&str) -> Option<String>,
) -> Option<String> {
    let config = &build.builder;
    recipe_seed(config)?;
    if user_supplies_drives(config) {
        return None;
    }
    let texts = own_seed_texts(build, pwd);
    if texts.iter().any(|(_, t)| t.contains("SSHPublicKey")) {
        return None;
    }
    let authorised: Vec<(String, String, String)> = texts
        .iter()
        .flat_map(|(from, t)| {
            public_keys_in(t)
                .into_iter()
                .map(move |(a, b)| (from.clone(), a, b))
        })
        .collect();
    if authorised.is_empty() {
        return None;
    }
    let places: Vec<String> = {
        let mut p: Vec<String> = authorised.iter().map(|(f, _, _)| f.clone()).collect();
        p.dedup();
        p
    };
    if config.ssh.agent_auth {
        // Which agent keys will sign is only known by asking the agent; one chosen by
        // fingerprint is judged here.
        let wanted = config.ssh.agent_key.as_ref()?;
        let there = authorised.iter().any(|(_, a, b)| {
            crate::ssh::keys::parse_public_key(&format!("{a} {b}"))
                .is_ok_and(|k| crate::ssh::keys::fingerprint(&k) == *wanted)
        });
        return (!there).then(|| format!(
            "the recipe's own cloud-init data ({}) does not authorise the chosen ssh-agent key ({wanted}): SSH would refuse it and the build would wait out ssh_timeout; choose the key whose public half is there",
            places.join(", ")
        ));
    }
    let chosen = match (
        &config.ssh.private_key_file,
        &config.ssh.private_key_keyring,
    ) {
        (Some(file), _) => KeyPair::from_file(Path::new(file))
            .ok()
            .map(|k| k.public_key_openssh()),
        (None, Some(name)) => Some(keyring_public(name)?),
        (None, None) => None,
    };
    match chosen {
        None => Some(format!(
            "the recipe's own cloud-init data ({}) authorises its own keys, not a new temporary one: choose the key whose public half is there (or put {{{{ .SSHPublicKey }}}} into its user-data)",
            places.join(", ")
        )),
        Some(line) => {
            let blob = line
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_string();
            if authorised.iter().any(|(_, _, b)| *b == blob) {
                None
            } else {
                Some(format!(
                    "the recipe's own cloud-init data ({}) does not authorise the chosen key ({}): SSH would refuse it and the build would wait out ssh_timeout; choose the key whose public half is there",
                    places.join(", "),
                    line.split_whitespace()
                        .take(2)
                        .collect::<Vec<_>>()
                        .join(" ")
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_keys_are_found_in_cloud_config() {
        let text = "#cloud-config\nssh_authorized_keys:\n  - ssh-ed25519 AAAAC3Nza1 me@x\n  - \"ssh-rsa AAAAB3Nz2 you\"\nusers: [{name: a, ssh_authorized_keys: ['ecdsa-sha2-nistp256 AAAAE2V3']}]\n";
        let keys = public_keys_in(text);
        let blobs: Vec<&str> = keys.iter().map(|(_, b)| b.as_str()).collect();
        assert_eq!(blobs, ["AAAAC3Nza1", "AAAAB3Nz2", "AAAAE2V3"]);
    }

    #[test]
    fn key_choices_are_read_from_the_command_line() {
        let mut config = Config::default();
        config.keys.insert(
            "deploy".into(),
            crate::secrets::config::KeyConfig {
                fingerprint: "SHA256:x".into(),
                public_key: "ssh-ed25519 AAAA deploy".into(),
            },
        );
        assert_eq!(
            KeyChoice::parse("deploy", &config),
            Ok(KeyChoice::Keyring("deploy".into()))
        );
        assert_eq!(
            KeyChoice::parse("temporary", &config),
            Ok(KeyChoice::Temporary)
        );
        let e = KeyChoice::parse("deplyo", &config).unwrap_err();
        assert!(e.contains("(keys: deploy)"), "{e}");
        let e = CredentialsChoice::parse_profile("work", &config).unwrap_err();
        assert!(
            e.starts_with("--profile work: no such credentials profile"),
            "{e}"
        );
    }

    fn build_of(builder: serde_json::Value) -> Build {
        let mut builder_object = serde_json::json!({
            "type": "qemu", "iso_url": "x.qcow2", "iso_checksum": "none",
            "disk_image": true, "ssh_username": "debian"
        });
        if let (Some(b), Some(extra)) = (builder_object.as_object_mut(), builder.as_object()) {
            b.extend(extra.clone());
        }
        let text = serde_json::json!({ "builders": [builder_object] }).to_string();
        crate::recipe::template::load_str("r.json", &text, Path::new("/tmp"), &Default::default())
            .unwrap_or_else(|d| panic!("{d}"))
            .builds
            .remove(0)
    }

    #[test]
    fn agent_keys_are_read_from_the_command_line() {
        let config = Config::default();
        assert_eq!(
            KeyChoice::parse("agent", &config),
            Ok(KeyChoice::Agent(None))
        );
        assert_eq!(
            KeyChoice::parse("agent:SHA256:abcdefgh", &config),
            Ok(KeyChoice::Agent(Some("SHA256:abcdefgh".into())))
        );
        assert_eq!(
            KeyChoice::parse("SHA256:abcdefgh", &config),
            Ok(KeyChoice::Agent(Some("SHA256:abcdefgh".into())))
        );
        let e = KeyChoice::parse("agent:deploy", &config).unwrap_err();
        assert!(e.contains("agent:SHA256:"), "{e}");
    }

    #[test]
    fn choosing_an_agent_key_overrides_the_recipes_key_and_another_choice_undoes_it() {
        let mut build = build_of(serde_json::json!({"ssh_private_key_file": "/tmp/id"}));
        let agent = BuildChoices {
            ssh_key: KeyChoice::Agent(Some("SHA256:abc".into())),
            ..Default::default()
        };
        agent.apply(&mut build);
        let ssh = &build.builder.ssh;
        assert!(ssh.agent_auth);
        assert_eq!(ssh.agent_key.as_deref(), Some("SHA256:abc"));
        assert_eq!(ssh.private_key_file, None);

        let mut build = build_of(serde_json::json!({"ssh_agent_auth": true}));
        assert!(
            build.builder.ssh.agent_auth,
            "the recipe's ssh_agent_auth is read"
        );
        BuildChoices {
            ssh_key: KeyChoice::Keyring("deploy".into()),
            ..Default::default()
        }
        .apply(&mut build);
        let ssh = &build.builder.ssh;
        assert!(
            !ssh.agent_auth,
            "the chosen keyring key wins over the recipe's agent"
        );
        assert_eq!(ssh.private_key_keyring.as_deref(), Some("deploy"));

        let mut build = build_of(serde_json::json!({"ssh_agent_auth": true}));
        BuildChoices::default().apply(&mut build);
        assert!(
            build.builder.ssh.agent_auth,
            "\"as the recipe says\" keeps it"
        );
    }

    #[test]
    fn an_agent_key_the_recipes_own_seed_does_not_authorise_is_a_problem_before_the_build() {
        let listed = crate::ssh::KeyPair::generate().unwrap();
        let other = crate::ssh::KeyPair::generate().unwrap();
        let user_data = format!(
            "#cloud-config\nssh_authorized_keys:\n  - {}\n",
            listed.public_key_openssh()
        );
        let mut build = build_of(serde_json::json!({
            "http_content": {"/user-data": user_data, "/meta-data": ""},
            "qemuargs": [["-smbios", "type=1,serial=ds=nocloud-net;s=http://{{ .HTTPIP }}:{{ .HTTPPort }}/"]]
        }));
        BuildChoices {
            ssh_key: KeyChoice::Agent(Some(listed.fingerprint())),
            ..Default::default()
        }
        .apply(&mut build);
        assert_eq!(key_problem_with(&build, Path::new("/tmp"), |_| None), None);
        BuildChoices {
            ssh_key: KeyChoice::Agent(Some(other.fingerprint())),
            ..Default::default()
        }
        .apply(&mut build);
        let problem = key_problem_with(&build, Path::new("/tmp"), |_| None).unwrap();
        assert!(
            problem.contains("does not authorise the chosen ssh-agent key")
                && problem.contains(&other.fingerprint()),
            "{problem}"
        );
    }
}
