//! Provision: one step per provisioner — `shell` (scripts uploaded and run with
//! `execute_command`), `file` (uploads and downloads), `shell-local` (on this machine),
//! `ansible` and `ansible-local` (see [`super::ansible`]) and `breakpoint` (waits for the
//! user) — with `pause_before`, `max_retries` and `timeout`, and the build's values
//! (`{{ build `Port` }}`) filled in when each runs.

use std::path::Path;

use crate::build::breakpoint::{self, Resume};
use crate::build::event::Event;
use crate::build::local_shell;
use crate::build::runner::{BoxFuture, Step, StepContext, StepDone, StepError};
use crate::build::state::BuildState;
use crate::qemu::vm::{Vm, VmEnd};
use crate::recipe::interp;
use crate::recipe::provisioner::{
    FileConfig, FileDirection, FileSource, Provisioner, ProvisionerKind, ShellConfig,
};
use crate::recipe::shell_local::ShellSource;
use crate::recipe::units::format_duration;
use crate::ssh::Session;

/// Runs one provisioner.
pub struct Provision {
    /// Its position (1-based) and the count, for the step name.
    pub number: (usize, usize),
    /// The provisioner.
    pub provisioner: Provisioner,
    /// The build's name (`PACKER_BUILD_NAME`).
    pub build_name: String,
    /// How the front end continues a `breakpoint`; `None` when nobody can (no terminal).
    pub resume: Option<Resume>,
}

/// Quotes `value` for a POSIX shell inside single quotes.
fn single_quoted(value: &str) -> String {
    value.replace('\'', "'\"'\"'")
}

/// Applies a printf-style `%s … %s` format to a name and a value (the value single-quoted
/// for a POSIX shell).
pub(crate) fn format_var(format: &str, name: &str, value: &str) -> String {
    let mut parts = format.splitn(3, "%s");
    let (a, b, c) = (parts.next().unwrap_or(""), parts.next(), parts.next());
    match (b, c) {
        (Some(b), Some(c)) => format!("{a}{name}{b}{}{c}", single_quoted(value)),
        _ => format!("{name}='{}' ", single_quoted(value)),
    }
}

/// The variables Packer's shell provisioner gives every script: the builder's type, the
/// build's name and, when the built-in HTTP server runs, where the guest reaches it
/// (`PACKER_HTTP_ADDR`, `PACKER_HTTP_IP`, `PACKER_HTTP_PORT`).
fn packer_env(build_name: &str, http: Option<&(String, u16)>) -> Vec<(String, String)> {
    let mut pairs = vec![
        ("PACKER_BUILDER_TYPE".to_string(), "qemu".to_string()),
        ("PACKER_BUILD_NAME".to_string(), build_name.to_string()),
    ];
    if let Some((ip, port)) = http {
        pairs.push(("PACKER_HTTP_ADDR".to_string(), format!("{ip}:{port}")));
        pairs.push(("PACKER_HTTP_IP".to_string(), ip.clone()));
        pairs.push(("PACKER_HTTP_PORT".to_string(), port.to_string()));
    }
    pairs
}

/// Renders `execute_command` with its context fields.
fn render_command(template: &str, fields: &[(&str, Option<String>)]) -> Result<String, StepError> {
    interp::render_fields(template, fields).map_err(|e| StepError(format!("execute_command: {e}")))
}

