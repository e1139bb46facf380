//! The step cache's keys: for each point a build can be resumed from (after Connect, after
//! each provisioner), a hash of everything that can change the VM's state up to there. A
//! key chains its predecessor's, so editing provisioner 2 changes the keys from 2 on and
//! leaves Connect's and provisioner 1's alone.
//!
//! Every hash is salted with a per-machine secret ([`super::Store::salt`]): sensitive values
//! (a password, a secret variable rendered into a script) go into the hash, and a key must
//! not let anyone test guesses of them.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::recipe::provisioner::{FileDirection, FileSource, Provisioner, ProvisionerKind};
use crate::recipe::qemu::{Communicator, DiskFormat, QemuConfig};
use crate::recipe::shell_local::ShellSource;
use crate::recipe::template::Build;

/// What of a build decides its cache keys, before the base image is known.
#[derive(Debug, Clone)]
pub struct CacheInputs {
    /// The builder options that reach the VM and the seed's inputs.
    builder: [u8; 32],
    /// One hash per provisioner that can be cached, in order, up to the first one that
    /// cannot.
    provisioners: Vec<[u8; 32]>,
    /// Why caching stops before the last provisioner (for the log), if it does.
    pub stops: Option<String>,
}

/// Whether a build can be cached at all: `Err` says why not.
pub fn cacheable_builder(config: &QemuConfig) -> Result<(), String> {
    if !config.disk_image {
        return Err("the build installs from an ISO (disk_image is false)".into());
    }
    if config.use_backing_file {
        return Err("use_backing_file keeps the artifact an overlay".into());
    }
    if config.communicator != Communicator::Ssh {
        return Err("the build has no SSH communicator".into());
    }
    if config.format != DiskFormat::Qcow2 {
        return Err("the disk's format is raw (the cache keeps qcow2 layers)".into());
    }
    if config.efi_boot {
        return Err("efi_boot".into());
    }
    Ok(())
}

/// Why a provisioner ends the cached prefix (its effects are outside the VM, or it waits
/// for a person), or `None` when it can be cached.
pub fn uncacheable(p: &Provisioner) -> Option<&'static str> {
    if !p.kiln_cache {
        return Some("it sets \"kiln_cache\": false");
    }
    match &p.kind {
        ProvisionerKind::ShellLocal(_) => Some("shell-local acts on this machine"),
        ProvisionerKind::Breakpoint(b) if !b.disable => Some("a breakpoint waits for you"),
        ProvisionerKind::File(f) if f.direction == FileDirection::Download => {
            Some("a file download writes to this machine")
        }
        ProvisionerKind::Ansible(_) => {
            Some("ansible reads playbooks and roles kiln does not follow")
        }
        ProvisionerKind::AnsibleLocal(_) => {
            Some("ansible-local uploads playbook directories kiln does not follow")
        }
        _ => None,
    }
}

/// Feeds a labelled value into the hash (length-prefixed, so fields cannot run together).
fn feed(h: &mut Sha256, label: &str, value: &[u8]) {
    h.update((label.len() as u64).to_le_bytes());
    h.update(label.as_bytes());
    h.update((value.len() as u64).to_le_bytes());
    h.update(value);
}

/// Feeds a local file or directory (names and contents, recursively, in name order).
fn feed_path(h: &mut Sha256, path: &Path) {
    let label = path.display().to_string();
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => {
            feed(h, "dir", label.as_bytes());
            let mut children: Vec<_> = std::fs::read_dir(path)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .collect();
            children.sort();
            for child in children {
                feed_path(h, &child);
            }
        }
        Ok(_) => match std::fs::read(path) {
            Ok(bytes) => feed(h, &label, &bytes),
            Err(e) => feed(h, &label, format!("unreadable: {e}").as_bytes()),
        },
        Err(_) => feed(h, &label, b"missing"),
    }
}

