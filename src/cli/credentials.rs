//! `kiln credentials`: Exoscale profiles in the OS keyring — list, set, remove, check.
//! The key and secret are read from a prompt without echo or from standard input (two lines:
//! key, then secret); never from the command line.

use std::io::Write;

use clap::{Args, Subcommand};
use serde_json::json;

use super::failure::{self, Failure};
use crate::exoscale::zone::{self, DEFAULT_EXOSCALE_ZONE};
use crate::exoscale::{ApiError, Credentials};
use crate::secrets::profiles::{self, CheckOutcome, Profiles};
use crate::secrets::prompt::{self, Source};

/// Arguments of `kiln credentials`.
#[derive(Debug, Args)]
pub struct CredentialsArgs {
    /// What to do with the profiles.
    #[command(subcommand)]
    pub command: CredentialsCommand,
}

/// The subcommands of `kiln credentials`.
#[derive(Debug, Subcommand)]
pub enum CredentialsCommand {
    /// List the profiles (names, zones, the default; never a secret).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Add or replace a profile: asks for the API key and secret, checks them against the
    /// API, then stores them in the OS keyring.
    Set(SetArgs),
    /// Remove a profile from the keyring and the config.
    Remove {
        /// The profile.
        name: String,
    },
    /// Check a profile's key and secret against the API (exit 0 valid, 1 not).
    Check {
        /// The profile (default: the default profile).
        #[arg(long, value_name = "NAME")]
        profile: Option<String>,
    },
}

/// Arguments of `kiln credentials set`.
#[derive(Debug, Args)]
pub struct SetArgs {
    /// The profile's name (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// The zone used when a command names none.
    #[arg(long, short = 'z', value_name = "ZONE", default_value = DEFAULT_EXOSCALE_ZONE)]
    pub zone: String,
    /// Make it the default profile (the first profile always is).
    #[arg(long)]
    pub default: bool,
    /// Read the key and the secret from standard input, one per line, instead of a prompt.
    #[arg(long)]
    pub stdin: bool,
    /// Store without asking the API (for a machine without network).
    #[arg(long)]
    pub no_check: bool,
}

/// Runs `kiln credentials`: exit 0 done, 1 failed, 2 refused.
pub fn run(
    args: &CredentialsArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> std::io::Result<i32> {
    failure::exit_code(execute(args, out, err), err)
}

fn execute(
    args: &CredentialsArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<i32, Failure> {
    match &args.command {
        CredentialsCommand::List { json } => list(&Profiles::platform()?, *json, out),
        CredentialsCommand::Set(a) => set(a, out, err),
        CredentialsCommand::Remove { name } => {
            if Profiles::platform()?.remove(name)? {
                writeln!(out, "removed profile `{name}`")?;
                Ok(0)
            } else {
                writeln!(err, "kiln: there is no profile `{name}`")?;
                Ok(1)
            }
        }
        CredentialsCommand::Check { profile } => {
            let profiles = Profiles::platform()?;
            let name = profiles.resolve_name(profile.as_deref())?;
            let credentials = profiles.load(&name, &crate::build::redact::Redactor::new())?;
            let zone = profiles.zone(&name)?;
            let outcome = check(&zone, &credentials)?;
            writeln!(out, "profile `{name}` ({zone}): {outcome}")?;
            Ok(if outcome == CheckOutcome::Valid { 0 } else { 1 })
        }
    }
}

fn list(profiles: &Profiles, json: bool, out: &mut dyn Write) -> Result<i32, Failure> {
    let list = profiles.list()?;
    if json {
        let items: Vec<_> = list
            .iter()
            .map(|p| {
                json!({
                    "name": p.name,
                    "zone": p.zone,
                    "default": p.is_default,
                    "in_keyring": p.has_secret,
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::Value::Array(items))?;
        return Ok(0);
    }
    if list.is_empty() {
        writeln!(
            out,
            "no profiles yet: add one with `kiln credentials set NAME`"
        )?;
        return Ok(0);
    }
    let width = list.iter().map(|p| p.name.len()).max().unwrap_or(4).max(4);
    writeln!(out, "{:width$}  {:10}  DEFAULT  KEYRING", "NAME", "ZONE")?;
    for p in &list {
        writeln!(
            out,
            "{:width$}  {:10}  {:7}  {}",
            p.name,
            p.zone,
            if p.is_default { "*" } else { "" },
            if p.has_secret {
                "stored"
            } else {
                "MISSING (set it again)"
            }
        )?;
    }
    Ok(0)
}

fn set(args: &SetArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<i32, Failure> {
    crate::secrets::error::check_name(&args.name)?;
    if zone::endpoint_override(None).is_none() && !zone::is_known(&args.zone) {
        return Err(Failure::Refused(
            ApiError::UnknownZone {
                zone: args.zone.clone(),
            }
            .to_string(),
        ));
    }
    // Open the keyring before asking anything: no point typing a secret nobody can keep.
    let profiles = Profiles::platform()?;
    let source = Source::choose(args.stdin);
    let key = prompt::read_line(source, "API key")?;
    let secret = prompt::read_line(source, "API secret")?;
    let credentials = Credentials::new(key.expose().trim(), secret)
        .map_err(|_| Failure::Refused("the API key and the API secret must not be empty".into()))?;
    if !args.no_check {
        match check(&args.zone, &credentials)? {
            CheckOutcome::Valid => writeln!(out, "checked against {}: valid", args.zone)?,
            CheckOutcome::Unreachable(why) => writeln!(
                err,
                "kiln: warning: could not check the key ({why}); storing it unchecked — run `kiln credentials check --profile {}` later",
                args.name
            )?,
            outcome => {
                writeln!(
                    err,
                    "kiln: not stored: {outcome} (pass --no-check to store it anyway)"
                )?;
                return Ok(1);
            }
        }
    }
    profiles.save(&args.name, &args.zone, &credentials, args.default)?;
    let is_default = profiles
        .list()?
        .iter()
        .any(|p| p.name == args.name && p.is_default);
    writeln!(
        out,
        "stored profile `{}` (zone {}){} in the OS keyring",
        args.name,
        args.zone,
        if is_default { ", the default," } else { "" }
    )?;
    Ok(0)
}

fn check(zone: &str, credentials: &Credentials) -> Result<CheckOutcome, Failure> {
    let runtime = tokio::runtime::Runtime::new()?;
    Ok(runtime.block_on(profiles::check(zone, credentials)))
}
