use crate::{LogLine, LogStream, NewLogLine, ServiceRecord, Store, StoreError};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::Mutex;
use tusk_manifest::ServiceSpec;

/// The single-node store: one SQLite file in the data directory (WAL, synchronous=FULL for the
/// deployment tables so an acknowledged deploy survives a crash).
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS services (
    service TEXT NOT NULL,
    stage TEXT NOT NULL,
    version INTEGER NOT NULL,
    package TEXT NOT NULL,
    spec TEXT NOT NULL,
    deployed_at_ms INTEGER NOT NULL,
    PRIMARY KEY (service, stage)
);
CREATE TABLE IF NOT EXISTS deployments (
    service TEXT NOT NULL,
    stage TEXT NOT NULL,
    version INTEGER NOT NULL,
    package TEXT NOT NULL,
    spec TEXT NOT NULL,
    deployed_at_ms INTEGER NOT NULL,
    PRIMARY KEY (service, stage, version)
);
CREATE TABLE IF NOT EXISTS log_chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    function TEXT NOT NULL,
    last_ts_ms INTEGER NOT NULL,
    line_count INTEGER NOT NULL,
    -- JSON array of [ts_ms, request_id or null, stream, line]
    lines TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS log_chunks_by_function ON log_chunks (function, id);
CREATE INDEX IF NOT EXISTS log_chunks_by_time ON log_chunks (last_ts_ms);
";

impl SqliteStore {
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        migrate_line_per_row_logs(&conn)?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
        })
    }

    /// Records a version decided elsewhere (a cluster's registry) as the live one, keeping its
    /// number; an older version than the stored one is ignored.
    pub fn put_record(&self, record: &ServiceRecord) -> Result<(), StoreError> {
        let spec_json = serde_json::to_string(&record.spec)?;
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT OR REPLACE INTO deployments (service, stage, version, package, spec, deployed_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![record.spec.service, record.spec.stage, record.version as i64, record.package, spec_json, record.deployed_at_ms],
        )?;
        tx.execute(
            "INSERT INTO services (service, stage, version, package, spec, deployed_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(service, stage) DO UPDATE SET version = excluded.version, package = excluded.package,
               spec = excluded.spec, deployed_at_ms = excluded.deployed_at_ms
             WHERE excluded.version >= services.version",
            params![record.spec.service, record.spec.stage, record.version as i64, record.package, spec_json, record.deployed_at_ms],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite itself consistent (transactions roll
        // back), so a poisoned lock is safe to keep using.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Log lines are stored in chunks, one row per function per writer batch: a row per line made
/// log writes a fifth of the node's CPU under load. A line's id is its chunk's id times this,
/// plus its place in the chunk, so cursors (`after_id`) stay per line.
const LINES_PER_CHUNK: i64 = 4096;

/// Data directories written before log chunks kept one row per line: carry them over once.
fn migrate_line_per_row_logs(conn: &Connection) -> Result<(), StoreError> {
    let old: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'logs')",
        [],
        |r| r.get(0),
    )?;
    if old {
        conn.execute_batch(
            "BEGIN;
             INSERT INTO log_chunks (function, last_ts_ms, line_count, lines)
                 SELECT function, ts_ms, 1, json_array(json_array(ts_ms, request_id, stream, line))
                 FROM logs ORDER BY id;
             DROP TABLE logs;
             COMMIT;",
        )?;
    }
    Ok(())
}

type StoredLine<'a> = (i64, Option<&'a str>, &'a str, &'a str);