/// The builder options that reach the VM up to Connect. Output names, ports, compaction and
/// shutdown do not: two recipes that differ only there share their cached boot.
fn builder_hash(config: &QemuConfig) -> [u8; 32] {
    let mut h = Sha256::new();
    let c = config;
    let fields: Vec<(&str, String)> = vec![
        ("disk_size", format!("{:?}", c.disk_size)),
        ("skip_resize_disk", c.skip_resize_disk.to_string()),
        ("disk_interface", c.disk_interface.clone()),
        ("disk_cache", c.disk_cache.clone()),
        ("disk_discard", c.disk_discard.clone()),
        ("disk_detect_zeroes", c.disk_detect_zeroes.clone()),
        ("net_device", c.net_device.clone()),
        (
            "cpus",
            format!("{} {} {} {}", c.cpus, c.sockets, c.cores, c.threads),
        ),
        ("memory", c.memory.to_string()),
        ("qemuargs", format!("{:?}", c.qemuargs)),
        ("machine_type", c.machine_type.clone()),
        ("cpu_model", format!("{:?}", c.cpu_model)),
        ("firmware", format!("{:?}", c.firmware)),
        ("boot_wait", format!("{:?}", c.boot_wait)),
        ("boot_command", format!("{:?}", c.boot_command)),
        ("http_content", format!("{:?}", c.http_content)),
        ("cd_content", format!("{:?}", c.cd_content)),
        ("cd_label", format!("{:?}", c.cd_label)),
        ("floppy_content", format!("{:?}", c.floppy_content)),
        ("floppy_label", format!("{:?}", c.floppy_label)),
        ("ssh_username", c.ssh.username.clone()),
        (
            "ssh_password",
            c.ssh
                .password
                .as_ref()
                .map(|p| p.expose().to_string())
                .unwrap_or_default(),
        ),
        ("ssh_agent_auth", c.ssh.agent_auth.to_string()),
        ("ssh_agent_key", format!("{:?}", c.ssh.agent_key)),
        (
            "ssh_private_key_keyring",
            format!("{:?}", c.ssh.private_key_keyring),
        ),
    ];
    for (label, value) in fields {
        feed(&mut h, label, value.as_bytes());
    }
    if let Some(file) = &c.ssh.private_key_file {
        feed_path(&mut h, Path::new(file));
    }
    for dir in c.http_directory.iter() {
        feed_path(&mut h, Path::new(dir));
    }
    for path in c
        .cd_files
        .iter()
        .chain(&c.floppy_files)
        .chain(&c.floppy_dirs)
    {
        feed_path(&mut h, Path::new(path));
    }
    // The files the recipe's own drives attach (the seed article's seed.img), but not the
    // output disk, which the build makes.
    let output = Path::new(&c.output_directory);
    for row in c
        .qemuargs
        .iter()
        .filter(|r| r.first().is_some_and(|k| k == "-drive"))
    {
        let drive = row[1..].concat();
        let file = drive
            .split(',')
            .find_map(|o| o.strip_prefix("file="))
            .map(Path::new);
        if let Some(file) = file.filter(|f| !f.starts_with(output)) {
            feed_path(&mut h, file);
        }
    }
    h.finalize().into()
}

/// A provisioner's configuration (with the values of the variables rendered into it) and
/// the contents of the local files it uploads or runs.
fn provisioner_hash(p: &Provisioner) -> [u8; 32] {
    let mut h = Sha256::new();
    feed(&mut h, "config", format!("{p:?}").as_bytes());
    match &p.kind {
        ProvisionerKind::Shell(shell) => {
            for source in &shell.sources {
                if let ShellSource::File(path) = source {
                    feed_path(&mut h, path);
                }
            }
        }
        ProvisionerKind::File(file) => {
            if let FileSource::Paths(paths) = &file.source {
                for path in paths {
                    feed_path(&mut h, Path::new(path.trim_end_matches('/')));
                }
            }
        }
        _ => {}
    }
    h.finalize().into()
}

impl CacheInputs {
    /// The inputs of `build`, or why it cannot be cached.
    pub fn of(build: &Build) -> Result<CacheInputs, String> {
        cacheable_builder(&build.builder)?;
        let mut provisioners = Vec::new();
        let mut stops = None;
        for (i, p) in build.provisioners.iter().enumerate() {
            if let Some(why) = uncacheable(p) {
                stops = Some(format!(
                    "provisioner {} ({}) and what follows are not cached: {why}",
                    i + 1,
                    p.type_name()
                ));
                break;
            }
            provisioners.push(provisioner_hash(p));
        }
        Ok(CacheInputs {
            builder: builder_hash(&build.builder),
            provisioners,
            stops,
        })
    }

    /// The keys (hex), point 0 (after Connect) first, then one per cacheable provisioner.
    /// `base` identifies the base image (its checksum, or its file's identity).
    pub fn keys(&self, salt: &[u8], base: &str) -> Vec<String> {
        let mut h = Sha256::new();
        feed(&mut h, "salt", salt);
        feed(&mut h, "format", b"kiln step cache 1");
        feed(&mut h, "base", base.as_bytes());
        feed(&mut h, "builder", &self.builder);
        let mut previous: [u8; 32] = h.finalize().into();
        let mut keys = vec![hex::encode(previous)];
        for p in &self.provisioners {
            let mut h = Sha256::new();
            feed(&mut h, "salt", salt);
            feed(&mut h, "previous", &previous);
            feed(&mut h, "provisioner", p);
            previous = h.finalize().into();
            keys.push(hex::encode(previous));
        }
        keys
    }
}