impl Provision {
    fn env_pairs(
        &self,
        shell: &ShellConfig,
        http: Option<&(String, u16)>,
    ) -> Vec<(String, String)> {
        let mut pairs = packer_env(&self.build_name, http);
        pairs.extend(shell.environment_vars.iter().cloned());
        pairs.extend(shell.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        pairs
    }

    async fn shell(
        &self,
        ctx: &StepContext,
        session: &Session,
        shell: &ShellConfig,
        http: Option<&(String, u16)>,
    ) -> Result<(), StepError> {
        let cancel = ctx.cancel().clone();
        let vars: String = self
            .env_pairs(shell, http)
            .iter()
            .map(|(k, v)| format_var(&shell.env_var_format, k, v))
            .collect();
        let env_file = if shell.use_env_var_file {
            let path = format!(
                "{}/varfile_{}.sh",
                shell.remote_folder.trim_end_matches('/'),
                rand_serial()
            );
            session
                .upload_bytes(vars.as_bytes(), &path, 0o600, &cancel, |_, _| {})
                .await
                .map_err(super::fail)?;
            Some(path)
        } else {
            None
        };
        for source in &shell.sources {
            let (content, shown) = match source {
                ShellSource::Inline(lines) => (
                    format!("#!{}\n{}\n", shell.inline_shebang, lines.join("\n")).into_bytes(),
                    format!("{} inline command(s)", lines.len()),
                ),
                ShellSource::File(path) => (
                    std::fs::read(path).map_err(|e| {
                        StepError(format!("cannot read the script {}: {e}", path.display()))
                    })?,
                    path.display().to_string(),
                ),
            };
            let remote = shell.remote_script_path(rand_serial());
            session
                .upload_bytes(&content, &remote, 0o755, &cancel, |_, _| {})
                .await
                .map_err(super::fail)?;
            let command = render_command(
                &shell.execute_command,
                &[
                    ("Path", Some(remote.clone())),
                    ("Vars", Some(vars.clone())),
                    ("EnvVarFile", Some(env_file.clone().unwrap_or_default())),
                ],
            )?;
            ctx.log(format!("running {shown} as {remote}"));
            let index = ctx.index();
            let events = ctx.events().clone();
            let status = session
                .exec_with(
                    &command,
                    &crate::ssh::ExecOptions::default(),
                    &cancel,
                    |stream, line| {
                        events.send(Event::Log {
                            index: Some(index),
                            stream,
                            line: line.to_string(),
                        })
                    },
                )
                .await
                .map_err(super::fail)?;
            if status.is_connection_lost() {
                if shell.expect_disconnect {
                    ctx.log("the connection dropped, as expect_disconnect allows");
                    return Ok(());
                }
                return Err(StepError(format!(
                    "the connection to the guest was lost while {shown} ran: if the script reboots the machine, set \"expect_disconnect\": true"
                )));
            }
            let ok = status.code().is_some_and(|c| {
                shell
                    .valid_exit_codes
                    .iter()
                    .any(|v| i64::from(*v) == i64::from(c))
            });
            if !ok {
                return Err(StepError(format!(
                    "{shown} failed ({status}); valid exit codes: {:?}. Its output is above and in build.log",
                    shell.valid_exit_codes
                )));
            }
            if !shell.skip_clean {
                let _ = session
                    .exec_capture(
                        &format!("rm -f '{}'", single_quoted(&remote)),
                        None,
                        &cancel,
                    )
                    .await;
            }
        }
        if let Some(path) = env_file
            && !shell.skip_clean
        {
            let _ = session
                .exec_capture(&format!("rm -f '{}'", single_quoted(&path)), None, &cancel)
                .await;
        }
        Ok(())
    }

    async fn file(
        &self,
        ctx: &StepContext,
        session: &Session,
        file: &FileConfig,
    ) -> Result<(), StepError> {
        let cancel = ctx.cancel().clone();
        match (&file.source, file.direction) {
            (FileSource::Content(content), _) => {
                session
                    .upload_bytes(
                        content.as_bytes(),
                        &file.destination,
                        0o644,
                        &cancel,
                        |_, _| {},
                    )
                    .await
                    .map_err(super::fail)?;
                ctx.log(format!(
                    "wrote {} bytes to {}",
                    content.len(),
                    file.destination
                ));
            }
            (FileSource::Paths(paths), FileDirection::Upload) => {
                for path in paths {
                    let placed = session
                        .upload(Path::new(path), &file.destination, &cancel, |_, _| {})
                        .await
                        .map_err(super::fail)?;
                    ctx.log(format!("uploaded {path} → {placed}"));
                }
            }
            (FileSource::Paths(paths), FileDirection::Download) => {
                for path in paths {
                    let placed = session
                        .download(path, Path::new(&file.destination), &cancel, |_, _| {})
                        .await
                        .map_err(super::fail)?;
                    ctx.log(format!("downloaded {path} → {}", placed.display()));
                }
            }
        }
        Ok(())
    }

    async fn once(&self, ctx: &StepContext, state: &BuildState) -> Result<(), StepError> {
        let session = || {
            state
                .session
                .as_ref()
                .ok_or_else(|| StepError("no SSH session (communicator \"none\")".into()))
        };
        // `{{ build `Port` }}` and the other build values are known now.
        let kind = self
            .provisioner
            .kind
            .with_build_values(&state.build_values())
            .map_err(|e| StepError(format!("filling in the build's values: {e}")))?;
        match &kind {
            ProvisionerKind::Shell(shell) => {
                self.shell(ctx, session()?, shell, state.http.as_ref())
                    .await
            }
            ProvisionerKind::File(file) => self.file(ctx, session()?, file).await,
            ProvisionerKind::Ansible(config) => {
                super::ansible::run_ansible(ctx, state, config, &self.build_name).await
            }
            ProvisionerKind::AnsibleLocal(config) => {
                super::ansible::run_ansible_local(ctx, session()?, state, config, &self.build_name)
                    .await
            }
            ProvisionerKind::ShellLocal(local) => {
                let facts = &state.post.facts;
                let env = [
                    ("PACKER_BUILD_NAME".to_string(), self.build_name.clone()),
                    (
                        "PACKER_BUILDER_TYPE".to_string(),
                        facts.builder_type.clone(),
                    ),
                    ("PACKER_RUN_UUID".to_string(), facts.run_uuid.clone()),
                ];
                local_shell::run(ctx, local, &env, &state.dirs.work).await
            }
            ProvisionerKind::Breakpoint(_) => Err(StepError(
                "a breakpoint is not retried; this is a bug in kiln".into(),
            )),
        }
    }
}

fn rand_serial() -> u32 {
    uuid::Uuid::new_v4().as_u128() as u32 % 10000
}

impl Step<BuildState> for Provision {
    fn name(&self) -> String {
        format!(
            "Provision {}/{}: {}",
            self.number.0,
            self.number.1,
            self.provisioner.kind.type_name()
        )
    }

