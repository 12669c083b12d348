//! `tusk deploy`: manifest → package → upload (unless the node has it) → deployment.

use crate::client::{Client, Deployment};
use crate::commands::Global;
use crate::package::{self, FileEntry, Selector};
use crate::{format, manifest};
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tusk_manifest::ServiceSpec;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Project directory holding serverless.yml.
    #[arg(default_value = ".", value_name = "DIR")]
    pub dir: PathBuf,
    /// Stage to deploy (`${opt:stage}`); default: provider.stage, else `dev`.
    #[arg(long, short, value_name = "STAGE")]
    pub stage: Option<String>,
    /// Region (`${opt:region}`); default: provider.region.
    #[arg(long, short, value_name = "REGION")]
    pub region: Option<String>,
}

pub fn run(global: &Global, args: Args) -> Result<ExitCode> {
    let started = Instant::now();
    // Resolve the token first: no point packaging for a node we cannot talk to.
    let client = global.client()?;
    let deployed = deploy(
        &client,
        &args.dir,
        args.stage.as_deref(),
        args.region.as_deref(),
    )?;
    print!(
        "{}",
        summary(&deployed.deployment, client.base(), started.elapsed())
    );
    Ok(ExitCode::SUCCESS)
}

/// What a successful deployment leaves for the caller (`tusk dev` watches `files`).
pub struct Deployed {
    pub deployment: Deployment,
    pub spec: ServiceSpec,
    /// The files that went into the package, as they were when selected.
    pub files: Vec<FileEntry>,
}

/// The whole deployment, shared by `tusk deploy` and `tusk dev`. Warnings go to stderr.
pub fn deploy(
    client: &Client,
    dir: &Path,
    stage: Option<&str>,
    region: Option<&str>,
) -> Result<Deployed> {
    let spec = manifest::load(dir, stage, region)?;
    let files = select(dir, &spec.package_patterns)?;
    if files.is_empty() {
        eprintln!("warning: the package is empty: package.patterns exclude every file");
    }

    let progress = bar(files.len() as u64, "packaging", "{pos}/{len} files")?;
    let package = package::build(&files, &progress);
    progress.finish_and_clear();
    let package = package?;

    if !client.has_package(&package.sha256)? {
        let progress = bar(package.size, "uploading", "{bytes}/{total_bytes} ({eta})")?;
        let reader = package
            .file
            .reopen()
            .context("cannot reopen the package to upload it")?;
        let uploaded =
            client.upload_package(&package.sha256, package.size, progress.wrap_read(reader));
        progress.finish_and_clear();
        uploaded?;
    }

    let deployment = client.deploy(&spec, &package.sha256)?;
    for warning in &deployment.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(Deployed {
        deployment,
        spec,
        files,
    })
}

/// The files of `dir` that `patterns` select, skipping local node data directories.
pub fn select(dir: &Path, patterns: &[String]) -> Result<Vec<FileEntry>> {
    if !dir.is_dir() {
        anyhow::bail!("{} is not a directory", dir.display());
    }
    let selector = Selector::new(dir, patterns, &super::node_data_dirs(dir))?;
    package::select_files(dir, &selector)
}

/// A progress bar on stderr; indicatif hides it when stderr is not a terminal, which keeps
/// scripted output clean.
fn bar(len: u64, label: &str, counter: &str) -> Result<ProgressBar> {
    let style =
        ProgressStyle::with_template(&format!("{{spinner}} {label} [{{bar:30}}] {counter}"))
            .context("invalid progress bar template")?
            .progress_chars("=> ");
    let progress = ProgressBar::new(len).with_style(style);
    progress.enable_steady_tick(Duration::from_millis(120));
    Ok(progress)
}

/// The `✔ Service ... deployed` block, functions with their URLs or how to invoke them.
pub fn summary(deployment: &Deployment, base: &str, elapsed: Duration) -> String {
    let mut out = format!(
        "✔ Service {} deployed to stage {} (version {}) in {:.1}s\nfunctions:\n",
        deployment.service,
        deployment.stage,
        deployment.version,
        elapsed.as_secs_f64()
    );
    let mut functions: Vec<_> = deployment.functions.iter().collect();
    functions.sort_by(|a, b| a.name.cmp(&b.name));
    let name_width = functions
        .iter()
        .map(|f| f.name.chars().count())
        .max()
        .unwrap_or(0);
    let runtime_width = functions
        .iter()
        .map(|f| f.runtime.chars().count())
        .max()
        .unwrap_or(0);
    for function in functions {
        let mut targets: Vec<String> = function
            .routes
            .iter()
            .map(|route| format::route_url(base, route))
            .collect();
        if targets.is_empty() {
            targets.push(format!("(invoke: tusk invoke {})", function.name));
        }
        for (index, target) in targets.iter().enumerate() {
            let (name, runtime) = if index == 0 {
                (function.name.as_str(), function.runtime.as_str())
            } else {
                ("", "")
            };
            out.push_str(&format!(
                "  {name:<name_width$}  {runtime:<runtime_width$}  {target}\n"
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::FunctionInfo;

    #[test]
    fn summary_lists_urls_and_invoke_hints() {
        let deployment = Deployment {
            service: "hello-world".into(),
            stage: "dev".into(),
            version: 3,
            functions: vec![
                FunctionInfo {
                    name: "hello-world-dev-web".into(),
                    runtime: "php-82-fpm".into(),
                    routes: vec!["* *".into(), "GET /x".into()],
                    ..FunctionInfo::default()
                },
                FunctionInfo {
                    name: "hello-world-dev-hello".into(),
                    runtime: "php-82".into(),
                    ..FunctionInfo::default()
                },
            ],
            warnings: vec![],
        };
        let text = summary(
            &deployment,
            "http://127.0.0.1:8080",
            Duration::from_millis(1234),
        );
        let continuation = " ".repeat(2 + 21 + 2 + 10 + 2);
        let expected = [
            "✔ Service hello-world deployed to stage dev (version 3) in 1.2s".to_string(),
            "functions:".to_string(),
            "  hello-world-dev-hello  php-82      (invoke: tusk invoke hello-world-dev-hello)"
                .to_string(),
            "  hello-world-dev-web    php-82-fpm  ANY http://127.0.0.1:8080/*".to_string(),
            format!("{continuation}GET http://127.0.0.1:8080/x"),
        ];
        assert_eq!(text, expected.join("\n") + "\n");
    }
}
