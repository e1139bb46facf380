//! Why a subcommand that talks to Exoscale or the keyring stopped, and the exit code each
//! reason gives: 1 failed, 2 refused before anything changed. Shared by `kiln templates`,
//! `kiln credentials` and `kiln keys`.

use std::io::Write;

use crate::exoscale::ApiError;
use crate::secrets::SecretsError;

/// Why a subcommand stopped.
#[derive(Debug)]
pub enum Failure {
    /// The API (or the endpoint) failed.
    Api(ApiError),
    /// The keyring, a profile or the credentials failed.
    Secrets(SecretsError),
    /// Writing the output failed.
    Io(std::io::Error),
    /// The command was refused before anything was changed (exit 2).
    Refused(String),
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Failure::Api(e)
    }
}

impl From<SecretsError> for Failure {
    fn from(e: SecretsError) -> Self {
        Failure::Secrets(e)
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Io(e)
    }
}

/// Turns a subcommand's result into its exit code, writing the reason to `err`; only an
/// output error is passed on.
pub fn exit_code(result: Result<i32, Failure>, err: &mut dyn Write) -> std::io::Result<i32> {
    let (message, code) = match result {
        Ok(code) => return Ok(code),
        Err(Failure::Io(e)) => return Err(e),
        Err(Failure::Api(e)) => (e.to_string(), 1),
        Err(Failure::Secrets(e)) => (e.to_string(), 1),
        Err(Failure::Refused(why)) => (why, 2),
    };
    writeln!(err, "kiln: {message}")?;
    Ok(code)
}