    fn run<'a>(
        &'a mut self,
        ctx: &'a mut StepContext,
        state: &'a mut BuildState,
    ) -> BoxFuture<'a, Result<StepDone, StepError>> {
        Box::pin(async move {
            if let Some(pause) = self.provisioner.pause_before {
                ctx.log(format!(
                    "pausing {} before this provisioner",
                    format_duration(pause)
                ));
                tokio::time::sleep(pause).await;
            }
            match &self.provisioner.kind {
                ProvisionerKind::Breakpoint(config) => {
                    let which = format!("provisioner {}", self.number.0);
                    return breakpoint::pause(ctx, config, &which, self.resume.as_ref()).await;
                }
                ProvisionerKind::ShellLocal(local) if !local.runs_here() => {
                    return Ok(StepDone::Skipped(format!(
                        "`only_on` lists {}, not this machine",
                        local.only_on.join(", ")
                    )));
                }
                _ => {}
            }
            // qemu may die under the provisioner (killed, out of memory, the guest powered
            // off): the VM's end is raced against the provisioner, so the build fails at once
            // with qemu's words and the console instead of an SSH error or a timeout.
            let vm_slot = state.vm.clone();
            let raced = tokio::select! {
                result = self.attempts(ctx, state) => Raced::Finished(result),
                end = watch_vm(vm_slot.clone()) => Raced::VmEnded(end),
            };
            match raced {
                Raced::Finished(Ok(done)) => Ok(done),
                // SSH may notice a dead VM before its exit is seen: give the exit a moment.
                Raced::Finished(Err(e)) => {
                    match tokio::time::timeout(VM_END_GRACE, watch_vm(vm_slot)).await {
                        Ok(end) => Err(vm_ended(state, end).await),
                        Err(_) => Err(e),
                    }
                }
                Raced::VmEnded(end) => Err(vm_ended(state, end).await),
            }
        })
    }
}

