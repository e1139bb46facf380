//! What a build will do, in words: the builder, each provisioner, each post-processor chain.
//! `kiln inspect` prints it and the window shows it as the plan of the build it will start
//! (with the key and credentials chosen), so both say the same.

use crate::host::{Check, Status};
use crate::image::cache_state::base_image_state;
use crate::recipe::postprocessor::{PostProcessor, PostProcessorKind};
use crate::recipe::provisioner::{FileDirection, FileSource, Provisioner, ProvisionerKind};
use crate::recipe::qemu::{Accelerator, QemuConfig};
use crate::recipe::shell_local::ShellSource;
use crate::recipe::template::Build;
use crate::recipe::units::{format_bytes, format_duration};

/// The plan of `build`, one line per item (indented lines belong to the line above).
pub fn plan_lines(build: &Build) -> Vec<String> {
    let mut lines = vec![format!("builder qemu: {}", builder(&build.builder))];
    lines.push("provisioners:".into());
    if build.provisioners.is_empty() {
        lines.push("  (none)".into());
    }
    for (i, p) in build.provisioners.iter().enumerate() {
        lines.push(format!("  {}. {}", i + 1, provisioner(p)));
    }
    if let Some(p) = &build.error_cleanup {
        lines.push(format!("on error: {}", provisioner(p)));
    }
    lines.push("post-processor chains:".into());
    if build.post_processors.is_empty() {
        lines.push("  (none)".into());
    }
    for (i, chain) in build.post_processors.iter().enumerate() {
        let steps: Vec<String> = chain.iter().map(post_processor).collect();
        lines.push(format!("  {}. {}", i + 1, steps.join(" → ")));
    }
    lines
}

/// What this machine adds to the plan: where the base image comes from (read from the
/// cache's names, without the network) and the accelerator the build gets, from the host
/// check's KVM line when there is one (`kvm`).
pub fn host_lines(build: &Build, kvm: Option<&Check>) -> Vec<String> {
    let q = &build.builder;
    let mut lines = Vec::new();
    if let Ok(cache) = crate::image::default_cache_dir() {
        lines.push(base_image_state(&q.iso_urls, &q.iso_checksum, &cache).describe());
    }
    lines.push(accelerator_line(q.accelerator, kvm));
    lines
}

/// The accelerator a build asking for `accelerator` gets on this machine.
fn accelerator_line(accelerator: Accelerator, kvm: Option<&Check>) -> String {
    match (accelerator, kvm) {
        (Accelerator::Tcg, _) => {
            "accelerator: TCG (software emulation), as the recipe asks".to_string()
        }
        (_, None) => format!(
            "accelerator: {}: KVM if this machine runs a VM with it, else {} (kiln doctor tells which)",
            accelerator.name(),
            if accelerator == Accelerator::Kvm {
                "the build fails"
            } else {
                "TCG, several times slower"
            }
        ),
        (_, Some(check)) if check.status == Status::Ok => {
            format!("accelerator: KVM — {}", check.detail)
        }
        (Accelerator::Kvm, Some(check)) => format!(
            "accelerator: kvm, which this machine cannot give — the build will fail at Boot (\"auto\" would use TCG): {}",
            check.detail
        ),
        (Accelerator::Auto, Some(check)) => format!("accelerator: {}", check.detail),
    }
}

/// The builder in one line: base image, output, size, machine, SSH.
pub fn builder(q: &QemuConfig) -> String {
    let base = if q.disk_image { "disk image" } else { "ISO" };
    let size = match q.disk_size {
        Some(bytes) if !q.skip_resize_disk => format_bytes(bytes),
        _ => "base image's size".into(),
    };
    format!(
        "{base} {} ({}) → {}/{} ({}, {size}), {} CPU, {} MiB, accelerator {}, ssh as `{}` with {} (timeout {})",
        q.iso_urls.join(" | "),
        q.iso_checksum,
        q.output_directory,
        q.vm_name,
        q.format.name(),
        q.cpus,
        q.memory,
        q.accelerator.name(),
        q.ssh.username,
        match (&q.ssh.private_key_file, &q.ssh.private_key_keyring) {
            _ if q.ssh.agent_auth => match &q.ssh.agent_key {
                Some(fingerprint) => format!("ssh-agent key {fingerprint}"),
                None => "the ssh-agent's keys".to_string(),
            },
            (Some(file), _) => format!("key file {file}"),
            (None, Some(name)) => format!("keyring key `{name}`"),
            (None, None) if q.ssh.password.is_some() => "a password".to_string(),
            (None, None) => "a new temporary key".to_string(),
        },
        format_duration(q.ssh.timeout)
    )
}

