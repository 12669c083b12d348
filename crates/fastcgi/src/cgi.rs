//! CGI response parsing (RFC 3875 section 6): header lines, a blank line, the body.

use bytes::Bytes;

use crate::FastCgiError;

/// An HTTP response decoded from a script's CGI output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgiResponse {
    /// From `Status:`, else 302 when `Location:` is present, else 200.
    pub status: u16,
    /// Header lines in output order, repeats kept (several `Set-Cookie`);
    /// the CGI-only `Status` header is removed. Names keep the script's case.
    pub headers: Vec<(String, String)>,
    /// Everything after the blank line; a slice of the STDOUT buffer, not a copy.
    pub body: Bytes,
}

impl CgiResponse {
    /// First value of a header, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All values of a header in order, compared case-insensitively.
    pub fn headers_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Longest header line (name, colon and value) an app may send; nginx's largest default
/// buffer and far above any real header.
pub const MAX_HEADER_LINE: usize = 64 * 1024;
/// Most header lines an app may send in one response.
pub const MAX_HEADERS: usize = 1000;

/// Headers that frame the message or describe one connection (RFC 9110 section 7.6.1, plus
/// the length). An app never sets them: the gateway drops them and lets its HTTP server frame
/// the body it actually has, as API Gateway and nginx do. Passing one through would let an
/// app's `Content-Length: 1` end the response early and forge the next one on a kept-alive
/// connection.
pub fn is_framing_header(name: &str) -> bool {
    const FRAMING: [&str; 9] = [
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "trailer",
        "te",
        "proxy-connection",
        "http2-settings",
    ];
    FRAMING.iter().any(|f| f.eq_ignore_ascii_case(name))
}

/// Whether `status` may end an HTTP exchange: 1xx are interim answers that HTTP servers
/// cannot send as the final one, and anything above 599 is no status at all.
pub fn is_final_status(status: u16) -> bool {
    (200..=599).contains(&status)
}

fn malformed(msg: impl Into<String>) -> FastCgiError {
    FastCgiError::MalformedResponse(msg.into())
}

/// RFC 9110 token characters, the only ones allowed in a header name.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Shows a bounded, printable excerpt of a bad line in error messages.
fn excerpt(line: &[u8]) -> String {
    let cut = &line[..line.len().min(80)];
    format!("{:?}", String::from_utf8_lossy(cut))
}

fn parse_status(value: &str) -> Result<u16, FastCgiError> {
    let code = value
        .get(..3)
        .filter(|c| c.bytes().all(|b| b.is_ascii_digit()));
    let rest_ok = value.len() == 3 || value.as_bytes().get(3) == Some(&b' ');
    match code.and_then(|c| c.parse::<u16>().ok()) {
        Some(n) if rest_ok && is_final_status(n) => Ok(n),
        _ => Err(malformed(format!(
            "Status header {:?} is not a final status 200-599 (like \"404 Not Found\")",
            excerpt(value.as_bytes())
        ))),
    }
}

/// Parses a CGI response: header lines (`\n` or `\r\n` endings), a blank
/// line, then the body, which is returned as a zero-copy slice of `stdout`.
///
/// `Status: 404 Not Found` sets the status; `Location:` without `Status`
/// means 302; otherwise 200. Output that ends inside the header block is
/// accepted as headers with an empty body, and empty output as a bare 200.
/// A line without a colon, a bad header name, control characters in a value,
/// a Status outside 200-599, a line over [`MAX_HEADER_LINE`] bytes or more than
/// [`MAX_HEADERS`] lines is an error. Framing headers ([`is_framing_header`]) are
/// dropped: the body's real length frames the response.
pub fn parse_cgi_response(stdout: Bytes) -> Result<CgiResponse, FastCgiError> {
    let bytes = &stdout[..];
    let mut headers = Vec::new();
    let mut status = None;
    let mut has_location = false;
    let mut pos = 0;
    let mut lines = 0usize;

    let body_start = loop {
        if pos == bytes.len() {
            break pos;
        }
        let (raw_line, next) = match bytes[pos..].iter().position(|&b| b == b'\n') {
            Some(i) => (&bytes[pos..pos + i], pos + i + 1),
            None => (&bytes[pos..], bytes.len()),
        };
        pos = next;
        let line = raw_line.strip_suffix(b"\r").unwrap_or(raw_line);
        if line.is_empty() {
            break pos;
        }
        if line.len() > MAX_HEADER_LINE {
            return Err(malformed(format!(
                "a header line is {} bytes; at most {MAX_HEADER_LINE} are allowed: {}",
                line.len(),
                excerpt(line)
            )));
        }
        lines += 1;
        if lines > MAX_HEADERS {
            return Err(malformed(format!("more than {MAX_HEADERS} header lines")));
        }

        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or_else(|| malformed(format!("header line without a colon: {}", excerpt(line))))?;
        let name = &line[..colon];
        if name.is_empty() || !name.iter().all(|&b| is_token_byte(b)) {
            return Err(malformed(format!(
                "invalid header name in line {}",
                excerpt(line)
            )));
        }
        let value = line[colon + 1..].trim_ascii();
        // Control characters (a stray CR, NUL, ...) would let a script smuggle headers.
        if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(malformed(format!(
                "control character in header value: {}",
                excerpt(line)
            )));
        }
        // Token bytes are ASCII, so the name is valid UTF-8.
        let name = String::from_utf8_lossy(name).into_owned();
        // Values are almost always ASCII/UTF-8; stray Latin-1 bytes become U+FFFD
        // rather than failing the whole response.
        let value = String::from_utf8_lossy(value).into_owned();

        if name.eq_ignore_ascii_case("status") {
            status = Some(parse_status(&value)?);
            continue;
        }
        if name.eq_ignore_ascii_case("location") {
            has_location = true;
        }
        if is_framing_header(&name) {
            continue;
        }
        headers.push((name, value));
    };

