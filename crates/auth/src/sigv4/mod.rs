//! AWS Signature Version 4 (`AWS4-HMAC-SHA256`), verified and produced the way botocore
//! does it for non-S3 services such as Lambda.
//!
//! Supported: the `Authorization` header form and the presigned query form; payload hash
//! from `X-Amz-Content-Sha256` (a hex SHA-256 that must match the body, or
//! `UNSIGNED-PAYLOAD`) or else the SHA-256 of the body; signing time from `X-Amz-Date` or
//! `Date`. Not supported: chunked/streaming payload signing (S3 uploads), SigV4a.
//! `X-Amz-Security-Token` is not checked: Tusk issues no session tokens, and the signature
//! alone proves the client holds the secret.

pub(crate) mod canonical;
pub(crate) mod timestamp;

use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::{Digest, Sha256};

use self::canonical::{
    canonical_headers, canonical_query, canonical_uri, query_params, CanonicalRequest, QueryStyle,
};
use self::timestamp::{Timestamp, MAX_SKEW_SECS};
use crate::{AuthError, Credentials, RequestParts};

pub(crate) const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const TERMINATOR: &str = "aws4_request";
const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// Presigned URLs live at most 7 days, as on AWS.
const MAX_PRESIGN_EXPIRES: i64 = 7 * 24 * 60 * 60;
/// Query parameter that marks a presigned request.
pub(crate) const PRESIGN_MARKER: &str = "X-Amz-Algorithm";
const PRESIGN_SIGNATURE: &str = "X-Amz-Signature";

/// Headers [`sign`] leaves out: hop-by-hop headers a proxy may change, plus the ones
/// botocore never signs (its `SIGNED_HEADERS_BLACKLIST`), plus the signature itself.
const NOT_SIGNED: &[&str] = &[
    "authorization",
    "connection",
    "expect",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "x-amzn-trace-id",
];

type HmacSha256 = Hmac<Sha256>;

/// What the client claims about its signature, from either form.
struct Claim {
    access_key: String,
    date: String,
    region: String,
    service: String,
    signed_headers: String,
    signature: String,
    time: Timestamp,
    /// `Some(seconds)` for a presigned request.
    expires: Option<i64>,
}

/// Verifies a request carrying `Authorization: AWS4-HMAC-SHA256 ...`.
pub(crate) fn verify_header(
    req: &RequestParts<'_>,
    authorization: &str,
    creds: &Credentials,
    now: Timestamp,
) -> Result<(), AuthError> {
    verify(req, &header_claim(req, authorization)?, creds, now, None)
}

/// Everything about a header-signed request that can be checked before its body arrives (key
/// id, scope date, freshness, signed headers); the signature covers the body's hash, so it is
/// left to [`verify_header`] once the body is read.
pub(crate) fn check_header_claim(
    req: &RequestParts<'_>,
    authorization: &str,
    creds: &Credentials,
    now: Timestamp,
) -> Result<(), AuthError> {
    check_claim(req, &header_claim(req, authorization)?, creds, now).map(|_| ())
}

fn header_claim(req: &RequestParts<'_>, authorization: &str) -> Result<Claim, AuthError> {
    let (credential, signed_headers, signature) = parse_authorization(authorization)?;
    let (access_key, date, region, service) = parse_credential(&credential)?;
    Ok(Claim {
        access_key,
        date,
        region,
        service,
        signed_headers,
        signature,
        time: header_time(req.headers)?,
        expires: None,
    })
}

