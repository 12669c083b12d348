//! Function log lines: what an instance writes ([`NewLogLine`], tagged with a [`LogStream`]) and
//! what a log store hands back ([`LogLine`], with its cursor id).
//!
//! A leaf crate so the crates that produce lines (instance, pool) and the ones that keep them
//! (store, cluster) share the types without depending on each other. It must never depend on
//! another Tusk crate, nor do I/O.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    Stdout,
    Stderr,
    /// Lines the platform writes itself: START, END, REPORT, timeouts.
    Platform,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
            LogStream::Platform => "platform",
        }
    }

    /// The stream `as_str` named; anything unknown reads as stdout.
    pub fn parse(s: &str) -> LogStream {
        match s {
            "stderr" => LogStream::Stderr,
            "platform" => LogStream::Platform,
            _ => LogStream::Stdout,
        }
    }
}

/// A line on its way to a log store.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewLogLine {
    pub function: String,
    pub ts_ms: i64,
    pub request_id: Option<String>,
    pub stream: LogStream,
    pub line: String,
}

/// A stored line; `id` is the cursor for the next read (`after_id`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogLine {
    pub id: i64,
    pub ts_ms: i64,
    pub request_id: Option<String>,
    pub stream: LogStream,
    pub line: String,
}

impl LogLine {
    /// Pushes this entry onto `out` as lines: an entry of consecutive platform lines
    /// (START/END/REPORT, stored together to save writes) becomes one line each, all with the
    /// entry's id, so cursors stay per entry.
    pub fn push_expanded(self, out: &mut Vec<LogLine>) {
        if self.stream == LogStream::Platform && self.line.contains('\n') {
            for part in self.line.split('\n') {
                out.push(LogLine {
                    id: self.id,
                    ts_ms: self.ts_ms,
                    request_id: self.request_id.clone(),
                    stream: self.stream,
                    line: part.to_string(),
                });
            }
        } else {
            out.push(self);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_round_trip_and_unknown_reads_as_stdout() {
        for s in [LogStream::Stdout, LogStream::Stderr, LogStream::Platform] {
            assert_eq!(LogStream::parse(s.as_str()), s);
        }
        assert_eq!(LogStream::parse("other"), LogStream::Stdout);
    }

    #[test]
    fn a_platform_entry_expands_to_lines_sharing_its_id() {
        let entry = |stream, line: &str| LogLine {
            id: 7,
            ts_ms: 1,
            request_id: None,
            stream,
            line: line.into(),
        };
        let mut out = Vec::new();
        entry(LogStream::Platform, "START\nEND\nREPORT").push_expanded(&mut out);
        entry(LogStream::Stdout, "a\nb").push_expanded(&mut out);
        let lines: Vec<_> = out.iter().map(|l| (l.id, l.line.as_str())).collect();
        assert_eq!(
            lines,
            [(7, "START"), (7, "END"), (7, "REPORT"), (7, "a\nb")]
        );
    }
}
