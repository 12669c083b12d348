//! API Gateway wire formats: HTTP request → event (payload 1.0 / 2.0), and the function's
//! result → HTTP response, following API Gateway's mapping rules.

use crate::routes::{Payload, Route};
use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::net::SocketAddr;

/// What the gateway knows of an incoming HTTP request.
pub struct HttpRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub raw_query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a Bytes,
    pub remote: SocketAddr,
    pub request_id: &'a str,
    pub stage: &'a str,
}

fn now_epoch_ms() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 / 1_000_000
}

fn clf_time() -> String {
    let fmt = time::macros::format_description!(
        "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000"
    );
    time::OffsetDateTime::now_utc()
        .format(&fmt)
        .unwrap_or_default()
}

fn body_field(body: &Bytes) -> (Value, bool) {
    if body.is_empty() {
        return (Value::Null, false);
    }
    match std::str::from_utf8(body) {
        Ok(s) => (Value::String(s.to_string()), false),
        Err(_) => (
            Value::String(base64::engine::general_purpose::STANDARD.encode(body)),
            true,
        ),
    }
}

fn query_pairs(raw: &str) -> Vec<(String, String)> {
    url_decode_pairs(raw)
}

fn url_decode_pairs(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (form_decode(k), form_decode(v))
        })
        .collect()
}

