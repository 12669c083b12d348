//! `tusk doctor`: which protections this host gives Tusk's instances, and what is missing.

use anyhow::{Context, Result};
use std::process::ExitCode;
use tusk_sandbox::{Level, Mode, Options, Sandbox};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Exit with status 1 unless instances would be fully isolated.
    #[arg(long)]
    pub strict: bool,
}

pub fn run(args: Args) -> Result<ExitCode> {
    // The probe runs exactly what `tusk serve --sandbox auto` runs at start, in a scratch
    // directory, and cleans up after itself.
    let scratch = tempfile::Builder::new()
        .prefix("tusk-doctor-")
        .tempdir()
        .context("cannot create a scratch directory for the sandbox probe")?;
    let sandbox = Sandbox::init(Options::new(Mode::Auto, scratch.path().to_path_buf()))
        .context("the sandbox probe failed")?;
    let report = sandbox.report();
    println!("Tusk sandbox doctor");
    println!("{report}");
    match report.level {
        Level::Full => println!(
            "\nEvery instance gets its own namespaces, root filesystem, uid and cgroup limits."
        ),
        _ => println!(
            "\n`tusk serve` would start in DEGRADED mode: instances get rlimits only and can\n\
             read, slow down or kill each other. Run the node as root (in a container: with\n\
             CAP_SYS_ADMIN and a writable, delegated cgroup) for full isolation."
        ),
    }
    sandbox.shutdown();
    Ok(if args.strict && report.level != Level::Full {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
