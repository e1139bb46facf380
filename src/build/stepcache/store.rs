//! The step cache on disk: one directory per entry under `$XDG_CACHE_HOME/kiln/steps/`,
//! named by its key, holding the frozen disk layer (`disk.qcow2`, whose backing file is the
//! previous entry's layer or the base image), the VM's state (`state.zst` or `state.gz`)
//! and, in the entry after Connect, the seed and the build key (mode 0600). `meta.json` is
//! written last, by rename: an entry without it is unfinished and never used. Each file's
//! size and SHA-256 are in `meta.json`; an entry whose files do not match is removed with a
//! warning.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The layer file's name in an entry.
pub const DISK: &str = "disk.qcow2";
/// The seed's name in the entry after Connect.
pub const SEED: &str = "seed.iso";
/// The build key's name in the entry after Connect (when kiln made the key).
pub const CLIENT_KEY: &str = "client_key";
const META: &str = "meta.json";
const SALT: &str = "salt";

/// A file of an entry, as recorded when it was made.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileSum {
    /// The file's name in the entry.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its SHA-256 (hex).
    pub sha256: String,
}

/// What an entry records about itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EntryMeta {
    /// The entry's key.
    pub key: String,
    /// The key of the entry its disk layer sits on (`None`: the base image).
    pub parent: Option<String>,
    /// The key of the entry after Connect, which holds the seed and the build key.
    pub root: String,
    /// The recipe file the entry was made by.
    pub recipe: String,
    /// The build's name.
    pub build: String,
    /// The step after which the VM was saved ("Connect", "Provision 2/3: shell").
    pub step: String,
    /// The point: 0 after Connect, N after provisioner N.
    pub point: usize,
    /// When it was made (RFC 3339).
    pub created: String,
    /// The compressor of the state file (`zstd`, `gzip`).
    pub compressor: String,
    /// The accelerator the VM ran with (`tcg`, `kvm`); it resumes with the same.
    pub accel: String,
    /// The CPU model the VM ran with, when not the recipe's.
    pub cpu_model: Option<String>,
    /// The guest's SSH host key (an OpenSSH public key line), pinned when it resumes.
    pub host_key: String,
    /// The entry's files.
    pub files: Vec<FileSum>,
}

/// A finished entry.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its directory.
    pub dir: PathBuf,
    /// What it records.
    pub meta: EntryMeta,
    /// Bytes on disk.
    pub size: u64,
    /// When a build last used (or made) it.
    pub last_used: SystemTime,
}

impl Entry {
    /// The frozen disk layer.
    pub fn disk(&self) -> PathBuf {
        self.dir.join(DISK)
    }

    /// The VM state file.
    pub fn state_file(&self) -> PathBuf {
        self.dir.join(format!("state.{}", self.meta.compressor))
    }

    /// Marks the entry used now (for least-recently-used eviction).
    pub fn touch(&self) {
        if let Ok(f) = std::fs::File::options()
            .write(true)
            .open(self.dir.join(META))
        {
            let _ = f.set_modified(SystemTime::now());
        }
    }
}

/// The SHA-256 and size of `path`.
pub fn file_sum(path: &Path) -> std::io::Result<FileSum> {
    let mut file = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    Ok(FileSum {
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        size,
        sha256: hex::encode(h.finalize()),
    })
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| {
            use std::os::unix::fs::MetadataExt;
            m.blocks() * 512
        })
        .sum()
}

/// Takes an exclusive `flock` on `path` without waiting; `None` when another build holds it.
fn try_lock(path: &Path) -> Option<std::fs::File> {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .ok()?;
    // SAFETY: flock on a file descriptor we own.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    (rc == 0).then_some(file)
}

/// `flock`s the directory `dir` itself (`exclusive` or shared) without waiting; `None`
/// when another holder's lock conflicts.
fn lock_dir(dir: &Path, exclusive: bool) -> Option<std::fs::File> {
    use std::os::fd::AsRawFd;
    let handle = std::fs::File::open(dir).ok()?;
    let mode = if exclusive {
        libc::LOCK_EX
    } else {
        libc::LOCK_SH
    };
    // SAFETY: flock on a file descriptor we own.
    let rc = unsafe { libc::flock(handle.as_raw_fd(), mode | libc::LOCK_NB) };
    (rc == 0).then_some(handle)
}