/// Verifies a presigned request (`X-Amz-Algorithm`, `X-Amz-Credential`, ... in the query).
pub(crate) fn verify_presigned(
    req: &RequestParts<'_>,
    creds: &Credentials,
    now: Timestamp,
) -> Result<(), AuthError> {
    let mut algorithm = None;
    let mut credential = None;
    let mut date = None;
    let mut expires = None;
    let mut signed_headers = None;
    let mut signature = None;
    for (key, value) in query_params(req.raw_query) {
        let slot = match key.as_str() {
            PRESIGN_MARKER => &mut algorithm,
            "X-Amz-Credential" => &mut credential,
            "X-Amz-Date" => &mut date,
            "X-Amz-Expires" => &mut expires,
            "X-Amz-SignedHeaders" => &mut signed_headers,
            PRESIGN_SIGNATURE => &mut signature,
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return Err(AuthError::Malformed(format!(
                "query parameter {key} is given more than once"
            )));
        }
    }
    let require = |v: Option<String>, name: &str| {
        v.ok_or_else(|| {
            AuthError::Malformed(format!(
                "AWS query-string parameters must include '{name}'; \
                 re-check the presigned URL"
            ))
        })
    };
    let algorithm = require(algorithm, PRESIGN_MARKER)?;
    if algorithm != ALGORITHM {
        return Err(AuthError::Malformed(format!(
            "X-Amz-Algorithm only supports '{ALGORITHM}', not '{algorithm}'"
        )));
    }
    let credential = require(credential, "X-Amz-Credential")?;
    let date = require(date, "X-Amz-Date")?;
    let expires = require(expires, "X-Amz-Expires")?;
    let signed_headers = require(signed_headers, "X-Amz-SignedHeaders")?;
    let signature = require(signature, PRESIGN_SIGNATURE)?;

    let expires = expires
        .parse::<i64>()
        .ok()
        .filter(|e| (1..=MAX_PRESIGN_EXPIRES).contains(e))
        .ok_or_else(|| {
            AuthError::Malformed(format!(
                "X-Amz-Expires must be a number of seconds from 1 to {MAX_PRESIGN_EXPIRES}, \
                 not '{expires}'"
            ))
        })?;
    let time = Timestamp::parse_amz(&date).ok_or_else(|| bad_amz_date(&date))?;
    let (access_key, scope_date, region, service) = parse_credential(&credential)?;
    let claim = Claim {
        access_key,
        date: scope_date,
        region,
        service,
        signed_headers,
        signature,
        time,
        expires: Some(expires),
    };
    verify(req, &claim, creds, now, Some(PRESIGN_SIGNATURE))
}

/// The checks that need no body and no secret-derived key: access key id, scope date,
/// freshness, the signed header list and that every `x-amz-*` header is signed. Returns the
/// canonical headers block the signature covers.
fn check_claim(
    req: &RequestParts<'_>,
    claim: &Claim,
    creds: &Credentials,
    now: Timestamp,
) -> Result<Vec<u8>, AuthError> {
    if !crate::ct_eq(claim.access_key.as_bytes(), creds.access_key_id.as_bytes()) {
        return Err(AuthError::UnknownAccessKey(claim.access_key.clone()));
    }
    let amz = claim.time.to_amz();
    if claim.date != date_part(&amz) {
        return Err(AuthError::Malformed(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date \
             from HTTP: '{}' != '{}', from '{amz}'",
            claim.date,
            date_part(&amz)
        )));
    }
    check_time(claim.time, now, claim.expires)?;

    let signed = signed_header_names(&claim.signed_headers)?;
    let headers_block = canonical_headers(req.headers, &signed)?;
    unsigned_amz_headers(req.headers, &signed)?;
    Ok(headers_block)
}

fn verify(
    req: &RequestParts<'_>,
    claim: &Claim,
    creds: &Credentials,
    now: Timestamp,
    exclude_from_query: Option<&str>,
) -> Result<(), AuthError> {
    let headers_block = check_claim(req, claim, creds, now)?;
    let amz = claim.time.to_amz();
    let payload_hash = payload_hash(req)?;
    let key = signing_key(
        &creds.secret_access_key,
        &claim.date,
        &claim.region,
        &claim.service,
    )?;
    let scope = format!(
        "{}/{}/{}/{TERMINATOR}",
        claim.date, claim.region, claim.service
    );
    // Not hex means it cannot match; verify_slice below also rejects a wrong length.
    let provided = hex::decode(&claim.signature).map_err(|_| AuthError::SignatureMismatch)?;

    let uri = canonical_uri(req.raw_path);
    let normalized = canonical_query(req.raw_query, QueryStyle::Normalized, exclude_from_query);
    let as_sent = canonical_query(req.raw_query, QueryStyle::AsSent, exclude_from_query);
    // botocore signs the query as it appears in the URL it was given; for everything it
    // serializes itself that is the normalized form, but a hand-built URL may carry a
    // non-canonical encoding. Both readings describe the same parameters, so accepting
    // either lets no one change what was signed.
    let mut queries = vec![normalized];
    if as_sent != queries[0] {
        queries.push(as_sent);
    }
    for query in &queries {
        let canonical = CanonicalRequest {
            method: req.method,
            uri: &uri,
            query,
            headers: &headers_block,
            signed_headers: &claim.signed_headers,
            payload_hash: &payload_hash,
        }
        .to_bytes();
        let to_sign = string_to_sign(&amz, &scope, &canonical);
        if mac(&key)?
            .chain_update(to_sign.as_bytes())
            .verify_slice(&provided)
            .is_ok()
        {
            return Ok(());
        }
        tracing::debug!(
            canonical_request = %String::from_utf8_lossy(&canonical),
            string_to_sign = %to_sign,
            "SigV4 signature mismatch"
        );
    }
    Err(AuthError::SignatureMismatch)
}

