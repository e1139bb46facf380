//! The typed state a build's steps share (what Packer keeps in an untyped state bag).

use crate::image::compact::MergeBase;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use tokio::sync::Mutex;

use super::artifact::Artifact;
use super::postprocess::chain::HasPostState;
use super::postprocess::{BuildFacts, PostState};
use super::redact::Redactor;
use crate::cloudinit::http::HttpServer;
use crate::qemu::accel::AccelChoice;
use crate::qemu::serial::SerialConsole;
use crate::qemu::vm::Vm;
use crate::recipe::qemu::QemuConfig;
use crate::ssh::{HostKeyPolicy, KeyPair, PublicKey, Session};

/// How a build logs in through an ssh-agent (`ssh_agent_auth`, or an agent key chosen on
/// the build form): the agent signs, kiln never holds the private key.
#[derive(Debug, Clone)]
pub struct AgentLogin {
    /// The agent's socket.
    pub socket: PathBuf,
    /// The agent's keys this build uses: authorised by kiln's seed, offered at Connect,
    /// removed from the image before shutdown.
    pub keys: Vec<PublicKey>,
}

impl AgentLogin {
    /// The keys' fingerprints (`SHA256:…`).
    pub fn fingerprints(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(crate::ssh::keys::fingerprint)
            .collect()
    }

    /// The keys as `authorized_keys` lines.
    pub fn public_lines(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(crate::ssh::keys::public_key_openssh)
            .collect()
    }
}

/// Where a build keeps its files.
#[derive(Debug, Clone)]
pub struct BuildDirs {
    /// The recipe's `output_directory`, where the artifact appears when complete.
    pub output: PathBuf,
    /// A private scratch directory (mode 0700): sockets, the seed, scripts. Removed at the end.
    pub work: PathBuf,
    /// `$XDG_STATE_HOME/kiln/builds/<id>/`: `build.log` and `serial.log`, kept.
    pub logs: PathBuf,
    /// The base-image cache.
    pub cache: PathBuf,
}

/// What the steps produce and consume, in the order they fill it in.
pub struct BuildState {
    /// The builder's configuration.
    pub config: QemuConfig,
    /// The directories.
    pub dirs: BuildDirs,
    /// Secrets to mask in every line.
    pub redactor: Redactor,
    /// The qemu binary.
    pub qemu_binary: PathBuf,
    /// The verified base image.
    pub base_image: Option<PathBuf>,
    /// The disk the VM writes: a hidden partial file in the output directory until the
    /// last step renames it to the artifact.
    pub disk: Option<PathBuf>,
    /// The base image the disk is an overlay on, when compaction merges the build's changes
    /// back into the base's compressed clusters (see `image::compact`).
    pub merge_base: Option<MergeBase>,
    /// The key kiln logs in with.
    pub client_key: Option<KeyPair>,
    /// The ssh-agent keys kiln logs in with instead (`ssh_agent_auth`).
    pub agent: Option<AgentLogin>,
    /// Which host keys to accept.
    pub host_key: Option<HostKeyPolicy>,
    /// The cloud-init seed kiln wrote (None when the recipe brings its own drives).
    pub seed: Option<PathBuf>,
    /// Why kiln attaches no seed of its own (the recipe brings its cloud-init data), if so.
    pub recipe_seed: Option<&'static str>,
    /// The built-in HTTP server as the guest reaches it: (`10.0.2.2`, port).
    pub http: Option<(String, u16)>,
    /// The running HTTP server (shared with its cleanup, which stops it).
    pub http_server: Arc<Mutex<Option<HttpServer>>>,
    /// The `cd_files`/`cd_content` image.
    pub cdrom: Option<PathBuf>,
    /// The `floppy_files`/`floppy_dirs`/`floppy_content` image.
    pub floppy: Option<PathBuf>,
    /// The forwarded SSH port on 127.0.0.1.
    pub ssh_port: Option<u16>,
    /// The accelerator (and CPU model) of the running VM.
    pub accel: Option<AccelChoice>,
    /// The running VM (shared with its cleanup, which stops it).
    pub vm: Arc<Mutex<Option<Vm>>>,
    /// The lock on the output directory, held until the build's state is dropped.
    pub output_lock: Option<std::fs::File>,
    /// The serial console.
    pub console: Option<SerialConsole>,
    /// The SSH session to the guest.
    pub session: Option<Session>,
    /// The finished artifact.
    pub artifact: Option<PathBuf>,
    /// Set once the artifact is complete; cleanups then keep it.
    pub complete: Arc<AtomicBool>,
    /// The post-processors' state (and the facts about the build they and `shell-local`
    /// use).
    pub post: PostState,
    /// The step cache, when the build uses it.
    pub cache: Option<crate::build::stepcache::CacheRun>,
}

impl BuildState {
    /// A fresh state for `config`.
    pub fn new(
        config: QemuConfig,
        dirs: BuildDirs,
        redactor: Redactor,
        qemu_binary: PathBuf,
        facts: BuildFacts,
    ) -> Self {
        Self {
            config,
            dirs,
            redactor,
            qemu_binary,
            base_image: None,
            disk: None,
            merge_base: None,
            client_key: None,
            agent: None,
            host_key: None,
            seed: None,
            recipe_seed: None,
            http: None,
            http_server: Arc::default(),
            cdrom: None,
            floppy: None,
            ssh_port: None,
            accel: None,
            vm: Arc::default(),
            output_lock: None,
            console: None,
            session: None,
            artifact: None,
            complete: Arc::default(),
            post: PostState::new(facts, None),
            cache: None,
        }
    }