impl Store for SqliteStore {
    fn put_service(
        &self,
        spec: &ServiceSpec,
        package: &str,
        now_ms: i64,
    ) -> Result<ServiceRecord, StoreError> {
        let spec_json = serde_json::to_string(spec)?;
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let last: Option<i64> = tx
            .query_row(
                "SELECT MAX(version) FROM deployments WHERE service = ?1 AND stage = ?2",
                params![spec.service, spec.stage],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
        let version = last.unwrap_or(0) + 1;
        for table in ["services", "deployments"] {
            tx.execute(
                &format!(
                    "INSERT OR REPLACE INTO {table} (service, stage, version, package, spec, deployed_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
                ),
                params![spec.service, spec.stage, version, package, spec_json, now_ms],
            )?;
        }
        tx.commit()?;
        Ok(ServiceRecord {
            spec: spec.clone(),
            version: version as u64,
            package: package.to_string(),
            deployed_at_ms: now_ms,
        })
    }

    fn services(&self) -> Result<Vec<ServiceRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT spec, version, package, deployed_at_ms FROM services ORDER BY service, stage",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (spec, version, package, deployed_at_ms) = row?;
            out.push(ServiceRecord {
                spec: serde_json::from_str(&spec)?,
                version: version as u64,
                package,
                deployed_at_ms,
            });
        }
        Ok(out)
    }

    fn remove_service(
        &self,
        service: &str,
        stage: &str,
    ) -> Result<Option<ServiceRecord>, StoreError> {
        let existing = self
            .services()?
            .into_iter()
            .find(|s| s.spec.service == service && s.spec.stage == stage);
        if existing.is_some() {
            self.conn().execute(
                "DELETE FROM services WHERE service = ?1 AND stage = ?2",
                params![service, stage],
            )?;
        }
        Ok(existing)
    }

    fn append_logs(&self, lines: &[NewLogLine]) -> Result<(), StoreError> {
        let mut by_function: std::collections::BTreeMap<&str, Vec<&NewLogLine>> =
            Default::default();
        for l in lines {
            by_function.entry(l.function.as_str()).or_default().push(l);
        }
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO log_chunks (function, last_ts_ms, line_count, lines) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for (function, lines) in by_function {
                for chunk in lines.chunks(LINES_PER_CHUNK as usize) {
                    let stored: Vec<StoredLine<'_>> = chunk
                        .iter()
                        .map(|l| {
                            (
                                l.ts_ms,
                                l.request_id.as_deref(),
                                l.stream.as_str(),
                                l.line.as_str(),
                            )
                        })
                        .collect();
                    let last_ts = chunk.iter().map(|l| l.ts_ms).max().unwrap_or(0);
                    stmt.execute(params![
                        function,
                        last_ts,
                        chunk.len() as i64,
                        serde_json::to_string(&stored)?
                    ])?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn logs(
        &self,
        function: &str,
        since_ms: i64,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<LogLine>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, lines FROM log_chunks
             WHERE function = ?1 AND id >= ?2 AND last_ts_ms >= ?3 ORDER BY id",
        )?;
        let mut rows = stmt.query(params![function, after_id / LINES_PER_CHUNK, since_ms])?;
        let mut out = Vec::new();
        let mut entries = 0;
        while let Some(row) = rows.next()? {
            let chunk_id: i64 = row.get(0)?;
            let text: String = row.get(1)?;
            let stored: Vec<(i64, Option<String>, String, String)> = serde_json::from_str(&text)?;
            for (index, (ts_ms, request_id, stream, line)) in stored.into_iter().enumerate() {
                let id = chunk_id * LINES_PER_CHUNK + index as i64;
                if id <= after_id || ts_ms < since_ms {
                    continue;
                }
                if entries == limit {
                    return Ok(out);
                }
                entries += 1;
                LogLine {
                    id,
                    ts_ms,
                    request_id,
                    stream: LogStream::parse(&stream),
                    line,
                }
                .push_expanded(&mut out);
            }
        }
        Ok(out)
    }

    fn prune_logs(&self, before_ms: i64) -> Result<usize, StoreError> {
        // Whole chunks go once their newest line is older than the cutoff (a chunk spans one
        // writer batch: milliseconds).
        let conn = self.conn();
        let lines: i64 = conn.query_row(
            "SELECT COALESCE(SUM(line_count), 0) FROM log_chunks WHERE last_ts_ms < ?1",
            params![before_ms],
            |r| r.get(0),
        )?;
        conn.execute(
            "DELETE FROM log_chunks WHERE last_ts_ms < ?1",
            params![before_ms],
        )?;
        Ok(lines as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tusk_manifest::{FunctionSpec, RuntimeKind};

    fn spec() -> ServiceSpec {
        ServiceSpec {
            service: "app".into(),
            stage: "dev".into(),
            region: "us-east-1".into(),
            package_patterns: vec![],
            functions: vec![FunctionSpec {
                name: "hello".into(),
                handler: "index.php".into(),
                runtime: "php-82".into(),
                kind: RuntimeKind::PhpFunction,
                php_version: Some("8.2".into()),
                memory_size: 1024,
                timeout: 6,
                environment: Default::default(),
                events: vec![],
                reserved_concurrency: None,
                provisioned_concurrency: 0,
                ephemeral_storage_size: 512,
                maximum_retry_attempts: None,
                maximum_event_age: None,
                destinations: Default::default(),
                network: Default::default(),
                volumes: vec![],
            }],
            queues: vec![],
        }
    }

    #[test]
    fn versions_increase_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tusk.db");
        {
            let store = SqliteStore::open(&path).unwrap();
            assert_eq!(store.put_service(&spec(), "aa", 1).unwrap().version, 1);
            assert_eq!(store.put_service(&spec(), "bb", 2).unwrap().version, 2);
        }
        let store = SqliteStore::open(&path).unwrap();
        let services = store.services().unwrap();
        assert_eq!(services.len(), 1);
        assert_eq!(services[0].version, 2);
        assert_eq!(services[0].package, "bb");
        let names: Vec<_> = services[0].functions().map(|(n, _)| n).collect();
        assert_eq!(names, vec!["app-dev-hello"]);
        assert!(store.remove_service("app", "dev").unwrap().is_some());
        assert!(store.services().unwrap().is_empty());
        // A redeploy after removal continues the version sequence.
        assert_eq!(store.put_service(&spec(), "cc", 3).unwrap().version, 3);
    }

    #[test]
    fn replicated_records_keep_their_version_and_never_go_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("tusk.db")).unwrap();
        let record = |version, package: &str| ServiceRecord {
            spec: spec(),
            version,
            package: package.into(),
            deployed_at_ms: 1,
        };
        store.put_record(&record(5, "ee")).unwrap();
        store.put_record(&record(4, "dd")).unwrap();
        let services = store.services().unwrap();
        assert_eq!(
            (services[0].version, services[0].package.as_str()),
            (5, "ee")
        );
        assert_eq!(store.put_service(&spec(), "ff", 2).unwrap().version, 6);
    }

    #[test]
    fn logs_filter_page_and_prune() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("tusk.db")).unwrap();
        let line = |f: &str, ts: i64, text: &str| NewLogLine {
            function: f.into(),
            ts_ms: ts,
            request_id: Some("r1".into()),
            stream: LogStream::Stdout,
            line: text.into(),
        };
        store
            .append_logs(&[line("a", 10, "one"), line("b", 11, "other")])
            .unwrap();
        store.append_logs(&[line("a", 20, "two")]).unwrap();
        let all = store.logs("a", 0, 0, 100).unwrap();
        assert_eq!(
            all.iter().map(|l| l.line.as_str()).collect::<Vec<_>>(),
            ["one", "two"]
        );
        let after = store.logs("a", 0, all[0].id, 100).unwrap();
        assert_eq!(after.len(), 1);
        assert_eq!(store.logs("a", 15, 0, 100).unwrap().len(), 1);
        // Paging: one line at a time, the cursor is the last line's id.
        let first = store.logs("a", 0, 0, 1).unwrap();
        assert_eq!(first.len(), 1);
        let second = store.logs("a", 0, first[0].id, 1).unwrap();
        assert_eq!(second[0].line, "two");
        assert!(store.logs("a", 0, second[0].id, 1).unwrap().is_empty());
        assert_eq!(store.prune_logs(15).unwrap(), 2);
        assert_eq!(store.logs("a", 0, 0, 100).unwrap().len(), 1);
    }

    #[test]
    fn many_lines_in_one_batch_page_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("tusk.db")).unwrap();
        let batch: Vec<NewLogLine> = (0..10_000)
            .map(|i| NewLogLine {
                function: "f".into(),
                ts_ms: i,
                request_id: None,
                stream: LogStream::Stdout,
                line: i.to_string(),
            })
            .collect();
        store.append_logs(&batch).unwrap();
        let (mut seen, mut cursor) = (Vec::new(), 0);
        loop {
            let page = store.logs("f", 0, cursor, 999).unwrap();
            let Some(last) = page.last() else { break };
            cursor = last.id;
            seen.extend(page.into_iter().map(|l| l.line));
        }
        assert_eq!(seen, (0..10_000).map(|i| i.to_string()).collect::<Vec<_>>());
    }

    #[test]
    fn line_per_row_logs_are_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tusk.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE logs (id INTEGER PRIMARY KEY AUTOINCREMENT, function TEXT NOT NULL,
                     ts_ms INTEGER NOT NULL, request_id TEXT, stream TEXT NOT NULL, line TEXT NOT NULL);
                 INSERT INTO logs (function, ts_ms, request_id, stream, line)
                     VALUES ('f', 5, 'r', 'stdout', 'old one'), ('f', 6, NULL, 'stderr', 'old two');",
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let lines = store.logs("f", 0, 0, 100).unwrap();
        assert_eq!(
            lines
                .iter()
                .map(|l| (l.line.as_str(), l.stream))
                .collect::<Vec<_>>(),
            [
                ("old one", LogStream::Stdout),
                ("old two", LogStream::Stderr)
            ]
        );
        assert_eq!(lines[0].request_id.as_deref(), Some("r"));
    }

    #[test]
    fn multi_line_platform_rows_read_back_as_lines() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("tusk.db")).unwrap();
        let row = |stream, text: &str| NewLogLine {
            function: "f".into(),
            ts_ms: 1,
            request_id: Some("r1".into()),
            stream,
            line: text.into(),
        };
        store
            .append_logs(&[
                row(LogStream::Platform, "START r1\nEND r1\nREPORT r1"),
                row(LogStream::Stdout, "two\nlines stay one"),
            ])
            .unwrap();
        let lines = store.logs("f", 0, 0, 100).unwrap();
        let text: Vec<_> = lines.iter().map(|l| l.line.as_str()).collect();
        assert_eq!(
            text,
            ["START r1", "END r1", "REPORT r1", "two\nlines stay one"]
        );
        assert_eq!(lines[0].id, lines[2].id);
        assert!(lines[..3].iter().all(|l| l.stream == LogStream::Platform));
    }
}
