//! `tusk logs NAME`: print a function's log lines, and follow them with `--tail`.

use crate::client::{Client, LogLine, LogQuery};
use crate::commands::Global;
use crate::format;
use anyhow::{bail, Result};
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const POLL: Duration = Duration::from_millis(500);

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Function name: the full `service-stage-function`, or a unique short name.
    pub name: String,
    /// Keep printing new lines as they arrive, until Ctrl-C.
    #[arg(long, short)]
    pub tail: bool,
    /// How far back to start: a duration such as 30s, 10m, 1h, 2d or 1h30m.
    #[arg(long, default_value = "10m", value_name = "DURATION", value_parser = parse_since)]
    pub since: Duration,
    /// Print at most N lines (before following with --tail).
    #[arg(long, short = 'n', value_name = "N")]
    pub limit: Option<u64>,
}

pub fn run(global: &Global, args: Args) -> Result<ExitCode> {
    let client = global.client()?;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |now| now.as_millis());
    let since_ms = i64::try_from(now_ms.saturating_sub(args.since.as_millis())).unwrap_or(0);

    let mut printer = Printer::default();
    let mut query = LogQuery {
        since_ms: Some(since_ms),
        after_id: None,
        limit: args.limit,
    };
    // Page through what is already there; with --limit one page is the answer.
    loop {
        let page = client.logs(&args.name, query)?;
        let got = page.lines.len();
        let before = printer.last_id;
        if !printer.print(&page.lines, page.last_id)? {
            return Ok(ExitCode::SUCCESS);
        }
        if args.limit.is_some() || got == 0 || printer.last_id == before {
            break;
        }
        query.after_id = printer.last_id;
    }
    if args.tail {
        follow(&client, &args.name, since_ms, &mut printer)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Polls for lines after the last one seen; Ctrl-C ends the process.
fn follow(client: &Client, name: &str, since_ms: i64, printer: &mut Printer) -> Result<()> {
    let mut failing = false;
    loop {
        std::thread::sleep(POLL);
        let query = LogQuery {
            since_ms: Some(since_ms),
            after_id: printer.last_id,
            limit: None,
        };
        match client.logs(name, query) {
            Ok(page) => {
                failing = false;
                if !printer.print(&page.lines, page.last_id)? {
                    return Ok(());
                }
            }
            // A node restarting should not end a tail; say it once and keep polling.
            Err(err) if !failing => {
                eprintln!("warning: {err:#}; still trying");
                failing = true;
            }
            Err(_) => {}
        }
    }
}

#[derive(Default)]
struct Printer {
    last_id: Option<i64>,
}

impl Printer {
    /// Prints `lines`; `Ok(false)` when stdout is closed (e.g. piped into `head`).
    fn print(&mut self, lines: &[LogLine], last_id: Option<i64>) -> Result<bool> {
        let mut stdout = std::io::stdout().lock();
        for line in lines {
            let written = writeln!(stdout, "{}", render(line)).and_then(|()| stdout.flush());
            if let Err(err) = written {
                if err.kind() == std::io::ErrorKind::BrokenPipe {
                    return Ok(false);
                }
                return Err(err.into());
            }
            self.last_id = self.last_id.max(Some(line.id));
        }
        self.last_id = self.last_id.max(last_id);
        Ok(true)
    }
}

/// `<time> <request id> <line>`; platform lines (START/END/REPORT) already carry the request
/// id, so they print as `<time> <line>`.
fn render(line: &LogLine) -> String {
    let time = format::timestamp_ms(line.ts_ms);
    let text = line.line.trim_end_matches(['\n', '\r']);
    match (&line.request_id, line.stream.as_str()) {
        (_, "platform") => format!("{time} {text}"),
        (Some(request_id), _) => format!("{time} {request_id} {text}"),
        (None, _) => format!("{time} - {text}"),
    }
}

/// `30s`, `10m`, `1h`, `2d`, `1w`, and sums of them such as `1h30m`. A bare number is seconds.
pub fn parse_since(text: &str) -> Result<Duration> {
    let text = text.trim();
    if text.is_empty() {
        bail!("empty duration; use e.g. 30s, 10m, 1h or 2d");
    }
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits == 0 {
            bail!("invalid duration {text:?}; use e.g. 30s, 10m, 1h or 2d");
        }
        let value: u64 = rest[..digits]
            .parse()
            .map_err(|_| anyhow::anyhow!("invalid duration {text:?}: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.chars().take_while(char::is_ascii_alphabetic).count();
        let unit = match &rest[..unit_len] {
            "s" | "sec" | "secs" => 1,
            "m" | "min" | "mins" => 60,
            "h" | "hr" | "hrs" => 3_600,
            "d" => 86_400,
            "w" => 604_800,
            "" => bail!("invalid duration {text:?}: {value} needs a unit (s, m, h, d or w)"),
            other => {
                bail!("invalid duration {text:?}: unknown unit {other:?} (use s, m, h, d or w)")
            }
        };
        rest = &rest[unit_len..];
        total = value
            .checked_mul(unit)
            .and_then(|seconds| total.checked_add(seconds))
            .ok_or_else(|| anyhow::anyhow!("invalid duration {text:?}: too large"))?;
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_parses_units_and_sums() {
        assert_eq!(parse_since("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_since("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_since("1h").unwrap(), Duration::from_secs(3_600));
        assert_eq!(parse_since("2d").unwrap(), Duration::from_secs(172_800));
        assert_eq!(parse_since("1w").unwrap(), Duration::from_secs(604_800));
        assert_eq!(parse_since("1h30m").unwrap(), Duration::from_secs(5_400));
        assert_eq!(parse_since(" 45 ").unwrap(), Duration::from_secs(45));
        assert_eq!(parse_since("0s").unwrap(), Duration::ZERO);
    }

    #[test]
    fn since_rejects_nonsense() {
        for bad in [
            "",
            "m",
            "10x",
            "1.5h",
            "-5m",
            "10m5",
            "99999999999999999999s",
        ] {
            assert!(parse_since(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(parse_since("10x")
            .unwrap_err()
            .to_string()
            .contains("unknown unit"));
    }

    #[test]
    fn lines_render_with_time_and_request_id() {
        let mut line = LogLine {
            id: 1,
            ts_ms: 1_795_694_400_123,
            request_id: Some("abc".into()),
            stream: "stdout".into(),
            line: "hello\n".into(),
        };
        assert_eq!(render(&line), "2026-11-26T12:00:00.123Z abc hello");
        line.stream = "platform".into();
        line.line = "START RequestId: abc Version: $LATEST".into();
        assert_eq!(
            render(&line),
            "2026-11-26T12:00:00.123Z START RequestId: abc Version: $LATEST"
        );
        line.stream = "stderr".into();
        line.request_id = None;
        line.line = "boot".into();
        assert_eq!(render(&line), "2026-11-26T12:00:00.123Z - boot");
    }
}
