//! `kiln-test`: boots the artifact on a throw-away overlay and checks it before anything
//! after it in the chain (an `exoscale-import`) runs. A failed check fails the build, so the
//! chain stops there. The artifact itself is never written.

mod checks;
mod vm;

use std::path::Path;

use self::checks::Verdict;
use super::{BuildFacts, PostProcess, Processed};
use crate::build::artifact::Artifact;
use crate::build::event::Event;
use crate::build::runner::{BoxFuture, StepContext, StepError};
use crate::image::qemu_img::QemuImg;
use crate::recipe::image_test::{BuiltinCheck, ImageTestConfig, UserCheck};
use crate::recipe::units::format_bytes;
use crate::ssh::Session;

/// Output lines of one check that go to the log.
const MAX_OUTPUT_LINES: usize = 40;

/// The `kiln-test` post-processor.
pub struct ImageTest {
    /// Its configuration.
    pub config: ImageTestConfig,
    /// An `exoscale-import` comes later in the same chain: the disk check also applies
    /// Exoscale's rules (qcow2, 10 GiB–1000 GiB, not preallocated).
    pub import_follows: bool,
}

/// One finished check.
struct CheckResult {
    name: String,
    verdict: Verdict,
}

impl PostProcess for ImageTest {
    fn run<'a>(
        &'a self,
        ctx: &'a mut StepContext,
        input: &'a Artifact,
        facts: &'a BuildFacts,
    ) -> BoxFuture<'a, Result<Processed, StepError>> {
        Box::pin(async move {
            let image = input
                .main_file()
                .ok_or_else(|| StepError("the input artifact has no image to test".into()))?;
            let mut results = Vec::new();
            let builtin = self.config.builtin_checks();
            if builtin.contains(&BuiltinCheck::Disk) {
                let verdict = disk_check(ctx, image, self.import_follows).await;
                results.push(report(ctx, BuiltinCheck::Disk.name().into(), verdict));
            }
            let dir = tempfile::Builder::new()
                .prefix("kiln-test-")
                .tempdir_in(&facts.scratch)
                .map_err(|e| StepError(format!("cannot make the test VM's directory: {e}")))?;
            let test_vm = vm::boot(
                ctx,
                vm::BootRequest {
                    image,
                    builder: &facts.builder,
                    qemu_binary: &facts.qemu_binary,
                    build_accel: facts.accel.clone(),
                    dir: dir.path(),
                    serial_log: facts.logs.join("test-serial.log"),
                    ssh_timeout: self.config.ssh_timeout,
                },
            )
            .await?;
            for check in builtin.iter().filter(|c| **c != BuiltinCheck::Disk) {
                let verdict = guest_check(ctx, &test_vm.session, *check, &self.config).await;
                results.push(report(ctx, check.name().into(), verdict));
            }
            for check in self.config.user_checks() {
                let (name, verdict) = user_check(ctx, &test_vm.session, &check, &self.config).await;
                results.push(report(ctx, name, verdict));
            }
            let tail = test_vm.console_tail();
            test_vm.stop().await;
            drop(dir);
            let failed: Vec<&CheckResult> = results.iter().filter(|r| !r.verdict.passed).collect();
            if !failed.is_empty() {
                let list: Vec<String> = failed
                    .iter()
                    .map(|r| format!("  {}: {}", r.name, r.verdict.detail))
                    .collect();
                return Err(StepError(format!(
                    "{} of {} image checks failed; the post-processors after kiln-test in this chain did not run (the image itself was not changed):\n{}\nlast console lines of the test VM:\n{tail}",
                    failed.len(),
                    results.len(),
                    list.join("\n")
                )));
            }
            ctx.log(format!("all {} image checks passed", results.len()));
            Ok(Processed {
                artifact: input.clone(),
                keep_input_by_default: true,
                must_keep_input: true,
            })
        })
    }
}

/// Sends the check's event and logs it.
fn report(ctx: &StepContext, name: String, verdict: Verdict) -> CheckResult {
    ctx.events().send(Event::Check {
        name: name.clone(),
        passed: verdict.passed,
        detail: verdict.detail.clone(),
    });
    CheckResult { name, verdict }
}

