//! The canonical request: the exact bytes both sides hash, built the way botocore's
//! `SigV4Auth.canonical_request` builds them for non-S3 services.

use http::HeaderMap;
use percent_encoding::{percent_decode_str, percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::AuthError;

/// RFC 3986 unreserved characters stay as they are; everything else is `%XX` (uppercase).
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Path encoding also keeps `/` (botocore: `quote(path, safe='/~')`).
const PATH: &AsciiSet = &UNRESERVED.remove(b'/');

/// Canonical URI for every service but S3: the path as received (already percent-encoded
/// by the client), with dot segments and empty segments removed, then percent-encoded a
/// second time. So `%3A` in an ARN on the wire becomes `%253A` here.
pub(crate) fn canonical_uri(raw_path: &str) -> String {
    let normalized = remove_dot_segments(raw_path);
    percent_encode(normalized.as_bytes(), PATH).to_string()
}

/// RFC 3986 §5.2.4 dot-segment removal, plus dropping empty segments (`//`), matching
/// botocore's `remove_dot_segments`. An empty path becomes `/`.
fn remove_dot_segments(path: &str) -> String {
    if path.is_empty() {
        return "/".to_owned();
    }
    let mut out: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut s = String::with_capacity(path.len());
    if path.starts_with('/') {
        s.push('/');
    }
    s.push_str(&out.join("/"));
    if path.ends_with('/') && !out.is_empty() {
        s.push('/');
    }
    s
}

/// Two ways to read the query string into canonical form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum QueryStyle {
    /// What the SigV4 spec asks: decode each key and value, re-encode with the unreserved
    /// set, sort. This is what botocore produces for everything it serializes itself.
    Normalized,
    /// The pairs exactly as sent, only sorted: what botocore computes when a caller hands it
    /// a URL whose query was not encoded the canonical way (e.g. a literal `/` or `+`).
    AsSent,
}

/// Canonical query string, sorted by key then value. `exclude` drops one parameter by its
/// decoded name (the presigned form leaves `X-Amz-Signature` out of what it signs).
pub(crate) fn canonical_query(raw_query: &str, style: QueryStyle, exclude: Option<&str>) -> String {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for piece in raw_query.split('&') {
        if piece.is_empty() && style == QueryStyle::Normalized {
            continue;
        }
        let (key, value) = piece.split_once('=').unwrap_or((piece, ""));
        if let Some(excluded) = exclude {
            if decode(key) == excluded.as_bytes() {
                continue;
            }
        }
        pairs.push(match style {
            QueryStyle::Normalized => (encode(&decode(key)), encode(&decode(value))),
            QueryStyle::AsSent => (key.to_owned(), value.to_owned()),
        });
    }
    pairs.sort();
    let mut out = String::with_capacity(raw_query.len() + 16);
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// Decoded query parameters, for reading the presigned `X-Amz-*` values. `+` stays `+`:
/// AWS query strings never use it for a space.
pub(crate) fn query_params(raw_query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    raw_query.split('&').filter(|p| !p.is_empty()).map(|piece| {
        let (key, value) = piece.split_once('=').unwrap_or((piece, ""));
        (
            String::from_utf8_lossy(&decode(key)).into_owned(),
            String::from_utf8_lossy(&decode(value)).into_owned(),
        )
    })
}

fn decode(s: &str) -> Vec<u8> {
    percent_decode_str(s).collect()
}

fn encode(bytes: &[u8]) -> String {
    percent_encode(bytes, UNRESERVED).to_string()
}

/// The canonical headers block: one `name:value\n` line per signed header, in the order of
/// `signed` (which clients send sorted). Values are trimmed with inner whitespace runs
/// collapsed to one space; repeated headers are joined with `,`.
pub(crate) fn canonical_headers(
    headers: &HeaderMap,
    signed: &[&str],
) -> Result<Vec<u8>, AuthError> {
    let mut out = Vec::with_capacity(256);
    for name in signed {
        let mut values = headers.get_all(*name).iter().peekable();
        if values.peek().is_none() {
            return Err(AuthError::Malformed(format!(
                "signed header `{name}` is not present in the request \
                 (a proxy may have dropped or renamed it)"
            )));
        }
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        for (i, value) in values.enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_trimmed(&mut out, value.as_bytes());
        }
        out.push(b'\n');
    }
    Ok(out)
}

