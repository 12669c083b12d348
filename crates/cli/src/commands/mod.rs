//! One module per subcommand. Each has an `Args` (clap) and a `run` returning the exit code.

pub mod deploy;
pub mod dev;
pub mod doctor;
pub mod events;
pub mod info;
pub mod invoke;
pub mod logs;
pub mod ls;
pub mod queue;
pub mod remove;
pub mod serve;

use crate::client::Client;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;

const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// Options every client subcommand understands (they may come before or after the subcommand).
#[derive(clap::Args, Debug)]
pub struct Global {
    /// Base URL of the Tusk node (client commands).
    #[arg(
        long,
        global = true,
        env = "TUSK_SERVER",
        hide_env_values = true,
        default_value = DEFAULT_SERVER,
        value_name = "URL"
    )]
    pub server: String,

    /// Admin token of the node (client commands). Without it, `$TUSK_DATA_DIR/admin.token` then
    /// `./data/admin.token` are read.
    #[arg(
        long,
        global = true,
        env = "TUSK_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
}

impl Global {
    /// A client for the node, with the token resolved as documented on [`Global::token`].
    pub fn client(&self) -> Result<Client> {
        let token = match &self.token {
            Some(token) if !token.trim().is_empty() => token.trim().to_string(),
            _ => token_from_files()?,
        };
        // An empty TUSK_SERVER (e.g. `TUSK_SERVER= tusk ls`) means the default, like unset.
        let server = if self.server.trim().is_empty() {
            DEFAULT_SERVER
        } else {
            &self.server
        };
        Client::new(server, token)
    }
}

/// Where a node started from this directory keeps its token; tried in order.
fn token_candidates() -> Vec<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os("TUSK_DATA_DIR").filter(|d| !d.is_empty()) {
        candidates.push(PathBuf::from(dir).join("admin.token"));
    }
    candidates.push(PathBuf::from("data").join("admin.token"));
    candidates
}

fn token_from_files() -> Result<String> {
    let candidates = token_candidates();
    for path in &candidates {
        match std::fs::read_to_string(path) {
            Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_string()),
            Ok(_) => bail!(
                "{} is empty; pass --token TOKEN or set TUSK_TOKEN",
                path.display()
            ),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => {
                return Err(err).with_context(|| format!("cannot read {}", path.display()));
            }
        }
    }
    let tried: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
    bail!(
        "no admin token: pass --token TOKEN or set TUSK_TOKEN (the node writes it to \
         DATA_DIR/admin.token on first start; looked in {})",
        tried.join(", ")
    )
}

/// Data directories of nodes started around here, which packaging must skip so that an admin
/// token never ends up in a deployed package: `$TUSK_DATA_DIR`, and `./data` or `DIR/data`
/// when they hold an `admin.token` (a plain `data/` folder of the app is still packaged).
pub fn node_data_dirs(project: &std::path::Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::var_os("TUSK_DATA_DIR").filter(|d| !d.is_empty()) {
        dirs.push(PathBuf::from(dir));
    }
    for dir in [PathBuf::from("data"), project.join("data")] {
        if dir.join("admin.token").is_file() {
            dirs.push(dir);
        }
    }
    dirs
}
