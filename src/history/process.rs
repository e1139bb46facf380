//! Which process recorded a build, told apart from a later process that got the same pid.
//!
//! A stamp holds the pid, the process's start time (field 22 of `/proc/<pid>/stat`, clock
//! ticks after boot), the boot's id (`/proc/sys/kernel/random/boot_id`) and the host name.
//! The process is gone when this machine booted since (a reboot or a power loss ends every
//! process from before it), when no process has the pid, when the process with that pid started at another time (the
//! pid was reused), or when it is a zombie (killed, not yet reaped). When kiln cannot tell
//! (no `/proc`, or another boot under another host name: a machine sharing the history
//! file, whose processes kiln cannot see), the process counts as running: a build is never
//! called interrupted on a guess.

use std::path::Path;

/// The process that recorded a build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessStamp {
    /// Its pid.
    pub pid: u32,
    /// When it started: clock ticks after boot (field 22 of `/proc/<pid>/stat`).
    pub start_ticks: u64,
    /// The id of the boot it ran in.
    pub boot_id: String,
    /// The machine's host name then.
    pub host: String,
}

/// Where Linux shows its processes.
const PROC: &str = "/proc";

/// What `/proc/<pid>/stat` says about a process: its state letter and its start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    /// `R`, `S`, `D`, `Z` (zombie), `X` (dead), …
    pub state: char,
    /// Field 22: clock ticks after boot.
    pub start_ticks: u64,
}

