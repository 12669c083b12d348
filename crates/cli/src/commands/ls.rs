//! `tusk ls`: the deployed functions as a table (or JSON).

use crate::client::FunctionInfo;
use crate::commands::Global;
use crate::format;
use anyhow::{Context, Result};
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print the node's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(global: &Global, args: Args) -> Result<ExitCode> {
    let client = global.client()?;
    let raw = client.functions()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&raw)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut functions = raw
        .into_iter()
        .map(serde_json::from_value::<FunctionInfo>)
        .collect::<Result<Vec<_>, _>>()
        .context("the node sent the function list in an unexpected shape")?;
    if functions.is_empty() {
        eprintln!("no functions deployed (deploy a project with `tusk deploy DIR`)");
        return Ok(ExitCode::SUCCESS);
    }
    functions.sort_by(|a, b| a.name.cmp(&b.name));
    let mut rows = vec![["NAME", "RUNTIME", "VERSION", "ROUTES", "INSTANCES"]
        .map(String::from)
        .to_vec()];
    for function in &functions {
        let routes = if function.routes.is_empty() {
            "-".to_string()
        } else {
            function.routes.join(", ")
        };
        rows.push(vec![
            function.name.clone(),
            function.runtime.clone(),
            function.version.to_string(),
            routes,
            format::instances(&function.instances),
        ]);
    }
    print!("{}", format::table(&rows));
    Ok(ExitCode::SUCCESS)
}
