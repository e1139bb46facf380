//! `kiln completions SHELL`: the shell completion script, printed to standard output.

use std::io::Write;

use clap::{Args, CommandFactory, ValueEnum};

use super::Cli;

/// The shells kiln writes completions for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    /// Bash (`/usr/share/bash-completion/completions/kiln`).
    Bash,
    /// Zsh (`/usr/share/zsh/vendor-completions/_kiln`).
    Zsh,
    /// Fish (`/usr/share/fish/vendor_completions.d/kiln.fish`).
    Fish,
}

impl CompletionShell {
    /// clap_complete's name for this shell.
    fn generator(self) -> clap_complete::Shell {
        match self {
            CompletionShell::Bash => clap_complete::Shell::Bash,
            CompletionShell::Zsh => clap_complete::Shell::Zsh,
            CompletionShell::Fish => clap_complete::Shell::Fish,
        }
    }
}

/// Arguments of `kiln completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh or fish.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: CompletionShell,
}

/// Writes the completion script of `shell` for the whole `kiln` command line to `out`.
pub fn write(shell: CompletionShell, out: &mut dyn Write) {
    let mut command = visible_command();
    clap_complete::generate(shell.generator(), &mut command, "kiln", out);
}

/// `kiln`'s command line without its hidden subcommands (clap_complete would offer them):
/// the top-level options and every visible subcommand, as they are.
fn visible_command() -> clap::Command {
    let full = Cli::command();
    let mut visible = clap::Command::new("kiln")
        .version(env!("CARGO_PKG_VERSION"))
        .about(full.get_about().cloned().unwrap_or_default());
    for arg in full.get_arguments() {
        visible = visible.arg(arg.clone());
    }
    for sub in full.get_subcommands().filter(|s| !s.is_hide_set()) {
        visible = visible.subcommand(sub.clone());
    }
    visible
}

/// Runs `kiln completions`; always exit 0.
pub fn run(
    args: &CompletionsArgs,
    out: &mut dyn Write,
    _err: &mut dyn Write,
) -> std::io::Result<i32> {
    // clap_complete's generate panics on a write error; write to memory first so a closed
    // pipe is an ordinary error.
    let mut script = Vec::new();
    write(args.shell, &mut script);
    out.write_all(&script)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(shell: CompletionShell) -> String {
        let mut out = Vec::new();
        write(shell, &mut out);
        String::from_utf8(out).expect("UTF-8")
    }

    #[test]
    fn every_shell_knows_every_subcommand() {
        for shell in [
            CompletionShell::Bash,
            CompletionShell::Zsh,
            CompletionShell::Fish,
        ] {
            let text = script(shell);
            for name in ["build", "validate", "doctor", "templates", "completions"] {
                assert!(text.contains(name), "{shell:?} completion lacks `{name}`");
            }
            let mut words = text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'));
            assert!(
                !words.any(|w| w == "man"),
                "{shell:?} completion offers the hidden `man`"
            );
        }
    }

    #[test]
    fn the_scripts_have_each_shells_entry_point() {
        assert!(script(CompletionShell::Bash).contains("complete -F _kiln"));
        assert!(script(CompletionShell::Zsh).starts_with("#compdef kiln"));
        assert!(script(CompletionShell::Fish).contains("complete -c kiln"));
    }
}
