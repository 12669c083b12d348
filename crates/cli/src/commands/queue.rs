//! `tusk queue`: durable queues on the node (the same ones the SQS API and `sqs` events use).

use crate::client::encode_segment;
use crate::commands::Global;
use crate::format;
use anyhow::{bail, Result};
use serde_json::{json, Value};
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub command: QueueCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum QueueCommand {
    /// Create a queue (or update its settings).
    Create {
        name: String,
        /// Seconds a received message stays invisible before it is delivered again.
        #[arg(long, default_value_t = 30, value_name = "SECS")]
        visibility_timeout: u32,
        /// Deliveries after which a message moves to --dead-letter.
        #[arg(long, value_name = "N", requires = "dead_letter")]
        max_receive_count: Option<u32>,
        /// Dead-letter queue (must exist).
        #[arg(long, value_name = "QUEUE")]
        dead_letter: Option<String>,
    },
    /// Queues with their depth, in-flight messages and oldest message age.
    Ls {
        /// Print the node's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Send a message.
    Send {
        name: String,
        /// The message body (any text; up to 256 KB).
        body: String,
        #[arg(long, default_value_t = 0, value_name = "SECS")]
        delay: u64,
    },
    /// Delete every message in a queue.
    Purge { name: String },
    /// Delete a queue and its messages.
    Rm { name: String },
}

pub fn run(global: &Global, args: Args) -> Result<ExitCode> {
    let client = global.client()?;
    match args.command {
        QueueCommand::Create {
            name,
            visibility_timeout,
            max_receive_count,
            dead_letter,
        } => {
            let answer = client.post_json(
                "/_tusk/queues",
                &json!({
                    "name": name,
                    "visibility_timeout": visibility_timeout,
                    "max_receive_count": max_receive_count,
                    "dead_letter": dead_letter,
                }),
                "the queue",
            )?;
            println!(
                "✔ queue {name}: {}",
                answer["url"].as_str().unwrap_or_default()
            );
        }
        QueueCommand::Ls { json } => {
            let answer = client.get_json("/_tusk/queues", "the queue list")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
                return Ok(ExitCode::SUCCESS);
            }
            let queues = answer["queues"].as_array().cloned().unwrap_or_default();
            if queues.is_empty() {
                eprintln!("no queues (create one with `tusk queue create NAME`)");
                return Ok(ExitCode::SUCCESS);
            }
            println!("{}", queue_table(&queues));
        }
        QueueCommand::Send { name, body, delay } => {
            if body.len() > 256 * 1024 {
                bail!(
                    "the message is {} bytes; queues take at most 262144 bytes",
                    body.len()
                );
            }
            let answer = client.post_json(
                &format!("/_tusk/queues/{}/messages", encode_segment(&name)),
                &json!({"body": body, "delay_seconds": delay}),
                "the sent message",
            )?;
            println!("sent {}", answer["message_id"].as_str().unwrap_or("?"));
        }
        QueueCommand::Purge { name } => {
            client.delete_json(
                &format!("/_tusk/queues/{}/messages", encode_segment(&name)),
                "the purge",
            )?;
            println!("purged {name}");
        }
        QueueCommand::Rm { name } => {
            client.delete_json(
                &format!("/_tusk/queues/{}", encode_segment(&name)),
                "the removal",
            )?;
            println!("removed {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn age(ms: u64) -> String {
    match ms {
        0 => "-".into(),
        ms if ms < 60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        ms if ms < 3_600_000 => format!("{}m", ms / 60_000),
        ms => format!("{}h", ms / 3_600_000),
    }
}

pub fn queue_table(queues: &[Value]) -> String {
    let mut rows = vec![[
        "QUEUE",
        "VISIBLE",
        "IN FLIGHT",
        "DELAYED",
        "OLDEST",
        "DEAD-LETTER",
    ]
    .map(String::from)
    .to_vec()];
    for q in queues {
        let n = |k: &str| q[k].as_u64().unwrap_or(0).to_string();
        rows.push(vec![
            q["name"].as_str().unwrap_or_default().to_string(),
            n("visible"),
            n("in_flight"),
            n("delayed"),
            age(q["oldest_age_ms"].as_u64().unwrap_or(0)),
            q["dead_letter"].as_str().unwrap_or("-").to_string(),
        ]);
    }
    format::table(&rows)
}
