//! `kiln templates show ID`: every field of one template.

use std::io::Write;

use chrono::Utc;
use clap::Args;

use super::{ApiArgs, Failure, ZoneArg};
use crate::exoscale::describe;

/// Arguments of `kiln templates show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(flatten)]
    zone: ZoneArg,
    /// The template's id.
    #[arg(value_name = "ID")]
    pub id: String,
    /// Print JSON (the API's fields) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `kiln templates show`.
pub async fn run(args: &ShowArgs, out: &mut dyn Write) -> Result<i32, Failure> {
    let session = args.api.session()?;
    let zone = session.zone(args.zone.zone.as_deref());
    let client = session.client(&zone)?;
    let t = client.get_template(&args.id).await?;
    if args.json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&t).unwrap_or_default()
        )?;
        return Ok(0);
    }
    let yes_no = |v: Option<bool>| match v {
        Some(true) => "yes".to_string(),
        Some(false) => "no".to_string(),
        None => "-".to_string(),
    };
    let text = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let age = t
        .created()
        .map(|c| describe::age(c, Utc::now()))
        .unwrap_or_else(|| "-".into());
    let fields = [
        ("id", t.id.clone()),
        ("name", t.display_name().to_string()),
        ("description", text(&t.description)),
        ("zone", zone.clone()),
        ("zones", t.zones.join(", ")),
        ("visibility", text(&t.visibility)),
        ("family", text(&t.family)),
        ("size", describe::size(&t)),
        ("boot mode", text(&t.boot_mode)),
        ("created", describe::created(&t)),
        ("age", age),
        ("default user", text(&t.default_user)),
        ("ssh key", yes_no(t.ssh_key_enabled)),
        ("password", yes_no(t.password_enabled)),
        ("version", text(&t.version)),
        ("build", text(&t.build)),
        ("maintainer", text(&t.maintainer)),
        ("checksum (MD5)", text(&t.checksum)),
    ];
    for (name, value) in fields {
        writeln!(out, "{name:<15} {value}")?;
    }
    Ok(0)
}