/// A running build's hold on an entry whose layer its VM uses (a shared lock on the entry's
/// directory): eviction leaves the entry alone while it is held.
#[derive(Debug)]
pub struct InUse(#[allow(dead_code)] std::fs::File);

/// The step cache's directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// An entry being written: its directory exists and is locked; dropping it before
/// [`Writing::commit`] removes the directory, so no half entry is left.
#[derive(Debug)]
pub struct Writing {
    /// The entry's key.
    pub key: String,
    /// Its directory.
    pub dir: PathBuf,
    lock: Option<std::fs::File>,
    lock_path: PathBuf,
    committed: bool,
}

impl Writing {
    /// Finishes the entry: checksums its files and writes `meta.json` (by rename). On
    /// failure the unfinished entry is handed back (its layer may still be in use).
    pub fn commit(mut self, meta: EntryMeta) -> Result<Entry, (Writing, std::io::Error)> {
        match self.finish(meta) {
            Ok(meta) => {
                self.committed = true;
                Ok(Entry {
                    size: dir_size(&self.dir),
                    dir: self.dir.clone(),
                    meta,
                    last_used: SystemTime::now(),
                })
            }
            Err(e) => Err((self, e)),
        }
    }

    fn finish(&self, mut meta: EntryMeta) -> std::io::Result<EntryMeta> {
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != META && !n.ends_with(".tmp"))
            .collect();
        names.sort();
        meta.files = names
            .iter()
            .map(|n| file_sum(&self.dir.join(n)))
            .collect::<std::io::Result<_>>()?;
        let tmp = self.dir.join(format!("{META}.tmp"));
        std::fs::write(&tmp, serde_json::to_vec_pretty(&meta).unwrap_or_default())?;
        std::fs::rename(&tmp, self.dir.join(META))?;
        Ok(meta)
    }
}

impl Drop for Writing {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        drop(self.lock.take());
        let _ = std::fs::remove_file(&self.lock_path);
    }
}

impl Store {
    /// The step cache inside the base-image cache directory `cache_dir`.
    pub fn in_cache(cache_dir: &Path) -> Store {
        Store {
            root: cache_dir.join("steps"),
        }
    }

    /// Its directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// This machine's salt for the keys (32 random bytes, made on first use, mode 0600).
    pub fn salt(&self) -> std::io::Result<Vec<u8>> {
        crate::build::plan::private_dir(&self.root)?;
        let path = self.root.join(SALT);
        match std::fs::read(&path) {
            Ok(salt) if salt.len() == 32 => return Ok(salt),
            _ => {}
        }
        let salt: Vec<u8> = (0..2)
            .flat_map(|_| uuid::Uuid::new_v4().into_bytes())
            .collect();
        let tmp = self.root.join(format!("{SALT}.{}.tmp", std::process::id()));
        {
            use std::io::Write;
            let mut f = std::fs::File::options()
                .create(true)
                .truncate(true)
                .write(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&salt)?;
        }
        // Another build may have made one meanwhile: the first one stays.
        match std::fs::hard_link(&tmp, &path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        }
        let _ = std::fs::remove_file(&tmp);
        let salt = std::fs::read(&path)?;
        Ok(salt)
    }

    fn read(&self, dir: &Path) -> Option<Entry> {
        let meta_path = dir.join(META);
        let bytes = std::fs::read(&meta_path).ok()?;
        let meta: EntryMeta = serde_json::from_slice(&bytes).ok()?;
        let last_used = std::fs::metadata(&meta_path)
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        Some(Entry {
            size: dir_size(dir),
            dir: dir.to_path_buf(),
            meta,
            last_used,
        })
    }

    /// The finished entry `key`, checked against its checksums. `Err` says why a finished
    /// entry was unusable (it is removed, with the entries built on it).
    pub fn lookup(&self, key: &str) -> Result<Option<Entry>, String> {
        let dir = self.root.join(key);
        if !dir.join(META).exists() {
            return Ok(None);
        }
        let Some(entry) = self.read(&dir) else {
            self.remove_with_descendants(key);
            return Err(format!(
                "the step cache entry {} has an unreadable meta.json; removed it",
                short(key)
            ));
        };
        for want in &entry.meta.files {
            let path = dir.join(&want.name);
            match file_sum(&path) {
                Ok(got) if got.size == want.size && got.sha256 == want.sha256 => {}
                Ok(got) => {
                    self.remove_with_descendants(key);
                    return Err(format!(
                        "the step cache entry {} ({}) is damaged: {} has {} bytes and SHA-256 {}, not {} bytes and {}; removed it",
                        short(key),
                        entry.meta.step,
                        want.name,
                        got.size,
                        short(&got.sha256),
                        want.size,
                        short(&want.sha256)
                    ));
                }
                Err(e) => {
                    self.remove_with_descendants(key);
                    return Err(format!(
                        "the step cache entry {} ({}) is damaged: cannot read {}: {e}; removed it",
                        short(key),
                        entry.meta.step,
                        want.name
                    ));
                }
            }
        }
        Ok(Some(entry))
    }

