//! [`SqliteLogStore`]: function logs on a single node, in `tusk.db`, and the retention task
//! that prunes them. (A cluster keeps logs in a JetStream stream whose limits prune it.)

use crate::{LogLine, LogStore, LogStream, NewLogLine, NodeDb, StoreError};
use rusqlite::params;
use std::sync::Arc;
use std::time::Duration;

/// Log lines are stored in chunks, one row per function per writer batch: a row per line made
/// log writes a fifth of the node's CPU under load. A line's id is its chunk's id times this,
/// plus its place in the chunk, so cursors (`after_id`) stay per line.
const LINES_PER_CHUNK: i64 = 4096;

/// How often the retention task prunes.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

pub struct SqliteLogStore {
    db: NodeDb,
}

type StoredLine<'a> = (i64, Option<&'a str>, &'a str, &'a str);

impl SqliteLogStore {
    pub(crate) fn new(db: NodeDb) -> SqliteLogStore {
        SqliteLogStore { db }
    }

    /// Starts the thread that deletes lines older than `retention`: now, then every ten
    /// minutes, for as long as the process runs.
    pub fn start_retention(self: &Arc<Self>, retention: Duration) -> std::io::Result<()> {
        let store = self.clone();
        std::thread::Builder::new()
            .name("tusk-log-retention".into())
            .spawn(move || loop {
                let cutoff = now_ms() - retention.as_millis() as i64;
                match store.prune_before(cutoff) {
                    Ok(n) if n > 0 => tracing::info!(lines = n, "pruned old log lines"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot prune logs"),
                }
                std::thread::sleep(PRUNE_EVERY);
            })
            .map(|_| ())
    }

    /// Deletes lines older than `before_ms`; returns how many went.
    pub fn prune_before(&self, before_ms: i64) -> Result<usize, StoreError> {
        // Whole chunks go once their newest line is older than the cutoff (a chunk spans one
        // writer batch: milliseconds).
        let conn = self.db.conn();
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

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl LogStore for SqliteLogStore {
    fn append_logs(&self, lines: &[NewLogLine]) -> Result<(), StoreError> {
        let mut by_function: std::collections::BTreeMap<&str, Vec<&NewLogLine>> =
            Default::default();
        for l in lines {
            by_function.entry(l.function.as_str()).or_default().push(l);
        }
        let mut conn = self.db.conn();
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
        let conn = self.db.conn();
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    #[test]
    fn logs_filter_page_and_prune() {
        let dir = tempfile::tempdir().unwrap();
        let store = NodeDb::open(&dir.path().join("tusk.db"))
            .unwrap()
            .log_store();
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
        assert_eq!(store.prune_before(15).unwrap(), 2);
        assert_eq!(store.logs("a", 0, 0, 100).unwrap().len(), 1);
    }

    #[test]
    fn many_lines_in_one_batch_page_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = NodeDb::open(&dir.path().join("tusk.db"))
            .unwrap()
            .log_store();
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
        let store = NodeDb::open(&path).unwrap().log_store();
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
        let store = NodeDb::open(&dir.path().join("tusk.db"))
            .unwrap()
            .log_store();
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
