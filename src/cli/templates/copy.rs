//! `kiln templates copy ID --to-zone Z`: copies a template to another zone and prints the
//! copy's id.

use std::io::Write;

use clap::Args;

use super::{ApiArgs, Failure, ZoneArg};
use crate::exoscale::ApiError;
use crate::exoscale::zone;

/// Arguments of `kiln templates copy`.
#[derive(Debug, Args)]
pub struct CopyArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(flatten)]
    zone: ZoneArg,
    /// The template's id (in --zone).
    #[arg(value_name = "ID")]
    pub id: String,
    /// The zone to copy it to.
    #[arg(long, value_name = "ZONE")]
    pub to_zone: String,
}

/// Runs `kiln templates copy`.
pub async fn run(args: &CopyArgs, out: &mut dyn Write) -> Result<i32, Failure> {
    let session = args.api.session()?;
    let zone = session.zone(args.zone.zone.as_deref());
    if args.to_zone == zone {
        return Err(Failure::Refused(format!(
            "the template is already in {zone}: give another zone with --to-zone"
        )));
    }
    // The target zone must be one the API knows (unless a private endpoint is used).
    if zone::endpoint_override(None).is_none() && !zone::is_known(&args.to_zone) {
        return Err(Failure::Api(ApiError::UnknownZone {
            zone: args.to_zone.clone(),
        }));
    }
    let client = session.client(&zone)?;
    let new_id = client.copy_template(&args.id, &args.to_zone).await?;
    writeln!(
        out,
        "copied template {} from {} to {}: {new_id}",
        args.id,
        client.zone(),
        args.to_zone
    )?;
    Ok(0)
}
