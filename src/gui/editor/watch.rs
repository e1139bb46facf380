//! Noticing that the open recipe changed on disk while it is open, cheaply: a look at the
//! file's metadata (size, modification and change times, inode) when the window gains focus
//! and at most every [`CHECK_EVERY`] on frames that are drawn anyway (the watch never asks
//! for a frame). Only when the metadata changed is the file read, and its text compared (by
//! hash) with what the editor last read or wrote, so the editor's own saves and a `touch`
//! are not changes. A change the save-time check would also catch is not missed for long;
//! two writes of the same size within the file system's timestamp granularity can slip by
//! until the next one, and Save still refuses to overwrite them.

use std::hash::{Hash, Hasher};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use super::save;

/// How often the file is looked at, at most, while frames are drawn.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);

/// What the metadata says about the file; any difference means "read it again".
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    changed: (i64, i64),
    inode: (u64, u64),
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        len: meta.len(),
        modified: meta.modified().ok(),
        changed: (meta.ctime(), meta.ctime_nsec()),
        inode: (meta.dev(), meta.ino()),
    })
}

fn hash_text(text: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// What a look at the file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskChange {
    /// Nothing new: the same text as the editor's, or a change already told.
    Unchanged,
    /// The file now holds this text, which differs from what the editor last read or wrote.
    Changed(String),
    /// The file is gone or cannot be read; the reason names the file.
    Unreadable(String),
}

/// The editor's watch on its file.
#[derive(Debug)]
pub struct DiskWatch {
    /// The metadata at the last look (`None`: the file could not be seen).
    stamp: Option<Stamp>,
    last_look: Instant,
    /// The disk text's hash (`None`: unreadable) last told, so a change the user chose to
    /// keep editing over is not told again until the file changes once more.
    told: Option<Option<u64>>,
}

impl DiskWatch {
    /// Starts watching `path`; call it before reading the file, so a change made while it is
    /// read is seen at the first look.
    pub fn new(path: &Path, now: Instant) -> Self {
        Self {
            stamp: stamp(path),
            last_look: now,
            told: None,
        }
    }

    /// Whether to look now: the window just gained focus, or [`CHECK_EVERY`] has passed.
    pub fn due(&self, now: Instant, focus_gained: bool) -> bool {
        focus_gained || now.saturating_duration_since(self.last_look) >= CHECK_EVERY
    }

    /// Looks at `path`; `baseline` is the text the editor last read from or wrote to it
    /// (`None`: it could not be read then).
    pub fn look(&mut self, path: &Path, baseline: Option<&str>, now: Instant) -> DiskChange {
        self.last_look = now;
        let current = stamp(path);
        if current == self.stamp {
            return DiskChange::Unchanged;
        }
        self.stamp = current;
        let disk = save::read(path);
        let disk_hash = disk.as_deref().ok().map(hash_text);
        if disk_hash == baseline.map(hash_text) {
            self.told = None;
            return DiskChange::Unchanged;
        }
        if self.told == Some(disk_hash) {
            return DiskChange::Unchanged;
        }
        self.told = Some(disk_hash);
        match disk {
            Ok(text) => DiskChange::Changed(text),
            Err(why) => DiskChange::Unreadable(why),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_is_due_on_focus_and_every_two_seconds_only() {
        let dir = tempfile::tempdir().unwrap();
        let start = Instant::now();
        let watch = DiskWatch::new(&dir.path().join("r.json"), start);
        assert!(!watch.due(start + Duration::from_millis(1999), false));
        assert!(watch.due(start + Duration::from_millis(10), true));
        assert!(watch.due(start + CHECK_EVERY, false));
    }

    #[test]
    fn a_change_is_told_once_and_a_touch_or_own_save_is_no_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        std::fs::write(&path, "{\"a\": 1}").unwrap();
        let now = Instant::now();
        let mut watch = DiskWatch::new(&path, now);
        let base = "{\"a\": 1}";
        assert_eq!(watch.look(&path, Some(base), now), DiskChange::Unchanged);

        // Written again with the same text (a new inode, like an atomic save): no change.
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, base).unwrap();
        assert_eq!(watch.look(&path, Some(base), now), DiskChange::Unchanged);

        std::fs::write(&path, "{\"a\": 22}").unwrap();
        assert_eq!(
            watch.look(&path, Some(base), now),
            DiskChange::Changed("{\"a\": 22}".into())
        );
        // Told once: the same text again, even rewritten, is not told twice.
        std::fs::write(&path, "{\"a\": 22}").unwrap();
        assert_eq!(watch.look(&path, Some(base), now), DiskChange::Unchanged);
        // Another change is.
        std::fs::write(&path, "{\"a\": 333}").unwrap();
        assert_eq!(
            watch.look(&path, Some(base), now),
            DiskChange::Changed("{\"a\": 333}".into())
        );
        // The editor saved its own text: no change.
        std::fs::write(&path, "{\"a\": 4444}").unwrap();
        assert_eq!(
            watch.look(&path, Some("{\"a\": 4444}"), now),
            DiskChange::Unchanged
        );
    }

    #[test]
    fn a_deleted_file_is_told_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        std::fs::write(&path, "{}").unwrap();
        let now = Instant::now();
        let mut watch = DiskWatch::new(&path, now);
        std::fs::remove_file(&path).unwrap();
        match watch.look(&path, Some("{}"), now) {
            DiskChange::Unreadable(why) => {
                assert!(why.contains(&path.display().to_string()), "{why}")
            }
            other => panic!("not told: {other:?}"),
        }
        assert_eq!(watch.look(&path, Some("{}"), now), DiskChange::Unchanged);
    }

    /// The cost of one look at an unchanged file, printed (a measurement, not a check of
    /// speed): `cargo test --lib editor::watch::tests::look_cost -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement; run it on its own"]
    fn look_cost() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        let text = "x".repeat(20_000);
        std::fs::write(&path, &text).unwrap();
        let mut watch = DiskWatch::new(&path, Instant::now());
        let rounds = 10_000;
        let clock = Instant::now();
        for _ in 0..rounds {
            assert_eq!(
                watch.look(&path, Some(&text), Instant::now()),
                DiskChange::Unchanged
            );
        }
        let unchanged = clock.elapsed() / rounds;
        let mut changed = Duration::ZERO;
        for i in 0..100 {
            std::fs::write(&path, format!("{text}{i}")).unwrap();
            let clock = Instant::now();
            assert!(matches!(
                watch.look(&path, Some(&text), Instant::now()),
                DiskChange::Changed(_)
            ));
            changed += clock.elapsed();
        }
        println!(
            "one look at a 20 kB recipe: unchanged {unchanged:?}, changed (read + hash) {:?}",
            changed / 100
        );
    }
}
