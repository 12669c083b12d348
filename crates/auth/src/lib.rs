//! Request authentication for a Tusk node's APIs (the Lambda APIs and `/_tusk/*`).
//!
//! Two ways in, both resting on one secret, the node's admin token:
//!
//! - `Authorization: Bearer <admin token>`: what the `tusk` CLI sends.
//! - AWS Signature Version 4: what the AWS CLI and SDKs send when pointed at the node with
//!   `--endpoint-url`. The access key id is `tusk` unless configured otherwise; the secret
//!   access key is the admin token. Any region and service name are accepted. Both the
//!   `Authorization` header form and presigned URLs work.
//!
//! The gateway collects what it knows of a request into [`RequestParts`] and calls
//! [`authenticate`]; on failure, [`AuthError::status`], [`AuthError::aws_error_type`] and the
//! error's `Display` text make the AWS-style error response.
//!
//! Limits, written down:
//! - Signatures are valid for 15 minutes either side of the server clock; presigned URLs for
//!   at most 7 days.
//! - The canonical request is built from the path and query exactly as received, so a proxy
//!   in front of the node must not rewrite them, nor the `Host` header. Over HTTP/2 the
//!   gateway must put the `:authority` into `Host` before calling [`authenticate`].
//! - No chunked (streaming) payload signing and no SigV4a: Lambda clients use neither.
//! - Without `X-Amz-Content-Sha256` the body is hashed, so the whole body must be buffered
//!   first (Lambda payloads are capped at 6 MB anyway).

mod error;
mod sigv4;

use std::fmt;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

pub use error::AuthError;
pub use sigv4::{amz_date, sign};

/// The canonicalisation steps of SigV4, exposed for the fuzz targets in `fuzz/` only: not a
/// stable API.
#[doc(hidden)]
pub mod fuzzing {
    use crate::sigv4::canonical::QueryStyle;

    /// The canonical URI of a raw (still percent-encoded) path.
    pub fn canonical_uri(raw_path: &str) -> String {
        crate::sigv4::canonical::canonical_uri(raw_path)
    }

    /// The canonical query string of a raw query (normalised, or `as_sent`), optionally
    /// without one parameter.
    pub fn canonical_query(raw_query: &str, as_sent: bool, exclude: Option<&str>) -> String {
        let style = if as_sent {
            QueryStyle::AsSent
        } else {
            QueryStyle::Normalized
        };
        crate::sigv4::canonical::canonical_query(raw_query, style, exclude)
    }

    /// The canonical headers block for the headers named in `signed`.
    pub fn canonical_headers(
        headers: &http::HeaderMap,
        signed: &[&str],
    ) -> Result<Vec<u8>, crate::AuthError> {
        crate::sigv4::canonical::canonical_headers(headers, signed)
    }

    /// Parses an `X-Amz-Date` value to seconds since the epoch.
    pub fn parse_amz_date(s: &str) -> Option<i64> {
        crate::sigv4::timestamp::Timestamp::parse_amz(s).map(|t| t.0)
    }

    /// Parses an HTTP `Date` header to seconds since the epoch.
    pub fn parse_http_date(s: &str) -> Option<i64> {
        crate::sigv4::timestamp::Timestamp::parse_http_date(s).map(|t| t.0)
    }
}

/// The access key id SigV4 clients use unless the node is configured otherwise.
pub const DEFAULT_ACCESS_KEY_ID: &str = "tusk";

/// The node's credentials: the SigV4 key pair, whose secret doubles as the bearer token.
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl Credentials {
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        Credentials {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
        }
    }

    /// Credentials for a node whose admin token is `token`, under the default access key id.
    pub fn from_admin_token(token: impl Into<String>) -> Self {
        Credentials::new(DEFAULT_ACCESS_KEY_ID, token)
    }
}