/// Appends `value` with leading/trailing whitespace removed and inner runs squeezed to one
/// space (botocore: `' '.join(value.split())`).
fn push_trimmed(out: &mut Vec<u8>, value: &[u8]) {
    let mut first = true;
    for word in value
        .split(|b| b.is_ascii_whitespace() || *b == 0x0b)
        .filter(|w| !w.is_empty())
    {
        if !first {
            out.push(b' ');
        }
        out.extend_from_slice(word);
        first = false;
    }
}

/// The canonical request, newline-joined as SigV4 defines it.
pub(crate) struct CanonicalRequest<'a> {
    pub method: &'a str,
    pub uri: &'a str,
    pub query: &'a str,
    pub headers: &'a [u8],
    pub signed_headers: &'a str,
    pub payload_hash: &'a str,
}

impl CanonicalRequest<'_> {
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            self.method.len()
                + self.uri.len()
                + self.query.len()
                + self.headers.len()
                + self.signed_headers.len()
                + self.payload_hash.len()
                + 8,
        );
        out.extend_from_slice(self.method.to_ascii_uppercase().as_bytes());
        out.push(b'\n');
        out.extend_from_slice(self.uri.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(self.query.as_bytes());
        out.push(b'\n');
        // The headers block ends with its own '\n', then comes the separator.
        out.extend_from_slice(self.headers);
        out.push(b'\n');
        out.extend_from_slice(self.signed_headers.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(self.payload_hash.as_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn uri_is_encoded_twice() {
        assert_eq!(
            canonical_uri("/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A1%3Afunction%3Af/invocations"),
            "/2015-03-31/functions/arn%253Aaws%253Alambda%253Aus-east-1%253A1%253Afunction%253Af/invocations"
        );
        // A raw ':' (legal in a path) is encoded once, like botocore's quote() does.
        assert_eq!(canonical_uri("/a:b"), "/a%3Ab");
        assert_eq!(canonical_uri("/a b~c"), "/a%20b~c");
    }

    #[test]
    fn dot_and_empty_segments() {
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_uri("/"), "/");
        assert_eq!(canonical_uri("//"), "/");
        assert_eq!(
            canonical_uri("/2015-03-31/functions/"),
            "/2015-03-31/functions/"
        );
        assert_eq!(canonical_uri("/a//b/./c/../d"), "/a/b/d");
        assert_eq!(canonical_uri("/a/.."), "/");
        assert_eq!(canonical_uri("/../a/"), "/a/");
        // Encoded dots are data, not segments.
        assert_eq!(canonical_uri("/a/%2E%2E/b"), "/a/%252E%252E/b");
    }

    #[test]
    fn query_sorted_and_reencoded() {
        let q = "Marker=abc&MaxItems=10";
        assert_eq!(
            canonical_query(q, QueryStyle::Normalized, None),
            "Marker=abc&MaxItems=10"
        );
        assert_eq!(
            canonical_query("b=2&a=2&a=1&c", QueryStyle::Normalized, None),
            "a=1&a=2&b=2&c="
        );
        assert_eq!(
            canonical_query("k=a/b+c%7e%2f&x=%E2%82%AC", QueryStyle::Normalized, None),
            "k=a%2Fb%2Bc~%2F&x=%E2%82%AC"
        );
        assert_eq!(
            canonical_query("k=a/b+c&&j=1", QueryStyle::AsSent, None),
            "=&j=1&k=a/b+c"
        );
        assert_eq!(
            canonical_query(
                "X-Amz-Date=1&X-Amz-Signature=ff&a=b",
                QueryStyle::Normalized,
                Some("X-Amz-Signature")
            ),
            "X-Amz-Date=1&a=b"
        );
        assert_eq!(canonical_query("", QueryStyle::Normalized, None), "");
    }

    #[test]
    fn headers_trimmed_and_joined() {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("example.com"));
        h.append("x-multi", HeaderValue::from_static("  a   b\t c "));
        h.append("x-multi", HeaderValue::from_static("d"));
        let block = canonical_headers(&h, &["host", "x-multi"]).unwrap();
        assert_eq!(block, b"host:example.com\nx-multi:a b c,d\n");
        let err = canonical_headers(&h, &["host", "x-gone"]).unwrap_err();
        assert!(matches!(err, AuthError::Malformed(m) if m.contains("x-gone")));
    }
}
