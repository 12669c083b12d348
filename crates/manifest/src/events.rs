//! `functions.<name>.events[]`: httpApi, http, schedule and sqs.
//!
//! Over 600 lines only with its unit tests (the code ends before `mod tests`).

use crate::error::Diag;
use crate::locate::Seg;
use crate::vars::{key_str, scalar_to_string};
use crate::EventSpec;
use serde_yaml::Value;

/// Event types Tusk runs; any other type is skipped with a warning.
pub(crate) const SUPPORTED: [&str; 4] = ["httpApi", "http", "schedule", "sqs"];

/// Path prefixes the node serves itself (DESIGN.md §2): the admin API and every dated AWS API
/// prefix (Lambda's and its neighbours', so a later API the node learns cannot be shadowed by
/// a route deployed today).
pub(crate) const RESERVED_FIRST_SEGMENTS: [&str; 13] = [
    "_tusk",
    "2014-11-13",
    "2015-03-31",
    "2016-08-19",
    "2017-03-31",
    "2017-10-31",
    "2018-06-01",
    "2018-10-31",
    "2019-09-25",
    "2019-09-30",
    "2020-04-22",
    "2020-06-30",
    "2021-10-31",
];

const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// Parses one event of a supported `ty`; `value` is resolved, `path` points at the type key.
pub(crate) fn parse(
    ty: &str,
    value: &Value,
    path: &[Seg],
    warnings: &mut Vec<Diag>,
) -> Result<Vec<EventSpec>, Diag> {
    match ty {
        "httpApi" => http_api(value, path, warnings).map(|e| vec![e]),
        "http" => rest_api(value, path, warnings).map(|e| vec![e]),
        "schedule" => schedule(value, path, warnings),
        "sqs" => sqs(value, path, warnings),
        _ => Ok(Vec::new()),
    }
}

fn http_api(value: &Value, path: &[Seg], warnings: &mut Vec<Diag>) -> Result<EventSpec, Diag> {
    let usage = "an httpApi event is '*', 'METHOD /path' (e.g. 'GET /users/{id}') or {method: GET, path: /users/{id}}";
    let (method, route) = match value {
        Value::String(s) if s.trim() == "*" => {
            return Ok(EventSpec::HttpApi {
                method: "*".into(),
                path: "*".into(),
            })
        }
        Value::String(s) => {
            split_route(s).ok_or_else(|| Diag::new(path, format!("`{s}`: {usage}")))?
        }
        Value::Mapping(_) => {
            route_options(value, path, "httpApi", &["authorizer"], warnings);
            method_and_path(value, path, usage)?
        }
        _ => return Err(Diag::new(path, usage)),
    };
    let (method_at, path_at) = field_paths(value, path);
    let method = normalize_method(&method, &method_at)?;
    if route.trim() == "*" {
        return Ok(EventSpec::HttpApi {
            method,
            path: "*".into(),
        });
    }
    let route = normalize_path(&route, &path_at)?;
    Ok(EventSpec::HttpApi {
        method,
        path: route,
    })
}

fn rest_api(value: &Value, path: &[Seg], warnings: &mut Vec<Diag>) -> Result<EventSpec, Diag> {
    let usage =
        "an http event is 'METHOD path' (e.g. 'ANY /{proxy+}') or {method: GET, path: /users/{id}}";
    let (method, route) = match value {
        Value::String(s) => {
            split_route(s).ok_or_else(|| Diag::new(path, format!("`{s}`: {usage}")))?
        }
        Value::Mapping(_) => {
            route_options(value, path, "http", &["authorizer", "private"], warnings);
            method_and_path(value, path, usage)?
        }
        _ => return Err(Diag::new(path, usage)),
    };
    let (method_at, path_at) = field_paths(value, path);
    let method = normalize_method(&method, &method_at)?;
    if route.trim() == "*" {
        return Err(Diag::new(&path_at, "http events have no '*' path; use 'ANY /{proxy+}' for a catch-all (and 'ANY /' for the root)"));
    }
    let route = normalize_path(&route, &path_at)?;
    Ok(EventSpec::Http {
        method,
        path: route,
    })
}

/// Where to point errors about the method and the path: their keys in the mapping form.
fn field_paths(value: &Value, path: &[Seg]) -> (Vec<Seg>, Vec<Seg>) {
    let at = |key: &str| {
        let mut p = path.to_vec();
        if value.is_mapping() {
            p.push(Seg::key(key));
        }
        p
    };
    (at("method"), at("path"))
}

