//! The history's layout and its migrations. `PRAGMA user_version` is the number of
//! migrations applied; the missing ones run in one transaction, so a file is either at the
//! old version or at the new one. A file at a version this kiln does not know is refused
//! untouched.

use rusqlite::{Connection, TransactionBehavior};

/// The migrations, oldest first. Never edit one that shipped: add a new one.
pub const MIGRATIONS: &[&str] = &[
    // 1: builds and what they left.
    r#"
    CREATE TABLE builds (
        id          INTEGER PRIMARY KEY,
        recipe      TEXT NOT NULL,
        title       TEXT,
        build_name  TEXT NOT NULL,
        origin      TEXT NOT NULL,
        started_at  TEXT NOT NULL,
        ended_at    TEXT,
        duration_ms INTEGER,
        outcome     TEXT NOT NULL,
        message     TEXT,
        stopped_at  TEXT,
        log_dir     TEXT,
        warnings    INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX builds_by_start ON builds (started_at DESC, id DESC);
    CREATE TABLE steps (
        build_id    INTEGER NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
        position    INTEGER NOT NULL,
        name        TEXT NOT NULL,
        outcome     TEXT NOT NULL,
        detail      TEXT,
        duration_ms INTEGER,
        PRIMARY KEY (build_id, position)
    );
    CREATE TABLE variables (
        build_id    INTEGER NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
        position    INTEGER NOT NULL,
        name        TEXT NOT NULL,
        value       TEXT,
        sensitive   INTEGER NOT NULL,
        origin      TEXT NOT NULL,
        PRIMARY KEY (build_id, position)
    );
    CREATE TABLE artifacts (
        build_id    INTEGER NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
        position    INTEGER NOT NULL,
        producer    TEXT NOT NULL,
        path        TEXT NOT NULL,
        PRIMARY KEY (build_id, position)
    );
    CREATE TABLE templates (
        build_id    INTEGER NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
        position    INTEGER NOT NULL,
        zone        TEXT NOT NULL,
        template_id TEXT NOT NULL,
        PRIMARY KEY (build_id, position)
    );
    CREATE TABLE checks (
        build_id    INTEGER NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
        position    INTEGER NOT NULL,
        name        TEXT NOT NULL,
        passed      INTEGER NOT NULL,
        detail      TEXT NOT NULL,
        PRIMARY KEY (build_id, position)
    );
    "#,
    // 2: the process that records a build (pid, start time, boot id, host name), so a build
    // whose kiln was killed reads as interrupted (see `process`). Rows from before stay
    // without one.
    r#"
    ALTER TABLE builds ADD COLUMN pid INTEGER;
    ALTER TABLE builds ADD COLUMN pid_start INTEGER;
    ALTER TABLE builds ADD COLUMN boot_id TEXT;
    ALTER TABLE builds ADD COLUMN host TEXT;
    "#,
    // 3: the name a build's templates were registered under, so the history names them.
    r#"
    ALTER TABLE builds ADD COLUMN template_name TEXT;
    "#,
];

/// The newest version this kiln knows.
pub fn latest() -> i64 {
    MIGRATIONS.len() as i64
}

/// The file's `user_version`.
pub fn version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

/// How [`migrate`] left the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migrated {
    /// At `to`, having been at `from` (equal when nothing was to do).
    At {
        /// The version before.
        from: i64,
        /// The version now.
        to: i64,
    },
    /// The file is at a version newer than `migrations` knows; nothing was changed.
    Newer(i64),
}

/// Brings the file up to `migrations.len()` in one immediate transaction (another kiln
/// migrating at the same time waits, then finds nothing to do).
pub fn migrate(conn: &mut Connection, migrations: &[&str]) -> rusqlite::Result<Migrated> {
    let known = migrations.len() as i64;
    if version(conn)? > known {
        return Ok(Migrated::Newer(version(conn)?));
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let from = version(&tx)?;
    if from > known {
        return Ok(Migrated::Newer(from));
    }
    for sql in &migrations[from.max(0) as usize..] {
        tx.execute_batch(sql)?;
    }
    if from != known {
        tx.pragma_update(None, "user_version", known)?;
    }
    tx.commit()?;
    Ok(Migrated::At { from, to: known })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables(conn: &Connection) -> Vec<String> {
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn a_fresh_file_gets_every_migration() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(
            migrate(&mut conn, MIGRATIONS).unwrap(),
            Migrated::At { from: 0, to: 3 }
        );
        assert_eq!(version(&conn).unwrap(), latest());
        assert_eq!(
            tables(&conn),
            [
                "artifacts",
                "builds",
                "checks",
                "steps",
                "templates",
                "variables"
            ]
        );
    }

    #[test]
    fn an_up_to_date_file_is_left_as_it_is_and_only_new_migrations_run() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn, MIGRATIONS).unwrap();
        conn.execute(
            "INSERT INTO builds (recipe, build_name, origin, started_at, outcome)
             VALUES ('r.json', 'b', 'cli', '2026-01-01T00:00:00Z', 'done')",
            [],
        )
        .unwrap();
        // Again: nothing to do (a second CREATE TABLE would fail).
        assert_eq!(
            migrate(&mut conn, MIGRATIONS).unwrap(),
            Migrated::At { from: 3, to: 3 }
        );
        // A later kiln's next migration runs alone and keeps the rows.
        let mut next = MIGRATIONS.to_vec();
        next.push("ALTER TABLE builds ADD COLUMN note TEXT;");
        assert_eq!(
            migrate(&mut conn, &next).unwrap(),
            Migrated::At { from: 3, to: 4 }
        );
        let (count, note): (i64, Option<String>) = conn
            .query_row("SELECT count(*), max(note) FROM builds", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((count, note), (1, None));
    }

    #[test]
    fn a_version_1_file_keeps_its_builds_and_gains_the_later_columns() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn, &MIGRATIONS[..1]).unwrap();
        conn.execute(
            "INSERT INTO builds (recipe, build_name, origin, started_at, outcome)
             VALUES ('r.json', 'b', 'cli', '2026-01-01T00:00:00Z', 'unfinished')",
            [],
        )
        .unwrap();
        assert_eq!(
            migrate(&mut conn, MIGRATIONS).unwrap(),
            Migrated::At { from: 1, to: 3 }
        );
        type Row = (String, Option<i64>, Option<String>, Option<String>);
        let (recipe, pid, boot, template): Row = conn
            .query_row(
                "SELECT recipe, pid, boot_id, template_name FROM builds",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap();
        assert_eq!(
            (recipe.as_str(), pid, boot, template),
            ("r.json", None, None, None)
        );
    }

    #[test]
    fn a_failing_migration_changes_nothing() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn, MIGRATIONS).unwrap();
        let mut broken = MIGRATIONS.to_vec();
        broken.push("CREATE TABLE extra (x INTEGER); THIS IS NOT SQL;");
        assert!(migrate(&mut conn, &broken).is_err());
        assert_eq!(version(&conn).unwrap(), latest());
        assert!(!tables(&conn).contains(&"extra".to_string()));
    }

    #[test]
    fn a_newer_file_is_refused_untouched() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", 7).unwrap();
        assert_eq!(migrate(&mut conn, MIGRATIONS).unwrap(), Migrated::Newer(7));
        assert_eq!(version(&conn).unwrap(), 7);
        assert!(tables(&conn).is_empty());
    }
}
