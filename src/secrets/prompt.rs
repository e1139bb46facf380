//! Reading a secret from the terminal without echo, or from standard input — never from the
//! command line.

use std::io::{BufRead, IsTerminal, Read};

use super::error::SecretsError;
use crate::base::secret::Secret;

/// Where a secret is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A prompt on the terminal, without echo.
    Terminal,
    /// Standard input (a pipe, a file).
    Stdin,
}

impl Source {
    /// The terminal when standard input is one and `from_stdin` is not asked; else standard
    /// input.
    pub fn choose(from_stdin: bool) -> Self {
        if !from_stdin && std::io::stdin().is_terminal() {
            Source::Terminal
        } else {
            Source::Stdin
        }
    }
}

/// Reads one line (`what` names it in the prompt and in errors); the line end is dropped.
pub fn read_line(source: Source, what: &str) -> Result<Secret, SecretsError> {
    let value = match source {
        Source::Terminal => rpassword::prompt_password(format!("{what}: ")),
        Source::Stdin => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map(|_| line.trim_end_matches(['\n', '\r']).to_string())
        }
    }
    .map_err(|e| input_error(what, e))?;
    if value.is_empty() {
        return Err(SecretsError::Input {
            what: what.to_string(),
            reason: "it is empty".into(),
        });
    }
    Ok(Secret::new(value))
}

/// Reads all of standard input (a private key piped in).
pub fn read_all_stdin(what: &str) -> Result<Secret, SecretsError> {
    let mut text = String::new();
    std::io::stdin()
        .lock()
        .read_to_string(&mut text)
        .map_err(|e| input_error(what, e))?;
    Ok(Secret::new(text))
}

fn input_error(what: &str, e: std::io::Error) -> SecretsError {
    SecretsError::Input {
        what: what.to_string(),
        reason: e.to_string(),
    }
}