/// `'GET /users'` → ("GET", "/users").
fn split_route(s: &str) -> Option<(String, String)> {
    let mut parts = s.split_whitespace();
    match (parts.next(), parts.next(), parts.next()) {
        (Some(method), Some(route), None) => Some((method.to_string(), route.to_string())),
        _ => None,
    }
}

fn method_and_path(value: &Value, path: &[Seg], usage: &str) -> Result<(String, String), Diag> {
    let field = |name: &str| -> Result<String, Diag> {
        let mut p = path.to_vec();
        p.push(Seg::key(name));
        match value.get(name) {
            None | Some(Value::Null) => Err(Diag::new(path, format!("missing `{name}`: {usage}"))),
            Some(v) => match scalar_to_string(v) {
                Some(s) if !s.trim().is_empty() => Ok(s),
                _ => Err(Diag::new(&p, format!("`{name}` must be a string: {usage}"))),
            },
        }
    };
    Ok((field("method")?, field("path")?))
}

/// Options on a route that API Gateway would honour and Tusk does not. Authorizers matter most:
/// the route is public here, and the user must know.
fn route_options(
    value: &Value,
    path: &[Seg],
    ty: &str,
    security: &[&str],
    warnings: &mut Vec<Diag>,
) {
    let Value::Mapping(map) = value else { return };
    for key in map.keys().filter_map(key_str) {
        let mut p = path.to_vec();
        p.push(Seg::key(&key));
        let message = match key.as_str() {
            "method" | "path" | "integration" | "async" => continue,
            k if security.contains(&k) => format!(
                "`{k}` on this {ty} route is not enforced by Tusk: the route is public; check access in your app"
            ),
            "cors" => "`cors` is not handled by Tusk: send the CORS headers (and answer OPTIONS) from your app".to_string(),
            k => format!("`{k}` on an {ty} event is not supported by Tusk; ignored"),
        };
        warnings.push(Diag::new(&p, message));
    }
}

fn normalize_method(method: &str, path: &[Seg]) -> Result<String, Diag> {
    let upper = method.trim().to_ascii_uppercase();
    if upper == "ANY" || upper == "*" {
        return Ok("*".to_string());
    }
    if METHODS.contains(&upper.as_str()) {
        return Ok(upper);
    }
    Err(Diag::new(
        path,
        format!("unknown HTTP method `{method}`; use GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS or ANY"),
    ))
}

/// Adds the leading `/` and checks `{param}` segments (`{name+}` only last).
fn normalize_path(route: &str, path: &[Seg]) -> Result<String, Diag> {
    let route = route.trim();
    let route = if route.starts_with('/') {
        route.to_string()
    } else {
        format!("/{route}")
    };
    match route_path_problem(&route) {
        None => Ok(route),
        Some(why) => Err(Diag::new(
            path,
            format!("invalid route path `{route}`: {why}"),
        )),
    }
}

/// Why a route path (starting with `/`) cannot be served, or `None` when it can: no query,
/// fragment, whitespace or control characters, no reserved prefix, `{param}` segments whole
/// and unique, `{name+}` only last. Shared by the CLI's parser and the node's validator.
pub(crate) fn route_path_problem(route: &str) -> Option<&'static str> {
    if !route.starts_with('/') {
        return Some("a path starts with `/`");
    }
    if route.len() > 1024 {
        return Some("a path is at most 1024 characters");
    }
    if route.contains(['?', '#']) || route.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("a path has no query string, fragment, spaces or control characters");
    }
    if route == "/" {
        return None;
    }
    let segments: Vec<&str> = route[1..].split('/').collect();
    let mut params: Vec<&str> = Vec::new();
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        if segment.is_empty() {
            if last {
                continue;
            }
            return Some("empty segment (`//`)");
        }
        if i == 0 && RESERVED_FIRST_SEGMENTS.contains(segment) {
            return Some("paths under this prefix are reserved for the Tusk admin and AWS APIs; choose another path");
        }
        if !segment.contains(['{', '}']) {
            continue;
        }
        let Some(inner) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) else {
            return Some("a parameter must fill a whole segment, like /users/{id}");
        };
        let (name, greedy) = match inner.strip_suffix('+') {
            Some(name) => (name, true),
            None => (inner, false),
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Some("parameter names use letters, digits, `_`, `-` and `.`");
        }
        if greedy && !last {
            return Some("a greedy parameter like {proxy+} must be the last segment");
        }
        if params.contains(&name) {
            return Some("the same parameter name appears twice");
        }
        params.push(name);
    }
    None
}