/// The host-side disk check: consistent, and importable when an import follows.
async fn disk_check(ctx: &StepContext, image: &Path, import_follows: bool) -> Verdict {
    let qemu_img = match QemuImg::locate() {
        Ok(q) => q,
        Err(e) => return failed(e),
    };
    let info = match qemu_img.info(image, ctx.cancel()).await {
        Ok(info) => info,
        Err(e) => return failed(e),
    };
    if let Err(e) = qemu_img.check(image, ctx.cancel()).await {
        return failed(e);
    }
    let described = format!(
        "{}, virtual size {}, {} on disk, consistent",
        info.format.name(),
        format_bytes(info.virtual_size),
        info.actual_size
            .map(format_bytes)
            .unwrap_or_else(|| "?".into())
    );
    if import_follows {
        let path = image.to_path_buf();
        let checked =
            tokio::task::spawn_blocking(move || super::exoscale_import::check_image(&path)).await;
        match checked {
            Ok(Ok(_)) => Verdict {
                passed: true,
                detail: format!("{described}; Exoscale accepts it"),
            },
            Ok(Err(e)) => failed(e.0),
            Err(e) => failed(e),
        }
    } else {
        Verdict {
            passed: true,
            detail: described,
        }
    }
}

fn failed(e: impl std::fmt::Display) -> Verdict {
    Verdict {
        passed: false,
        detail: e.to_string(),
    }
}

/// Runs a built-in check's command in the guest and judges it.
async fn guest_check(
    ctx: &StepContext,
    session: &Session,
    check: BuiltinCheck,
    config: &ImageTestConfig,
) -> Verdict {
    let Some(command) = checks::command(check) else {
        return failed("no guest command for this check");
    };
    match session.exec_capture(&command, None, ctx.cancel()).await {
        Ok(out) => {
            let stdout = String::from_utf8_lossy(&out.stdout);
            log_output(
                ctx,
                check.name(),
                &stdout,
                &String::from_utf8_lossy(&out.stderr),
            );
            checks::judge(check, out.status.code(), &stdout, config.allow_degraded)
        }
        Err(e) => failed(format!("could not run `{command}`: {e}")),
    }
}

/// Runs one of the recipe's checks: a command as it is, a script copied in through standard
/// input to a private temporary file and run from there (so its `#!` line counts).
async fn user_check(
    ctx: &StepContext,
    session: &Session,
    check: &UserCheck,
    config: &ImageTestConfig,
) -> (String, Verdict) {
    let (name, command, stdin) = match check {
        UserCheck::Command(command) => (command.clone(), command.clone(), None),
        UserCheck::Script(path) => {
            let name = Path::new(path)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| path.clone());
            match std::fs::read(path) {
                Ok(bytes) => (
                    name,
                    "f=$(mktemp) && cat > \"$f\" && chmod 700 \"$f\" && \"$f\"; rc=$?; rm -f \"$f\"; exit $rc"
                        .to_string(),
                    Some(bytes),
                ),
                Err(e) => return (name, failed(format!("cannot read {path}: {e}"))),
            }
        }
    };
    let verdict = match session
        .exec_capture(&command, stdin.as_deref(), ctx.cancel())
        .await
    {
        Ok(out) => {
            log_output(
                ctx,
                &name,
                &String::from_utf8_lossy(&out.stdout),
                &String::from_utf8_lossy(&out.stderr),
            );
            checks::judge_user(out.status.code(), &config.valid_exit_codes)
        }
        Err(e) => failed(format!("could not run it: {e}")),
    };
    (name, verdict)
}

fn log_output(ctx: &StepContext, name: &str, stdout: &str, stderr: &str) {
    let lines: Vec<&str> = stdout.lines().chain(stderr.lines()).collect();
    for line in lines.iter().take(MAX_OUTPUT_LINES) {
        ctx.log(format!("{name}: {line}"));
    }
    if lines.len() > MAX_OUTPUT_LINES {
        ctx.log(format!(
            "{name}: … {} more lines",
            lines.len() - MAX_OUTPUT_LINES
        ));
    }
}