/// What identifies the base image: the checksum the recipe verified it with, else the
/// file's path, size and modification time.
pub fn base_identity(config: &QemuConfig, base: &Path) -> String {
    let checksum = format!("{:?}", config.iso_checksum);
    let meta = std::fs::metadata(base).ok();
    let (size, mtime) = meta
        .map(|m| {
            use std::os::unix::fs::MetadataExt;
            (
                m.len(),
                m.mtime_nsec() as i128 + m.mtime() as i128 * 1_000_000_000,
            )
        })
        .unwrap_or_default();
    format!("{checksum}|{}|{size}|{mtime}", base.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build_of(provisioners: serde_json::Value) -> Build {
        let recipe = serde_json::json!({
            "builders": [{"type": "qemu", "iso_url": "x.qcow2", "iso_checksum": "none",
                          "disk_image": true, "ssh_username": "debian"}],
            "provisioners": provisioners,
        });
        crate::recipe::template::load_str(
            "r.json",
            &recipe.to_string(),
            Path::new("/tmp"),
            &Default::default(),
        )
        .unwrap_or_else(|d| panic!("{d}"))
        .builds
        .remove(0)
    }

    #[test]
    fn editing_a_provisioner_changes_its_key_and_the_later_ones_only() {
        let a = build_of(serde_json::json!([
            {"type": "shell", "inline": ["echo one"]},
            {"type": "shell", "inline": ["echo two"]},
            {"type": "shell", "inline": ["echo three"]},
        ]));
        let b = build_of(serde_json::json!([
            {"type": "shell", "inline": ["echo one"]},
            {"type": "shell", "inline": ["echo TWO"]},
            {"type": "shell", "inline": ["echo three"]},
        ]));
        let ka = CacheInputs::of(&a).unwrap().keys(b"salt", "base");
        let kb = CacheInputs::of(&b).unwrap().keys(b"salt", "base");
        assert_eq!(ka.len(), 4);
        assert_eq!(ka[..2], kb[..2], "Connect and provisioner 1 are shared");
        assert_ne!(ka[2], kb[2]);
        assert_ne!(ka[3], kb[3], "a later key chains the edited one");
        let other_salt = CacheInputs::of(&a).unwrap().keys(b"other", "base");
        assert_ne!(ka[0], other_salt[0], "keys are salted per machine");
        let other_base = CacheInputs::of(&a).unwrap().keys(b"salt", "base2");
        assert_ne!(ka[0], other_base[0]);
    }

    #[test]
    fn a_scripts_content_is_part_of_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("s.sh");
        std::fs::write(&script, "echo a\n").unwrap();
        let build = || {
            build_of(serde_json::json!([{"type": "shell", "script": script.display().to_string()}]))
        };
        let before = CacheInputs::of(&build()).unwrap().keys(b"s", "b");
        std::fs::write(&script, "echo b\n").unwrap();
        let after = CacheInputs::of(&build()).unwrap().keys(b"s", "b");
        assert_eq!(before[0], after[0]);
        assert_ne!(before[1], after[1]);
    }

    #[test]
    fn kiln_cache_false_ends_the_cached_prefix() {
        let build = build_of(serde_json::json!([
            {"type": "shell", "inline": ["true"]},
            {"type": "shell", "inline": ["apt-get update"], "kiln_cache": false},
        ]));
        let inputs = CacheInputs::of(&build).unwrap();
        assert_eq!(inputs.keys(b"s", "b").len(), 2);
        assert!(
            inputs
                .stops
                .as_deref()
                .is_some_and(|s| s.contains("\"kiln_cache\": false")),
            "{:?}",
            inputs.stops
        );
    }

    #[test]
    fn caching_stops_at_a_provisioner_with_effects_outside_the_vm() {
        let build = build_of(serde_json::json!([
            {"type": "shell", "inline": ["true"]},
            {"type": "shell-local", "inline": ["true"]},
            {"type": "shell", "inline": ["true"]},
        ]));
        let inputs = CacheInputs::of(&build).unwrap();
        assert_eq!(inputs.keys(b"s", "b").len(), 2, "Connect and provisioner 1");
        assert!(
            inputs
                .stops
                .as_deref()
                .is_some_and(|s| s.contains("provisioner 2 (shell-local)")),
            "{:?}",
            inputs.stops
        );
    }
}