fn form_decode(s: &str) -> String {
    let s = s.replace('+', " ");
    percent_encoding::percent_decode_str(&s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Builds the event a function receives for an HTTP request on `route`.
pub fn request_event(
    req: &HttpRequest<'_>,
    route: &Route,
    params: &HashMap<String, String>,
) -> Value {
    match route.payload {
        Payload::V2 => v2_event(req, route, params),
        Payload::V1 => v1_event(req, route, params),
    }
}

fn header_str(v: &HeaderValue) -> String {
    String::from_utf8_lossy(v.as_bytes()).into_owned()
}

fn v2_event(req: &HttpRequest<'_>, route: &Route, params: &HashMap<String, String>) -> Value {
    let mut headers = Map::new();
    let mut cookies = Vec::new();
    for (name, value) in req.headers {
        if name == http::header::COOKIE {
            cookies.extend(
                header_str(value)
                    .split(';')
                    .map(|c| c.trim().to_string())
                    .filter(|c| !c.is_empty()),
            );
            continue;
        }
        let v = header_str(value);
        headers
            .entry(name.as_str().to_string())
            .and_modify(|e| {
                if let Value::String(s) = e {
                    s.push(',');
                    s.push_str(&v);
                }
            })
            .or_insert_with(|| Value::String(v.clone()));
    }
    let mut query = Map::new();
    for (k, v) in query_pairs(req.raw_query) {
        query
            .entry(k)
            .and_modify(|e| {
                if let Value::String(s) = e {
                    s.push(',');
                    s.push_str(&v);
                }
            })
            .or_insert_with(|| Value::String(v.clone()));
    }
    let (body, is_b64) = body_field(req.body);
    let user_agent = req
        .headers
        .get(http::header::USER_AGENT)
        .map(header_str)
        .unwrap_or_default();
    let host = req
        .headers
        .get(http::header::HOST)
        .map(header_str)
        .unwrap_or_else(|| "localhost".into());
    let mut event = json!({
        "version": "2.0",
        "routeKey": route.route_key(),
        "rawPath": req.path,
        "rawQueryString": req.raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": crate::ACCOUNT_ID,
            "apiId": "tusk",
            "domainName": host,
            "domainPrefix": host.split('.').next().unwrap_or_default(),
            "http": {
                "method": req.method,
                "path": req.path,
                "protocol": "HTTP/1.1",
                "sourceIp": req.remote.ip().to_string(),
                "userAgent": user_agent,
            },
            "requestId": req.request_id,
            "routeKey": route.route_key(),
            "stage": "$default",
            "time": clf_time(),
            "timeEpoch": now_epoch_ms(),
        },
        "isBase64Encoded": is_b64,
    });
    if let Value::Object(o) = &mut event {
        if !cookies.is_empty() {
            o.insert("cookies".into(), json!(cookies));
        }
        if !query.is_empty() {
            o.insert("queryStringParameters".into(), Value::Object(query));
        }
        if !params.is_empty() {
            o.insert("pathParameters".into(), json!(params));
        }
        if !body.is_null() {
            o.insert("body".into(), body);
        }
    }
    event
}

fn v1_event(req: &HttpRequest<'_>, route: &Route, params: &HashMap<String, String>) -> Value {
    let mut headers = Map::new();
    let mut multi: Map<String, Value> = Map::new();
    for (name, value) in req.headers {
        let v = header_str(value);
        headers.insert(name.as_str().to_string(), Value::String(v.clone()));
        if let Value::Array(a) = multi
            .entry(name.as_str().to_string())
            .or_insert_with(|| Value::Array(vec![]))
        {
            a.push(Value::String(v));
        }
    }
    let mut query = Map::new();
    let mut multi_query: Map<String, Value> = Map::new();
    for (k, v) in query_pairs(req.raw_query) {
        query.insert(k.clone(), Value::String(v.clone()));
        if let Value::Array(a) = multi_query.entry(k).or_insert_with(|| Value::Array(vec![])) {
            a.push(Value::String(v));
        }
    }
    let (body, is_b64) = body_field(req.body);
    let resource = if route.path == "*" {
        "/{proxy+}".to_string()
    } else {
        route.path.clone()
    };
    let null_if_empty = |m: Map<String, Value>| {
        if m.is_empty() {
            Value::Null
        } else {
            Value::Object(m)
        }
    };
    json!({
        "resource": resource,
        "path": req.path,
        "httpMethod": req.method,
        "headers": headers,
        "multiValueHeaders": multi,
        "queryStringParameters": null_if_empty(query),
        "multiValueQueryStringParameters": null_if_empty(multi_query),
        "pathParameters": if params.is_empty() { Value::Null } else { json!(params) },
        "stageVariables": null,
        "requestContext": {
            "accountId": crate::ACCOUNT_ID,
            "apiId": "tusk",
            "resourcePath": resource,
            "httpMethod": req.method,
            "path": format!("/{}{}", req.stage, req.path),
            "protocol": "HTTP/1.1",
            "requestId": req.request_id,
            "requestTime": clf_time(),
            "requestTimeEpoch": now_epoch_ms(),
            "stage": req.stage,
            "identity": {
                "sourceIp": req.remote.ip().to_string(),
                "userAgent": req.headers.get(http::header::USER_AGENT).map(header_str),
            },
        },
        "body": body,
        "isBase64Encoded": is_b64,
    })
}

/// An HTTP response ready to send.
pub struct HttpResponse {
    pub status: StatusCode,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

impl HttpResponse {
    pub fn json(status: StatusCode, body: Value) -> HttpResponse {
        HttpResponse {
            status,
            headers: vec![(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body: Bytes::from(body.to_string()),
        }
    }
}

fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn push_header(out: &mut Vec<(HeaderName, HeaderValue)>, name: &str, value: &str) {
    if let (Ok(n), Ok(v)) = (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(value),
    ) {
        out.push((n, v));
    }
}

/// Maps a function's result back to HTTP per API Gateway's rules for the payload version.
pub fn response_from_result(payload: Payload, result: &[u8]) -> HttpResponse {
    let bad_gateway = || {
        HttpResponse::json(
            StatusCode::BAD_GATEWAY,
            json!({"message": "Internal server error"}),
        )
    };
    let value: Option<Value> = serde_json::from_slice(result).ok();
    let obj = match &value {
        Some(Value::Object(o)) if o.contains_key("statusCode") => o,
        _ => {
            if payload == Payload::V1 {
                return bad_gateway();
            }
            // Payload 2.0: anything without a statusCode is a 200 JSON body.
            let body = match &value {
                Some(Value::String(s)) => Bytes::from(s.clone()),
                Some(_) => Bytes::copy_from_slice(result),
                None => return bad_gateway(),
            };
            return HttpResponse {
                status: StatusCode::OK,
                headers: vec![(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                body,
            };
        }
    };
    let status = obj
        .get("statusCode")
        .and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        })
        // API Gateway's range; `as u16` would also turn 65736 into 200.
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| (100..=599).contains(c))
        .and_then(|c| StatusCode::from_u16(c).ok());
    let Some(status) = status else {
        return bad_gateway();
    };
    let mut headers = Vec::new();
    if let Some(Value::Object(h)) = obj.get("headers") {
        for (k, v) in h {
            if let Some(v) = scalar_string(v) {
                push_header(&mut headers, k, &v);
            }
        }
    }
    if let Some(Value::Object(h)) = obj.get("multiValueHeaders") {
        for (k, vs) in h {
            if let Value::Array(vs) = vs {
                headers.retain(|(n, _)| !n.as_str().eq_ignore_ascii_case(k));
                for v in vs.iter().filter_map(scalar_string) {
                    push_header(&mut headers, k, &v);
                }
            }
        }
    }
    if let Some(Value::Array(cookies)) = obj.get("cookies") {
        for c in cookies.iter().filter_map(scalar_string) {
            push_header(&mut headers, "set-cookie", &c);
        }
    }
    let body = match obj.get("body") {
        None | Some(Value::Null) => Bytes::new(),
        Some(Value::String(s)) => {
            if obj.get("isBase64Encoded").and_then(Value::as_bool) == Some(true) {
                match base64::engine::general_purpose::STANDARD.decode(s) {
                    Ok(b) => Bytes::from(b),
                    Err(_) => return bad_gateway(),
                }
            } else {
                Bytes::from(s.clone())
            }
        }
        Some(other) => Bytes::from(other.to_string()),
    };
    HttpResponse {
        status,
        headers,
        body,
    }
}

/// An HTTP request carried inside an API Gateway event (for invoking a web app directly).
pub struct EventRequest {
    pub payload: Payload,
    pub method: String,
    pub path: String,
    pub raw_query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

fn encode_query_component(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Reads an API Gateway v1 or v2 event back into an HTTP request.
pub fn event_request(event: &Value) -> Result<EventRequest, String> {
    let payload = if event.get("version").and_then(Value::as_str) == Some("2.0") {
        Payload::V2
    } else if event.get("httpMethod").is_some() {
        Payload::V1
    } else {
        return Err("the payload is not an API Gateway HTTP event (payload 2.0 with `version: \"2.0\"`, or 1.0 with `httpMethod`)".into());
    };
    let method = match payload {
        Payload::V2 => event.pointer("/requestContext/http/method"),
        Payload::V1 => event.get("httpMethod"),
    }
    .and_then(Value::as_str)
    .unwrap_or("GET")
    .to_uppercase();
    let path = match payload {
        Payload::V2 => event.get("rawPath"),
        Payload::V1 => event.get("path"),
    }
    .and_then(Value::as_str)
    .unwrap_or("/")
    .to_string();
    let raw_query = match payload {
        Payload::V2 => event
            .get("rawQueryString")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        Payload::V1 => {
            let mut parts = Vec::new();
            if let Some(Value::Object(m)) = event.get("multiValueQueryStringParameters") {
                for (k, vs) in m {
                    for v in vs
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(scalar_string)
                    {
                        parts.push(format!(
                            "{}={}",
                            encode_query_component(k),
                            encode_query_component(&v)
                        ));
                    }
                }
            } else if let Some(Value::Object(m)) = event.get("queryStringParameters") {
                for (k, v) in m {
                    if let Some(v) = scalar_string(v) {
                        parts.push(format!(
                            "{}={}",
                            encode_query_component(k),
                            encode_query_component(&v)
                        ));
                    }
                }
            }
            parts.join("&")
        }
    };
    let mut headers = HeaderMap::new();
    let mut add = |k: &str, v: &str| {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            headers.append(n, v);
        }
    };
    match event.get("multiValueHeaders") {
        Some(Value::Object(m)) if payload == Payload::V1 => {
            for (k, vs) in m {
                for v in vs
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(scalar_string)
                {
                    add(k, &v);
                }
            }
        }
        _ => {
            if let Some(Value::Object(m)) = event.get("headers") {
                for (k, v) in m {
                    if let Some(v) = scalar_string(v) {
                        add(k, &v);
                    }
                }
            }
        }
    }
    if let Some(Value::Array(cookies)) = event.get("cookies") {
        let joined: Vec<String> = cookies.iter().filter_map(scalar_string).collect();
        if !joined.is_empty() {
            add("cookie", &joined.join("; "));
        }
    }
    let body = match event.get("body").and_then(Value::as_str) {
        None => Bytes::new(),
        Some(s) if event.get("isBase64Encoded").and_then(Value::as_bool) == Some(true) => {
            Bytes::from(
                base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .map_err(|e| format!("`body` is not valid base64: {e}"))?,
            )
        }
        Some(s) => Bytes::from(s.to_string()),
    };
    Ok(EventRequest {
        payload,
        method,
        path,
        raw_query,
        headers,
        body,
    })
}

/// The API Gateway result shape for an HTTP response produced by a web app.
pub fn result_from_http(
    payload: Payload,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
) -> Value {
    let (body, is_b64) = match std::str::from_utf8(body) {
        Ok(s) => (s.to_string(), false),
        Err(_) => (base64::engine::general_purpose::STANDARD.encode(body), true),
    };
    match payload {
        Payload::V2 => {
            let mut h = Map::new();
            let mut cookies = Vec::new();
            for (k, v) in headers {
                if k.eq_ignore_ascii_case("set-cookie") {
                    cookies.push(Value::String(v.clone()));
                    continue;
                }
                let key = k.to_ascii_lowercase();
                match h.get_mut(&key) {
                    Some(Value::String(existing)) => {
                        existing.push_str(", ");
                        existing.push_str(v);
                    }
                    _ => {
                        h.insert(key, Value::String(v.clone()));
                    }
                }
            }
            json!({"statusCode": status, "headers": h, "cookies": cookies, "body": body, "isBase64Encoded": is_b64})
        }
        Payload::V1 => {
            let mut m: Map<String, Value> = Map::new();
            for (k, v) in headers {
                if let Value::Array(a) = m.entry(k.clone()).or_insert_with(|| Value::Array(vec![]))
                {
                    a.push(Value::String(v.clone()));
                }
            }
            json!({"statusCode": status, "multiValueHeaders": m, "body": body, "isBase64Encoded": is_b64})
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::routes_for;
    use tusk_manifest::EventSpec;

    fn req<'a>(headers: &'a HeaderMap, body: &'a Bytes) -> HttpRequest<'a> {
        HttpRequest {
            method: "POST",
            path: "/users/7",
            raw_query: "a=1&a=2&b=x+y",
            headers,
            body,
            remote: "127.0.0.1:5000".parse().unwrap(),
            request_id: "rid",
            stage: "dev",
        }
    }

    #[test]
    fn v2_event_has_api_gateway_shape() {
        let mut headers = HeaderMap::new();
        headers.insert("cookie", HeaderValue::from_static("a=1; b=2"));
        headers.insert("user-agent", HeaderValue::from_static("curl"));
        let body = Bytes::from_static(b"{\"x\":1}");
        let routes = routes_for(
            "f",
            &[EventSpec::HttpApi {
                method: "POST".into(),
                path: "/users/{id}".into(),
            }],
        );
        let params = HashMap::from([("id".to_string(), "7".to_string())]);
        let e = request_event(&req(&headers, &body), &routes[0], &params);
        assert_eq!(e["version"], "2.0");
        assert_eq!(e["routeKey"], "POST /users/{id}");
        assert_eq!(e["cookies"], json!(["a=1", "b=2"]));
        assert!(e["headers"].get("cookie").is_none());
        assert_eq!(e["queryStringParameters"]["a"], "1,2");
        assert_eq!(e["queryStringParameters"]["b"], "x y");
        assert_eq!(e["pathParameters"]["id"], "7");
        assert_eq!(e["requestContext"]["http"]["method"], "POST");
        assert_eq!(e["requestContext"]["http"]["userAgent"], "curl");
        assert_eq!(e["body"], "{\"x\":1}");
        assert_eq!(e["isBase64Encoded"], false);
    }

    #[test]
    fn v1_event_and_binary_body() {
        let headers = HeaderMap::new();
        let body = Bytes::from_static(&[0xff, 0x00, 0x10]);
        let routes = routes_for(
            "f",
            &[EventSpec::Http {
                method: "*".into(),
                path: "/{proxy+}".into(),
            }],
        );
        let e = request_event(&req(&headers, &body), &routes[0], &HashMap::new());
        assert_eq!(e["httpMethod"], "POST");
        assert_eq!(e["resource"], "/{proxy+}");
        assert_eq!(e["multiValueQueryStringParameters"]["a"], json!(["1", "2"]));
        assert_eq!(e["queryStringParameters"]["a"], "2");
        assert_eq!(e["isBase64Encoded"], true);
        assert_eq!(e["body"], "/wAQ");
        assert_eq!(e["requestContext"]["path"], "/dev/users/7");
    }

    #[test]
    fn results_map_back_per_api_gateway_rules() {
        let r = response_from_result(
            Payload::V2,
            br#"{"statusCode":201,"headers":{"x-a":"1"},"cookies":["a=1","b=2"],"body":"aGk=","isBase64Encoded":true}"#,
        );
        assert_eq!(r.status, 201);
        assert_eq!(&r.body[..], b"hi");
        assert_eq!(
            r.headers.iter().filter(|(n, _)| n == "set-cookie").count(),
            2
        );
        let r = response_from_result(Payload::V2, br#"{"hello":"world"}"#);
        assert_eq!(r.status, 200);
        assert_eq!(&r.body[..], br#"{"hello":"world"}"#);
        let r = response_from_result(Payload::V2, br#""plain""#);
        assert_eq!(&r.body[..], b"plain");
        assert_eq!(
            response_from_result(Payload::V1, br#"{"hello":1}"#).status,
            502
        );
        let r = response_from_result(
            Payload::V1,
            br#"{"statusCode":302,"multiValueHeaders":{"Location":["/x"]},"body":""}"#,
        );
        assert_eq!(r.status, 302);
        assert_eq!(r.headers[0].1, "/x");
    }

    #[test]
    fn status_outside_api_gateway_range_is_a_502() {
        // 600-999 passed through (the apigw fuzz target checks this), and 65736 wrapped to 200.
        for bad in ["99", "600", "999", "65736", "4294967496", "-200", "\"abc\""] {
            let result = format!(r#"{{"statusCode":{bad},"body":"x"}}"#);
            for payload in [Payload::V1, Payload::V2] {
                let r = response_from_result(payload, result.as_bytes());
                assert_eq!(r.status, 502, "{bad}");
            }
        }
        assert_eq!(
            response_from_result(Payload::V1, br#"{"statusCode":599}"#).status,
            599
        );
    }
}
