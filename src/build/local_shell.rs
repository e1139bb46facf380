//! Runs a `shell-local` configuration (provisioner or post-processor) on the machine running
//! kiln: each inline block or script through `execute_command`, with Packer's environment,
//! stdout and stderr streamed line by line as events, exit codes checked against
//! `valid_exit_codes`. A cancel (or a dropped step) kills the whole process group.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use super::event::{Event, Stream};
use super::runner::{StepContext, StepError};
use super::steps::format_var;
use crate::recipe::interp;
use crate::recipe::shell_local::{ShellLocalConfig, ShellSource};

/// Kills a child's process group when dropped, unless it already ended.
struct GroupGuard {
    pid: Option<i32>,
}

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pid) = self.pid.take() {
            // SAFETY: killpg only sends a signal; the group is the child's own (process_group(0)).
            unsafe {
                libc::killpg(pid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Streams the lines of `reader` as log events of `stream`.
async fn pump(reader: impl AsyncRead + Unpin, ctx: &StepContext, stream: Stream) {
    let mut reader = BufReader::new(reader);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf);
                ctx.events().send(Event::Log {
                    index: Some(ctx.index()),
                    stream,
                    line: line.trim_end_matches(['\n', '\r']).to_string(),
                });
            }
        }
    }
}

/// `{{.Vars}}`: every variable in `env_var_format`, except those holding a registered secret,
/// which reach the script through its environment only (never a process argument).
fn vars_text(ctx: &StepContext, config: &ShellLocalConfig, pairs: &[(String, String)]) -> String {
    let redactor = ctx.events().redactor();
    let mut hidden = Vec::new();
    let mut text = String::new();
    for (name, value) in pairs {
        if redactor.redact(value) != *value {
            hidden.push(name.as_str());
        } else {
            text.push_str(&format_var(&config.env_var_format, name, value));
        }
    }
    if !hidden.is_empty() {
        ctx.log(format!(
            "{} hold(s) a secret: passed in the environment only, not in {{{{.Vars}}}}",
            hidden.join(", ")
        ));
    }
    text
}

/// A temporary script made from inline commands; removed when dropped.
struct InlineScript(PathBuf);

impl Drop for InlineScript {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn write_inline(
    config: &ShellLocalConfig,
    lines: &[String],
    scratch: &Path,
) -> Result<InlineScript, StepError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut name = format!("shell-local-{}", uuid::Uuid::new_v4().simple());
    if let Some(ext) = &config.tempfile_extension {
        name.push('.');
        name.push_str(ext);
    }
    let path = scratch.join(name);
    let script = InlineScript(path.clone());
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o700)
        .open(&path)
        .and_then(|mut f| {
            f.write_all(format!("#!{}\n{}\n", config.inline_shebang, lines.join("\n")).as_bytes())
        })
        .map_err(|e| {
            StepError(format!(
                "cannot write the inline script {}: {e}",
                path.display()
            ))
        })?;
    Ok(script)
}

/// Runs every source of `config` in order. `builtin` are the variables kiln sets (Packer's
/// `PACKER_BUILD_NAME`, …) before the recipe's `environment_vars` and `env`; `scratch` is a
/// private directory for inline scripts.
pub async fn run(
    ctx: &StepContext,
    config: &ShellLocalConfig,
    builtin: &[(String, String)],
    scratch: &Path,
) -> Result<(), StepError> {
    let mut pairs: Vec<(String, String)> = builtin.to_vec();
    pairs.extend(config.environment_vars.iter().cloned());
    pairs.extend(config.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    let vars = vars_text(ctx, config, &pairs);
    for source in &config.sources {
        let (script, shown, _temp) = match source {
            ShellSource::Inline(lines) => {
                let temp = write_inline(config, lines, scratch)?;
                (
                    temp.0.clone(),
                    format!("{} inline command(s)", lines.len()),
                    Some(temp),
                )
            }
            ShellSource::File(path) => (path.clone(), path.display().to_string(), None),
        };
        let script_text = script.display().to_string();
        let argv = config
            .execute_command
            .iter()
            .map(|part| {
                interp::render_fields(
                    part,
                    &[
                        ("Vars", Some(vars.clone())),
                        ("Script", Some(script_text.clone())),
                        ("Command", Some(script_text.clone())),
                    ],
                )
                .map_err(|e| StepError(format!("execute_command: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let Some((program, args)) = argv.split_first() else {
            return Err(StepError("execute_command is empty".into()));
        };
        ctx.log(format!("running {shown} on this machine"));
        let status = run_program(ctx, program, args, &pairs, &shown)
            .await
            .map_err(|e| match e {
                RunError::Start(e) => StepError(format!(
                    "cannot start `{program}` (execute_command[0]) for {shown}: {e}"
                )),
                RunError::Other(e) => e,
            })?;
        let code = status.code();
        if code.is_some_and(|c| config.valid_exit_codes.contains(&c)) {
            continue;
        }
        let how = match code {
            Some(c) => format!("exit code {c}"),
            None => "killed by a signal".to_string(),
        };
        let hint = match (code, source) {
            (Some(126), ShellSource::File(path)) => format!(
                "; if {} is not executable, `chmod +x` it or run it through a shell in \
                 execute_command",
                path.display()
            ),
            _ => String::new(),
        };
        return Err(StepError(format!(
            "{shown} failed ({how}); valid exit codes: {:?}. Its output is above and in \
             build.log{hint}",
            config.valid_exit_codes
        )));
    }
    Ok(())
}

/// Why [`run_program`] failed.
pub(crate) enum RunError {
    /// The program could not be started.
    Start(std::io::Error),
    /// It was cancelled, or could not be waited for.
    Other(StepError),
}

/// Runs `program` with `args` on this machine, in a process group of its own, with `env`
/// added to kiln's environment, its output streamed line by line as the step's log; a cancel
/// kills the group, and whatever the program left running in its group is stopped when it
/// ends. `shown` names it in messages.
pub(crate) async fn run_program(
    ctx: &StepContext,
    program: &str,
    args: &[String],
    env: &[(String, String)],
    shown: &str,
) -> Result<std::process::ExitStatus, RunError> {
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(RunError::Start)?;
    let mut guard = GroupGuard {
        pid: child.id().and_then(|p| i32::try_from(p).ok()),
    };
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let out = async {
        if let Some(s) = stdout {
            pump(s, ctx, Stream::Stdout).await;
        }
    };
    let err = async {
        if let Some(s) = stderr {
            pump(s, ctx, Stream::Stderr).await;
        }
    };
    let status = tokio::select! {
        (_, _, status) = async { tokio::join!(out, err, child.wait()) } => status,
        _ = ctx.cancel().cancelled() => {
            guard.kill();
            return Err(RunError::Other(StepError(format!("cancelled while {shown} ran"))));
        }
    }
    .map_err(|e| RunError::Other(StepError(format!("waiting for {shown} failed: {e}"))))?;
    // It ended; anything it left running in its group is stopped now.
    guard.kill();
    Ok(status)
}