/// Splits `AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`.
fn parse_authorization(value: &str) -> Result<(String, String, String), AuthError> {
    let rest = value
        .strip_prefix(ALGORITHM)
        .filter(|r| r.starts_with([' ', '\t']))
        .ok_or_else(|| {
            AuthError::Malformed(format!(
                "Authorization header must start with '{ALGORITHM} '"
            ))
        })?;
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, val) = part.split_once('=').ok_or_else(|| {
            AuthError::Malformed(format!(
                "Authorization header component '{part}' is not of the form key=value"
            ))
        })?;
        let slot = match key.trim() {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            _ => continue,
        };
        if slot.replace(val.trim().to_owned()).is_some() {
            return Err(AuthError::Malformed(format!(
                "Authorization header has '{}' more than once",
                key.trim()
            )));
        }
    }
    match (credential, signed_headers, signature) {
        (Some(c), Some(h), Some(s)) => Ok((c, h, s)),
        (c, h, s) => {
            let missing: Vec<String> = [
                ("Credential", c.is_none()),
                ("SignedHeaders", h.is_none()),
                ("Signature", s.is_none()),
            ]
            .iter()
            .filter(|(_, absent)| *absent)
            .map(|(name, _)| format!("Authorization header requires '{name}' parameter."))
            .collect();
            Err(AuthError::Malformed(missing.join(" ")))
        }
    }
}

/// Splits `AKID/YYYYMMDD/region/service/aws4_request`.
fn parse_credential(credential: &str) -> Result<(String, String, String, String), AuthError> {
    // Split from the right: the four scope parts never contain '/', so whatever is left is
    // the access key id.
    let mut parts = credential.rsplitn(5, '/');
    let (terminator, service, region, date, access_key) = match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some(t), Some(s), Some(r), Some(d), Some(a)) => (t, s, r, d, a),
        _ => {
            return Err(AuthError::Malformed(format!(
                "Credential '{credential}' must have the form \
                 <access key id>/<YYYYMMDD>/<region>/<service>/{TERMINATOR}"
            )))
        }
    };
    if terminator != TERMINATOR {
        return Err(AuthError::Malformed(format!(
            "Credential should be scoped with a valid terminator: '{TERMINATOR}', not '{terminator}'"
        )));
    }
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AuthError::Malformed(format!(
            "Credential scope date '{date}' must be YYYYMMDD"
        )));
    }
    if region.is_empty() || service.is_empty() || access_key.is_empty() {
        return Err(AuthError::Malformed(format!(
            "Credential '{credential}' has an empty access key id, region or service"
        )));
    }
    Ok((
        access_key.to_owned(),
        date.to_owned(),
        region.to_owned(),
        service.to_owned(),
    ))
}

/// The SignedHeaders list, checked: non-empty names, no repeats, `host` included (without
/// it a signed request could be replayed against another host).
fn signed_header_names(list: &str) -> Result<Vec<&str>, AuthError> {
    let names: Vec<&str> = list.split(';').collect();
    if names.iter().any(|n| n.is_empty()) {
        return Err(AuthError::Malformed(format!(
            "SignedHeaders '{list}' contains an empty header name"
        )));
    }
    for (i, name) in names.iter().enumerate() {
        if names[..i].contains(name) {
            return Err(AuthError::Malformed(format!(
                "SignedHeaders lists '{name}' more than once"
            )));
        }
    }
    if !names.iter().any(|n| n.eq_ignore_ascii_case("host")) {
        return Err(AuthError::Malformed(
            "'Host' must be a 'SignedHeader' in the AWS Authorization".to_owned(),
        ));
    }
    Ok(names)
}