// Hand-written so the secret never reaches a log line.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// What the gateway knows of a request.
///
/// `raw_path` is the path exactly as received (still percent-encoded), `raw_query` the query
/// string without '?'. SigV4 signs these bytes, so decoding or normalizing them first
/// would break valid signatures.
#[derive(Clone, Copy)]
pub struct RequestParts<'a> {
    pub method: &'a str,
    pub raw_path: &'a str,
    pub raw_query: &'a str,
    pub headers: &'a http::HeaderMap,
    pub body: &'a [u8],
}

/// Who a request acts as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Principal {
    /// The node's administrator: the admin token or a signature made with it.
    Admin,
}

/// Authenticates a request: `Authorization: Bearer <token>`, a SigV4 `Authorization`
/// header, or a SigV4 presigned query string. `now` is the server's clock, checked against
/// the signing time.
pub fn authenticate(
    req: &RequestParts<'_>,
    creds: &Credentials,
    now: SystemTime,
) -> Result<Principal, AuthError> {
    let mut values = req.headers.get_all(http::header::AUTHORIZATION).iter();
    let header = values.next();
    if values.next().is_some() {
        return Err(AuthError::Malformed(
            "the request has more than one Authorization header".to_owned(),
        ));
    }
    let now = sigv4::timestamp_of(now);

    let Some(header) = header else {
        if is_presigned(req.raw_query) {
            sigv4::verify_presigned(req, creds, now)?;
            return Ok(Principal::Admin);
        }
        return Err(AuthError::Missing);
    };
    let header = header.to_str().map_err(|_| {
        AuthError::Malformed("the Authorization header is not visible ASCII".to_owned())
    })?;

    if let Some(token) = strip_scheme(header, "Bearer") {
        return bearer(token, creds);
    }
    if header.starts_with(sigv4::ALGORITHM) {
        if is_presigned(req.raw_query) {
            return Err(AuthError::Malformed(
                "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter \
                 or the Authorization header should be specified"
                    .to_owned(),
            ));
        }
        sigv4::verify_header(req, header, creds, now)?;
        return Ok(Principal::Admin);
    }
    let scheme = header.split_whitespace().next().unwrap_or_default();
    Err(AuthError::Malformed(format!(
        "unsupported Authorization scheme '{scheme}': use 'Bearer <admin token>' or \
         AWS Signature Version 4 ({})",
        sigv4::ALGORITHM
    )))
}

/// What the credentials of a request say before its body is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precheck {
    /// Fully authenticated without the body (a bearer token).
    Authenticated(Principal),
    /// A SigV4 signature whose key id, date and scope are right; it covers the body, so call
    /// [`authenticate`] again once the body is read.
    NeedsBody,
}

/// Checks what a request's credentials allow without its body, so a node can refuse an
/// unauthenticated upload before reading a byte of it. `req.body` is ignored. Every error
/// [`authenticate`] gives for a missing or bad token, an unknown access key id, a stale or
/// future signing time or a malformed header is given here already; only a signature that
/// may need the body's hash passes as [`Precheck::NeedsBody`].
pub fn precheck(
    req: &RequestParts<'_>,
    creds: &Credentials,
    now: SystemTime,
) -> Result<Precheck, AuthError> {
    // A header-signed request: everything but the signature, which covers the body's hash and
    // is checked once, with the body, by `authenticate`.
    if let Some(value) = single_authorization(req.headers) {
        if value.starts_with(sigv4::ALGORITHM) && !is_presigned(req.raw_query) {
            sigv4::check_header_claim(req, value, creds, sigv4::timestamp_of(now))?;
            return Ok(Precheck::NeedsBody);
        }
    }
    let bodiless = RequestParts { body: b"", ..*req };
    match authenticate(&bodiless, creds, now) {
        Ok(p) if is_bearer(req.headers) => Ok(Precheck::Authenticated(p)),
        // Signed over an empty body; the body received must still match it.
        Ok(_) => Ok(Precheck::NeedsBody),
        Err(AuthError::SignatureMismatch | AuthError::PayloadHashMismatch) => {
            Ok(Precheck::NeedsBody)
        }
        Err(e) => Err(e),
    }
}