/// Reads the state and field 22 (start time) of a `/proc/<pid>/stat` line. The command name
/// (field 2) is in parentheses and may hold spaces and parentheses itself, so the fields
/// are counted from the last `)`.
pub(crate) fn parse_stat(line: &str) -> Option<Stat> {
    let rest = &line[line.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    // `rest` starts at field 3 (the state); field 22 is 19 fields later.
    let state = fields.next()?.chars().next()?;
    let start_ticks = fields.nth(18)?.parse().ok()?;
    Some(Stat { state, start_ticks })
}

fn read_stat(proc_root: &Path, pid: u32) -> Option<Stat> {
    let line = std::fs::read_to_string(proc_root.join(pid.to_string()).join("stat")).ok()?;
    parse_stat(&line)
}

/// A one-line file of `/proc/sys/kernel`, trimmed (`None` when missing or empty).
fn read_kernel(proc_root: &Path, name: &str) -> Option<String> {
    let text = std::fs::read_to_string(proc_root.join("sys/kernel").join(name)).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

fn read_boot_id(proc_root: &Path) -> Option<String> {
    read_kernel(proc_root, "random/boot_id")
}

impl ProcessStamp {
    /// The stamp of this process (`None` where `/proc` cannot be read).
    pub fn current() -> Option<Self> {
        Self::read(Path::new(PROC), std::process::id())
    }

    /// The stamp of process `pid` as the `/proc` at `proc_root` shows it.
    pub(crate) fn read(proc_root: &Path, pid: u32) -> Option<Self> {
        let stat = read_stat(proc_root, pid)?;
        Some(Self {
            pid,
            start_ticks: stat.start_ticks,
            boot_id: read_boot_id(proc_root)?,
            host: read_kernel(proc_root, "hostname").unwrap_or_default(),
        })
    }

    /// Whether the process is certainly gone (see the module's notes).
    pub fn is_gone(&self) -> bool {
        self.is_gone_in(Path::new(PROC))
    }

    /// [`ProcessStamp::is_gone`] with the `/proc` at `proc_root`.
    pub(crate) fn is_gone_in(&self, proc_root: &Path) -> bool {
        let Some(boot_id) = read_boot_id(proc_root) else {
            return false; // cannot tell
        };
        if boot_id != self.boot_id {
            // This machine booted since; or it is another machine, which kiln cannot see.
            return read_kernel(proc_root, "hostname").unwrap_or_default() == self.host;
        }
        match read_stat(proc_root, self.pid) {
            // `/proc` is there (the boot id was read): no such process.
            None => true,
            Some(stat) => stat.start_ticks != self.start_ticks || matches!(stat.state, 'Z' | 'X'),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `/proc/<pid>/stat` line for a process named `comm` in `state`, started at `start`.
    fn stat_line(pid: u32, comm: &str, state: char, start: u64) -> String {
        // Fields 4..=21 are filler here; 22 is the start time; a few more follow.
        let filler: Vec<String> = (4..=21).map(|n| n.to_string()).collect();
        format!(
            "{pid} ({comm}) {state} {} {start} 4096 123 456\n",
            filler.join(" ")
        )
    }

    /// A fake `/proc` of host `vm` with a boot id and the given processes (pid, state,
    /// start time).
    fn fake_proc(boot_id: &str, processes: &[(u32, char, u64)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let random = dir.path().join("sys/kernel/random");
        std::fs::create_dir_all(&random).unwrap();
        std::fs::write(random.join("boot_id"), format!("{boot_id}\n")).unwrap();
        std::fs::write(dir.path().join("sys/kernel/hostname"), "vm\n").unwrap();
        for (pid, state, start) in processes {
            let p = dir.path().join(pid.to_string());
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(p.join("stat"), stat_line(*pid, "kiln", *state, *start)).unwrap();
        }
        dir
    }

    fn stamp(pid: u32, start_ticks: u64, boot_id: &str) -> ProcessStamp {
        ProcessStamp {
            pid,
            start_ticks,
            boot_id: boot_id.into(),
            host: "vm".into(),
        }
    }

    #[test]
    fn field_22_is_read_after_the_last_parenthesis_of_the_name() {
        for comm in ["kiln", "a b", "x) S 1 2 (y", ")"] {
            let stat = parse_stat(&stat_line(42, comm, 'S', 987_654)).unwrap();
            assert_eq!(
                stat,
                Stat {
                    state: 'S',
                    start_ticks: 987_654
                },
                "{comm}"
            );
        }
        assert_eq!(parse_stat("42 (kiln) S 1 2 3"), None, "too short");
        assert_eq!(parse_stat("no parenthesis at all"), None);
    }

    #[test]
    fn this_process_is_running_and_its_stamp_is_stable() {
        let me = ProcessStamp::current().expect("Linux has /proc");
        assert_eq!(me.pid, std::process::id());
        assert!(!me.is_gone());
        assert_eq!(ProcessStamp::current(), Some(me));
    }

    #[test]
    fn a_process_that_ended_is_gone() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let stamp = ProcessStamp::read(Path::new(PROC), child.id()).unwrap();
        assert!(!stamp.is_gone());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(stamp.is_gone());
    }

    #[test]
    fn a_reused_pid_is_not_mistaken_for_the_recording_process() {
        let proc = fake_proc("boot-a", &[(4242, 'S', 5000)]);
        assert!(!stamp(4242, 5000, "boot-a").is_gone_in(proc.path()));
        // Same pid, another start time: another process got the pid.
        assert!(stamp(4242, 1234, "boot-a").is_gone_in(proc.path()));
        // The real thing: this process's pid with a start time it does not have.
        let me = ProcessStamp::current().unwrap();
        let other = stamp(me.pid, me.start_ticks + 1, &me.boot_id);
        assert!(other.is_gone());
    }

    #[test]
    fn no_such_pid_a_zombie_and_another_boot_are_gone() {
        let proc = fake_proc("boot-a", &[(1, 'S', 1), (7, 'Z', 700)]);
        assert!(stamp(99, 10, "boot-a").is_gone_in(proc.path()), "no pid");
        assert!(stamp(7, 700, "boot-a").is_gone_in(proc.path()), "zombie");
        assert!(
            stamp(1, 1, "boot-b").is_gone_in(proc.path()),
            "the machine restarted: same pid and start time mean nothing"
        );
        let elsewhere = ProcessStamp {
            host: "other-machine".into(),
            ..stamp(1, 1, "boot-b")
        };
        assert!(
            !elsewhere.is_gone_in(proc.path()),
            "another machine sharing the file: kiln cannot tell"
        );
    }

    #[test]
    fn without_a_readable_proc_nothing_is_called_gone() {
        let empty = tempfile::tempdir().unwrap();
        assert!(!stamp(1, 1, "boot-a").is_gone_in(empty.path()));
    }
}