    /// Starts writing entry `key`; `None` when another build is writing it or it exists.
    pub fn begin(&self, key: &str) -> Option<Writing> {
        crate::build::plan::private_dir(&self.root).ok()?;
        let lock_path = self.root.join(format!("{key}.lock"));
        let lock = try_lock(&lock_path)?;
        let dir = self.root.join(key);
        if dir.join(META).exists() {
            return None;
        }
        // Left by a build that died while writing it (we hold the lock now).
        let _ = std::fs::remove_dir_all(&dir);
        crate::build::plan::private_dir(&dir).ok()?;
        Some(Writing {
            key: key.to_string(),
            dir,
            lock: Some(lock),
            lock_path,
            committed: false,
        })
    }

    /// Every finished entry, most recently used first.
    pub fn list(&self) -> Vec<Entry> {
        let mut entries: Vec<Entry> = std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| self.read(&e.path()))
            .collect();
        entries.sort_by_key(|e| std::cmp::Reverse(e.last_used));
        entries
    }

    /// Bytes the cache takes (finished and unfinished entries).
    pub fn size(&self) -> u64 {
        std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| dir_size(&e.path()))
            .sum()
    }

    /// Removes entry `key` and every entry whose layer sits on it; returns the keys removed.
    pub fn remove_with_descendants(&self, key: &str) -> Vec<String> {
        let doomed = self.with_descendants(key, &self.list());
        for key in &doomed {
            let _ = std::fs::remove_dir_all(self.root.join(key));
        }
        doomed
    }

    /// Removes every entry; returns how many and the bytes freed.
    pub fn clear(&self) -> (usize, u64) {
        let entries = self.list();
        let bytes = self.size();
        for e in &entries {
            let _ = std::fs::remove_dir_all(&e.dir);
        }
        (entries.len(), bytes)
    }

    /// Holds `entry` for a running build (see [`InUse`]); `None` if it is gone.
    pub fn hold(&self, entry: &Entry) -> Option<InUse> {
        lock_dir(&entry.dir, false).map(InUse)
    }

    /// Whether a running build holds the entry `key`.
    fn in_use(&self, key: &str) -> bool {
        let dir = self.root.join(key);
        dir.exists() && lock_dir(&dir, true).is_none()
    }

    /// The entry `key` and the entries built on it, as keys.
    fn with_descendants(&self, key: &str, entries: &[Entry]) -> Vec<String> {
        let mut family = vec![key.to_string()];
        let mut i = 0;
        while i < family.len() {
            let parent = family[i].clone();
            for e in entries {
                if e.meta.parent.as_deref() == Some(parent.as_str())
                    && !family.contains(&e.meta.key)
                {
                    family.push(e.meta.key.clone());
                }
            }
            i += 1;
        }
        family
    }

    /// Removes least recently used entries (with the entries built on them) until the
    /// cache takes at most `cap` bytes, never one of `keep` nor one a running build holds
    /// (nor one whose descendants are held). Returns what was removed.
    pub fn evict_to(&self, cap: u64, keep: &[String]) -> Vec<Entry> {
        let mut removed = Vec::new();
        let mut spared: Vec<String> = keep.to_vec();
        loop {
            if self.size() <= cap {
                return removed;
            }
            let mut entries = self.list();
            entries.reverse();
            let Some(oldest) = entries.iter().find(|e| !spared.contains(&e.meta.key)) else {
                return removed;
            };
            let family = self.with_descendants(&oldest.meta.key, &entries);
            if family.iter().any(|k| keep.contains(k) || self.in_use(k)) {
                spared.push(oldest.meta.key.clone());
                continue;
            }
            let gone = self.remove_with_descendants(&oldest.meta.key);
            removed.extend(entries.into_iter().filter(|e| gone.contains(&e.meta.key)));
        }
    }
}

