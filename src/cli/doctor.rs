//! `kiln doctor`: prints the host check ([`crate::host::check`]) and the command that fixes
//! each problem.

use std::io::Write;

use clap::Args;

use crate::host::{KvmProbe, Status, checks};

/// Arguments of `kiln doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print the checks as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `kiln doctor`; exit 0 when nothing failed, 1 otherwise.
pub fn run(args: &DoctorArgs, out: &mut dyn Write, _err: &mut dyn Write) -> std::io::Result<i32> {
    let checks = checks(KvmProbe::Fresh);
    if args.json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&checks).unwrap_or_default()
        )?;
    } else {
        for c in &checks {
            let mark = match c.status {
                Status::Ok => "ok  ",
                Status::Warn => "warn",
                Status::Fail => "FAIL",
            };
            writeln!(out, "{mark} {}: {}", c.name, c.detail)?;
            if let Some(fix) = &c.fix {
                writeln!(out, "     fix: {fix}")?;
            }
        }
    }
    Ok(if checks.iter().any(|c| c.status == Status::Fail) {
        1
    } else {
        0
    })
}