    let status = status.unwrap_or(if has_location { 302 } else { 200 });
    Ok(CgiResponse {
        status,
        headers,
        body: stdout.slice(body_start..),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &[u8]) -> CgiResponse {
        parse_cgi_response(Bytes::copy_from_slice(s)).unwrap()
    }

    fn parse_err(s: &[u8]) -> String {
        match parse_cgi_response(Bytes::copy_from_slice(s)) {
            Err(e @ FastCgiError::MalformedResponse(_)) => e.to_string(),
            other => panic!("expected MalformedResponse, got {other:?}"),
        }
    }

    #[test]
    fn default_status_is_200() {
        let r = parse(b"Content-type: text/html; charset=UTF-8\r\n\r\nhello");
        assert_eq!(r.status, 200);
        assert_eq!(
            r.headers,
            vec![("Content-type".into(), "text/html; charset=UTF-8".into())]
        );
        assert_eq!(&r.body[..], b"hello");
    }

    #[test]
    fn status_header_sets_status_and_is_removed() {
        let r = parse(b"Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nnope");
        assert_eq!(r.status, 404);
        assert_eq!(r.header("content-type"), Some("text/plain"));
        assert!(r.header("Status").is_none());
        assert_eq!(&r.body[..], b"nope");
    }

    #[test]
    fn status_code_only_and_case_insensitive_name() {
        assert_eq!(parse(b"status: 201\r\n\r\n").status, 201);
        assert_eq!(parse(b"STATUS:503 Service Unavailable\n\n").status, 503);
    }

    #[test]
    fn bad_status_is_an_error() {
        for bad in [
            &b"Status: abc\r\n\r\n"[..],
            b"Status: 99\r\n\r\n",
            b"Status: 4040\r\n\r\n",
            b"Status: 000 Zero\r\n\r\n",
            // Outside HTTP's classes (the cgi_response fuzz target checks this): passed through before.
            b"Status: 600 Beyond\r\n\r\n",
            b"Status: 999\r\n\r\n",
            b"Status:\r\n\r\n",
            b"Status: 101 Switching Protocols\r\n\r\n",
            b"Status: 600\r\n\r\n",
            b"Status: 999\r\n\r\n",
        ] {
            let msg = parse_err(bad);
            assert!(msg.contains("Status"), "{msg}");
        }
    }

    #[test]
    fn location_without_status_is_302() {
        let r = parse(b"Location: /x\r\n\r\n");
        assert_eq!(r.status, 302);
        assert_eq!(r.header("Location"), Some("/x"));
    }

    #[test]
    fn location_with_status_keeps_status() {
        let r = parse(b"Location: /y\r\nStatus: 301 Moved Permanently\r\n\r\n");
        assert_eq!(r.status, 301);
        let r = parse(b"Status: 201 Created\r\nLocation: /items/1\r\n\r\n{}");
        assert_eq!(r.status, 201);
    }

    #[test]
    fn repeated_headers_are_kept_in_order() {
        let r = parse(
            b"Set-Cookie: a=1; path=/\r\nContent-Type: text/html\r\nSet-Cookie: b=2\r\nset-cookie: c=3; HttpOnly\r\n\r\n",
        );
        let cookies: Vec<_> = r.headers_all("Set-Cookie").collect();
        assert_eq!(cookies, vec!["a=1; path=/", "b=2", "c=3; HttpOnly"]);
        assert_eq!(r.headers.len(), 4);
        assert_eq!(r.headers[2], ("Set-Cookie".into(), "b=2".into()));
    }

    #[test]
    fn no_headers_blank_line_first() {
        let r = parse(b"\r\nbody only");
        assert_eq!(r.status, 200);
        assert!(r.headers.is_empty());
        assert_eq!(&r.body[..], b"body only");
    }

    #[test]
    fn empty_output_is_bare_200() {
        let r = parse(b"");
        assert_eq!(r.status, 200);
        assert!(r.headers.is_empty());
        assert!(r.body.is_empty());
    }

    #[test]
    fn headers_without_blank_line_at_eof() {
        let r = parse(b"Status: 204 No Content\r\nX-A: 1");
        assert_eq!(r.status, 204);
        assert_eq!(r.header("x-a"), Some("1"));
        assert!(r.body.is_empty());
    }

    #[test]
    fn lf_only_line_endings() {
        let r = parse(b"Status: 418 I'm a teapot\nX-One: 1\nX-Two:  2 \n\nline1\r\nline2\n");
        assert_eq!(r.status, 418);
        assert_eq!(r.header("X-One"), Some("1"));
        assert_eq!(r.header("X-Two"), Some("2"));
        // Body bytes are untouched, including CRLFs inside it.
        assert_eq!(&r.body[..], b"line1\r\nline2\n");
    }

    #[test]
    fn mixed_line_endings() {
        let r = parse(b"A: 1\r\nB: 2\n\r\nbody");
        assert_eq!(r.headers.len(), 2);
        assert_eq!(&r.body[..], b"body");
    }

    #[test]
    fn binary_body_is_a_zero_copy_slice() {
        let mut raw = b"Content-Type: application/octet-stream\r\n\r\n".to_vec();
        let header_len = raw.len();
        raw.extend((0..=255u8).cycle().take(10_000));
        raw.extend_from_slice(b"\r\n\r\n\0\0");
        let stdout = Bytes::from(raw.clone());
        let base = stdout.as_ptr();
        let r = parse_cgi_response(stdout).unwrap();
        assert_eq!(&r.body[..], &raw[header_len..]);
        // Same allocation, offset by the header block: no copy was made.
        assert_eq!(r.body.as_ptr(), base.wrapping_add(header_len));
    }

    #[test]
    fn header_value_may_be_empty_and_contain_colons() {
        let r = parse(b"X-Empty:\r\nX-Url: http://a:80/b\r\n\r\n");
        assert_eq!(r.header("X-Empty"), Some(""));
        assert_eq!(r.header("X-Url"), Some("http://a:80/b"));
    }

    #[test]
    fn non_utf8_value_is_replaced_not_rejected() {
        let r = parse(b"X-Latin: caf\xe9\r\n\r\n");
        assert_eq!(r.header("X-Latin"), Some("caf\u{fffd}"));
    }

    #[test]
    fn malformed_headers_are_errors() {
        assert!(parse_err(b"hello world\r\n\r\n").contains("without a colon"));
        assert!(parse_err(b"just some output").contains("without a colon"));
        assert!(parse_err(b": no name\r\n\r\n").contains("invalid header name"));
        assert!(parse_err(b"Bad Name: x\r\n\r\n").contains("invalid header name"));
        assert!(parse_err(b" X-Folded: x\r\n\r\n").contains("invalid header name"));
        assert!(parse_err(b"X-A: a\rInjected: b\r\n\r\n").contains("control character"));
        assert!(parse_err(b"X-A: a\0b\r\n\r\n").contains("control character"));
    }

    #[test]
    fn framing_headers_are_dropped() {
        let r = parse(
            b"Content-Length: 1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\
              Keep-Alive: timeout=5\r\nUpgrade: h2c\r\nTrailer: X\r\nTE: trailers\r\n\
              Proxy-Connection: keep-alive\r\nX-Kept: 1\r\n\r\nHTTP/1.1 200 OK\r\n",
        );
        assert_eq!(r.headers, vec![("X-Kept".into(), "1".into())]);
        assert_eq!(&r.body[..], b"HTTP/1.1 200 OK\r\n");
    }

    #[test]
    fn framing_names_case_insensitive() {
        assert!(is_framing_header("CONTENT-LENGTH"));
        assert!(is_framing_header("te"));
        assert!(!is_framing_header("content-type"));
        assert!(!is_framing_header("x-content-length"));
    }

    #[test]
    fn header_size_and_count_limits() {
        let mut ok = format!("X-Big: {}\r\n\r\n", "a".repeat(MAX_HEADER_LINE - 7));
        assert_eq!(parse(ok.as_bytes()).headers.len(), 1);
        ok = format!("X-Big: {}\r\n\r\n", "a".repeat(MAX_HEADER_LINE));
        assert!(parse_err(ok.as_bytes()).contains("header line is"));
        // An over-long line is refused even when it never ends.
        let endless = format!("X-Big: {}", "a".repeat(MAX_HEADER_LINE));
        assert!(parse_err(endless.as_bytes()).contains("header line is"));

        let many: String = (0..MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(
            parse(format!("{many}\r\n").as_bytes()).headers.len(),
            MAX_HEADERS
        );
        let too_many = format!("{many}X-Last: v\r\n\r\n");
        assert!(parse_err(too_many.as_bytes()).contains("more than 1000"));
    }
}
