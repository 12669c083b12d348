//! `tusk`: one binary for the node (`tusk serve`) and its client (every other subcommand).
//! This file only parses the command line and maps errors to exit codes; the work lives in
//! [`commands`], the HTTP wire in [`client`] and the zip packaging in [`package`].

mod client;
mod commands;
mod format;
mod manifest;
mod node;
mod package;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

// glibc's malloc was ~15% of the node's CPU on the web request path (docs/decisions.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "tusk",
    version,
    about = "Tusk: run serverless PHP (Bref / Serverless Framework `serverless.yml`) on your own machines",
    long_about = None,
    propagate_version = true,
)]
struct Cli {
    #[command(flatten)]
    global: commands::Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a Tusk node: user routes, the Lambda APIs and the admin API on one listener.
    Serve(commands::serve::Args),
    /// Package the project, upload it and make the new version live.
    Deploy(commands::deploy::Args),
    /// List the deployed functions.
    #[command(visible_alias = "list")]
    Ls(commands::ls::Args),
    /// Show the details of one deployed function.
    Info(commands::info::Args),
    /// Remove every function of a service at one stage.
    Remove(commands::remove::Args),
    /// Invoke a function and print its result.
    Invoke(commands::invoke::Args),
    /// Print a function's log lines (and follow them with --tail).
    Logs(commands::logs::Args),
    /// Local development loop: run a node, deploy, and redeploy on every file change.
    Dev(commands::dev::Args),
    /// Async invocations, queue depths, retries, dead-lettered events and schedule ticks.
    Events(commands::events::Args),
    /// Durable queues: create, list, send, purge, remove.
    Queue(commands::queue::Args),
    /// Show which isolation protections this host gives instances (namespaces, cgroups, ...).
    Doctor(commands::doctor::Args),
    /// Print the version of this binary.
    Version,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => commands::serve::run(args),
        Command::Deploy(args) => commands::deploy::run(&cli.global, args),
        Command::Ls(args) => commands::ls::run(&cli.global, args),
        Command::Info(args) => commands::info::run(&cli.global, args),
        Command::Remove(args) => commands::remove::run(&cli.global, args),
        Command::Invoke(args) => commands::invoke::run(&cli.global, args),
        Command::Logs(args) => commands::logs::run(&cli.global, args),
        Command::Dev(args) => commands::dev::run(args),
        Command::Events(args) => commands::events::run(&cli.global, args),
        Command::Queue(args) => commands::queue::run(&cli.global, args),
        Command::Doctor(args) => commands::doctor::run(args),
        Command::Version => {
            println!("tusk {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            // `{:#}` prints the whole context chain on one line: "deploy failed: cannot read ...".
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
