//! The step cache in one build: which entry it resumes from (found at Disk, once the base
//! image is known), where the VM's disk layers go, and saving the VM after Connect and after
//! each cacheable provisioner.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::key::{CacheInputs, base_identity};
use super::store::{CLIENT_KEY, DISK, Entry, EntryMeta, SEED, Store, Writing, short};
use crate::build::event::Event;
use crate::build::runner::StepContext;
use crate::build::state::BuildState;
use crate::qemu::snapshot::{self, Compressor};
use crate::recipe::units::format_bytes;

/// Where the build's disk starts: the layer (or base image) it is an overlay on, and the
/// file the VM writes.
#[derive(Debug, Clone)]
pub struct Layering {
    /// The backing file of the VM's disk.
    pub backing: PathBuf,
    /// The VM's disk (an overlay on `backing`).
    pub active: PathBuf,
    /// Whether the build starts from the base image (then the disk is resized).
    pub cold: bool,
}

/// The step cache of a running build.
#[derive(Debug)]
pub struct CacheRun {
    store: Store,
    inputs: CacheInputs,
    /// Provisioner N and after run even when cached (`--from N`).
    from: Option<usize>,
    keys: Vec<String>,
    /// The entry the build resumes from (the deepest cached point), when it does.
    pub restored: Option<Entry>,
    /// The entry after Connect of the chain resumed from: its seed and build key.
    pub root: Option<Entry>,
    /// The entry the VM's disk is being written into, and its point.
    writing: Option<(usize, Writing)>,
    /// Unfinished entries whose layers the VM still uses; removed when the build ends.
    orphans: Vec<Writing>,
    /// The entries whose layers the VM uses, held against eviction by other builds.
    held: Vec<super::store::InUse>,
    compressor: Compressor,
    recipe: String,
    build: String,
    /// Step names by point (0: Connect, N: provisioner N).
    point_names: Vec<String>,
}

impl CacheRun {
    /// The step cache for a build of `recipe_file`; `from`: rerun from provisioner N.
    pub fn new(
        store: Store,
        inputs: CacheInputs,
        from: Option<usize>,
        recipe_file: &str,
        build: &crate::recipe::template::Build,
    ) -> CacheRun {
        let count = build.provisioners.len();
        let mut point_names = vec!["Connect".to_string()];
        point_names.extend(
            build
                .provisioners
                .iter()
                .enumerate()
                .map(|(i, p)| format!("Provision {}/{count}: {}", i + 1, p.type_name())),
        );
        CacheRun {
            store,
            inputs,
            from,
            keys: Vec::new(),
            restored: None,
            root: None,
            writing: None,
            orphans: Vec::new(),
            held: Vec::new(),
            compressor: Compressor::available(),
            recipe: recipe_file.to_string(),
            build: build.name.clone(),
            point_names,
        }
    }

    /// The point the build resumes after (0: Connect), when it resumes.
    pub fn restored_point(&self) -> Option<usize> {
        self.restored.as_ref().map(|e| e.meta.point)
    }

    /// "cached, from 2026-12-07 10:14 UTC": how a step restored from the cache says so.
    pub fn cached_note(&self) -> String {
        let when = self
            .restored
            .as_ref()
            .map(|e| made_at(&e.meta.created))
            .unwrap_or_default();
        format!("cached, from {when}")
    }