fn schedule(value: &Value, path: &[Seg], warnings: &mut Vec<Diag>) -> Result<Vec<EventSpec>, Diag> {
    let usage = "a schedule is rate(...) or cron(...), e.g. `schedule: rate(5 minutes)` or `{rate: 'cron(0 12 * * ? *)', input: {...}}`";
    let (rates, rates_path, input, enabled) = match value {
        Value::String(_) => (vec![value.clone()], path.to_vec(), None, true),
        Value::Mapping(map) => {
            let mut rates_path = path.to_vec();
            rates_path.push(Seg::key("rate"));
            let rates = match map.get("rate") {
                Some(Value::Sequence(items)) if !items.is_empty() => items.clone(),
                Some(Value::Sequence(_)) | None | Some(Value::Null) => {
                    return Err(Diag::new(path, format!("missing `rate`: {usage}")))
                }
                Some(other) => vec![other.clone()],
            };
            let enabled = match map.get("enabled") {
                None | Some(Value::Null) => true,
                Some(v) => as_bool(v).ok_or_else(|| {
                    let mut p = path.to_vec();
                    p.push(Seg::key("enabled"));
                    Diag::new(&p, "`enabled` must be true or false")
                })?,
            };
            let input = match map.get("input") {
                None | Some(Value::Null) => None,
                Some(v) => Some(serde_json::to_value(v).map_err(|e| {
                    let mut p = path.to_vec();
                    p.push(Seg::key("input"));
                    Diag::new(
                        &p,
                        format!("`input` must be JSON-compatible (string keys): {e}"),
                    )
                })?),
            };
            for key in map.keys().filter_map(key_str) {
                let why = match key.as_str() {
                    "rate" | "enabled" | "input" | "name" | "description" | "method" => continue,
                    "timezone" => "`timezone` is not supported by Tusk yet; the expression is evaluated in UTC",
                    _ => "is not supported by Tusk on schedule events; ignored",
                };
                let mut p = path.to_vec();
                p.push(Seg::key(&key));
                let message = if why.starts_with('`') {
                    why.to_string()
                } else {
                    format!("`{key}` {why}")
                };
                warnings.push(Diag::new(&p, message));
            }
            (rates, rates_path, input, enabled)
        }
        _ => return Err(Diag::new(path, usage)),
    };
    let mut events = Vec::with_capacity(rates.len());
    for (i, rate) in rates.iter().enumerate() {
        let mut p = rates_path.clone();
        if matches!(value.get("rate"), Some(Value::Sequence(_))) {
            p.push(Seg::Index(i));
        }
        let expression = match rate {
            Value::String(s) => s.trim().to_string(),
            _ => return Err(Diag::new(&p, usage)),
        };
        let shaped = (expression.starts_with("rate(") || expression.starts_with("cron("))
            && expression.ends_with(')');
        if !shaped {
            return Err(Diag::new(&p, format!("schedule `{expression}`: {usage}")));
        }
        if let Err(e) = expression.parse::<tusk_schedule::Schedule>() {
            return Err(Diag::new(&p, e.to_string()));
        }
        events.push(EventSpec::Schedule {
            expression,
            input: input.clone(),
            enabled,
        });
    }
    Ok(events)
}

