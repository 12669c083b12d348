//! `tusk remove`: take every function of a service at one stage off the node.

use crate::commands::Global;
use crate::manifest;
use anyhow::Result;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Project directory whose serverless.yml names the service (unused with --service).
    #[arg(default_value = ".", value_name = "DIR")]
    pub dir: PathBuf,
    /// Stage to remove; default: the manifest's stage (provider.stage, else `dev`), or `dev`
    /// with --service.
    #[arg(long, short, value_name = "STAGE")]
    pub stage: Option<String>,
    /// Service to remove, instead of the one named in DIR/serverless.yml.
    #[arg(long, value_name = "NAME")]
    pub service: Option<String>,
}

pub fn run(global: &Global, args: Args) -> Result<ExitCode> {
    let client = global.client()?;
    let (service, stage) = match args.service {
        Some(service) => (service, args.stage.unwrap_or_else(|| "dev".to_string())),
        None => {
            let spec = manifest::load(&args.dir, args.stage.as_deref(), None)?;
            (spec.service, spec.stage)
        }
    };
    let removed = client.remove_service(&service, &stage)?;
    if removed.is_empty() {
        println!("Nothing to remove: service {service} has no function at stage {stage}");
    } else {
        println!("✔ Service {service} removed from stage {stage}");
        for name in removed {
            println!("  {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