/// Refuses a request carrying an `x-amz-*` header its signature does not cover: such headers
/// steer the call (`X-Amz-Invocation-Type: DryRun`, `X-Amz-Client-Context`, ...), so one added
/// on the way to a signed request must not be honoured. AWS refuses these too (S3's
/// "There were headers present in the request which were not signed").
///
/// No exception is needed for any client we know: botocore's `SigV4Auth.headers_to_sign`
/// signs every header present except its `SIGNED_HEADERS_BLACKLIST` (`expect`,
/// `transfer-encoding`, `user-agent`, `x-amzn-trace-id`), and it adds `X-Amz-Date`,
/// `X-Amz-Security-Token` and (where used) `X-Amz-Content-Sha256` before signing; the AWS SDKs
/// for JavaScript, Go and Java likewise sign all `x-amz-*` headers they send. `x-amzn-*`
/// (with an `n`, e.g. the trace id) is another prefix and stays unsigned.
fn unsigned_amz_headers(headers: &HeaderMap, signed: &[&str]) -> Result<(), AuthError> {
    let mut unsigned: Vec<&str> = headers
        .keys()
        .map(http::HeaderName::as_str)
        .filter(|name| name.starts_with("x-amz-"))
        .filter(|name| !signed.iter().any(|s| s.eq_ignore_ascii_case(name)))
        .collect();
    if unsigned.is_empty() {
        return Ok(());
    }
    unsigned.sort_unstable();
    Err(AuthError::UnsignedHeaders(unsigned.join(", ")))
}

/// The signing time of a header-signed request: `X-Amz-Date`, else `Date`.
fn header_time(headers: &HeaderMap) -> Result<Timestamp, AuthError> {
    if let Some(v) = headers.get("x-amz-date") {
        let s = v.to_str().unwrap_or_default();
        return Timestamp::parse_amz(s).ok_or_else(|| bad_amz_date(s));
    }
    if let Some(v) = headers.get(http::header::DATE) {
        let s = v.to_str().unwrap_or_default();
        return Timestamp::parse_http_date(s).ok_or_else(|| {
            AuthError::Malformed(format!(
                "Date header '{s}' is not an HTTP date such as 'Sun, 30 Aug 2015 12:36:00 GMT'"
            ))
        });
    }
    Err(AuthError::Malformed(
        "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header"
            .to_owned(),
    ))
}

fn bad_amz_date(s: &str) -> AuthError {
    AuthError::Malformed(format!(
        "X-Amz-Date '{s}' must have the form YYYYMMDDTHHMMSSZ (UTC)"
    ))
}

/// Rejects a signing time outside the skew window, or a presigned request past its expiry.
fn check_time(signed: Timestamp, now: Timestamp, expires: Option<i64>) -> Result<(), AuthError> {
    let latest = Timestamp(now.0.saturating_add(MAX_SKEW_SECS));
    if signed > latest {
        return Err(AuthError::ClockSkew(format!(
            "{} is still later than {} ({} + 15 min.); check the client's clock",
            signed.to_amz(),
            latest.to_amz(),
            now.to_amz()
        )));
    }
    match expires {
        None => {
            let earliest = Timestamp(now.0.saturating_sub(MAX_SKEW_SECS));
            if signed < earliest {
                return Err(AuthError::Expired(format!(
                    "{} is now earlier than {} ({} - 15 min.); sign the request again, \
                     and check the client's clock",
                    signed.to_amz(),
                    earliest.to_amz(),
                    now.to_amz()
                )));
            }
        }
        Some(secs) => {
            let end = Timestamp(signed.0.saturating_add(secs));
            if now > end {
                return Err(AuthError::Expired(format!(
                    "the presigned request was valid until {} ({} + {secs} s); it is now {}",
                    end.to_amz(),
                    signed.to_amz(),
                    now.to_amz()
                )));
            }
        }
    }
    Ok(())
}

/// The payload line of the canonical request.
fn payload_hash(req: &RequestParts<'_>) -> Result<String, AuthError> {
    let body_hash = || hex::encode(Sha256::digest(req.body));
    let mut values = req.headers.get_all("x-amz-content-sha256").iter();
    let Some(value) = values.next() else {
        return Ok(body_hash());
    };
    if values.next().is_some() {
        return Err(AuthError::Malformed(
            "X-Amz-Content-Sha256 is given more than once".to_owned(),
        ));
    }
    let claimed = value.to_str().unwrap_or_default();
    if claimed == UNSIGNED_PAYLOAD {
        return Ok(claimed.to_owned());
    }
    if claimed.len() == 64 && claimed.bytes().all(|b| b.is_ascii_hexdigit()) {
        // A claimed hash is only worth signing if it is the body's hash.
        if claimed.eq_ignore_ascii_case(&body_hash()) {
            return Ok(claimed.to_owned());
        }
        return Err(AuthError::PayloadHashMismatch);
    }
    Err(AuthError::Malformed(format!(
        "X-Amz-Content-Sha256 '{claimed}' is not supported: send the hex SHA-256 of the body \
         or '{UNSIGNED_PAYLOAD}' (chunked/streaming signing is not supported)"
    )))
}

