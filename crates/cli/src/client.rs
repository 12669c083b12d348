//! The HTTP client for a Tusk node: the admin API (`docs/admin-api.md`) and the Lambda Invoke API.
//!
//! Every failure comes back as an `anyhow` error whose message is meant for the user as is: the
//! node's own `{"error"}` text, or a hint when the node cannot be reached at all.

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Read;
use std::time::Duration;
use tusk_manifest::ServiceSpec;

/// A node's answer to `POST /_tusk/deployments`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Deployment {
    pub service: String,
    pub stage: String,
    pub version: u64,
    pub functions: Vec<FunctionInfo>,
    pub warnings: Vec<String>,
}

/// One deployed function as the node describes it. Every field has a default so that a node a
/// little newer or older than this CLI still gets listed.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct FunctionInfo {
    pub name: String,
    pub service: String,
    pub stage: String,
    pub short_name: String,
    pub runtime: String,
    pub kind: String,
    pub handler: String,
    pub memory_size: u64,
    pub timeout: u64,
    pub version: u64,
    pub deployed_at_ms: i64,
    /// `"GET /hello"`, `"* /{proxy+}"`, ...
    pub routes: Vec<String>,
    /// `EventSpec`s, kept as JSON so an event type this CLI does not know still prints.
    pub events: Vec<Value>,
    pub environment: BTreeMap<String, Value>,
    pub reserved_concurrency: Option<u64>,
    pub provisioned_concurrency: u64,
    pub instances: Instances,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Instances {
    pub idle: u64,
    pub busy: u64,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct LogLine {
    pub id: i64,
    pub ts_ms: i64,
    pub request_id: Option<String>,
    /// `stdout`, `stderr` or `platform` (START / END / REPORT lines).
    pub stream: String,
    pub line: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LogPage {
    pub lines: Vec<LogLine>,
    pub last_id: Option<i64>,
}

/// What to ask `GET /_tusk/functions/{name}/logs` for.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogQuery {
    pub since_ms: Option<i64>,
    pub after_id: Option<i64>,
    pub limit: Option<u64>,
}

/// The raw answer of an Invoke call, error statuses included: the caller decides what to print.
#[derive(Debug, Clone)]
pub struct InvokeResponse {
    pub status: u16,
    /// `X-Amz-Function-Error` (`Unhandled` / `Handled`): the function itself failed.
    pub function_error: Option<String>,
    /// `X-Amz-Log-Result`: base64 of the invocation's log tail.
    pub log_result: Option<String>,
    /// `X-Amzn-ErrorType`: the API call failed (e.g. `ResourceNotFoundException`).
    pub error_type: Option<String>,
    /// `X-Amzn-RequestId`.
    pub request_id: Option<String>,
    pub body: Vec<u8>,
}

#[derive(Debug, Deserialize)]
struct RemoveAnswer {
    #[serde(default)]
    removed: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct FunctionList {
    #[serde(default)]
    functions: Vec<Value>,
}

pub struct Client {
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl Client {
    pub fn new(server: &str, token: String) -> Result<Client> {
        Ok(Client {
            base: normalize_server(server)?,
            token,
            agent: agent(),
        })
    }

    /// The node's base URL, without a trailing slash (also the base of user routes).
    pub fn base(&self) -> &str {
        &self.base
    }

    fn request(&self, method: &str, path: &str) -> ureq::Request {
        self.agent
            .request(method, &format!("{}{}", self.base, path))
            .set("Authorization", &format!("Bearer {}", self.token))
    }

    /// Turns a ureq failure into the message the user should read.
    fn fail(&self, err: ureq::Error) -> anyhow::Error {
        match err {
            ureq::Error::Status(status, response) => node_error(status, response),
            ureq::Error::Transport(transport) => unreachable_node(&self.base, &transport),
        }
    }

    /// `HEAD /_tusk/packages/{sha}`: whether the node already holds this package.
    pub fn has_package(&self, sha256: &str) -> Result<bool> {
        match self
            .request("HEAD", &format!("/_tusk/packages/{sha256}"))
            .call()
        {
            Ok(_) => Ok(true),
            Err(ureq::Error::Status(404, _)) => Ok(false),
            Err(err) => Err(self.fail(err)),
        }
    }

    /// `PUT /_tusk/packages/{sha}` with the zip streamed from `body`.
    pub fn upload_package(&self, sha256: &str, size: u64, body: impl Read) -> Result<()> {
        self.request("PUT", &format!("/_tusk/packages/{sha256}"))
            .set("Content-Type", "application/zip")
            .set("Content-Length", &size.to_string())
            .send(body)
            .map_err(|err| self.fail(err))?;
        Ok(())
    }

    /// `POST /_tusk/deployments`: answers once the new version is live.
    pub fn deploy(&self, spec: &ServiceSpec, sha256: &str) -> Result<Deployment> {
        let response = self
            .request("POST", "/_tusk/deployments")
            .send_json(serde_json::json!({ "spec": spec, "package": sha256 }))
            .map_err(|err| self.fail(err))?;
        read_json(response, "the deployment answer")
    }

    /// `GET /_tusk/functions`, as raw JSON objects (so `--json` can print them untouched).
    pub fn functions(&self) -> Result<Vec<Value>> {
        let response = self
            .request("GET", "/_tusk/functions")
            .call()
            .map_err(|err| self.fail(err))?;
        let list: FunctionList = read_json(response, "the function list")?;
        Ok(list.functions)
    }

    /// `GET /_tusk/functions/{name}`, as raw JSON.
    pub fn function(&self, name: &str) -> Result<Value> {
        let response = self
            .request("GET", &format!("/_tusk/functions/{}", encode_segment(name)))
            .call()
            .map_err(|err| self.fail(err))?;
        read_json(response, "the function")
    }

    /// `DELETE /_tusk/services/{service}?stage=S`: the full names of the removed functions.
    pub fn remove_service(&self, service: &str, stage: &str) -> Result<Vec<String>> {
        let response = self
            .request(
                "DELETE",
                &format!("/_tusk/services/{}", encode_segment(service)),
            )
            .query("stage", stage)
            .call()
            .map_err(|err| self.fail(err))?;
        let answer: RemoveAnswer = read_json(response, "the removal answer")?;
        Ok(answer.removed)
    }

    /// `GET /_tusk/functions/{name}/logs`.
    pub fn logs(&self, name: &str, query: LogQuery) -> Result<LogPage> {
        let mut request = self.request(
            "GET",
            &format!("/_tusk/functions/{}/logs", encode_segment(name)),
        );
        if let Some(since_ms) = query.since_ms {
            request = request.query("since_ms", &since_ms.to_string());
        }
        if let Some(after_id) = query.after_id {
            request = request.query("after_id", &after_id.to_string());
        }
        if let Some(limit) = query.limit {
            request = request.query("limit", &limit.to_string());
        }
        let response = request.call().map_err(|err| self.fail(err))?;
        read_json(response, "the log lines")
    }

    /// `POST /2015-03-31/functions/{name}/invocations` (synchronous, `RequestResponse`).
    pub fn invoke(
        &self,
        name: &str,
        qualifier: Option<&str>,
        payload: &[u8],
        log_tail: bool,
        invocation_type: &str,
    ) -> Result<InvokeResponse> {
        let mut request = self
            .request(
                "POST",
                &format!("/2015-03-31/functions/{}/invocations", encode_segment(name)),
            )
            .set("Content-Type", "application/json")
            .set("X-Amz-Invocation-Type", invocation_type);
        if let Some(qualifier) = qualifier {
            request = request.query("Qualifier", qualifier);
        }
        if log_tail {
            request = request.set("X-Amz-Log-Type", "Tail");
        }
        // Error statuses are answers too: the Lambda error JSON is in their body.
        let response = match request.send_bytes(payload) {
            Ok(response) => response,
            Err(ureq::Error::Status(_, response)) => response,
            Err(ureq::Error::Transport(transport)) => {
                return Err(unreachable_node(&self.base, &transport))
            }
        };
        let header = |name: &str| response.header(name).map(str::to_string);
        let status = response.status();
        let function_error = header("X-Amz-Function-Error");
        let log_result = header("X-Amz-Log-Result");
        let error_type = header("X-Amzn-ErrorType");
        let request_id = header("X-Amzn-RequestId");
        let mut body = Vec::new();
        response
            .into_reader()
            .read_to_end(&mut body)
            .with_context(|| format!("reading the invocation answer from {}", self.base))?;
        Ok(InvokeResponse {
            status,
            function_error,
            log_result,
            error_type,
            request_id,
            body,
        })
    }

    /// `GET` an admin path, as raw JSON.
    pub fn get_json(&self, path: &str, what: &str) -> Result<Value> {
        let response = self
            .request("GET", path)
            .call()
            .map_err(|err| self.fail(err))?;
        read_json(response, what)
    }

    /// `POST` JSON to an admin path; the answer as raw JSON.
    pub fn post_json(&self, path: &str, body: &Value, what: &str) -> Result<Value> {
        let response = self
            .request("POST", path)
            .send_json(body)
            .map_err(|err| self.fail(err))?;
        read_json(response, what)
    }

    /// `DELETE` an admin path; the answer as raw JSON.
    pub fn delete_json(&self, path: &str, what: &str) -> Result<Value> {
        let response = self
            .request("DELETE", path)
            .call()
            .map_err(|err| self.fail(err))?;
        read_json(response, what)
    }
}

/// `GET /_tusk/health` with a short timeout: `Ok(())` once the node serves.
pub fn health(base: &str) -> Result<()> {
    let response = agent()
        .get(&format!("{base}/_tusk/health"))
        .timeout(Duration::from_secs(2))
        .call();
    match response {
        Ok(_) => Ok(()),
        Err(ureq::Error::Status(status, response)) => Err(node_error(status, response)),
        Err(ureq::Error::Transport(transport)) => Err(unreachable_node(base, &transport)),
    }
}

fn agent() -> ureq::Agent {
    // No read timeout: a deployment answers only once the new version is live, and an
    // invocation may legitimately run for the function's whole timeout.
    ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(10))
        .user_agent(concat!("tusk-cli/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Accepts `http://host:port[/]` and a bare `host:port`; refuses https, which this build
/// cannot speak (put the node behind a TLS-terminating proxy on its side instead).
pub fn normalize_server(server: &str) -> Result<String> {
    let server = server.trim().trim_end_matches('/');
    if server.is_empty() {
        bail!("--server is empty; pass the node's URL, e.g. --server http://127.0.0.1:8080");
    }
    if server.starts_with("https://") {
        bail!("--server {server}: this build of tusk speaks plain http only; use an http:// URL");
    }
    if server.starts_with("http://") {
        Ok(server.to_string())
    } else if server.contains("://") {
        bail!("--server {server}: expected an http:// URL such as http://127.0.0.1:8080");
    } else {
        Ok(format!("http://{server}"))
    }
}

fn unreachable_node(base: &str, err: &ureq::Transport) -> anyhow::Error {
    let mut detail = err.kind().to_string();
    if let Some(message) = err.message() {
        detail = format!("{detail}: {message}");
    }
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        detail = format!("{detail}: {cause}");
        source = cause.source();
    }
    anyhow!("cannot reach the Tusk node at {base}: {detail} (is \"tusk serve\" running?)")
}

/// The node's `{"error": "..."}` message, or the status and body when it sent something else.
fn node_error(status: u16, response: ureq::Response) -> anyhow::Error {
    let status_text = response.status_text().to_string();
    let body = response.into_string().unwrap_or_default();
    let message = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|value| {
            ["error", "message", "Message"]
                .iter()
                .find_map(|key| value.get(key).and_then(Value::as_str).map(str::to_string))
        })
        .unwrap_or_else(|| {
            let body = body.trim();
            if body.is_empty() {
                format!("the node answered {status} {status_text}")
            } else {
                format!("the node answered {status} {status_text}: {body}")
            }
        });
    // The node's own message usually says what to do; add the hint only when it does not.
    if matches!(status, 401 | 403) && !message.to_lowercase().contains("token") {
        return anyhow!("{message} (check --token / TUSK_TOKEN against DATA_DIR/admin.token)");
    }
    anyhow!("{message}")
}

fn read_json<T: serde::de::DeserializeOwned>(response: ureq::Response, what: &str) -> Result<T> {
    let mut body = Vec::new();
    response
        .into_reader()
        .read_to_end(&mut body)
        .with_context(|| format!("reading {what} from the node"))?;
    serde_json::from_slice(&body)
        .with_context(|| format!("the node sent {what} in an unexpected shape"))
}

/// Percent-encodes one URL path segment (function names may be ARNs, holding `:`).
pub fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_are_normalized() {
        assert_eq!(normalize_server("http://h:1/").unwrap(), "http://h:1");
        assert_eq!(
            normalize_server("127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert!(normalize_server("https://h").is_err());
        assert!(normalize_server("ftp://h").is_err());
        assert!(normalize_server(" ").is_err());
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(encode_segment("app-dev-hello"), "app-dev-hello");
        assert_eq!(
            encode_segment("arn:aws:lambda:x/y z"),
            "arn%3Aaws%3Alambda%3Ax%2Fy%20z"
        );
    }

    #[test]
    fn function_info_tolerates_missing_fields() {
        let info: FunctionInfo =
            serde_json::from_str(r#"{"name":"a-dev-b","routes":["GET /x"],"extra":1}"#).unwrap();
        assert_eq!(info.name, "a-dev-b");
        assert_eq!(info.routes, vec!["GET /x"]);
        assert_eq!(info.instances.idle, 0);
    }
}