fn sqs(value: &Value, path: &[Seg], warnings: &mut Vec<Diag>) -> Result<Vec<EventSpec>, Diag> {
    let usage =
        "an sqs event is a queue ARN or {arn: arn:aws:sqs:REGION:ACCOUNT:NAME, batchSize: 10}";
    let sub = |key: &str| {
        let mut p = path.to_vec();
        p.push(Seg::key(key));
        p
    };
    let (arn, arn_path) = match value {
        Value::String(s) => (s.trim().to_string(), path.to_vec()),
        Value::Mapping(map) => match map.get("arn") {
            Some(Value::String(s)) => (s.trim().to_string(), sub("arn")),
            None | Some(Value::Null) => return Err(Diag::new(path, format!("missing `arn`: {usage}"))),
            Some(_) => {
                return Err(Diag::new(
                    &sub("arn"),
                    "`arn` must be a literal queue ARN; CloudFormation references (Fn::GetAtt, Ref) are not supported by Tusk",
                ))
            }
        },
        _ => return Err(Diag::new(path, usage)),
    };
    if crate::arn::parse_arn(&arn).is_none() {
        return Err(Diag::new(
            &arn_path,
            format!("`{arn}` is not a queue ARN: {usage}"),
        ));
    }
    let mut batch_size = 10;
    let mut window = 0;
    let mut response_type = None;
    if let Value::Mapping(map) = value {
        if map.get("enabled").and_then(as_bool) == Some(false) {
            return Ok(Vec::new());
        }
        if let Some(v) = map.get("batchSize").filter(|v| !v.is_null()) {
            batch_size = bounded(v, 1, 10_000).ok_or_else(|| {
                Diag::new(
                    &sub("batchSize"),
                    "`batchSize` must be a whole number from 1 to 10000",
                )
            })?;
        }
        if let Some(v) = map.get("maximumBatchingWindow").filter(|v| !v.is_null()) {
            window = bounded(v, 0, 300).ok_or_else(|| {
                Diag::new(
                    &sub("maximumBatchingWindow"),
                    "`maximumBatchingWindow` must be a whole number of seconds from 0 to 300",
                )
            })?;
        }
        match map.get("functionResponseType") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s == "ReportBatchItemFailures" => {
                response_type = Some(s.clone())
            }
            Some(_) => {
                return Err(Diag::new(
                    &sub("functionResponseType"),
                    "`functionResponseType` can only be ReportBatchItemFailures",
                ))
            }
        }
        for key in map.keys().filter_map(key_str) {
            if !matches!(
                key.as_str(),
                "arn" | "batchSize" | "maximumBatchingWindow" | "functionResponseType" | "enabled"
            ) {
                warnings.push(Diag::new(
                    &sub(&key),
                    format!("`{key}` is not supported by Tusk on sqs events; ignored"),
                ));
            }
        }
    }
    Ok(vec![EventSpec::Sqs {
        arn,
        batch_size,
        maximum_batching_window: window,
        function_response_type: response_type,
    }])
}

fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s == "true" => Some(true),
        Value::String(s) if s == "false" => Some(false),
        _ => None,
    }
}

