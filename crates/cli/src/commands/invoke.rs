//! `tusk invoke NAME`: a synchronous call through the Lambda Invoke API.
//!
//! Exit codes: 0 when the function returned, 1 when it failed (`X-Amz-Function-Error`, the result
//! is still printed) or when the call itself was refused (`error: <ErrorType>: <message>`).

use crate::client::InvokeResponse;
use crate::commands::Global;
use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;
use serde_json::Value;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Function name: the full `service-stage-function`, or a unique short name.
    pub name: String,
    /// The event, as JSON (default `{}`).
    #[arg(long, short, value_name = "JSON", conflicts_with = "path")]
    pub data: Option<String>,
    /// Read the event from a JSON file (`-` for stdin).
    #[arg(long, short, value_name = "FILE")]
    pub path: Option<PathBuf>,
    /// Print the invocation's log tail to stderr.
    #[arg(long, short)]
    pub log: bool,
    /// Version or alias to invoke.
    #[arg(long, short, value_name = "QUALIFIER")]
    pub qualifier: Option<String>,
    /// Queue the event and return once it is durably stored (X-Amz-Invocation-Type: Event);
    /// failures are retried by the node and reported to the function's destinations.
    #[arg(long = "async", conflicts_with = "log")]
    pub async_: bool,
}

pub fn run(global: &Global, args: Args) -> Result<ExitCode> {
    // Validate the event before anything else: a typo should not cost a round trip.
    let payload = payload(&args)?;
    let client = global.client()?;
    let invocation_type = if args.async_ {
        "Event"
    } else {
        "RequestResponse"
    };
    let response = client.invoke(
        &args.name,
        args.qualifier.as_deref(),
        &payload,
        args.log,
        invocation_type,
    )?;
    if response.status >= 400 {
        return Err(api_error(&response));
    }
    if args.async_ {
        println!(
            "queued: request {} (see `tusk logs {}` and `tusk events`)",
            response.request_id.as_deref().unwrap_or("?"),
            args.name
        );
        return Ok(ExitCode::SUCCESS);
    }
    if args.log {
        if let Some(encoded) = &response.log_result {
            let log = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .context("the node sent an X-Amz-Log-Result that is not base64")?;
            let mut stderr = std::io::stderr().lock();
            stderr.write_all(&log)?;
            if !log.ends_with(b"\n") {
                writeln!(stderr)?;
            }
        }
    }
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&render_body(&response.body))?;
    stdout.flush()?;
    if let Some(kind) = &response.function_error {
        eprintln!("error: the function failed ({kind})");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn payload(args: &Args) -> Result<Vec<u8>> {
    let (bytes, origin) = match (&args.data, &args.path) {
        (Some(data), _) => (data.clone().into_bytes(), "--data".to_string()),
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .context("cannot read the event from stdin")?;
            (bytes, "the event on stdin".to_string())
        }
        (None, Some(path)) => (
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
            path.display().to_string(),
        ),
        (None, None) => return Ok(b"{}".to_vec()),
    };
    if let Err(err) = serde_json::from_slice::<Value>(&bytes) {
        bail!("{origin} is not valid JSON: {err}");
    }
    Ok(bytes)
}

/// Pretty JSON when the body is JSON, the raw bytes otherwise; always newline-terminated.
fn render_body(body: &[u8]) -> Vec<u8> {
    let mut out = match serde_json::from_slice::<Value>(body) {
        Ok(value) => serde_json::to_vec_pretty(&value).unwrap_or_else(|_| body.to_vec()),
        Err(_) => body.to_vec(),
    };
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    out
}

/// `<ErrorType>: <message>` from Lambda's error answer (`X-Amzn-ErrorType` plus a body with
/// `Message`, `message` or the node's `error`).
fn api_error(response: &InvokeResponse) -> anyhow::Error {
    let body: Option<Value> = serde_json::from_slice(&response.body).ok();
    let message = body
        .as_ref()
        .and_then(|body| {
            ["Message", "message", "error", "errorMessage"]
                .iter()
                .find_map(|key| body.get(key).and_then(Value::as_str))
        })
        .map(str::to_string)
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(&response.body).trim().to_string();
            if text.is_empty() {
                format!("the node answered {}", response.status)
            } else {
                text
            }
        });
    // AWS may append `:http://internal.amazon.com/...` to the type.
    let error_type = response
        .error_type
        .as_deref()
        .map(|kind| kind.split(':').next().unwrap_or(kind).trim())
        .filter(|kind| !kind.is_empty());
    match error_type {
        Some(kind) => anyhow!("{kind}: {message}"),
        None => anyhow!("{message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(data: Option<&str>) -> Args {
        Args {
            name: "f".into(),
            data: data.map(String::from),
            path: None,
            log: false,
            qualifier: None,
            async_: false,
        }
    }

    #[test]
    fn payload_is_validated_locally() {
        assert_eq!(payload(&args(None)).unwrap(), b"{}");
        assert_eq!(payload(&args(Some(r#"{"a":1}"#))).unwrap(), br#"{"a":1}"#);
        let err = payload(&args(Some("{oops"))).unwrap_err().to_string();
        assert!(err.starts_with("--data is not valid JSON"), "{err}");
    }

    #[test]
    fn api_errors_read_like_the_aws_cli() {
        let response = InvokeResponse {
            status: 404,
            function_error: None,
            log_result: None,
            error_type: Some("ResourceNotFoundException".into()),
            request_id: None,
            body: br#"{"Type":"User","Message":"Function not found: arn:x"}"#.to_vec(),
        };
        assert_eq!(
            api_error(&response).to_string(),
            "ResourceNotFoundException: Function not found: arn:x"
        );
        let response = InvokeResponse {
            status: 429,
            error_type: Some("TooManyRequestsException:http://x".into()),
            body: br#"{"Type":"User","message":"Rate Exceeded."}"#.to_vec(),
            ..response
        };
        assert_eq!(
            api_error(&response).to_string(),
            "TooManyRequestsException: Rate Exceeded."
        );
    }

    #[test]
    fn bodies_print_pretty_when_json() {
        assert_eq!(render_body(br#"{"a":1}"#), b"{\n  \"a\": 1\n}\n");
        assert_eq!(render_body(b"plain"), b"plain\n");
        assert_eq!(render_body(b""), b"");
    }
}
