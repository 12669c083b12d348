//! Small text helpers shared by the commands: routes as URLs, aligned tables, timestamps.

use crate::client::Instances;
use time::format_description::FormatItem;
use time::macros::format_description;
use time::OffsetDateTime;

/// `"GET /hello"` → `"GET http://127.0.0.1:8080/hello"`; the catch-all (`*`, `* *`, `ANY /*`)
/// reads `ANY http://.../*`.
pub fn route_url(base: &str, route: &str) -> String {
    let route = route.trim();
    let (method, path) = match route.split_once(char::is_whitespace) {
        Some((method, path)) => (method, path.trim()),
        None if route.starts_with('/') || route == "*" => ("*", route),
        None => (route, "*"),
    };
    let method = if method == "*" { "ANY" } else { method };
    let path = if path == "*" { "/*" } else { path };
    let slash = if path.starts_with('/') { "" } else { "/" };
    format!("{method} {base}{slash}{path}")
}

/// `"GET /hello"` → `"GET /hello (http://127.0.0.1:8080/hello)"`: the route as written in
/// `serverless.yml`, then where to reach it.
pub fn route_with_url(base: &str, route: &str) -> String {
    let url = route_url(base, route);
    let url = url.split_once(' ').map_or(url.as_str(), |(_, url)| url);
    format!("{} ({url})", route.trim())
}

/// Left-aligned columns two spaces apart; the last column is not padded.
pub fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; columns];
    for row in rows {
        for (index, cell) in row.iter().enumerate() {
            widths[index] = widths[index].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (index, cell) in row.iter().enumerate() {
            if index + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                let pad = widths[index] - cell.chars().count() + 2;
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

const RFC3339_MILLIS: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// Milliseconds since the epoch as `2026-11-26T12:00:00.123Z`.
pub fn timestamp_ms(ts_ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ts_ms) * 1_000_000)
        .ok()
        .and_then(|time| time.format(RFC3339_MILLIS).ok())
        .unwrap_or_else(|| ts_ms.to_string())
}

pub fn instances(instances: &Instances) -> String {
    format!("{} idle, {} busy", instances.idle, instances.busy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_become_urls() {
        let base = "http://127.0.0.1:8080";
        assert_eq!(
            route_url(base, "GET /hello"),
            "GET http://127.0.0.1:8080/hello"
        );
        assert_eq!(route_url(base, "* *"), "ANY http://127.0.0.1:8080/*");
        assert_eq!(route_url(base, "*"), "ANY http://127.0.0.1:8080/*");
        assert_eq!(route_url(base, "ANY /*"), "ANY http://127.0.0.1:8080/*");
        assert_eq!(
            route_url(base, "* /{proxy+}"),
            "ANY http://127.0.0.1:8080/{proxy+}"
        );
        assert_eq!(route_url(base, "/x"), "ANY http://127.0.0.1:8080/x");
    }

    #[test]
    fn routes_keep_their_key_next_to_the_url() {
        assert_eq!(
            route_with_url("http://h", "GET /hello"),
            "GET /hello (http://h/hello)"
        );
        assert_eq!(route_with_url("http://h", "* *"), "* * (http://h/*)");
    }

    #[test]
    fn tables_align() {
        let rows = vec![
            vec!["NAME".to_string(), "RUNTIME".to_string(), "X".to_string()],
            vec![
                "a-long-name".to_string(),
                "php-82".to_string(),
                "".to_string(),
            ],
        ];
        assert_eq!(
            table(&rows),
            "NAME         RUNTIME  X\na-long-name  php-82\n"
        );
    }

    #[test]
    fn timestamps_are_utc_millis() {
        assert_eq!(timestamp_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(timestamp_ms(1_795_694_400_123), "2026-11-26T12:00:00.123Z");
    }
}
