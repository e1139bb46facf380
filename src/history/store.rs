//! The history file: opened (created, migrated) with WAL and a busy timeout, so the window
//! and a `kiln build` in a terminal can write at the same time; builds written and read.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, TransactionBehavior, params};

use super::HistoryError;
use super::model::{
    ArtifactFile, BuildRecord, CheckRecord, Origin, RunOutcome, StepEnd, StepRecord, VarOrigin,
    VariableRecord,
};
use super::process::ProcessStamp;
use super::schema::{self, Migrated};

/// How long a write waits for another kiln's write before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How many builds the history keeps: after each recorded build, older ended ones go.
pub const DEFAULT_KEEP: usize = 1000;

/// The tables that hold a build's parts, each with a `build_id` column.
const PART_TABLES: [&str; 5] = ["steps", "variables", "artifacts", "templates", "checks"];

/// An open history file.
pub struct History {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "History({})", self.path.display())
    }
}

fn time_text(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn parse_time(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn from_millis(ms: Option<i64>) -> Option<Duration> {
    ms.map(|ms| Duration::from_millis(ms.max(0) as u64))
}

/// The stamp stored with a build, when all of it is there.
fn process_of(
    pid: Option<i64>,
    start: Option<i64>,
    boot_id: Option<String>,
    host: Option<String>,
) -> Option<ProcessStamp> {
    Some(ProcessStamp {
        pid: u32::try_from(pid?).ok()?,
        start_ticks: u64::try_from(start?).ok()?,
        boot_id: boot_id?,
        host: host?,
    })
}

fn path_text(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

impl History {
    /// Opens the history at `path`, creating it (and its folder) when missing and bringing
    /// its layout up to date. A damaged file, or one from a newer kiln, is refused and left
    /// as it is.
    pub fn open(path: &Path) -> Result<Self, HistoryError> {
        let fresh = !path.exists();
        if fresh && let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            private_dir(dir).map_err(|source| HistoryError::Folder {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let sql = |e| HistoryError::sql(path, e);
        let mut conn = Connection::open(path).map_err(sql)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
        // Reading the version is the first access: a file that is not a database fails here,
        // before anything is written to it.
        let found = schema::version(&conn).map_err(sql)?;
        let newer = |found| HistoryError::Newer {
            path: path.to_path_buf(),
            found,
            known: schema::latest(),
        };
        if found > schema::latest() {
            return Err(newer(found));
        }
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))
            .map_err(sql)?;
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(sql)?;
        if let Migrated::Newer(found) =
            schema::migrate(&mut conn, schema::MIGRATIONS).map_err(sql)?
        {
            return Err(newer(found));
        }
        if fresh {
            // Not secret, but nobody else's business; SQLite gives the -wal and -shm files the
            // same mode.
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        Ok(Self {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// Opens the history at `path` if the file exists (`None` when no build was recorded yet:
    /// reading creates nothing).
    pub fn open_existing(path: &Path) -> Result<Option<Self>, HistoryError> {
        if path.exists() {
            Self::open(path).map(Some)
        } else {
            Ok(None)
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sql(&self, e: rusqlite::Error) -> HistoryError {
        HistoryError::sql(&self.path, e)
    }

    /// Writes `record` in one transaction: a new row when it has no id yet (the id is set),
    /// else its row is replaced with what the record says now (written anew if it was
    /// removed meanwhile).
    pub fn save(&mut self, record: &mut BuildRecord) -> Result<i64, HistoryError> {
        let path = self.path.clone();
        let sql = |e| HistoryError::sql(&path, e);
        let tx = self.conn.transaction().map_err(sql)?;
        tx.execute(
            "INSERT INTO builds (id, recipe, title, build_name, origin, started_at, ended_at,
                duration_ms, outcome, message, stopped_at, log_dir, warnings, pid, pid_start,
                boot_id, host, template_name)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                ?17, ?18)
             ON CONFLICT (id) DO UPDATE SET recipe = excluded.recipe, title = excluded.title,
                build_name = excluded.build_name, origin = excluded.origin,
                started_at = excluded.started_at, ended_at = excluded.ended_at,
                duration_ms = excluded.duration_ms, outcome = excluded.outcome,
                message = excluded.message, stopped_at = excluded.stopped_at,
                log_dir = excluded.log_dir, warnings = excluded.warnings,
                pid = excluded.pid, pid_start = excluded.pid_start,
                boot_id = excluded.boot_id, host = excluded.host,
                template_name = excluded.template_name",
            params![
                record.id,
                path_text(&record.recipe),
                record.title,
                record.build_name,
                record.origin.as_str(),
                time_text(&record.started),
                record.ended.as_ref().map(time_text),
                record.duration.map(millis),
                record.outcome.as_str(),
                record.outcome.message(),
                record.stopped_at,
                record.log_dir.as_deref().map(path_text),
                record.warnings,
                record.process.as_ref().map(|p| p.pid),
                record
                    .process
                    .as_ref()
                    .map(|p| i64::try_from(p.start_ticks).unwrap_or(i64::MAX)),
                record.process.as_ref().map(|p| p.boot_id.as_str()),
                record.process.as_ref().map(|p| p.host.as_str()),
                record.template_name,
            ],
        )
        .map_err(sql)?;
        let id = match record.id {
            None => tx.last_insert_rowid(),
            Some(id) => {
                for table in PART_TABLES {
                    tx.execute(&format!("DELETE FROM {table} WHERE build_id = ?1"), [id])
                        .map_err(sql)?;
                }
                id
            }
        };
        for (i, s) in record.steps.iter().enumerate() {
            tx.execute(
                "INSERT INTO steps (build_id, position, name, outcome, detail, duration_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    id,
                    i as i64,
                    s.name,
                    s.end.as_str(),
                    s.detail,
                    s.duration.map(millis)
                ],
            )
            .map_err(sql)?;
        }
        for (i, v) in record.variables.iter().enumerate() {
            // A sensitive value is never written, whatever the record holds.
            let value = if v.sensitive {
                None
            } else {
                v.value.as_deref()
            };
            tx.execute(
                "INSERT INTO variables (build_id, position, name, value, sensitive, origin)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![id, i as i64, v.name, value, v.sensitive, v.origin.as_str()],
            )
            .map_err(sql)?;
        }
        for (i, a) in record.artifacts.iter().enumerate() {
            tx.execute(
                "INSERT INTO artifacts (build_id, position, producer, path)
                 VALUES (?1, ?2, ?3, ?4)",
                params![id, i as i64, a.producer, path_text(&a.path)],
            )
            .map_err(sql)?;
        }
        for (i, (zone, template)) in record.templates.iter().enumerate() {
            tx.execute(
                "INSERT INTO templates (build_id, position, zone, template_id)
                 VALUES (?1, ?2, ?3, ?4)",
                params![id, i as i64, zone, template],
            )
            .map_err(sql)?;
        }
        for (i, c) in record.checks.iter().enumerate() {
            tx.execute(
                "INSERT INTO checks (build_id, position, name, passed, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, i as i64, c.name, c.passed, c.detail],
            )
            .map_err(sql)?;
        }
        tx.commit().map_err(sql)?;
        record.id = Some(id);
        Ok(id)
    }

    /// Deletes the builds beyond the newest `keep`, with their steps, variables, artifacts,
    /// templates and checks, in one transaction. Only ended and interrupted builds go: one
    /// whose kiln may still run it is kept, however old. Returns how many were deleted.
    pub fn prune(&mut self, keep: usize) -> Result<usize, HistoryError> {
        let path = self.path.clone();
        let sql = |e| HistoryError::sql(&path, e);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        let doomed = {
            let mut stmt = tx
                .prepare(
                    "SELECT id, outcome, pid, pid_start, boot_id, host FROM builds
                     ORDER BY started_at DESC, id DESC LIMIT -1 OFFSET ?1",
                )
                .map_err(sql)?;
            let keep = i64::try_from(keep).unwrap_or(i64::MAX);
            let rows = stmt
                .query_map([keep], |r| {
                    let outcome = RunOutcome::parse(&r.get::<_, String>(1)?, None);
                    let process = process_of(r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?);
                    Ok((r.get::<_, i64>(0)?, outcome, process))
                })
                .map_err(sql)?;
            let mut doomed = Vec::new();
            for row in rows {
                let (id, outcome, process) = row.map_err(sql)?;
                let may_run = outcome == RunOutcome::Unfinished
                    && !process.as_ref().is_some_and(ProcessStamp::is_gone);
                if !may_run {
                    doomed.push(id);
                }
            }
            doomed
        };
        for table in PART_TABLES.iter().chain(&["builds"]) {
            let column = if *table == "builds" { "id" } else { "build_id" };
            let mut stmt = tx
                .prepare(&format!("DELETE FROM {table} WHERE {column} = ?1"))
                .map_err(sql)?;
            for id in &doomed {
                stmt.execute([id]).map_err(sql)?;
            }
        }
        tx.commit().map_err(sql)?;
        Ok(doomed.len())
    }

    /// The `limit` most recent builds, newest first, with their steps, variables, artifacts,
    /// templates and checks. An unfinished build whose kiln is gone reads as
    /// [`RunOutcome::Interrupted`]; the file is not changed (see [`BuildRecord::settle`]).
    pub fn recent(&self, limit: usize) -> Result<Vec<BuildRecord>, HistoryError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, recipe, title, build_name, origin, started_at, ended_at, duration_ms,
                    outcome, message, stopped_at, log_dir, warnings, pid, pid_start, boot_id,
                    host, template_name
                 FROM builds ORDER BY started_at DESC, id DESC LIMIT ?1",
            )
            .map_err(|e| self.sql(e))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map([limit], |r| {
                let outcome: String = r.get(8)?;
                Ok(BuildRecord {
                    id: Some(r.get(0)?),
                    recipe: PathBuf::from(r.get::<_, String>(1)?),
                    title: r.get(2)?,
                    build_name: r.get(3)?,
                    origin: Origin::parse(&r.get::<_, String>(4)?),
                    started: parse_time(&r.get::<_, String>(5)?),
                    ended: r.get::<_, Option<String>>(6)?.as_deref().map(parse_time),
                    duration: from_millis(r.get(7)?),
                    outcome: RunOutcome::parse(&outcome, r.get(9)?),
                    stopped_at: r.get(10)?,
                    log_dir: r.get::<_, Option<String>>(11)?.map(PathBuf::from),
                    warnings: r.get(12)?,
                    steps: Vec::new(),
                    variables: Vec::new(),
                    artifacts: Vec::new(),
                    templates: Vec::new(),
                    template_name: r.get(17)?,
                    checks: Vec::new(),
                    process: process_of(r.get(13)?, r.get(14)?, r.get(15)?, r.get(16)?),
                })
            })
            .map_err(|e| self.sql(e))?;
        let mut out = rows
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.sql(e))?;
        for record in &mut out {
            self.load_parts(record).map_err(|e| self.sql(e))?;
            record.settle();
        }
        Ok(out)
    }

    fn load_parts(&self, record: &mut BuildRecord) -> rusqlite::Result<()> {
        let Some(id) = record.id else {
            return Ok(());
        };
        let mut stmt = self.conn.prepare_cached(
            "SELECT name, outcome, detail, duration_ms FROM steps
             WHERE build_id = ?1 ORDER BY position",
        )?;
        record.steps = stmt
            .query_map([id], |r| {
                Ok(StepRecord {
                    name: r.get(0)?,
                    end: StepEnd::parse(&r.get::<_, String>(1)?),
                    detail: r.get(2)?,
                    duration: from_millis(r.get(3)?),
                })
            })?
            .collect::<Result<_, _>>()?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT name, value, sensitive, origin FROM variables
             WHERE build_id = ?1 ORDER BY position",
        )?;
        record.variables = stmt
            .query_map([id], |r| {
                let sensitive: bool = r.get(2)?;
                Ok(VariableRecord {
                    name: r.get(0)?,
                    value: if sensitive { None } else { r.get(1)? },
                    sensitive,
                    origin: VarOrigin::parse(&r.get::<_, String>(3)?),
                })
            })?
            .collect::<Result<_, _>>()?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT producer, path FROM artifacts WHERE build_id = ?1 ORDER BY position",
        )?;
        record.artifacts = stmt
            .query_map([id], |r| {
                Ok(ArtifactFile {
                    producer: r.get(0)?,
                    path: PathBuf::from(r.get::<_, String>(1)?),
                })
            })?
            .collect::<Result<_, _>>()?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT zone, template_id FROM templates WHERE build_id = ?1 ORDER BY position",
        )?;
        record.templates = stmt
            .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT name, passed, detail FROM checks WHERE build_id = ?1 ORDER BY position",
        )?;
        record.checks = stmt
            .query_map([id], |r| {
                Ok(CheckRecord {
                    name: r.get(0)?,
                    passed: r.get(1)?,
                    detail: r.get(2)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A build as a real one leaves it: a few steps, variables and an artifact.
    fn build(n: usize, outcome: RunOutcome, process: Option<ProcessStamp>) -> BuildRecord {
        let started = DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::seconds(n as i64);
        BuildRecord {
            id: None,
            recipe: PathBuf::from(format!("/r/recipe-{n}.json")),
            title: Some("History test".into()),
            build_name: "vm".into(),
            origin: Origin::Cli,
            started,
            ended: (outcome != RunOutcome::Unfinished).then_some(started),
            duration: Some(Duration::from_secs(60)),
            outcome,
            stopped_at: None,
            log_dir: Some(PathBuf::from(format!("/logs/{n}"))),
            template_name: Some(format!("Template {n}")),
            steps: [
                "Base image",
                "Disk",
                "Seed",
                "Boot",
                "Provision",
                "Shut down",
            ]
            .iter()
            .map(|name| StepRecord {
                name: (*name).into(),
                end: StepEnd::Done,
                detail: None,
                duration: Some(Duration::from_secs(10)),
            })
            .collect(),
            variables: ["bucket", "zone", "memory", "api_secret"]
                .iter()
                .map(|name| VariableRecord {
                    name: (*name).into(),
                    value: Some("value".into()),
                    sensitive: *name == "api_secret",
                    origin: VarOrigin::Given,
                })
                .collect(),
            artifacts: vec![ArtifactFile {
                producer: "qemu".into(),
                path: PathBuf::from(format!("/out/{n}/disk.qcow2")),
            }],
            templates: vec![("ch-gva-2".into(), format!("tpl-{n}"))],
            checks: vec![CheckRecord {
                name: "boots".into(),
                passed: true,
                detail: "ok".into(),
            }],
            warnings: 0,
            process,
        }
    }

    /// A stamp of a process that certainly ended: a child that was started and reaped.
    fn ended_process() -> ProcessStamp {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let stamp = ProcessStamp::read(Path::new("/proc"), child.id()).unwrap();
        child.wait().unwrap();
        stamp
    }

    fn count(history: &History, sql: &str) -> i64 {
        history.conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn an_unfinished_build_whose_kiln_is_gone_reads_as_interrupted_and_is_not_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.sqlite");
        let mut history = History::open(&path).unwrap();
        let mut running = build(1, RunOutcome::Unfinished, ProcessStamp::current());
        running.steps[2].end = StepEnd::Interrupted;
        history.save(&mut running).unwrap();
        let mut killed = build(2, RunOutcome::Unfinished, Some(ended_process()));
        killed.steps[3].end = StepEnd::Interrupted;
        history.save(&mut killed).unwrap();
        let mut legacy = build(3, RunOutcome::Unfinished, None);
        history.save(&mut legacy).unwrap();
        drop(history);

        let history = History::open(&path).unwrap();
        let listed = history.recent(10).unwrap();
        let outcome = |id| {
            listed
                .iter()
                .find(|r| r.id == id)
                .map(|r| r.outcome.clone())
                .unwrap()
        };
        assert_eq!(outcome(running.id), RunOutcome::Unfinished, "still running");
        assert_eq!(outcome(killed.id), RunOutcome::Interrupted);
        assert_eq!(outcome(legacy.id), RunOutcome::Unfinished, "cannot tell");
        let read_killed = listed.iter().find(|r| r.id == killed.id).unwrap();
        assert_eq!(read_killed.running_step(), Some("Boot"));
        assert_eq!(read_killed.process, killed.process, "the stamp round-trips");
        assert_eq!(
            read_killed.template_name.as_deref(),
            Some("Template 2"),
            "the template name round-trips"
        );
        assert_eq!(
            count(
                &history,
                "SELECT count(*) FROM builds WHERE outcome = 'unfinished'"
            ),
            3,
            "reading changes nothing in the file"
        );
    }

    #[test]
    fn pruning_keeps_the_newest_and_every_build_that_may_still_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.sqlite");
        let mut history = History::open(&path).unwrap();
        // Oldest first: a running build, an interrupted one, an old kiln's unfinished one,
        // a failed one, then 6 done.
        let mut ids = Vec::new();
        let mut oldest = vec![
            build(0, RunOutcome::Unfinished, ProcessStamp::current()),
            build(1, RunOutcome::Unfinished, Some(ended_process())),
            build(2, RunOutcome::Unfinished, None),
            build(3, RunOutcome::Failed("x".into()), None),
        ];
        oldest.extend((4..10).map(|n| build(n, RunOutcome::Done, None)));
        for mut record in oldest {
            ids.push(history.save(&mut record).unwrap());
        }

        assert_eq!(history.prune(3).unwrap(), 5, "interrupted, failed, 3 done");
        let left: Vec<i64> = history
            .recent(100)
            .unwrap()
            .iter()
            .filter_map(|r| r.id)
            .collect();
        assert_eq!(left, [ids[9], ids[8], ids[7], ids[2], ids[0]]);
        for table in PART_TABLES {
            let orphans = count(
                &history,
                &format!(
                    "SELECT count(*) FROM {table} WHERE build_id NOT IN (SELECT id FROM builds)"
                ),
            );
            assert_eq!(orphans, 0, "{table} keeps rows of deleted builds");
            let kept = count(
                &history,
                &format!("SELECT count(DISTINCT build_id) FROM {table}"),
            );
            assert_eq!(kept, 5, "{table} lost rows of kept builds");
        }
        assert_eq!(history.prune(3).unwrap(), 0, "nothing more to do");
        assert_eq!(history.prune(usize::MAX).unwrap(), 0);
    }

    /// `n` done builds, the oldest first, written fast (no fsync: a test file).
    fn filled(path: &Path, n: usize) -> History {
        let mut history = History::open(path).unwrap();
        history
            .conn
            .pragma_update(None, "synchronous", "OFF")
            .unwrap();
        for i in 0..n {
            history
                .save(&mut build(i, RunOutcome::Done, None))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        history
    }

    fn has_recipe(history: &History, n: usize) -> bool {
        let sql = format!("SELECT count(*) FROM builds WHERE recipe = '/r/recipe-{n}.json'");
        count(history, &sql) == 1
    }

    #[test]
    fn recording_a_build_prunes_beyond_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.sqlite");
        drop(filled(&path, DEFAULT_KEEP + 5));
        let (recording, warn) = super::super::recording::tests::recording(&path);
        assert_eq!(warn, None);
        let (record, warn) = recording.finish(&super::super::record::tests::report(
            crate::build::event::Outcome::Done,
        ));
        assert_eq!(warn, None);
        let history = History::open(&path).unwrap();
        assert_eq!(
            count(&history, "SELECT count(*) FROM builds"),
            DEFAULT_KEEP as i64
        );
        // The 6 oldest went; the 7th oldest and the new build stayed.
        assert!(!has_recipe(&history, 5));
        assert!(has_recipe(&history, 6));
        assert_eq!(history.recent(1).unwrap()[0].id, record.id);
    }

    /// The cost of pruning a 1,000-build history, printed (a measurement, not a check of
    /// speed): `cargo test --lib history::store::tests::prune_cost -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement; run it on its own"]
    fn prune_cost() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.sqlite");
        let mut history = filled(&path, DEFAULT_KEEP);
        // Normal synchronous writes again, as kiln uses the file.
        history
            .conn
            .pragma_update(None, "synchronous", "FULL")
            .unwrap();
        let clock = std::time::Instant::now();
        assert_eq!(history.prune(DEFAULT_KEEP).unwrap(), 0);
        let nothing = clock.elapsed();
        history
            .save(&mut build(DEFAULT_KEEP, RunOutcome::Done, None))
            .unwrap();
        let clock = std::time::Instant::now();
        assert_eq!(history.prune(DEFAULT_KEEP).unwrap(), 1);
        let one = clock.elapsed();
        drop(history);
        let mut history = filled(&dir.path().join("double.sqlite"), 2 * DEFAULT_KEEP);
        history
            .conn
            .pragma_update(None, "synchronous", "FULL")
            .unwrap();
        let clock = std::time::Instant::now();
        assert_eq!(history.prune(DEFAULT_KEEP).unwrap(), DEFAULT_KEEP);
        let thousand = clock.elapsed();
        println!(
            "prune of a {DEFAULT_KEEP}-build history: nothing to delete {nothing:?}, \
             1 build over {one:?}, {DEFAULT_KEEP} builds over {thousand:?}"
        );
    }
}
