//! The node's SQLite database, `DATA_DIR/tusk.db`: the registry's tables and the log chunks,
//! behind one connection that [`SqliteRegistry`] and [`SqliteLogStore`] share.
//!
//! One connection (not one per concern) because SQLite takes one writer at a time anyway, and
//! the schema and its migrations are the file's, not either user's. Nothing here knows what a
//! row means: that is for the two stores.

use crate::{SqliteLogStore, SqliteRegistry, StoreError};
use rusqlite::Connection;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

/// The open database file (WAL, synchronous=FULL for the deployment tables so an acknowledged
/// deploy survives a crash). Cloning shares the connection.
#[derive(Clone)]
pub struct NodeDb {
    conn: Arc<Mutex<Connection>>,
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

impl NodeDb {
    pub fn open(path: &Path) -> Result<NodeDb, StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        migrate_line_per_row_logs(&conn)?;
        Ok(NodeDb {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// The services and versions deployed on this node.
    pub fn registry(&self) -> SqliteRegistry {
        SqliteRegistry::new(self.clone())
    }

    /// The function logs kept on this node.
    pub fn log_store(&self) -> SqliteLogStore {
        SqliteLogStore::new(self.clone())
    }

    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite itself consistent (transactions roll
        // back), so a poisoned lock is safe to keep using.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LogStore, LogStream, NewLogLine, Registry};

    #[test]
    fn the_registry_and_the_logs_share_one_file_and_survive_reopening_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tusk.db");
        {
            let db = NodeDb::open(&path).unwrap();
            let spec: tusk_manifest::ServiceSpec = serde_json::from_value(serde_json::json!({
                "service": "app", "stage": "dev", "region": "us-east-1",
                "package_patterns": [], "functions": [], "queues": []
            }))
            .unwrap();
            db.registry().put_service(&spec, "aa", 1).unwrap();
            db.log_store()
                .append_logs(&[NewLogLine {
                    function: "app-dev-f".into(),
                    ts_ms: 1,
                    request_id: None,
                    stream: LogStream::Stdout,
                    line: "hello".into(),
                }])
                .unwrap();
        }
        let db = NodeDb::open(&path).unwrap();
        assert_eq!(db.registry().services().unwrap()[0].package, "aa");
        assert_eq!(
            db.log_store().logs("app-dev-f", 0, 0, 10).unwrap()[0].line,
            "hello"
        );
    }
}