fn string_to_sign(amz: &str, scope: &str, canonical_request: &[u8]) -> String {
    format!(
        "{ALGORITHM}\n{amz}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request))
    )
}

/// `HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")`.
fn signing_key(
    secret: &str,
    date: &str,
    region: &str,
    service: &str,
) -> Result<Vec<u8>, AuthError> {
    let mut key = format!("AWS4{secret}").into_bytes();
    for part in [date, region, service, TERMINATOR] {
        key = mac(&key)?
            .chain_update(part.as_bytes())
            .finalize()
            .into_bytes()
            .to_vec();
    }
    Ok(key)
}

fn mac(key: &[u8]) -> Result<HmacSha256, AuthError> {
    // HMAC accepts keys of any length, so this never fails; the Result only exists because
    // the constructor is shared with fixed-key MACs.
    HmacSha256::new_from_slice(key)
        .map_err(|_| AuthError::Malformed("HMAC rejected the signing key".to_owned()))
}

/// The `YYYYMMDD` prefix of an `X-Amz-Date` value.
fn date_part(amz: &str) -> &str {
    amz.get(..8).unwrap_or(amz)
}

pub(crate) fn timestamp_of(t: std::time::SystemTime) -> Timestamp {
    Timestamp::from_system_time(t)
}

/// Whether the query string has a parameter called `name` (after percent-decoding).
pub(crate) fn query_has(raw_query: &str, name: &str) -> bool {
    query_params(raw_query).any(|(key, _)| key == name)
}

/// Formats a time the way `X-Amz-Date` wants it: `20150830T123600Z`.
pub fn amz_date(t: std::time::SystemTime) -> String {
    Timestamp::from_system_time(t).to_amz()
}

/// Signs a request the way botocore's `SigV4Auth` does and returns the value for its
/// `Authorization` header.
///
/// The request must already carry `Host` and the signing time in `X-Amz-Date` (see
/// [`amz_date`]) or `Date`. Every header present is signed except hop-by-hop ones,
/// `User-Agent`, `X-Amzn-Trace-Id` and `Authorization`. The payload hash is taken from
/// `X-Amz-Content-Sha256` when present, else computed from the body.
pub fn sign(
    req: &RequestParts<'_>,
    creds: &Credentials,
    region: &str,
    service: &str,
) -> Result<String, AuthError> {
    let time = header_time(req.headers)?;
    // keys() yields each name once, lowercase; sort to get SigV4's order.
    let mut signed: Vec<&str> = req
        .headers
        .keys()
        .map(http::HeaderName::as_str)
        .filter(|name| !NOT_SIGNED.contains(name))
        .collect();
    signed.sort_unstable();
    if !signed.contains(&"host") {
        return Err(AuthError::Malformed(
            "a request needs a Host header to be signed".to_owned(),
        ));
    }
    let signed_headers = signed.join(";");
    let headers_block = canonical_headers(req.headers, &signed)?;
    let payload_hash = payload_hash(req)?;
    let amz = time.to_amz();
    let date = date_part(&amz);
    let scope = format!("{date}/{region}/{service}/{TERMINATOR}");
    let canonical = CanonicalRequest {
        method: req.method,
        uri: &canonical_uri(req.raw_path),
        query: &canonical_query(req.raw_query, QueryStyle::Normalized, None),
        headers: &headers_block,
        signed_headers: &signed_headers,
        payload_hash: &payload_hash,
    }
    .to_bytes();
    let key = signing_key(&creds.secret_access_key, date, region, service)?;
    let signature = mac(&key)?
        .chain_update(string_to_sign(&amz, &scope, &canonical).as_bytes())
        .finalize()
        .into_bytes();
    Ok(format!(
        "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={}",
        creds.access_key_id,
        hex::encode(signature)
    ))
}

#[cfg(test)]
mod tests;