    /// The build's artifacts: the post-processors' results, or the builder's artifact when
    /// there are no post-processors.
    pub fn artifacts(&self) -> Vec<Artifact> {
        if !self.post.artifacts.is_empty() {
            return self.post.artifacts.clone();
        }
        self.artifact.iter().map(Artifact::builder).collect()
    }

    /// The values of the build-time context fields (`{{ .HTTPPort }}`, …) known so far:
    /// an unknown port is `0`, an unknown address or key empty.
    pub fn context_fields(&self) -> Vec<(&'static str, Option<String>)> {
        let (ip, port) = self.http.clone().unwrap_or_default();
        vec![
            ("HTTPIP", Some(ip)),
            ("HTTPPort", Some(port.to_string())),
            (
                "HTTPDir",
                Some(self.config.http_directory.clone().unwrap_or_default()),
            ),
            ("OutputDir", Some(self.dirs.output.display().to_string())),
            ("Name", Some(self.config.vm_name.clone())),
            ("SSHHostPort", Some(self.ssh_port.unwrap_or(0).to_string())),
            (
                "SSHPublicKey",
                Some(
                    self.client_public_lines()
                        .into_iter()
                        .next()
                        .unwrap_or_default(),
                ),
            ),
        ]
    }

    /// The public keys kiln logs in with, as `authorized_keys` lines: the build key, or the
    /// agent's keys; empty with a password.
    pub fn client_public_lines(&self) -> Vec<String> {
        match (&self.client_key, &self.agent) {
            (Some(key), _) => vec![key.public_key_openssh()],
            (None, Some(agent)) => agent.public_lines(),
            (None, None) => Vec::new(),
        }
    }

    /// The fingerprints of the keys kiln logs in with (see [`Self::client_public_lines`]).
    pub fn client_fingerprints(&self) -> Vec<String> {
        match (&self.client_key, &self.agent) {
            (Some(key), _) => vec![key.fingerprint()],
            (None, Some(agent)) => agent.fingerprints(),
            (None, None) => Vec::new(),
        }
    }

    /// The build's values for `{{ build `Name` }}` (Packer's generated data), as
    /// `(interp::build_field(name), value)` pairs: where the VM is reached, as whom, and the
    /// HTTP server. `SSHPrivateKey` is the build key, registered with the redactor.
    pub fn build_values(&self) -> Vec<(String, String)> {
        let (ip, port) = self.http.clone().unwrap_or_default();
        let http_addr = if self.http.is_some() {
            format!("{ip}:{port}")
        } else {
            String::new()
        };
        let (public, private) = match &self.client_key {
            Some(key) => (
                key.public_key_openssh(),
                key.private_key_openssh()
                    .map(|s| s.expose().to_string())
                    .unwrap_or_default(),
            ),
            None => (
                self.client_public_lines()
                    .into_iter()
                    .next()
                    .unwrap_or_default(),
                String::new(),
            ),
        };
        let ssh = &self.config.ssh;
        [
            ("ID", self.config.vm_name.clone()),
            ("Host", "127.0.0.1".to_string()),
            ("Port", self.ssh_port.unwrap_or(0).to_string()),
            ("User", ssh.username.clone()),
            (
                "Password",
                ssh.password
                    .as_ref()
                    .map(|p| p.expose().to_string())
                    .unwrap_or_default(),
            ),
            (
                "ConnType",
                match self.config.communicator {
                    crate::recipe::qemu::Communicator::None => "none",
                    _ => "ssh",
                }
                .to_string(),
            ),
            ("PackerRunUUID", self.post.facts.run_uuid.clone()),
            ("PackerHTTPIP", ip),
            (
                "PackerHTTPPort",
                if self.http.is_some() {
                    port.to_string()
                } else {
                    String::new()
                },
            ),
            ("PackerHTTPAddr", http_addr),
            ("SSHPublicKey", public),
            ("SSHPrivateKey", private),
        ]
        .into_iter()
        .map(|(name, value)| (crate::recipe::interp::build_field(name), value))
        .collect()
    }

    /// The point (0: Connect, N: provisioner N) the build resumed after from the step
    /// cache, when it did.
    pub fn restored_point(&self) -> Option<usize> {
        self.cache.as_ref().and_then(|c| c.restored_point())
    }

    /// The last `n` console lines, for error messages.
    pub fn console_tail(&self, n: usize) -> String {
        self.console
            .as_ref()
            .map(|c| c.tail(n).join("\n"))
            .unwrap_or_default()
    }
}

impl HasPostState for BuildState {
    fn post_state(&mut self) -> &mut PostState {
        if self.post.builder.is_none()
            && let Some(image) = &self.artifact
        {
            self.post.builder = Some(Artifact::builder(image));
        }
        self.post.facts.accel = self.accel.clone();
        &mut self.post
    }
}