    /// Finds the longest cached prefix of the build for the base image `base`, makes room
    /// under the size cap, and says where the VM's disk goes. `None` when the cache cannot
    /// be used (the reason was logged); the build then runs without it.
    pub fn prepare(
        &mut self,
        ctx: &StepContext,
        config: &crate::recipe::qemu::QemuConfig,
        base: &Path,
        qemu: &Path,
        work: &Path,
    ) -> Option<Layering> {
        let salt = match self.store.salt() {
            Ok(salt) => salt,
            Err(e) => {
                ctx.events().send(Event::Warning(format!(
                    "step cache: cannot use {} ({e}); building without it",
                    self.store.root().display()
                )));
                return None;
            }
        };
        // Another kiln or qemu may run a step differently, or not read the saved state
        // (`-machine pc` names the newest machine version): a new version is a new key.
        let versions = format!(
            "kiln {} | {}",
            env!("CARGO_PKG_VERSION"),
            crate::host::check::first_line_of(qemu, "--version").unwrap_or_default()
        );
        self.keys = self.inputs.keys(
            &salt,
            &format!("{} | {versions}", base_identity(config, base)),
        );
        if let Some(stops) = &self.inputs.stops {
            ctx.log(format!("step cache: {stops}"));
        }
        if let Some(n) = self.from
            && n < self.keys.len()
        {
            let removed = self.store.remove_with_descendants(&self.keys[n]);
            if removed.iter().any(|k| *k == self.keys[n]) {
                ctx.log(format!(
                    "step cache: provisioner {n} and after run again (--from {n})"
                ));
            }
        }
        let mut hits: Vec<Entry> = Vec::new();
        for key in &self.keys {
            match self.store.lookup(key) {
                Ok(Some(entry)) => hits.push(entry),
                Ok(None) => break,
                Err(why) => {
                    ctx.events()
                        .send(Event::Warning(format!("step cache: {why}")));
                    break;
                }
            }
        }
        let cap = super::store::default_cap(self.store.root());
        for gone in self.store.evict_to(cap, &self.keys) {
            ctx.log(format!(
                "step cache: evicted {} ({} of {}, {}) to stay under {}",
                short(&gone.meta.key),
                gone.meta.step,
                gone.meta.recipe,
                format_bytes(gone.size),
                format_bytes(cap)
            ));
        }
        for hit in &hits {
            hit.touch();
            self.held.extend(self.store.hold(hit));
        }
        self.root = hits.first().cloned();
        self.restored = hits.last().cloned();
        let next = hits.len();
        let (active, writing) = match self.keys.get(next).and_then(|key| self.store.begin(key)) {
            Some(w) => (w.dir.join(DISK), Some((next, w))),
            None => (work.join(format!("live-{next}.qcow2")), None),
        };
        self.writing = writing;
        let (backing, cold) = match &self.restored {
            Some(entry) => {
                ctx.log(format!(
                    "step cache: resumes after {} from entry {} ({}, made {})",
                    entry.meta.step,
                    short(&entry.meta.key),
                    format_bytes(entry.size),
                    made_at(&entry.meta.created)
                ));
                (entry.disk(), false)
            }
            None => {
                ctx.log(format!(
                    "step cache: nothing cached for this build yet; saving the VM after {}",
                    self.point_names[..self.keys.len().min(self.point_names.len())].join(", ")
                ));
                (base.to_path_buf(), true)
            }
        };
        Some(Layering {
            backing,
            active,
            cold,
        })
    }

