//! The window's secrets on keyring-core's mock store: profiles and keys in memory, the config
//! file and the public keys in the test's folders, and an API endpoint for the checks.

use std::path::PathBuf;

use kiln::gui::credentials::SecretsSource;
use kiln::secrets::profiles::Profiles;
use kiln::secrets::ssh_keys::SshKeys;
use kiln::secrets::{SecretsError, Vault};

/// A `SecretsSource` for tests.
pub struct MockSecrets {
    /// The in-memory keyring.
    pub vault: Vault,
    /// The config file profiles are listed in.
    pub config: PathBuf,
    /// Where public keys are read from (instead of `~/.ssh`).
    pub ssh_dir: PathBuf,
    /// The API endpoint (the strict test server), if any.
    pub api: Option<String>,
    /// The ssh-agent whose keys are listed (none unless a test starts one: the
    /// environment's agent would make the window depend on the machine).
    pub agent: Option<PathBuf>,
}

impl MockSecrets {
    /// An empty mock keyring with these folders and endpoint.
    pub fn new(config: PathBuf, ssh_dir: PathBuf, api: Option<String>) -> Self {
        Self {
            vault: Vault::with_store(keyring_core::mock::Store::new().unwrap()),
            config,
            ssh_dir,
            api,
            agent: None,
        }
    }
}

impl SecretsSource for MockSecrets {
    fn open(&self) -> Result<(Profiles, SshKeys), SecretsError> {
        Ok((
            Profiles::new(self.vault.clone(), self.config.clone()),
            SshKeys::new(self.vault.clone(), self.config.clone()),
        ))
    }
    fn api_endpoint(&self) -> Option<String> {
        self.api.clone()
    }
    fn public_key_dir(&self) -> Option<PathBuf> {
        Some(self.ssh_dir.clone())
    }
    fn agent_socket(&self) -> Option<PathBuf> {
        self.agent.clone()
    }
}
