//! A raw HTTP/1.1-style request as fuzz input, so seeds can be real requests:
#![allow(dead_code)] // each target uses only some of these helpers
//! `METHOD TARGET[ HTTP/1.1]\n` then `Name: value\n` lines, a blank line, then the body.
//! `\r\n` works too. Header lines that are not valid HTTP are skipped, as a server would
//! reject them before any of Tusk's code runs.

use http::{HeaderMap, HeaderName, HeaderValue};

pub struct RawRequest<'a> {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: &'a [u8],
}

fn next_line<'a>(data: &mut &'a [u8]) -> Option<&'a [u8]> {
    if data.is_empty() {
        return None;
    }
    let (line, rest) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (*data, &data[data.len()..]),
    };
    *data = rest;
    Some(line.strip_suffix(b"\r").unwrap_or(line))
}

/// Splits off the first line (for targets that want a line of their own first).
pub fn first_line<'a>(data: &mut &'a [u8]) -> String {
    String::from_utf8_lossy(next_line(data).unwrap_or_default()).into_owned()
}

pub fn parse(mut data: &[u8]) -> RawRequest<'_> {
    let start = String::from_utf8_lossy(next_line(&mut data).unwrap_or_default()).into_owned();
    let mut words = start.splitn(3, ' ');
    let method = words.next().unwrap_or_default().to_owned();
    let target = words.next().unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers = HeaderMap::new();
    while let Some(line) = next_line(&mut data) {
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let value = line[colon + 1..].trim_ascii();
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(value),
        ) {
            if headers.len() < 64 {
                headers.append(n, v);
            }
        }
    }
    RawRequest {
        method,
        path: path.to_owned(),
        query: query.to_owned(),
        headers,
        body: data,
    }
}