/// A whole number (or a string holding one, as variables produce) within `min..=max`.
pub(crate) fn bounded(v: &Value, min: u64, max: u64) -> Option<u32> {
    let n = match v {
        Value::Number(n) => n.as_u64()?,
        Value::String(s) => s.trim().parse::<u64>().ok()?,
        _ => return None,
    };
    if (min..=max).contains(&n) {
        u32::try_from(n).ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(ty: &str, yaml: &str) -> Result<EventSpec, Diag> {
        let value: Value = serde_yaml::from_str(yaml).unwrap();
        let mut events = parse(ty, &value, &[Seg::key(ty)], &mut Vec::new())?;
        assert_eq!(events.len(), 1);
        Ok(events.remove(0))
    }

    fn api(method: &str, path: &str) -> EventSpec {
        EventSpec::HttpApi {
            method: method.into(),
            path: path.into(),
        }
    }

    fn rest(method: &str, path: &str) -> EventSpec {
        EventSpec::Http {
            method: method.into(),
            path: path.into(),
        }
    }

    #[test]
    fn http_api_forms() {
        assert_eq!(one("httpApi", "'*'").unwrap(), api("*", "*"));
        assert_eq!(
            one("httpApi", "'GET /users/{id}'").unwrap(),
            api("GET", "/users/{id}")
        );
        assert_eq!(
            one("httpApi", "{method: post, path: /x}").unwrap(),
            api("POST", "/x")
        );
        assert_eq!(
            one("httpApi", "{method: any, path: '/{proxy+}'}").unwrap(),
            api("*", "/{proxy+}")
        );
        assert_eq!(one("httpApi", "'ANY users'").unwrap(), api("*", "/users"));
        assert!(one("httpApi", "{path: /x}")
            .unwrap_err()
            .message
            .contains("missing `method`"));
        assert!(one("httpApi", "'FETCH /x'")
            .unwrap_err()
            .message
            .contains("unknown HTTP method"));
        assert!(one("httpApi", "'GET'").is_err());
    }

    #[test]
    fn http_forms() {
        assert_eq!(
            one("http", "'ANY /{proxy+}'").unwrap(),
            rest("*", "/{proxy+}")
        );
        assert_eq!(one("http", "'GET hello'").unwrap(), rest("GET", "/hello"));
        assert_eq!(
            one("http", "{method: get, path: 'a/{b}'}").unwrap(),
            rest("GET", "/a/{b}")
        );
        assert_eq!(one("http", "'ANY /'").unwrap(), rest("*", "/"));
        assert!(one("http", "'*'").is_err());
    }

    #[test]
    fn path_validation() {
        for bad in [
            "/{proxy+}/x",
            "/a{b}",
            "/a//b",
            "/{}",
            "/{a}/{a}",
            "/x?y=1",
            "/_tusk/x",
            "/2015-03-31/functions",
        ] {
            assert!(one("httpApi", &format!("'GET {bad}'")).is_err(), "{bad}");
        }
        assert_eq!(
            one("httpApi", "'GET /a/{b.c}/{rest+}'").unwrap(),
            api("GET", "/a/{b.c}/{rest+}")
        );
    }

    #[test]
    fn authorizers_warn_that_the_route_is_public() {
        let value: Value =
            serde_yaml::from_str("{method: get, path: /x, authorizer: {name: jwt}}").unwrap();
        let mut warnings = Vec::new();
        parse("httpApi", &value, &[Seg::key("httpApi")], &mut warnings).unwrap();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].message.contains("public"));
    }

    #[test]
    fn schedule_forms() {
        let expected = EventSpec::Schedule {
            expression: "rate(5 minutes)".into(),
            input: None,
            enabled: true,
        };
        assert_eq!(one("schedule", "rate(5 minutes)").unwrap(), expected);
        let value: Value = serde_yaml::from_str(
            "{rate: ['cron(0 12 * * ? *)', 'rate(1 hour)'], input: {k: v}, enabled: false}",
        )
        .unwrap();
        let events = parse("schedule", &value, &[Seg::key("schedule")], &mut Vec::new()).unwrap();
        assert_eq!(
            events,
            vec![
                EventSpec::Schedule {
                    expression: "cron(0 12 * * ? *)".into(),
                    input: Some(serde_json::json!({"k": "v"})),
                    enabled: false
                },
                EventSpec::Schedule {
                    expression: "rate(1 hour)".into(),
                    input: Some(serde_json::json!({"k": "v"})),
                    enabled: false
                },
            ]
        );
        let err = one("schedule", "every 5 minutes").unwrap_err();
        assert!(err.message.contains("rate(...) or cron(...)"));
        let value: Value = serde_yaml::from_str("{rate: ['rate(1 hour)', 'hourly']}").unwrap();
        let err = parse("schedule", &value, &[Seg::key("schedule")], &mut Vec::new()).unwrap_err();
        assert_eq!(
            err.path,
            vec![Seg::key("schedule"), Seg::key("rate"), Seg::Index(1)]
        );
    }

    #[test]
    fn sqs_forms() {
        let arn = "arn:aws:sqs:us-east-1:123456789012:jobs";
        let expected = EventSpec::Sqs {
            arn: arn.into(),
            batch_size: 10,
            maximum_batching_window: 0,
            function_response_type: None,
        };
        assert_eq!(one("sqs", arn).unwrap(), expected);
        let e = one("sqs", &format!("{{arn: '{arn}', batchSize: 5, maximumBatchingWindow: 2, functionResponseType: ReportBatchItemFailures}}")).unwrap();
        assert_eq!(
            e,
            EventSpec::Sqs {
                arn: arn.into(),
                batch_size: 5,
                maximum_batching_window: 2,
                function_response_type: Some("ReportBatchItemFailures".into())
            }
        );
        assert!(one("sqs", &format!("{{arn: '{arn}', batchSize: 0}}")).is_err());
        assert!(one("sqs", &format!("{{arn: '{arn}', batchSize: 10001}}")).is_err());
        assert!(one("sqs", "{arn: {'Fn::GetAtt': [Q, Arn]}}")
            .unwrap_err()
            .message
            .contains("literal queue ARN"));
        assert!(one("sqs", "jobs").is_err());
    }
}