/// How long a failed provisioner waits to see whether the VM is gone too.
const VM_END_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// What ended first: the provisioner or the VM.
enum Raced {
    Finished(Result<StepDone, StepError>),
    VmEnded(VmEnd),
}

/// Waits for the VM to end; never returns when there is no VM (`communicator: none`
/// builds have one, but a step run without it must not fail for that).
async fn watch_vm(slot: std::sync::Arc<tokio::sync::Mutex<Option<Vm>>>) -> VmEnd {
    let mut guard = slot.lock().await;
    match guard.as_mut() {
        Some(vm) => vm.watch().await,
        None => std::future::pending().await,
    }
}

/// The error for a VM that ended under a provisioner.
async fn vm_ended(state: &BuildState, end: VmEnd) -> StepError {
    let said = match state.vm.lock().await.as_ref() {
        Some(vm) => vm.output_tail(),
        None => String::new(),
    };
    let what = match end {
        VmEnd::Exited(status) => format!(
            "qemu exited ({status}) while the provisioner ran: the VM was killed or the guest powered off (a provisioner that reboots needs \"expect_disconnect\": true, one that powers off belongs in shutdown_command)"
        ),
        VmEnd::KvmFailure(line) => format!(
            "KVM failed inside the guest ({line}) while the provisioner ran: set accelerator to \"tcg\""
        ),
    };
    StepError(format!(
        "{what}\nqemu said:\n{said}\nlast console lines:\n{}",
        state.console_tail(30)
    ))
}

impl Provision {
    /// Runs the provisioner up to `max_retries + 1` times, each bounded by `timeout`.
    async fn attempts(&self, ctx: &StepContext, state: &BuildState) -> Result<StepDone, StepError> {
        let attempts = self.provisioner.max_retries + 1;
        let mut last = None;
        for attempt in 1..=attempts {
            let run = self.once(ctx, state);
            let result = match self.provisioner.timeout {
                Some(limit) => match tokio::time::timeout(limit, run).await {
                    Ok(r) => r,
                    Err(_) => Err(StepError(format!(
                        "timed out after {} (timeout)",
                        format_duration(limit)
                    ))),
                },
                None => run.await,
            };
            match result {
                Ok(()) => return Ok(StepDone::Done),
                Err(e) if attempt < attempts => {
                    ctx.events().send(Event::Warning(format!(
                        "attempt {attempt}/{attempts} failed: {e}; retrying"
                    )));
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| StepError("no attempt ran".into())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_get_packers_variables_and_the_http_server_when_it_runs() {
        let names = |pairs: Vec<(String, String)>| -> Vec<String> {
            pairs.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
        };
        assert_eq!(
            names(packer_env("debian", None)),
            ["PACKER_BUILDER_TYPE=qemu", "PACKER_BUILD_NAME=debian"]
        );
        assert_eq!(
            names(packer_env("debian", Some(&("10.0.2.2".into(), 8123)))),
            [
                "PACKER_BUILDER_TYPE=qemu",
                "PACKER_BUILD_NAME=debian",
                "PACKER_HTTP_ADDR=10.0.2.2:8123",
                "PACKER_HTTP_IP=10.0.2.2",
                "PACKER_HTTP_PORT=8123"
            ]
        );
    }

    #[test]
    fn vars_are_quoted_for_the_shell() {
        assert_eq!(format_var("%s='%s' ", "A", "it's"), "A='it'\"'\"'s' ");
        assert_eq!(format_var("export %s='%s'\n", "B", "x"), "export B='x'\n");
    }

    #[test]
    fn execute_command_gets_path_and_vars() {
        let cmd = render_command(
            "chmod +x {{.Path}}; sudo {{.Vars}} {{.Path}}",
            &[
                ("Path", Some("/tmp/script_1.sh".into())),
                ("Vars", Some("A='1' ".into())),
                ("EnvVarFile", Some(String::new())),
            ],
        )
        .unwrap();
        assert_eq!(
            cmd,
            "chmod +x /tmp/script_1.sh; sudo A='1'  /tmp/script_1.sh"
        );
    }
}
