//! Before shutdown: take out of the image what only the build needed — the build's SSH key
//! from every `authorized_keys`, and the SSH host keys kiln's seed installed — so that
//! neither ships (Packer leaves both; `kiln-test` checks for them).

/// What to remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scrub {
    /// The base64 blobs of the build's public keys (the second field of their
    /// `authorized_keys` lines: the build key, or the ssh-agent's keys it used); every line
    /// holding one is removed.
    pub key_blobs: Vec<String>,
    /// Remove `/etc/ssh/ssh_host_*` (cloud-init makes new ones on the image's first boot).
    pub host_keys: bool,
}

impl Scrub {
    /// What to remove after a build whose client keys are `client_public` (OpenSSH public
    /// key lines; none with password authentication). `kiln_seeded`: kiln's own seed
    /// authorised the key and installed the host key; otherwise only
    /// `ssh_clear_authorized_keys` removes the key, as in Packer.
    pub fn after_build(
        client_public: &[String],
        kiln_seeded: bool,
        clear_authorized_keys: bool,
    ) -> Self {
        let key_blobs = client_public
            .iter()
            .filter(|_| kiln_seeded || clear_authorized_keys)
            .filter_map(|line| line.split_whitespace().nth(1))
            .filter(|blob| {
                blob.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c))
            })
            .map(str::to_string)
            .collect();
        Self {
            key_blobs,
            host_keys: kiln_seeded,
        }
    }

    /// The guest command (run as root, through `sudo -n` for another user), or None when
    /// there is nothing to remove.
    pub fn command(&self) -> Option<String> {
        let quoted = self.script("")?.replace('\'', r"'\''");
        Some(format!(
            "if [ \"$(id -u)\" = 0 ]; then sh -c '{quoted}'; else sudo -n sh -c '{quoted}'; fi"
        ))
    }

    /// The shell script for a file system mounted at `root` (`""` in the guest).
    fn script(&self, root: &str) -> Option<String> {
        let mut script = String::new();
        if !self.key_blobs.is_empty() {
            let patterns: String = self
                .key_blobs
                .iter()
                .map(|blob| format!(" -e '{blob}'"))
                .collect();
            script.push_str(&format!(
                "for f in {root}/root/.ssh/authorized_keys {root}/home/*/.ssh/authorized_keys; do \
                 [ -f \"$f\" ] || continue; \
                 grep -vF{patterns} \"$f\" > \"$f.kiln\"; cat \"$f.kiln\" > \"$f\"; rm -f \"$f.kiln\"; \
                 [ -s \"$f\" ] || rm -f \"$f\"; done; "
            ));
        }
        if self.host_keys {
            script.push_str(&format!("rm -f {root}/etc/ssh/ssh_host_*key*; "));
        }
        if script.is_empty() {
            return None;
        }
        script.push_str("sync");
        Some(script)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ3x+/y= kiln";

    fn key() -> Vec<String> {
        vec![KEY.to_string()]
    }

    #[test]
    fn kilns_seed_means_both_go() {
        let scrub = Scrub::after_build(&key(), true, false);
        assert_eq!(scrub.key_blobs, ["AAAAC3NzaC1lZDI1NTE5AAAAIJ3x+/y="]);
        assert!(scrub.host_keys);
        let command = scrub.command().unwrap();
        assert!(
            command.contains("grep -vF -e '\\''AAAAC3NzaC1lZDI1NTE5AAAAIJ3x+/y='\\''"),
            "{command}"
        );
        assert!(command.contains("rm -f /etc/ssh/ssh_host_*key*"));
        assert!(command.contains("sudo -n sh -c"));
    }

    #[test]
    fn a_recipes_own_seed_keeps_them_unless_packer_is_told_to_clear() {
        assert_eq!(Scrub::after_build(&key(), false, false).command(), None);
        let clear = Scrub::after_build(&key(), false, true);
        assert_eq!(clear.key_blobs.len(), 1);
        assert!(!clear.host_keys);
        assert!(!clear.command().unwrap().contains("ssh_host"));
        assert_eq!(Scrub::after_build(&[], false, true).command(), None);
    }

    #[test]
    fn a_strange_key_line_is_not_put_into_a_command() {
        assert_eq!(
            Scrub::after_build(&["ssh-ed25519 AA'; rm -rf / #".to_string()], true, false).key_blobs,
            Vec::<String>::new()
        );
    }

    #[test]
    fn the_script_removes_only_the_build_key_and_the_host_keys() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for dir in [
            "root/.ssh",
            "home/debian/.ssh",
            "home/other/.ssh",
            "etc/ssh",
        ] {
            std::fs::create_dir_all(r.join(dir)).unwrap();
        }
        let user = r.join("home/debian/.ssh/authorized_keys");
        std::fs::write(&user, format!("ssh-rsa AAAAother user@laptop\n{KEY}\n")).unwrap();
        let rootkeys = r.join("root/.ssh/authorized_keys");
        std::fs::write(&rootkeys, format!("no-pty,command=\"echo x\" {KEY}\n")).unwrap();
        let other = r.join("home/other/.ssh/authorized_keys");
        for f in [
            "ssh_host_ed25519_key",
            "ssh_host_ed25519_key.pub",
            "sshd_config",
        ] {
            std::fs::write(r.join("etc/ssh").join(f), "x").unwrap();
        }
        let agent_key = "ssh-rsa AAAAagent+key= me@laptop".to_string();
        std::fs::write(
            r.join("home/other/.ssh/authorized_keys"),
            format!("ssh-ed25519 AAAAkept\n{agent_key}\n"),
        )
        .unwrap();
        let script = Scrub::after_build(&[KEY.to_string(), agent_key], true, false)
            .script(&r.display().to_string())
            .unwrap();
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(
            std::fs::read_to_string(&user).unwrap(),
            "ssh-rsa AAAAother user@laptop\n"
        );
        assert!(!rootkeys.exists(), "an emptied authorized_keys is removed");
        assert_eq!(
            std::fs::read_to_string(&other).unwrap(),
            "ssh-ed25519 AAAAkept\n"
        );
        let left: Vec<String> = std::fs::read_dir(r.join("etc/ssh"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, vec!["sshd_config".to_string()]);
    }
}
