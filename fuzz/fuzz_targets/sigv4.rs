//! SigV4 (tusk_auth): the fuzz input is a raw HTTP request (see `common/http_text.rs`),
//! preceded by two bytes of clock skew (i16, little-endian) and one flag byte. It is checked
//! with fixed credentials and a fixed clock through `tusk_auth::authenticate`, its parts run
//! through the canonicalisation steps, and the same request is signed with the real secret.
//!
//! Invariants: no panic; a request as the fuzzer wrote it (it never sees the secret) is never
//! accepted; the same request signed by `tusk_auth::sign` is accepted within the 15-minute
//! skew and refused beyond it; changing its body (when the payload hash is not
//! `UNSIGNED-PAYLOAD`) or its path or method breaks the signature; a normalised canonical
//! query is its own canonical form; the canonical headers block has one line per header.
#![no_main]

#[path = "../common/http_text.rs"]
mod http_text;

use http::{HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, UNIX_EPOCH};
use tusk_auth::fuzzing::{canonical_headers, canonical_query, canonical_uri};
use tusk_auth::{authenticate, sign, Credentials, RequestParts};

/// Not the secret the botocore seeds were signed with: those are real signatures, and the
/// fuzzer must not be handed a request that already passes.
const SECRET: &str = "fuzz-secret-that-no-seed-was-signed-with";
/// The clock of the node: 2024-05-17T10:30:00Z (the botocore tests' signing time).
const NOW: u64 = 1_715_941_800;
const MAX_SKEW: u16 = 15 * 60;

fuzz_target!(|data: &[u8]| {
    let Some((&[s0, s1, flags], rest)) = data.split_first_chunk::<3>() else {
        return;
    };
    let skew = i16::from_le_bytes([s0, s1]);
    let unsigned_payload = flags & 1 == 1;
    let raw = http_text::parse(rest);
    let creds = Credentials::new("tusk", SECRET);
    let now = UNIX_EPOCH + Duration::from_secs(NOW);

    // Canonicalisation on its own.
    let uri = canonical_uri(&raw.path);
    assert!(
        uri.starts_with('/') || !raw.path.starts_with('/'),
        "{uri:?}"
    );
    let query = canonical_query(&raw.query, false, None);
    assert_eq!(
        canonical_query(&query, false, None),
        query,
        "a normalised canonical query is its own canonical form"
    );
    let _ = canonical_query(&raw.query, true, Some("X-Amz-Signature"));
    let names: Vec<&str> = raw.headers.keys().map(HeaderName::as_str).collect();
    if let Ok(block) = canonical_headers(&raw.headers, &names) {
        assert_eq!(
            block.iter().filter(|&&b| b == b'\n').count(),
            names.len(),
            "one canonical line per header"
        );
    }
    let _ = tusk_auth::fuzzing::parse_amz_date(&raw.query);
    let _ = tusk_auth::fuzzing::parse_http_date(&raw.query);

    // The request as the fuzzer wrote it: without the secret it must not get in.
    let req = RequestParts {
        method: &raw.method,
        raw_path: &raw.path,
        raw_query: &raw.query,
        headers: &raw.headers,
        body: raw.body,
    };
    if let Ok(p) = authenticate(&req, &creds, now) {
        panic!("forged request accepted as {p:?}");
    }

    // The same request signed with the secret, `skew` seconds off the node's clock.
    let mut headers = raw.headers.clone();
    headers.remove(http::header::AUTHORIZATION);
    headers.remove("x-amz-date");
    headers.remove("x-amz-content-sha256");
    if !headers.contains_key(http::header::HOST) {
        headers.insert(
            http::header::HOST,
            HeaderValue::from_static("127.0.0.1:8080"),
        );
    }
    let offset = Duration::from_secs(u64::from(skew.unsigned_abs()));
    let at = if skew >= 0 {
        now + offset
    } else {
        now - offset
    };
    let date = HeaderValue::from_str(&tusk_auth::amz_date(at)).expect("an amz date is ASCII");
    headers.insert("x-amz-date", date);
    if unsigned_payload {
        headers.insert(
            "x-amz-content-sha256",
            HeaderValue::from_static("UNSIGNED-PAYLOAD"),
        );
    }
    let unsigned = RequestParts {
        headers: &headers,
        ..req
    };
    let Ok(auth) = sign(&unsigned, &creds, "us-east-1", "lambda") else {
        return;
    };
    let auth = HeaderValue::from_str(&auth).expect("an Authorization value is ASCII");
    headers.insert(http::header::AUTHORIZATION, auth);
    let signed = RequestParts {
        headers: &headers,
        ..req
    };
    let result = authenticate(&signed, &creds, now);

    // A presigned-looking query makes it a request with two mechanisms: refused either way.
    let two_mechanisms = raw.query.split('&').any(|pair| {
        let key = pair.split_once('=').map_or(pair, |(k, _)| k);
        percent_encoding::percent_decode_str(key).decode_utf8_lossy() == "X-Amz-Algorithm"
    });
    if skew.unsigned_abs() > MAX_SKEW || two_mechanisms {
        assert!(result.is_err(), "accepted (skew {skew} s)");
        return;
    }
    if skew.unsigned_abs() == MAX_SKEW {
        return;
    }
    if let Err(e) = result {
        panic!("a request signed with the secret was refused: {e}");
    }
    if !unsigned_payload {
        let mut other = raw.body.to_vec();
        other.push(b'!');
        let tampered = RequestParts {
            body: &other,
            ..signed
        };
        assert!(
            authenticate(&tampered, &creds, now).is_err(),
            "changed body accepted"
        );
    }
    let other_method = format!("{}X", raw.method);
    let tampered = RequestParts {
        method: &other_method,
        ..signed
    };
    assert!(
        authenticate(&tampered, &creds, now).is_err(),
        "changed method accepted"
    );
    let other_path = format!("{}/x", raw.path);
    let tampered = RequestParts {
        raw_path: &other_path,
        ..signed
    };
    assert!(
        authenticate(&tampered, &creds, now).is_err(),
        "changed path accepted"
    );
});