    /// Keeps the seed and the build key (when kiln made it) with the entry after Connect,
    /// which every later entry of the chain sits on: a resumed VM gets the same seed drive
    /// and is logged into with the same key.
    pub fn keep_seed(
        &mut self,
        seed: Option<&Path>,
        client_key: Option<&crate::ssh::KeyPair>,
    ) -> Result<(), String> {
        let Some((0, writing)) = &self.writing else {
            return Ok(());
        };
        if let Some(seed) = seed {
            std::fs::copy(seed, writing.dir.join(SEED)).map_err(|e| e.to_string())?;
        }
        if let Some(key) = client_key {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let private = key.private_key_openssh().map_err(|e| e.to_string())?;
            let mut f = std::fs::File::options()
                .create_new(true)
                .write(true)
                .mode(0o600)
                .open(writing.dir.join(CLIENT_KEY))
                .map_err(|e| e.to_string())?;
            f.write_all(private.expose().as_bytes())
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// The seed kiln made (none for a recipe with its own) and the build key kiln made, of
    /// the chain resumed from.
    pub fn restored_seed(&self) -> Option<(Option<PathBuf>, Option<PathBuf>)> {
        self.restored.as_ref()?;
        let root = self.root.as_ref()?;
        let (seed, key) = (root.dir.join(SEED), root.dir.join(CLIENT_KEY));
        Some((seed.exists().then_some(seed), key.exists().then_some(key)))
    }

    /// Saves nothing more in this build (the VM keeps using the layers it has).
    pub fn stop(&mut self) {
        if let Some((_, writing)) = self.writing.take() {
            self.orphans.push(writing);
        }
        self.keys.clear();
    }

    /// The state file to resume from and its compressor, when the build resumes.
    pub fn incoming(&self) -> Option<(PathBuf, Compressor)> {
        let entry = self.restored.as_ref()?;
        Some((
            entry.state_file(),
            Compressor::from_name(&entry.meta.compressor)?,
        ))
    }

    /// The accelerator and CPU model the resumed VM ran with (it must resume with them).
    pub fn restored_accel(&self) -> Option<crate::qemu::accel::AccelChoice> {
        use crate::qemu::cmdline::Accel;
        let meta = &self.restored.as_ref()?.meta;
        let accel = if meta.accel == "kvm" {
            Accel::Kvm
        } else {
            Accel::Tcg
        };
        Some(crate::qemu::accel::AccelChoice {
            accel,
            cpu_model: meta.cpu_model.clone(),
            kvm_model: (accel == Accel::Kvm)
                .then(|| meta.cpu_model.clone())
                .flatten(),
            fell_back: None,
            failed_models: Vec::new(),
        })
    }

    /// Whether the VM is saved after `point`.
    pub fn saves_at(&self, point: usize) -> bool {
        matches!(&self.writing, Some((p, _)) if *p == point)
    }

    /// Saves the VM after `point` into its entry and continues it on the next layer. A
    /// failure is a warning: the build goes on, without the cache from there.
    pub async fn save(&mut self, ctx: &StepContext, state: &mut BuildState, point: usize) {
        let Some((p, writing)) = self.writing.take() else {
            return;
        };
        if p != point {
            self.writing = Some((p, writing));
            return;
        }
        let next_point = point + 1;
        let next_writing = self
            .keys
            .get(next_point)
            .and_then(|key| self.store.begin(key));
        let next = match &next_writing {
            Some(w) => w.dir.join(DISK),
            None => state.dirs.work.join(format!("live-{next_point}.qcow2")),
        };
        let Some(active) = state.disk.clone() else {
            return;
        };
        let state_file = writing
            .dir
            .join(format!("state.{}", self.compressor.name()));
        let started = Instant::now();
        let saved = {
            let mut guard = state.vm.lock().await;
            match guard.as_mut() {
                Some(vm) => snapshot::save(vm.qmp(), &active, &next, &state_file, self.compressor)
                    .await
                    .map_err(|e| e.to_string()),
                None => Err("the VM is not running".into()),
            }
        };
        let paused = started.elapsed();
        if next.exists() {
            // The VM writes to the new layer from now on, whatever else happened.
            state.disk = Some(next.clone());
        }
        let host_key = state
            .session
            .as_ref()
            .map(|s| crate::ssh::keys::public_key_openssh(s.host_key()))
            .unwrap_or_default();
        let accel = state.accel.clone();
        let meta = EntryMeta {
            key: writing.key.clone(),
            parent: point.checked_sub(1).and_then(|p| self.keys.get(p).cloned()),
            root: self.keys.first().cloned().unwrap_or_default(),
            recipe: self.recipe.clone(),
            build: self.build.clone(),
            step: self.point_names.get(point).cloned().unwrap_or_default(),
            point,
            created: chrono::Utc::now().to_rfc3339(),
            compressor: self.compressor.name().into(),
            accel: accel.as_ref().map_or("tcg", |a| a.accel.name()).to_string(),
            cpu_model: accel.and_then(|a| a.cpu_model),
            host_key,
            files: Vec::new(),
        };
        let committed = match saved {
            Ok(()) => {
                let dir = writing.dir.clone();
                // Checksumming reads the files back: off the async threads.
                match tokio::task::spawn_blocking(move || writing.commit(meta)).await {
                    Ok(Ok(entry)) => Ok(entry),
                    Ok(Err((writing, e))) => {
                        self.orphans.push(writing);
                        Err(format!("cannot finish the entry in {}: {e}", dir.display()))
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
            Err(e) => {
                self.orphans.push(writing);
                Err(e)
            }
        };
        match committed {
            Ok(entry) => {
                self.held.extend(self.store.hold(&entry));
                ctx.log(format!(
                    "step cache: saved the VM after {} (entry {}, {}; paused {:.1} s, {:.1} s in all)",
                    entry.meta.step,
                    short(&entry.meta.key),
                    format_bytes(entry.size),
                    paused.as_secs_f64(),
                    started.elapsed().as_secs_f64()
                ));
                self.writing = next_writing.map(|w| (next_point, w));
            }
            Err(why) => {
                ctx.events().send(Event::Warning(format!(
                    "step cache: the VM was not saved after {} ({why}); the build goes on without the cache",
                    self.point_names.get(point).cloned().unwrap_or_default()
                )));
                if let Some(w) = next_writing
                    && next.exists()
                {
                    self.orphans.push(w);
                }
                self.keys.truncate(point);
            }
        }
    }
}

/// An entry's creation time as people read it: `2026-12-07 10:14 UTC`.
pub fn made_at(created: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(created)
        .map(|t| {
            t.with_timezone(&chrono::Utc)
                .format("%Y-%m-%d %H:%M UTC")
                .to_string()
        })
        .unwrap_or_else(|_| created.to_string())
}

/// Sets the guest's clock after a resume: it stood still while the VM was saved, and a
/// clock days behind makes `apt-get` refuse repositories ("not valid yet").
pub async fn set_guest_clock(ctx: &StepContext, state: &BuildState) {
    let Some(session) = state.session.as_ref() else {
        return;
    };
    let now = chrono::Utc::now().timestamp();
    let command = if state.config.ssh.username == "root" {
        format!("date -u -s @{now} >/dev/null")
    } else {
        format!("sudo -n date -u -s @{now} >/dev/null")
    };
    match session.exec(&command, |_, _| {}).await {
        Ok(status) if status.success() => ctx.log("set the guest's clock to now"),
        other => ctx.events().send(Event::Warning(format!(
            "could not set the resumed guest's clock ({}): it is behind by the time since the snapshot",
            match other {
                Ok(status) => format!("`{command}` ended with {status:?}"),
                Err(e) => e.to_string(),
            }
        ))),
    }
}