/// The default size cap: 20 GiB or a tenth of the free space where the cache is, whichever
/// is smaller. `KILN_STEP_CACHE_MAX` (a size as `disk_size` takes it: `5G`, `500M`; a bare
/// number is MiB) overrides it.
pub fn default_cap(root: &Path) -> u64 {
    if let Some(cap) = std::env::var("KILN_STEP_CACHE_MAX")
        .ok()
        .and_then(|v| crate::recipe::units::parse_disk_size(&v).ok())
    {
        return cap;
    }
    const TWENTY_GIB: u64 = 20 << 30;
    let probe = root
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    crate::host::check::free_bytes(probe).map_or(TWENTY_GIB, |free| TWENTY_GIB.min(free / 10))
}

/// The first 12 characters of a key or digest, as shown to people.
pub fn short(key: &str) -> &str {
    &key[..key.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(key: &str, parent: Option<&str>) -> EntryMeta {
        EntryMeta {
            key: key.into(),
            parent: parent.map(str::to_string),
            root: "r".into(),
            recipe: "r.json".into(),
            build: "b".into(),
            step: "Connect".into(),
            point: 0,
            created: "2026-12-08T00:00:00Z".into(),
            compressor: "zstd".into(),
            accel: "tcg".into(),
            cpu_model: None,
            host_key: "ssh-ed25519 AAAA".into(),
            files: Vec::new(),
        }
    }

    fn make(store: &Store, key: &str, parent: Option<&str>, bytes: usize) -> Entry {
        let w = store.begin(key).expect("free");
        std::fs::write(w.dir.join(DISK), vec![7u8; bytes]).unwrap();
        w.commit(meta(key, parent)).map_err(|(_, e)| e).unwrap()
    }

    #[test]
    fn an_unfinished_entry_is_never_used_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::in_cache(dir.path());
        let w = store.begin("k1").unwrap();
        std::fs::write(w.dir.join(DISK), b"half").unwrap();
        assert!(store.begin("k1").is_none(), "one writer at a time");
        assert!(store.lookup("k1").unwrap().is_none());
        drop(w);
        assert!(!store.root().join("k1").exists());
        assert!(store.list().is_empty());
    }

    #[test]
    fn a_damaged_entry_is_detected_and_removed_with_what_sits_on_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::in_cache(dir.path());
        make(&store, "a", None, 1000);
        make(&store, "b", Some("a"), 1000);
        assert!(store.lookup("a").unwrap().is_some());
        // Truncate a's layer.
        std::fs::write(store.root().join("a").join(DISK), vec![7u8; 10]).unwrap();
        let err = store.lookup("a").unwrap_err();
        assert!(
            err.contains("is damaged") && err.contains("disk.qcow2"),
            "{err}"
        );
        assert!(store.lookup("a").unwrap().is_none());
        assert!(store.lookup("b").unwrap().is_none(), "b sat on a");
    }

    #[test]
    fn eviction_removes_the_least_recently_used_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::in_cache(dir.path());
        let old = make(&store, "old", None, 300_000);
        let new = make(&store, "new", None, 300_000);
        let t = SystemTime::now();
        for (e, age) in [(&old, 100), (&new, 10)] {
            std::fs::File::options()
                .write(true)
                .open(e.dir.join(META))
                .unwrap()
                .set_modified(t - std::time::Duration::from_secs(age))
                .unwrap();
        }
        let removed = store.evict_to(400_000, &[]);
        assert_eq!(
            removed
                .iter()
                .map(|e| e.meta.key.as_str())
                .collect::<Vec<_>>(),
            ["old"]
        );
        assert!(store.lookup("new").unwrap().is_some());
        assert!(store.evict_to(0, &["new".into()]).is_empty(), "kept");
    }

    #[test]
    fn eviction_leaves_entries_a_running_build_holds_and_what_they_sit_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::in_cache(dir.path());
        let base = make(&store, "base", None, 300_000);
        let on_it = make(&store, "on-it", Some("base"), 300_000);
        let other = make(&store, "other", None, 300_000);
        let held = store.hold(&on_it).expect("held");
        let removed: Vec<String> = store
            .evict_to(0, &[])
            .into_iter()
            .map(|e| e.meta.key)
            .collect();
        assert_eq!(removed, ["other"], "base is under a held entry");
        assert!(store.lookup("base").unwrap().is_some());
        drop(held);
        drop((base, other));
        assert_eq!(store.evict_to(0, &[]).len(), 2, "free to go once released");
    }

    #[test]
    fn the_salt_is_made_once_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::in_cache(dir.path());
        let salt = store.salt().unwrap();
        assert_eq!(salt.len(), 32);
        assert_eq!(store.salt().unwrap(), salt);
        let mode = std::fs::metadata(store.root().join(SALT))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
