//! `kiln templates`: list, show, delete, rename and copy the compute templates published on
//! Exoscale. Credentials come from `--profile` (the OS keyring), else `EXOSCALE_API_KEY` /
//! `EXOSCALE_API_SECRET`, else the default profile; the zone from `--zone`, else the profile's
//! zone, else ch-gva-2. The API endpoint can be overridden with `EXOSCALE_API_ENDPOINT`
//! (`{zone}` is replaced).

pub mod copy;
pub mod delete;
pub mod format;
pub mod list;
pub mod rename;
pub mod show;

use std::io::Write;

use clap::{Args, Subcommand};

use super::failure;
pub use super::failure::Failure;
use crate::build::redact::Redactor;
use crate::exoscale::zone::DEFAULT_EXOSCALE_ZONE;
use crate::exoscale::{ApiError, Client, ClientOptions};
use crate::secrets::resolve::{self, Request, Resolved};

/// Arguments of `kiln templates`.
#[derive(Debug, Args)]
pub struct TemplatesArgs {
    /// What to do with the templates.
    #[command(subcommand)]
    pub command: TemplatesCommand,
}

/// The subcommands of `kiln templates`.
#[derive(Debug, Subcommand)]
pub enum TemplatesCommand {
    /// List templates with their size, boot mode, age, and a flag on stale ones.
    List(list::ListArgs),
    /// Show every field of one template.
    Show(show::ShowArgs),
    /// Delete a template (asks first unless --yes).
    Delete(delete::DeleteArgs),
    /// Rename a template.
    Rename(rename::RenameArgs),
    /// Copy a template to another zone.
    Copy(copy::CopyArgs),
}

/// Options every `kiln templates` subcommand takes.
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// The credentials profile in the OS keyring (default: EXOSCALE_API_KEY and
    /// EXOSCALE_API_SECRET when set, else the default profile).
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
}

/// The zone option of the subcommands that act on one template.
#[derive(Debug, Clone, Args)]
pub struct ZoneArg {
    /// The zone the template is in (default: the profile's zone, else ch-gva-2).
    #[arg(long, short = 'z', value_name = "ZONE")]
    pub zone: Option<String>,
}

/// Resolved credentials, ready to make clients.
#[derive(Debug)]
pub struct Session {
    resolved: Resolved,
}

impl ApiArgs {
    /// Resolves the credentials (the keyring is opened only when a profile is needed).
    pub fn session(&self) -> Result<Session, Failure> {
        let request = Request {
            explicit: None,
            profile: self.profile.as_deref(),
            profile_first: true,
        };
        // The CLI prints no build log, but the secret is registered all the same.
        let resolved = resolve::resolve(&request, &Redactor::new())?;
        Ok(Session { resolved })
    }
}

impl Session {
    /// The zone to use: `asked`, else the profile's zone, else ch-gva-2.
    pub fn zone(&self, asked: Option<&str>) -> String {
        asked
            .map(str::to_string)
            .or_else(|| self.resolved.zone.clone())
            .unwrap_or_else(|| DEFAULT_EXOSCALE_ZONE.to_string())
    }

    /// A client of `zone` with these credentials, at the endpoint `EXOSCALE_API_ENDPOINT`
    /// says (the zone's standard endpoint otherwise).
    pub fn client(&self, zone: &str) -> Result<Client, ApiError> {
        Client::from_environment(
            zone,
            self.resolved.credentials.clone(),
            ClientOptions::default(),
        )
    }
}

/// Runs `kiln templates`; exit 0 done, 1 failed, 2 refused (usage).
pub fn run(args: &TemplatesArgs, out: &mut dyn Write, err: &mut dyn Write) -> std::io::Result<i32> {
    let runtime = tokio::runtime::Runtime::new()?;
    let result = match &args.command {
        TemplatesCommand::List(a) => runtime.block_on(list::run(a, out, err)),
        TemplatesCommand::Show(a) => runtime.block_on(show::run(a, out)),
        TemplatesCommand::Delete(a) => runtime.block_on(delete::run(a, out, err)),
        TemplatesCommand::Rename(a) => runtime.block_on(rename::run(a, out)),
        TemplatesCommand::Copy(a) => runtime.block_on(copy::run(a, out)),
    };
    failure::exit_code(result, err)
}
