//! `tusk info NAME`: everything the node knows about one function.

use crate::client::FunctionInfo;
use crate::commands::Global;
use crate::format;
use anyhow::{Context, Result};
use serde_json::Value;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Function name: the full `service-stage-function`, or a unique short name.
    pub name: String,
    /// Print the node's JSON instead of the details.
    #[arg(long)]
    pub json: bool,
}

pub fn run(global: &Global, args: Args) -> Result<ExitCode> {
    let client = global.client()?;
    let raw = client.function(&args.name)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&raw)?);
        return Ok(ExitCode::SUCCESS);
    }
    let function: FunctionInfo =
        serde_json::from_value(raw).context("the node sent the function in an unexpected shape")?;
    print!("{}", details(&function, client.base()));
    Ok(ExitCode::SUCCESS)
}

fn details(function: &FunctionInfo, base: &str) -> String {
    let mut rows: Vec<(&str, String)> = vec![
        ("name", function.name.clone()),
        (
            "service",
            format!("{} (stage {})", function.service, function.stage),
        ),
        ("function", function.short_name.clone()),
        (
            "runtime",
            format!("{} ({})", function.runtime, function.kind),
        ),
        ("handler", function.handler.clone()),
        ("memory", format!("{} MB", function.memory_size)),
        ("timeout", format!("{} s", function.timeout)),
        (
            "version",
            format!(
                "{} (deployed {})",
                function.version,
                format::timestamp_ms(function.deployed_at_ms)
            ),
        ),
    ];
    let concurrency = match function.reserved_concurrency {
        Some(reserved) => format!(
            "reserved {reserved}, provisioned {}",
            function.provisioned_concurrency
        ),
        None => format!(
            "unreserved, provisioned {}",
            function.provisioned_concurrency
        ),
    };
    rows.push(("concurrency", concurrency));
    rows.push(("instances", format::instances(&function.instances)));

    let mut lists: Vec<(&str, Vec<String>)> = Vec::new();
    lists.push((
        "routes",
        function
            .routes
            .iter()
            .map(|route| format::route_with_url(base, route))
            .collect(),
    ));
    lists.push((
        "events",
        function.events.iter().map(describe_event).collect(),
    ));
    lists.push((
        "environment",
        function
            .environment
            .iter()
            .map(|(key, value)| match value {
                Value::String(text) => format!("{key}={text}"),
                other => format!("{key}={other}"),
            })
            .collect(),
    ));

    let width = rows
        .iter()
        .map(|(label, _)| label.len())
        .chain(lists.iter().map(|(label, _)| label.len()))
        .max()
        .unwrap_or(0)
        + 1;
    let mut out = String::new();
    for (label, value) in rows {
        out.push_str(&format!("{:<width$} {value}\n", format!("{label}:")));
    }
    for (label, values) in lists {
        if values.is_empty() {
            out.push_str(&format!("{:<width$} -\n", format!("{label}:")));
            continue;
        }
        for (index, value) in values.iter().enumerate() {
            let label = if index == 0 {
                format!("{label}:")
            } else {
                String::new()
            };
            out.push_str(&format!("{label:<width$} {value}\n"));
        }
    }
    out.push_str(&format!(
        "{:<width$} tusk invoke {}\n",
        "invoke:", function.name
    ));
    out
}

/// One line per event: `httpApi GET /users/{id}`, `schedule rate(5 minutes)`, `sqs arn:...`.
fn describe_event(event: &Value) -> String {
    let field = |key: &str| event.get(key).and_then(Value::as_str).unwrap_or_default();
    let kind = field("type");
    match kind {
        "httpApi" | "http" => {
            let method = match field("method") {
                "*" => "ANY",
                method => method,
            };
            format!("{kind} {method} {}", field("path"))
        }
        "schedule" => {
            let mut text = format!("schedule {}", field("expression"));
            if event.get("enabled") == Some(&Value::Bool(false)) {
                text.push_str(" (disabled)");
            }
            text
        }
        "sqs" => format!("sqs {}", field("arn")),
        _ => event.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_described() {
        let event = serde_json::json!({"type": "httpApi", "method": "*", "path": "*"});
        assert_eq!(describe_event(&event), "httpApi ANY *");
        let event = serde_json::json!({"type": "schedule", "expression": "rate(5 minutes)",
            "input": null, "enabled": false});
        assert_eq!(
            describe_event(&event),
            "schedule rate(5 minutes) (disabled)"
        );
        let event = serde_json::json!({"type": "kafka"});
        assert_eq!(describe_event(&event), r#"{"type":"kafka"}"#);
    }

    #[test]
    fn details_list_everything() {
        let function = FunctionInfo {
            name: "app-dev-web".into(),
            routes: vec!["GET /a".into(), "POST /b".into()],
            ..FunctionInfo::default()
        };
        let text = details(&function, "http://h");
        assert!(
            text.contains("routes:      GET /a (http://h/a)\n             POST /b (http://h/b)\n"),
            "{text}"
        );
        assert!(text.contains("environment: -\n"), "{text}");
        assert!(
            text.ends_with("invoke:      tusk invoke app-dev-web\n"),
            "{text}"
        );
    }
}
