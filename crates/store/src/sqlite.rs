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
CREATE TABLE IF NOT EXISTS logs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    function TEXT NOT NULL,
    ts_ms INTEGER NOT NULL,
    request_id TEXT,
    stream TEXT NOT NULL,
    line TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_by_function ON logs (function, id);
CREATE INDEX IF NOT EXISTS logs_by_time ON logs (ts_ms);
";

impl SqliteStore {
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
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
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO logs (function, ts_ms, request_id, stream, line) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for l in lines {
                stmt.execute(params![
                    l.function,
                    l.ts_ms,
                    l.request_id,
                    l.stream.as_str(),
                    l.line
                ])?;
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
            "SELECT id, ts_ms, request_id, stream, line FROM logs
             WHERE function = ?1 AND id > ?2 AND ts_ms >= ?3 ORDER BY id LIMIT ?4",
        )?;
        let rows = stmt.query_map(params![function, after_id, since_ms, limit as i64], |r| {
            Ok(LogLine {
                id: r.get(0)?,
                ts_ms: r.get(1)?,
                request_id: r.get(2)?,
                stream: LogStream::parse(&r.get::<_, String>(3)?),
                line: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn prune_logs(&self, before_ms: i64) -> Result<usize, StoreError> {
        Ok(self
            .conn()
            .execute("DELETE FROM logs WHERE ts_ms < ?1", params![before_ms])?)
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
            .append_logs(&[
                line("a", 10, "one"),
                line("b", 11, "other"),
                line("a", 20, "two"),
            ])
            .unwrap();
        let all = store.logs("a", 0, 0, 100).unwrap();
        assert_eq!(
            all.iter().map(|l| l.line.as_str()).collect::<Vec<_>>(),
            ["one", "two"]
        );
        let after = store.logs("a", 0, all[0].id, 100).unwrap();
        assert_eq!(after.len(), 1);
        assert_eq!(store.logs("a", 15, 0, 100).unwrap().len(), 1);
        assert_eq!(store.prune_logs(15).unwrap(), 2);
        assert_eq!(store.logs("a", 0, 0, 100).unwrap().len(), 1);
    }
}
