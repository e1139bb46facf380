//! `kiln templates delete ID [--yes]`: deletes a template after confirmation (a question on
//! a terminal, `--yes` otherwise).

use std::io::{BufRead, IsTerminal, Write};

use clap::Args;

use super::{ApiArgs, Failure, ZoneArg};

/// Arguments of `kiln templates delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(flatten)]
    zone: ZoneArg,
    /// The template's id.
    #[arg(value_name = "ID")]
    pub id: String,
    /// Delete without asking.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// Runs `kiln templates delete`: exit 0 deleted, 1 failed or declined, 2 refused (no
/// terminal to ask on and no `--yes`).
pub async fn run(
    args: &DeleteArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<i32, Failure> {
    let session = args.api.session()?;
    let zone = session.zone(args.zone.zone.as_deref());
    let client = session.client(&zone)?;
    let template = client.get_template(&args.id).await?;
    let label = format!(
        "template \"{}\" ({}) in {}",
        template.display_name(),
        template.id,
        client.zone()
    );
    if !args.yes {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return Err(Failure::Refused(format!(
                "not deleting {label}: there is no terminal to confirm on; pass --yes to delete without asking"
            )));
        }
        write!(err, "Delete {label}? This cannot be undone. [y/N] ")?;
        err.flush()?;
        let mut answer = String::new();
        stdin.lock().read_line(&mut answer)?;
        if !matches!(answer.trim().to_lowercase().as_str(), "y" | "yes") {
            writeln!(err, "kiln: kept {label}")?;
            return Ok(1);
        }
    }
    client.delete_template(&template.id).await?;
    writeln!(out, "deleted {label}")?;
    Ok(0)
}
