//! API Gateway conversion (tusk_gateway::apigw). The first fuzz byte picks the mode:
//! bit 1 set, the rest is a function's result, mapped to HTTP for payload 1.0 and 2.0
//! (`response_from_result`); otherwise a route line `METHOD PATH STAGE` (an `httpApi`
//! event, or `http` when bit 0 is set) followed by a raw HTTP request (see
//! `common/http_text.rs`), turned into an event (`request_event`) and read back
//! (`event_request`).
//!
//! Invariants: no panic; a result maps to a status in 100..=599 with valid header names and
//! values; an event reads back as the same method, path and body, with the same payload
//! version as its route.
#![no_main]

#[path = "../common/http_text.rs"]
mod http_text;

use bytes::Bytes;
use http::HeaderName;
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;
use tusk_gateway::apigw::{event_request, request_event, response_from_result, HttpRequest};
use tusk_control::routes::{routes_for, Payload, RouteTable};
use tusk_manifest::EventSpec;

fn check_result(result: &[u8]) {
    for payload in [Payload::V1, Payload::V2] {
        // A malformed result is the caller's 502; what passes must be a valid response.
        let Ok(resp) = response_from_result(payload, result) else {
            continue;
        };
        let code = resp.status.as_u16();
        assert!((100..=599).contains(&code), "status {code}");
        for (name, value) in &resp.headers {
            assert!(HeaderName::from_bytes(name.as_str().as_bytes()).is_ok());
            let v = value.as_bytes();
            assert!(
                !v.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0),
                "{value:?}"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    if flags & 2 != 0 {
        check_result(rest);
        return;
    }
    let v1 = flags & 1 != 0;
    let route_line = http_text::first_line(&mut rest);
    let mut words = route_line.splitn(3, ' ');
    let (route_method, route_path) = (words.next().unwrap_or("ANY"), words.next().unwrap_or("*"));
    let stage = words.next().unwrap_or("$default");
    let raw = http_text::parse(rest);

    let event = if v1 {
        EventSpec::Http {
            method: route_method.into(),
            path: route_path.into(),
        }
    } else {
        EventSpec::HttpApi {
            method: route_method.into(),
            path: route_path.into(),
        }
    };
    let routes = routes_for("svc-dev-fn", &[event]);
    let table = RouteTable::new(routes.clone());
    let matched = table.find(&raw.method, &raw.path);
    let (route, params) = match &matched {
        Some(m) => (m.route, m.params.clone()),
        None => match routes.first() {
            Some(r) => (r, HashMap::new()),
            None => return,
        },
    };
    let payload = if v1 { Payload::V1 } else { Payload::V2 };
    assert_eq!(route.payload, payload);
    let body = Bytes::copy_from_slice(raw.body);
    let req = HttpRequest {
        method: &raw.method,
        path: &raw.path,
        raw_query: &raw.query,
        headers: &raw.headers,
        body: &body,
        remote: "127.0.0.1:40000".parse().expect("an address"),
        request_id: "fuzz-request",
        stage,
    };
    let event = request_event(&req, route, &params);
    let text = serde_json::to_string(&event).expect("an event serialises");
    let reparsed: serde_json::Value = serde_json::from_str(&text).expect("an event parses");
    let back = event_request(&reparsed).expect("our own event reads back");
    assert_eq!(back.payload, payload);
    assert_eq!(back.method, raw.method.to_uppercase(), "method round trip");
    assert_eq!(back.path, raw.path, "path round trip");
    assert_eq!(&back.body[..], raw.body, "body round trip");
});
