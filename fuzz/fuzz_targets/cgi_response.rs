//! `tusk_fastcgi::parse_cgi_response` on arbitrary PHP output. Invariants: the status is a
//! valid HTTP status (100..=599: anything else is a malformed response, a 502),
//! header names are RFC 9110 tokens, values carry no CR/LF/NUL (no
//! header smuggling), the Status header is consumed, and the body is a suffix of the input.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fuzz_target!(|data: &[u8]| {
    let input = Bytes::copy_from_slice(data);
    let Ok(resp) = tusk_fastcgi::parse_cgi_response(input) else {
        return;
    };
    assert!(
        (100..=599).contains(&resp.status),
        "status {} out of range",
        resp.status
    );
    assert!(
        http::StatusCode::from_u16(resp.status).is_ok(),
        "the gateway must be able to send status {}",
        resp.status
    );
    for (name, value) in &resp.headers {
        assert!(
            !name.is_empty() && name.bytes().all(is_token_byte),
            "bad name {name:?}"
        );
        assert!(!name.eq_ignore_ascii_case("status"), "Status header leaked");
        assert!(
            !value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0),
            "control bytes in value {value:?}"
        );
        // What the gateway does with it: must not panic either.
        let _ = http::HeaderName::from_bytes(name.as_bytes());
        let _ = http::HeaderValue::from_str(value);
    }
    assert!(
        data.ends_with(&resp.body),
        "body is not the tail of the output"
    );
});