/// The one `Authorization` header as text (`None` when absent, repeated or not ASCII: the full
/// check reports those).
fn single_authorization(headers: &http::HeaderMap) -> Option<&str> {
    let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    value.to_str().ok()
}

fn is_bearer(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| strip_scheme(v, "Bearer").is_some())
}

fn bearer(token: &str, creds: &Credentials) -> Result<Principal, AuthError> {
    let token = token.trim();
    // An empty token must not match a node configured with an empty secret.
    if token.is_empty() || !ct_eq(token.as_bytes(), creds.secret_access_key.as_bytes()) {
        return Err(AuthError::BadToken);
    }
    Ok(Principal::Admin)
}

/// Returns what follows `scheme` and whitespace; the scheme is case-insensitive (RFC 9110).
fn strip_scheme<'h>(header: &'h str, scheme: &str) -> Option<&'h str> {
    let head = header.get(..scheme.len())?;
    let rest = header.get(scheme.len()..)?;
    (head.eq_ignore_ascii_case(scheme) && rest.starts_with([' ', '\t'])).then_some(rest)
}

fn is_presigned(raw_query: &str) -> bool {
    sigv4::query_has(raw_query, sigv4::PRESIGN_MARKER)
}

/// Compares secrets in time independent of where they differ. Hashing first also hides
/// the length of the expected value.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let (ha, hb) = (Sha256::digest(a), Sha256::digest(b));
    let diff = ha
        .iter()
        .zip(hb.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue};

    fn req_with_auth<'a>(headers: &'a HeaderMap) -> RequestParts<'a> {
        RequestParts {
            method: "GET",
            raw_path: "/_tusk/health",
            raw_query: "",
            headers,
            body: b"",
        }
    }

    fn creds() -> Credentials {
        Credentials::from_admin_token("s3cret-token")
    }

    #[test]
    fn bearer_token() {
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            HeaderValue::from_static("Bearer s3cret-token"),
        );
        assert_eq!(
            authenticate(&req_with_auth(&h), &creds(), SystemTime::now()),
            Ok(Principal::Admin)
        );
        h.insert(
            "authorization",
            HeaderValue::from_static("bearer  s3cret-token "),
        );
        assert_eq!(
            authenticate(&req_with_auth(&h), &creds(), SystemTime::now()),
            Ok(Principal::Admin)
        );
        for bad in [
            "Bearer s3cret-tokeN",
            "Bearer s3cret-token2",
            "Bearer ",
            "Bearer",
        ] {
            h.insert("authorization", HeaderValue::from_static(bad));
            let err = authenticate(&req_with_auth(&h), &creds(), SystemTime::now()).unwrap_err();
            assert!(
                matches!(err, AuthError::BadToken | AuthError::Malformed(_)),
                "{bad}: {err:?}"
            );
        }
        h.insert("authorization", HeaderValue::from_static("Bearer x"));
        let err = authenticate(&req_with_auth(&h), &creds(), SystemTime::now()).unwrap_err();
        assert_eq!(err, AuthError::BadToken);
        assert_eq!(err.status(), 401);
        assert_eq!(err.aws_error_type(), "UnrecognizedClientException");
    }

    #[test]
    fn empty_secret_never_matches() {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer "));
        let c = Credentials::from_admin_token("");
        assert_eq!(
            authenticate(&req_with_auth(&h), &c, SystemTime::now()),
            Err(AuthError::BadToken)
        );
    }

    #[test]
    fn missing_and_unknown_schemes() {
        let h = HeaderMap::new();
        let err = authenticate(&req_with_auth(&h), &creds(), SystemTime::now()).unwrap_err();
        assert_eq!(err, AuthError::Missing);
        assert_eq!(err.aws_error_type(), "MissingAuthenticationTokenException");
        assert_eq!(err.status(), 403);

        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            HeaderValue::from_static("Basic dXNlcjpwYXNz"),
        );
        let err = authenticate(&req_with_auth(&h), &creds(), SystemTime::now()).unwrap_err();
        assert!(matches!(&err, AuthError::Malformed(m) if m.contains("'Basic'")));
        assert_eq!(err.aws_error_type(), "IncompleteSignatureException");

        h.append(
            "authorization",
            HeaderValue::from_static("Bearer s3cret-token"),
        );
        let err = authenticate(&req_with_auth(&h), &creds(), SystemTime::now()).unwrap_err();
        assert!(matches!(&err, AuthError::Malformed(m) if m.contains("more than one")));
    }

    #[test]
    fn precheck_decides_without_the_body() {
        let c = creds();
        let now = SystemTime::now();
        let mut h = HeaderMap::new();
        fn req(h: &HeaderMap) -> RequestParts<'_> {
            RequestParts {
                method: "POST",
                raw_path: "/_tusk/deployments",
                raw_query: "",
                headers: h,
                body: b"{}",
            }
        }
        assert_eq!(precheck(&req(&h), &c, now), Err(AuthError::Missing));
        h.insert("authorization", HeaderValue::from_static("Bearer nope"));
        assert_eq!(precheck(&req(&h), &c, now), Err(AuthError::BadToken));
        h.insert(
            "authorization",
            HeaderValue::from_static("Bearer s3cret-token"),
        );
        assert_eq!(
            precheck(&req(&h), &c, now),
            Ok(Precheck::Authenticated(Principal::Admin))
        );

        // A fresh signature with the right key id needs the body; a wrong key id or a stale
        // date does not get that far.
        let date = amz_date(now);
        let day = &date[..8];
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("node"));
        h.insert("x-amz-date", HeaderValue::from_str(&date).unwrap());
        let sig = |akid: &str| {
            HeaderValue::from_str(&format!(
                "AWS4-HMAC-SHA256 Credential={akid}/{day}/us-east-1/lambda/aws4_request, \
                 SignedHeaders=host;x-amz-date, Signature={}",
                "0".repeat(64)
            ))
            .unwrap()
        };
        h.insert("authorization", sig("tusk"));
        assert_eq!(precheck(&req(&h), &c, now), Ok(Precheck::NeedsBody));
        h.insert("authorization", sig("someone"));
        assert!(matches!(
            precheck(&req(&h), &c, now),
            Err(AuthError::UnknownAccessKey(_))
        ));
        h.insert("authorization", sig("tusk"));
        h.insert("x-amz-date", HeaderValue::from_static("20000101T000000Z"));
        assert!(precheck(&req(&h), &c, now).is_err());
    }

    #[test]
    fn debug_redacts_secret() {
        let shown = format!("{:?}", creds());
        assert!(shown.contains("tusk"));
        assert!(!shown.contains("s3cret"));
    }

    #[test]
    fn ct_eq_basics() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"abcd"));
        assert!(ct_eq(b"", b""));
    }

    #[test]
    fn presigned_date_with_multibyte_text_is_refused_not_a_panic() {
        // Found by the sigv4 fuzz target: this anonymous query panicked the handler.
        let h = HeaderMap::new();
        let req = RequestParts {
            method: "GET",
            raw_path: "/2015-03-31/functions/",
            raw_query: "X-Amz-Algorithm=AWS4-HMAC-SHA256\
                        &X-Amz-Credential=tusk%2F20240517%2Fus-east-1%2Flambda%2Faws4_request\
                        &X-Amz-Date=20240%EF%BF%BDT103000Z&X-Amz-Expires=300\
                        &X-Amz-SignedHeaders=host&X-Amz-Signature=00",
            headers: &h,
            body: b"",
        };
        let err = authenticate(&req, &creds(), SystemTime::now()).unwrap_err();
        assert!(matches!(err, AuthError::Malformed(_)), "{err:?}");
    }
}