fn sources(sources: &[ShellSource]) -> String {
    sources
        .iter()
        .map(|s| match s {
            ShellSource::Inline(lines) => format!("{} inline command(s)", lines.len()),
            ShellSource::File(p) => format!("script {}", p.display()),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A provisioner in one line, with its pause, retries and timeout.
pub fn provisioner(p: &Provisioner) -> String {
    let what = match &p.kind {
        ProvisionerKind::Shell(s) => format!("shell: {}", sources(&s.sources)),
        ProvisionerKind::ShellLocal(s) => format!("shell-local: {}", sources(&s.sources)),
        ProvisionerKind::File(f) => {
            let from = match &f.source {
                FileSource::Paths(p) => p.join(", "),
                FileSource::Content(c) => format!("{} bytes of content", c.len()),
            };
            match f.direction {
                FileDirection::Upload => format!("file: upload {from} → {}", f.destination),
                FileDirection::Download => format!("file: download {from} → {}", f.destination),
            }
        }
        ProvisionerKind::Ansible(a) => format!(
            "ansible: {} {}{}",
            a.command,
            a.playbook_file,
            if a.extra_arguments.is_empty() {
                String::new()
            } else {
                format!(" {}", a.extra_arguments.join(" "))
            }
        ),
        ProvisionerKind::AnsibleLocal(a) => {
            format!(
                "ansible-local: {} in the guest",
                a.playbook_files.join(", ")
            )
        }
        ProvisionerKind::Breakpoint(b) => format!(
            "breakpoint{}{}",
            if b.disable { " (disabled)" } else { "" },
            b.note
                .as_deref()
                .map(|n| format!(": {n}"))
                .unwrap_or_default()
        ),
    };
    let mut extras = Vec::new();
    if let Some(d) = p.pause_before {
        extras.push(format!("pause before {}", format_duration(d)));
    }
    if p.max_retries > 0 {
        extras.push(format!("{} retries", p.max_retries));
    }
    if let Some(d) = p.timeout {
        extras.push(format!("timeout {}", format_duration(d)));
    }
    if extras.is_empty() {
        what
    } else {
        format!("{what} ({})", extras.join(", "))
    }
}

/// A post-processor in one line: what it makes, where it publishes, with which credentials.
pub fn post_processor(pp: &PostProcessor) -> String {
    match &pp.kind {
        PostProcessorKind::ShellLocal(s) => {
            format!("shell-local ({})", sources(&s.sources))
        }
        PostProcessorKind::Checksum(c) => {
            let types: Vec<&str> = c.checksum_types.iter().map(|t| t.name()).collect();
            format!("checksum ({})", types.join(", "))
        }
        PostProcessorKind::Manifest(m) => format!("manifest ({})", m.output),
        PostProcessorKind::Compress(c) => format!("compress ({})", c.output),
        PostProcessorKind::Resize(r) => {
            format!("kiln-resize (grow to {})", format_bytes(r.disk_size))
        }
        PostProcessorKind::ImageTest(t) => format!(
            "kiln-test (built-in checks: {}; {} check(s) of the recipe's own)",
            t.builtin_checks()
                .iter()
                .map(|c| c.name())
                .collect::<Vec<_>>()
                .join(", "),
            t.inline.len() + t.scripts.len()
        ),
        PostProcessorKind::Vagrant(v) => format!(
            "vagrant (libvirt box {}{}{})",
            v.output,
            match v.compression_level {
                0 => ", not compressed".to_string(),
                6 => String::new(),
                level => format!(", gzip level {level}"),
            },
            v.vagrantfile_template
                .as_deref()
                .map(|t| format!(", Vagrantfile from {t}"))
                .unwrap_or_default()
        ),
        PostProcessorKind::Artifice(a) => format!("artifice ({})", a.files.join(", ")),
        PostProcessorKind::NotRun(name) => {
            format!("{name} (not run by kiln: skip it with -except)")
        }
        PostProcessorKind::ExoscaleImport(e) => format!(
            "exoscale-import (bucket {} in {}, template \"{}\" in {}; credentials {})",
            e.image_bucket,
            e.image_zone,
            e.template_name,
            e.template_zones.join(", "),
            match (&e.profile, e.profile_first, e.api_key.is_empty()) {
                (_, _, false) => "from the recipe".to_string(),
                (Some(p), true, _) => format!("of profile `{p}`"),
                (Some(p), false, _) => format!("from EXOSCALE_API_KEY/SECRET, else profile `{p}`"),
                (None, _, _) =>
                    "from EXOSCALE_API_KEY/SECRET, else the default profile".to_string(),
            }
        ),
    }
}
