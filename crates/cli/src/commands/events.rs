//! `tusk events`: async invocations waiting or retrying per function, queue depths, dead-lettered
//! events and schedule ticks.

use crate::commands::Global;
use crate::format;
use anyhow::Result;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print the node's JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(global: &Global, args: Args) -> Result<ExitCode> {
    let client = global.client()?;
    let answer = client.get_json("/_tusk/events", "the event overview")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(ExitCode::SUCCESS);
    }
    let queues = answer["queues"].as_array().cloned().unwrap_or_default();
    let (asyncs, user): (Vec<_>, Vec<_>) = queues
        .into_iter()
        .partition(|q| q["internal"].as_bool().unwrap_or(false));
    let mut rows = vec![["FUNCTION", "WAITING", "RUNNING", "RETRYING", "OLDEST"]
        .map(String::from)
        .to_vec()];
    for q in &asyncs {
        let n = |k: &str| q[k].as_u64().unwrap_or(0);
        rows.push(vec![
            q["name"]
                .as_str()
                .unwrap_or_default()
                .trim_start_matches("async:")
                .to_string(),
            (n("visible") + n("delayed")).to_string(),
            n("in_flight").to_string(),
            n("retrying").to_string(),
            match n("oldest_age_ms") {
                0 => "-".to_string(),
                ms => format!("{:.1}s", ms as f64 / 1000.0),
            },
        ]);
    }
    println!("async invocations\n{}", format::table(&rows));
    if !user.is_empty() {
        println!("\nqueues\n{}", super::queue::queue_table(&user));
    }
    let c = &answer["counters"];
    let n = |k: &str| c[k].as_u64().unwrap_or(0);
    println!(
        "\naccepted {}  succeeded {}  retried {}  throttled {}  dead-lettered {} (too old {})\nschedule ticks fired {}  missed while down {}",
        n("async_accepted"),
        n("async_succeeded"),
        n("async_retried"),
        n("async_throttled"),
        n("dead_lettered"),
        n("dropped_too_old"),
        n("schedule_fired"),
        n("schedule_missed"),
    );
    Ok(ExitCode::SUCCESS)
}
