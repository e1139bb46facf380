//! `kiln keys`: SSH keys — list every key the user has (the keyring's, `~/.ssh/*.pub`, an
//! ssh-agent's), import a private key into the OS keyring, generate one there, show a public
//! half, remove. A recipe uses a keyring key with `"ssh_private_key_keyring": "NAME"`.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde_json::json;

use super::failure::{self, Failure};
use crate::recipe::secret::Secret;
use crate::secrets::SecretsError;
use crate::secrets::config::Config;
use crate::secrets::prompt::{self, Source};
use crate::secrets::ssh_keys::{self, Existing, KeyListing, Passphrase, SshKeys};

/// Arguments of `kiln keys`.
#[derive(Debug, Args)]
pub struct KeysArgs {
    /// What to do with the keys.
    #[command(subcommand)]
    pub command: KeysCommand,
}

/// The subcommands of `kiln keys`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List the keys: the keyring's, `~/.ssh/*.pub` and the ssh-agent's (public parts only).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Import a private key into the keyring (an encrypted key asks for its passphrase once
    /// and is stored decrypted).
    Import {
        /// The name to store it under.
        name: String,
        /// The private key file; `-` (the default) reads it from standard input.
        #[arg(default_value = "-")]
        file: PathBuf,
        /// Read the passphrase from standard input (after the key, when the key comes from
        /// there too) instead of a prompt.
        #[arg(long)]
        passphrase_stdin: bool,
        /// Replace a key already stored under NAME (its private half is lost).
        #[arg(long)]
        replace: bool,
    },
    /// Generate a new Ed25519 key into the keyring and print its public half.
    Generate {
        /// The name to store it under.
        name: String,
        /// The key's comment (default: kiln-NAME).
        #[arg(long)]
        comment: Option<String>,
        /// Replace a key already stored under NAME (its private half is lost).
        #[arg(long)]
        replace: bool,
    },
    /// Print a keyring key's public half (for authorized_keys).
    Show {
        /// The key's name.
        name: String,
    },
    /// Remove a key from the keyring.
    Remove {
        /// The key's name.
        name: String,
    },
}

/// Runs `kiln keys`: exit 0 done, 1 failed.
pub fn run(args: &KeysArgs, out: &mut dyn Write, err: &mut dyn Write) -> std::io::Result<i32> {
    failure::exit_code(execute(args, out, err), err)
}

fn execute(args: &KeysArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<i32, Failure> {
    match &args.command {
        KeysCommand::List { json } => list(*json, out, err),
        KeysCommand::Import {
            name,
            file,
            passphrase_stdin,
            replace,
        } => {
            let keys = SshKeys::platform()?;
            let text = read_key(file)?;
            let source = Source::choose(*passphrase_stdin);
            let mut ask = || prompt::read_line(source, "passphrase of the key");
            let stored = keys.import(name, &text, Passphrase::Ask(&mut ask), existing(*replace))?;
            writeln!(
                out,
                "imported `{name}` ({}) into the OS keyring",
                stored.fingerprint
            )?;
            Ok(0)
        }
        KeysCommand::Generate {
            name,
            comment,
            replace,
        } => {
            let comment = comment.clone().unwrap_or_else(|| format!("kiln-{name}"));
            let made = SshKeys::platform()?.generate(name, &comment, existing(*replace))?;
            writeln!(
                err,
                "generated `{name}` ({}) in the OS keyring; its public half:",
                made.fingerprint
            )?;
            writeln!(out, "{}", made.public_key)?;
            Ok(0)
        }
        KeysCommand::Show { name } => {
            // The public half is in the config: the keyring need not be opened.
            let config = Config::load(&crate::secrets::config::default_path())?;
            match config.keys.get(name) {
                Some(k) => {
                    writeln!(out, "{}", k.public_key)?;
                    Ok(0)
                }
                None => Err(SecretsError::UnknownKey {
                    name: name.clone(),
                    known: config.key_names(),
                }
                .into()),
            }
        }
        KeysCommand::Remove { name } => {
            if SshKeys::platform()?.remove(name)? {
                writeln!(out, "removed `{name}` from the OS keyring")?;
                Ok(0)
            } else {
                writeln!(err, "kiln: there is no key `{name}` in the OS keyring")?;
                Ok(1)
            }
        }
    }
}

/// `--replace` as the keyring's rule for an existing key of the name.
fn existing(replace: bool) -> Existing {
    if replace {
        Existing::Replace
    } else {
        Existing::Refuse
    }
}

fn read_key(file: &Path) -> Result<Secret, Failure> {
    if file == Path::new("-") {
        return Ok(prompt::read_all_stdin("private key")?);
    }
    std::fs::read_to_string(file).map(Secret::new).map_err(|e| {
        SecretsError::Input {
            what: format!("private key {}", file.display()),
            reason: e.to_string(),
        }
        .into()
    })
}

/// Every key: the keyring's (listed from the config, so a missing keyring does not hide the
/// others), `~/.ssh/*.pub`, and the agent's. Sources that cannot be read are reported on
/// `err` and skipped.
fn list(json: bool, out: &mut dyn Write, err: &mut dyn Write) -> Result<i32, Failure> {
    let config = Config::load(&crate::secrets::config::default_path())?;
    let mut keys: Vec<KeyListing> = config
        .keys
        .iter()
        .map(|(name, k)| ssh_keys::listing_from_config(name, k))
        .collect();
    if let Some(home) = std::env::var_os("HOME") {
        keys.extend(ssh_keys::list_public_key_files(
            &Path::new(&home).join(".ssh"),
        ));
    }
    if let Some(socket) = std::env::var_os("SSH_AUTH_SOCK").filter(|s| !s.is_empty()) {
        let runtime = tokio::runtime::Runtime::new()?;
        match runtime.block_on(ssh_keys::list_agent_keys(Path::new(&socket))) {
            Ok(agent) => keys.extend(agent),
            Err(why) => writeln!(err, "kiln: warning: {why}")?,
        }
    }
    if json {
        let items: Vec<_> = keys
            .iter()
            .map(|k| {
                json!({
                    "source": k.source.to_string(),
                    "algorithm": k.algorithm,
                    "fingerprint": k.fingerprint,
                    "comment": k.comment,
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::Value::Array(items))?;
        return Ok(0);
    }
    if keys.is_empty() {
        writeln!(
            out,
            "no SSH keys: generate one with `kiln keys generate NAME` or import one with `kiln keys import NAME FILE`"
        )?;
        return Ok(0);
    }
    let width = keys
        .iter()
        .map(|k| k.source.to_string().len())
        .max()
        .unwrap_or(6)
        .max(6);
    writeln!(
        out,
        "{:width$}  {:12}  {:50}  COMMENT",
        "SOURCE", "TYPE", "FINGERPRINT"
    )?;
    for k in &keys {
        writeln!(
            out,
            "{:width$}  {:12}  {:50}  {}",
            k.source.to_string(),
            k.algorithm,
            k.fingerprint,
            k.comment
        )?;
    }
    Ok(0)
}
