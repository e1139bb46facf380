//! `kiln templates rename ID NAME`.

use std::io::Write;

use clap::Args;

use super::{ApiArgs, Failure, ZoneArg};

/// The longest template name the API accepts.
pub const MAX_NAME_CHARS: usize = 255;

/// Arguments of `kiln templates rename`.
#[derive(Debug, Args)]
pub struct RenameArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(flatten)]
    zone: ZoneArg,
    /// The template's id.
    #[arg(value_name = "ID")]
    pub id: String,
    /// The new name (1 to 255 characters).
    #[arg(value_name = "NAME")]
    pub name: String,
}

/// Runs `kiln templates rename`.
pub async fn run(args: &RenameArgs, out: &mut dyn Write) -> Result<i32, Failure> {
    let chars = args.name.chars().count();
    if args.name.trim().is_empty() || chars > MAX_NAME_CHARS {
        return Err(Failure::Refused(format!(
            "the new name must have 1 to {MAX_NAME_CHARS} characters (not blank); it has {chars}"
        )));
    }
    let session = args.api.session()?;
    let zone = session.zone(args.zone.zone.as_deref());
    let client = session.client(&zone)?;
    let before = client.get_template(&args.id).await?;
    client.rename_template(&args.id, &args.name).await?;
    writeln!(
        out,
        "renamed template {} in {}: \"{}\" → \"{}\"",
        args.id,
        client.zone(),
        before.display_name(),
        args.name
    )?;
    Ok(0)
}
