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
}

impl KeyChoice {
    /// Reads `--ssh-key`: `temporary` (a new key), a name the keyring holds, else a private
    /// key file; anything else is refused, listing the keyring's keys.
    pub fn parse(text: &str, config: &Config) -> Result<KeyChoice, String> {
        if text == "temporary" {
            return Ok(KeyChoice::Temporary);
        }
        if config.keys.contains_key(text) {
            return Ok(KeyChoice::Keyring(text.to_string()));
        }
        let path = expand_home(text);
        if path.is_file() {
            return Ok(KeyChoice::File(path));
        }
        Err(format!(
            "--ssh-key {text}: no key of that name in the OS keyring (keys: {}) and no such file; give a keyring key's name, a private key file, or `temporary`",
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
        match &self.ssh_key {
            KeyChoice::Recipe => {}
            KeyChoice::Temporary => {
                ssh.private_key_file = None;
                ssh.private_key_keyring = None;
            }
            KeyChoice::Keyring(name) => {
                ssh.private_key_file = None;
                ssh.private_key_keyring = Some(name.clone());
            }
            KeyChoice::File(path) => {
                ssh.private_key_keyring = None;
                ssh.private_key_file = Some(path.display().to_string());
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
    build
        .post_processors
        .iter()
        .flatten()
        .any(|pp| matches!(pp.kind, PostProcessorKind::ExoscaleImport(_)))
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
    let places: Vec<String> = {
        let mut p: Vec<String> = authorised.iter().map(|(f, _, _)| f.clone()).collect();
        p.dedup();
        p
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
}
