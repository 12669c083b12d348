//! Serverless Framework variables: `${source:address, fallback, ...}`.
//!
//! Over 600 lines with its unit tests; the resolver itself is about 700 lines because every
//! variable source, fallback and limit shares one lazy, cycle-checked resolution.
//!
//! Resolution is lazy: the loader asks for the values it uses (`get`), and only the strings on
//! the way are resolved. Keys Tusk ignores (`resources`, `vpc`, ...) may therefore hold
//! `${cf:...}` or other AWS-only variables without failing the load.
//!
//! Supported sources: `env`, `opt`, `self`, `sls:stage`, `aws:region`, `param`,
//! `file(path):address` (`.yml`, `.yaml`, `.json`, relative to the project directory), and
//! `bref:layer.X` / `bref-extra:X`, which become markers that runtime detection reads.
//! A fallback is a quoted string, a number, `true`/`false`/`null`, another variable (with or
//! without `${}`), or a bare word.

use crate::error::Diag;
use crate::locate::{PathDisplay, Seg};
use crate::LoadOptions;
use serde_yaml::Value;
use std::borrow::Cow;
use std::path::Path;

/// Deep enough for any sane nesting; stops runaway `${file()}` self-inclusion.
const MAX_DEPTH: usize = 32;
/// The largest text one variable may expand to.
const MAX_VALUE_BYTES: usize = 1024 * 1024;
/// Work allowed for one file: variables resolved plus mappings and lists copied. Real files
/// stay in the thousands; values that refer to each other twice per level (`a2: ${self:a1}${self:a1}`)
/// would otherwise take 2^depth steps.
const MAX_STEPS: usize = 100_000;
/// Text all expansions of one file may produce together.
const MAX_TOTAL_BYTES: usize = 64 * 1024 * 1024;

pub(crate) const DEFAULT_STAGE: &str = "dev";
use crate::arn::DEFAULT_REGION;

pub(crate) struct Resolver<'a> {
    root: &'a Value,
    opts: &'a LoadOptions,
    base_dir: Option<&'a Path>,
    /// Paths of the strings being resolved right now, innermost last: a `${self:}` reference to
    /// one of them (or to an ancestor of one) is a cycle.
    active: Vec<Vec<Seg>>,
    stage: Option<String>,
    region: Option<String>,
    /// Work done so far, against [`MAX_STEPS`] and [`MAX_TOTAL_BYTES`].
    steps: usize,
    bytes: usize,
}

impl<'a> Resolver<'a> {
    pub(crate) fn new(root: &'a Value, opts: &'a LoadOptions, base_dir: Option<&'a Path>) -> Self {
        Resolver {
            root,
            opts,
            base_dir,
            active: Vec::new(),
            stage: None,
            region: None,
            steps: 0,
            bytes: 0,
        }
    }

    /// Counts work against the file's budget; the error names the value being resolved and
    /// the one that asked for it.
    fn charge(&mut self, path: &[Seg], steps: usize, bytes: usize) -> Result<(), Diag> {
        self.steps += steps;
        self.bytes += bytes;
        if self.steps <= MAX_STEPS && self.bytes <= MAX_TOTAL_BYTES {
            return Ok(());
        }
        Err(Diag::new(
            path,
            format!(
                "variables expand too much at `{}`{}: Tusk stops after {MAX_STEPS} steps or {} MB of text (do values refer to each other several times over?); simplify the variables",
                PathDisplay(path),
                self.origin(path),
                MAX_TOTAL_BYTES >> 20
            ),
        ))
    }

    /// `(needed by ...)` naming the outermost value being resolved, when it is not `path`.
    fn origin(&self, path: &[Seg]) -> String {
        match self.active.first() {
            Some(first) if first.as_slice() != path => {
                format!(" (needed by `{}`)", PathDisplay(first))
            }
            _ => String::new(),
        }
    }

    /// The value at `path` with every variable inside it resolved; `None` when absent.
    pub(crate) fn get(&mut self, path: &[Seg]) -> Result<Option<Value>, Diag> {
        match self.walk(path)? {
            None => Ok(None),
            Some((value, true)) => Ok(Some(value.into_owned())),
            Some((value, false)) => self.resolve_deep(&value, path).map(Some),
        }
    }

    /// The value at `path` with only the variables on the way to it resolved. For callers that
    /// need a mapping's keys and then `get` the entries they understand.
    pub(crate) fn get_shallow(&mut self, path: &[Seg]) -> Result<Option<Value>, Diag> {
        Ok(self.walk(path)?.map(|(value, _)| value.into_owned()))
    }

    /// `--stage`, else `provider.stage`, else `dev`.
    pub(crate) fn stage(&mut self) -> Result<String, Diag> {
        if let Some(stage) = &self.stage {
            return Ok(stage.clone());
        }
        let stage = match self
            .opts
            .stage
            .clone()
            .or_else(|| self.opts.options.get("stage").cloned())
        {
            Some(stage) => stage,
            None => self.setting(&[Seg::key("provider"), Seg::key("stage")], DEFAULT_STAGE)?,
        };
        self.stage = Some(stage.clone());
        Ok(stage)
    }

    /// `--region`, else `provider.region`, else `us-east-1`.
    pub(crate) fn region(&mut self) -> Result<String, Diag> {
        if let Some(region) = &self.region {
            return Ok(region.clone());
        }
        let region = match self
            .opts
            .region
            .clone()
            .or_else(|| self.opts.options.get("region").cloned())
        {
            Some(region) => region,
            None => self.setting(&[Seg::key("provider"), Seg::key("region")], DEFAULT_REGION)?,
        };
        self.region = Some(region.clone());
        Ok(region)
    }

    /// The service name, from `service` or `service.name`.
    pub(crate) fn service_name(&mut self) -> Result<String, Diag> {
        let value = match self.get(&[Seg::key("service")])? {
            Some(Value::Mapping(m)) => m.get("name").cloned(),
            other => other,
        };
        match value {
            Some(Value::String(s)) => Ok(s),
            _ => Err(Diag::new(
                &[Seg::key("service")],
                "`service` must name the service, e.g. `service: my-app`",
            )),
        }
    }

    /// `${construct:jobs.queueUrl}` and friends for Lift queue constructs. The URL depends on
    /// the node, so it is a marker the node fills in (`tusk:queue-url:NAME`).
    fn construct(&mut self, address: &str, path: &[Seg], reference: &str) -> Result<Value, Diag> {
        let (construct, property) = address.split_once('.').unwrap_or((address, ""));
        let queue = format!("{}-{}-{}", self.service_name()?, self.stage()?, construct);
        Ok(Value::String(match property {
            "queueUrl" => format!("tusk:queue-url:{queue}"),
            "queueArn" => crate::arn::queue_arn(&self.region()?, &queue),
            "queueName" => queue,
            _ => {
                return Err(unsupported(
                    path,
                    reference,
                    "queue constructs expose queueUrl, queueArn and queueName",
                ))
            }
        }))
    }

    fn setting(&mut self, path: &[Seg], default: &str) -> Result<String, Diag> {
        match self.get(path)? {
            None | Some(Value::Null) => Ok(default.to_string()),
            Some(value) => scalar_to_string(&value)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    Diag::new(
                        path,
                        format!("`{}` must be a non-empty string", PathDisplay(path)),
                    )
                }),
        }
    }

    /// Walks to `path`, resolving variables met on the way. The flag is true when the value
    /// came out of a variable, and so is already resolved throughout.
    fn walk(&mut self, path: &[Seg]) -> Result<Option<(Cow<'a, Value>, bool)>, Diag> {
        let mut node: Cow<'a, Value> = Cow::Borrowed(self.root);
        let mut resolved = false;
        for (i, seg) in path.iter().enumerate() {
            let child = match node {
                Cow::Borrowed(v) => child_of(v, seg).map(Cow::Borrowed),
                Cow::Owned(v) => child_of(&v, seg).cloned().map(Cow::Owned),
            };
            let Some(child) = child else { return Ok(None) };
            node = child;
            if !resolved {
                if let Value::String(s) = &*node {
                    if has_var(s) {
                        let s = s.clone();
                        node = Cow::Owned(self.resolve_string(&path[..=i], &s)?);
                        resolved = true;
                    }
                }
            }
        }
        Ok(Some((node, resolved)))
    }

    fn resolve_deep(&mut self, value: &Value, path: &[Seg]) -> Result<Value, Diag> {
        if matches!(value, Value::Mapping(_) | Value::Sequence(_)) {
            self.charge(path, 1, 0)?;
        }
        Ok(match value {
            Value::String(s) if has_var(s) => self.resolve_string(path, s)?,
            Value::Mapping(map) => {
                let mut out = serde_yaml::Mapping::with_capacity(map.len());
                for (k, v) in map {
                    let mut child = path.to_vec();
                    child.push(Seg::Key(key_str(k).unwrap_or_default()));
                    out.insert(k.clone(), self.resolve_deep(v, &child)?);
                }
                Value::Mapping(out)
            }
            Value::Sequence(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, v) in items.iter().enumerate() {
                    let mut child = path.to_vec();
                    child.push(Seg::Index(i));
                    out.push(self.resolve_deep(v, &child)?);
                }
                Value::Sequence(out)
            }
            other => other.clone(),
        })
    }

    /// Resolves the string found at `path` (the path is what errors point at).
    fn resolve_string(&mut self, path: &[Seg], s: &str) -> Result<Value, Diag> {
        if self.active.iter().any(|p| p == path) {
            return Err(Diag::new(
                path,
                format!(
                    "`{}` refers to itself through variables; break the cycle",
                    PathDisplay(path)
                ),
            ));
        }
        if self.active.len() >= MAX_DEPTH {
            return Err(Diag::new(
                path,
                format!(
                    "variables nest more than {MAX_DEPTH} deep at `{}`{} (a `${{file()}}` including itself?); simplify the variables",
                    PathDisplay(path),
                    self.origin(path)
                ),
            ));
        }
        self.charge(path, 1, 0)?;
        self.active.push(path.to_vec());
        let result = self.interpolate(s, path);
        self.active.pop();
        result
    }

    /// A string that is exactly one variable takes that variable's value and type (so
    /// `memorySize: ${self:custom.memory}` stays a number); otherwise the pieces are joined.
    fn interpolate(&mut self, s: &str, path: &[Seg]) -> Result<Value, Diag> {
        let pieces = split_vars(s).map_err(|m| Diag::new(path, m))?;
        if let [Piece::Var(expr)] = pieces.as_slice() {
            return self.eval_top(expr, path);
        }
        let mut out = String::new();
        for piece in pieces {
            match piece {
                Piece::Lit(lit) => out.push_str(lit),
                Piece::Var(expr) => {
                    let value = self.eval_top(expr, path)?;
                    let text = scalar_to_string(&value).ok_or_else(|| {
                        Diag::new(path, format!("`${{{expr}}}` is a mapping or a list and cannot be part of a string; use it as the whole value"))
                    })?;
                    self.charge(path, 0, text.len())?;
                    out.push_str(&text);
                    if out.len() > MAX_VALUE_BYTES {
                        return Err(Diag::new(
                            path,
                            format!(
                                "`{}` expands to more than {} MB of text{}; variables this large are refused",
                                PathDisplay(path),
                                MAX_VALUE_BYTES >> 20,
                                self.origin(path)
                            ),
                        ));
                    }
                }
            }
        }
        Ok(Value::String(out))
    }

    fn interpolate_to_string(&mut self, s: &str, path: &[Seg]) -> Result<String, Diag> {
        if !has_var(s) {
            return Ok(s.to_string());
        }
        let value = self.interpolate(s, path)?;
        scalar_to_string(&value)
            .ok_or_else(|| Diag::new(path, format!("`{s}` must resolve to a string")))
    }

    fn eval_top(&mut self, expr: &str, path: &[Seg]) -> Result<Value, Diag> {
        let mut misses = Vec::new();
        match self.eval_expr(expr, path, &mut misses)? {
            Some(value) => Ok(value),
            None => Err(Diag::new(
                path,
                format!("cannot resolve `${{{expr}}}`: {}", misses.join("; ")),
            )),
        }
    }

    /// `None` when no part of the expression resolved; `misses` says why, for the error.
    fn eval_expr(
        &mut self,
        expr: &str,
        path: &[Seg],
        misses: &mut Vec<String>,
    ) -> Result<Option<Value>, Diag> {
        let parts = split_top_level(expr).map_err(|m| Diag::new(path, m))?;
        for (i, part) in parts.iter().enumerate() {
            if let Some(value) = self.eval_part(part.trim(), i == 0, path, misses)? {
                return Ok(Some(value));
            }
        }
        Ok(None)
    }

    fn eval_part(
        &mut self,
        part: &str,
        first: bool,
        path: &[Seg],
        misses: &mut Vec<String>,
    ) -> Result<Option<Value>, Diag> {
        if part.is_empty() {
            return Err(Diag::new(
                path,
                "empty variable `${}` or empty fallback after a comma",
            ));
        }
        if let Some(text) = unquote(part) {
            return Ok(Some(Value::String(text.to_string())));
        }
        if let Some(inner) = part.strip_prefix("${") {
            if find_close(inner) == Some(inner.len() - 1) {
                return self.eval_expr(&inner[..inner.len() - 1], path, misses);
            }
        }
        if let Some(literal) = literal(part) {
            return Ok(Some(literal));
        }
        let reference = self.interpolate_to_string(part, path)?;
        self.lookup(&reference, first, path, misses)
    }

    fn lookup(
        &mut self,
        reference: &str,
        first: bool,
        path: &[Seg],
        misses: &mut Vec<String>,
    ) -> Result<Option<Value>, Diag> {
        if let Some(rest) = reference.strip_prefix("file(") {
            return self.lookup_file(rest, path, misses);
        }
        let Some((source, address)) = reference.split_once(':') else {
            if first {
                return Err(Diag::new(
                    path,
                    format!("variable `${{{reference}}}` has no source; write e.g. ${{env:{reference}}} or ${{self:{reference}}}"),
                ));
            }
            // A bare word as a fallback: `${opt:stage, dev}`.
            return Ok(Some(Value::String(reference.to_string())));
        };
        let address = address.trim();
        // `${cf(eu-west-1):stack.output}`: the source may carry a region in parentheses.
        let source = source.trim();
        let source_name = source.split('(').next().unwrap_or(source);
        let found = match source_name {
            "env" => {
                let value = self.opts.env.get(address).cloned();
                if value.is_none() {
                    misses.push(format!("environment variable {address} is not set (export it before running tusk, or add a fallback: ${{env:{address}, 'value'}})"));
                }
                value.map(Value::String)
            }
            "opt" => {
                let value = self.opts.options.get(address).cloned().or_else(|| match address {
                    "stage" => self.opts.stage.clone(),
                    "region" => self.opts.region.clone(),
                    _ => None,
                });
                if value.is_none() {
                    misses.push(format!("option --{address} was not given (pass it, or add a fallback: ${{opt:{address}, 'value'}})"));
                }
                value.map(Value::String)
            }
            "self" => self.lookup_self(address, path, misses)?,
            "sls" => match address {
                "stage" => Some(Value::String(self.stage()?)),
                _ => return Err(unsupported(path, reference, "only ${sls:stage} is available")),
            },
            "aws" => match address {
                "region" => Some(Value::String(self.region()?)),
                _ => return Err(unsupported(path, reference, "only ${aws:region} is available; put the value in ${env:NAME} instead")),
            },
            "param" => self.lookup_param(address, path, misses)?,
            "bref" => match address.strip_prefix("layer.") {
                Some(layer) if !layer.is_empty() => Some(Value::String(format!("bref:layer.{layer}"))),
                _ => return Err(unsupported(path, reference, "Bref variables are of the form ${bref:layer.php-82}")),
            },
            "bref-extra" => Some(Value::String(format!("bref-extra:{address}"))),
            "construct" => Some(self.construct(address, path, reference)?),
            "ssm" | "cf" | "s3" | "sm" | "secretsmanager" | "aws-ssm" => {
                return Err(unsupported(path, reference, "it reads from AWS; use ${env:NAME} instead and set NAME before running tusk"))
            }
            _ => {
                return Err(Diag::new(
                    path,
                    format!("unknown variable source `{source}` in `${{{reference}}}`; Tusk supports env, opt, self, sls:stage, aws:region, param, file() and bref"),
                ))
            }
        };
        Ok(found)
    }

    fn lookup_self(
        &mut self,
        address: &str,
        path: &[Seg],
        misses: &mut Vec<String>,
    ) -> Result<Option<Value>, Diag> {
        let target: Vec<Seg> = address
            .split('.')
            .filter(|s| !s.is_empty())
            .map(Seg::key)
            .collect();
        if self.active.iter().any(|p| p.starts_with(&target)) {
            return Err(Diag::new(
                path,
                format!("`${{self:{address}}}` refers back to the value being resolved; break the cycle"),
            ));
        }
        let value = self.get(&target)?.filter(|v| !v.is_null());
        if value.is_some() {
            return Ok(value);
        }
        // The settings Tusk defaults are visible through `self` even when not written.
        if target == [Seg::key("provider"), Seg::key("stage")] {
            return Ok(Some(Value::String(self.stage()?)));
        }
        if target == [Seg::key("provider"), Seg::key("region")] {
            return Ok(Some(Value::String(self.region()?)));
        }
        misses.push(format!("`{address}` is not defined in the file"));
        Ok(None)
    }

    /// Serverless v3 `params:`: `params.<stage>.KEY`, else `params.default.KEY`.
    fn lookup_param(
        &mut self,
        address: &str,
        path: &[Seg],
        misses: &mut Vec<String>,
    ) -> Result<Option<Value>, Diag> {
        let stage = self.stage()?;
        for section in [stage.as_str(), "default"] {
            let target = [Seg::key("params"), Seg::key(section), Seg::key(address)];
            if self.active.iter().any(|p| p.starts_with(&target)) {
                return Err(Diag::new(
                    path,
                    format!("`${{param:{address}}}` refers back to itself; break the cycle"),
                ));
            }
            if let Some(value) = self.get(&target)?.filter(|v| !v.is_null()) {
                return Ok(Some(value));
            }
        }
        misses.push(format!(
            "param {address} is not defined under params.{stage} or params.default"
        ));
        Ok(None)
    }

    /// `file(./path.yml):a.b` with `rest` the text after `file(`.
    fn lookup_file(
        &mut self,
        rest: &str,
        path: &[Seg],
        misses: &mut Vec<String>,
    ) -> Result<Option<Value>, Diag> {
        let Some((file, after)) = rest.split_once(')') else {
            return Err(Diag::new(
                path,
                format!("`${{file({rest}}}` is missing its closing `)`"),
            ));
        };
        let file = file.trim();
        let file = unquote(file).unwrap_or(file);
        let address = match after.trim() {
            "" => "",
            a => a.strip_prefix(':').map(str::trim).ok_or_else(|| {
                Diag::new(
                    path,
                    format!("expected `:` after `file({file})`, e.g. ${{file({file}):key}}"),
                )
            })?,
        };
        let Some(dir) = self.base_dir else {
            return Err(Diag::new(path, format!("`${{file({file})}}` needs the project directory; load the manifest from a directory")));
        };
        let ext = Path::new(file)
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("");
        if !matches!(ext, "yml" | "yaml" | "json") {
            return Err(Diag::new(
                path,
                format!("`${{file({file})}}`: Tusk reads only .yml, .yaml and .json files, not JavaScript or other formats"),
            ));
        }
        let full = dir.join(file);
        let text = match std::fs::read_to_string(&full) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                misses.push(format!("file {} does not exist", full.display()));
                return Ok(None);
            }
            Err(e) => {
                return Err(Diag::new(
                    path,
                    format!("cannot read {}: {e}", full.display()),
                ))
            }
        };
        let mut doc: Value = serde_yaml::from_str(&text)
            .map_err(|e| Diag::new(path, format!("cannot parse {}: {e}", full.display())))?;
        doc.apply_merge()
            .map_err(|e| Diag::new(path, format!("cannot parse {}: {e}", full.display())))?;
        let mut node = &doc;
        for key in address.split('.').filter(|s| !s.is_empty()) {
            match child_of(node, &Seg::key(key)) {
                Some(child) => node = child,
                None => {
                    misses.push(format!("`{address}` is not defined in {}", full.display()));
                    return Ok(None);
                }
            }
        }
        let node = node.clone();
        self.resolve_deep(&node, path).map(Some)
    }
}

fn unsupported(path: &[Seg], reference: &str, hint: &str) -> Diag {
    Diag::new(
        path,
        format!("`${{{reference}}}` is not supported by Tusk: {hint}"),
    )
}

pub(crate) fn has_var(s: &str) -> bool {
    s.contains("${")
}

/// A mapping key as text; `None` for keys that are mappings, lists or null.
pub(crate) fn key_str(key: &Value) -> Option<String> {
    match key {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A scalar as text (null is empty); `None` for mappings, lists and tagged values.
pub(crate) fn scalar_to_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

pub(crate) fn child_of<'v>(value: &'v Value, seg: &Seg) -> Option<&'v Value> {
    match (value, seg) {
        (Value::Mapping(map), Seg::Key(k)) => map
            .iter()
            .find(|(key, _)| match key {
                // The common case, without allocating (lookups run once per variable).
                Value::String(s) => s == k,
                other => key_str(other).as_deref() == Some(k.as_str()),
            })
            .map(|(_, v)| v),
        (Value::Sequence(items), Seg::Index(i)) => items.get(*i),
        (Value::Sequence(items), Seg::Key(k)) => k.parse::<usize>().ok().and_then(|i| items.get(i)),
        (Value::Tagged(tagged), _) => child_of(&tagged.value, seg),
        _ => None,
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Piece<'s> {
    Lit(&'s str),
    /// The text between `${` and the matching `}`.
    Var(&'s str),
}

fn split_vars(s: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut pieces = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        if start > 0 {
            pieces.push(Piece::Lit(&rest[..start]));
        }
        let body = &rest[start + 2..];
        let end = find_close(body)
            .ok_or_else(|| format!("unterminated variable in `{s}`: add the closing `}}`"))?;
        pieces.push(Piece::Var(&body[..end]));
        rest = &body[end + 1..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Lit(rest));
    }
    Ok(pieces)
}

/// Byte index of the `}` closing a variable whose body starts `body`, skipping nested
/// `${...}` and quoted fallbacks.
fn find_close(body: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    for (i, c) in body.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '{') => depth += 1,
            (None, '}') if depth == 0 => return Some(i),
            (None, '}') => depth -= 1,
            _ => {}
        }
    }
    None
}

/// Splits a variable body at its top-level commas (not inside `${}`, `()` or quotes).
fn split_top_level(body: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut start = 0;
    for (i, c) in body.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '{' | '(') => depth += 1,
            (None, '}' | ')') => depth = depth.saturating_sub(1),
            (None, ',') if depth == 0 => {
                parts.push(&body[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if quote.is_some() {
        return Err(format!("unclosed quote in `${{{body}}}`"));
    }
    parts.push(&body[start..]);
    Ok(parts)
}

fn unquote(part: &str) -> Option<&str> {
    let first = part.chars().next()?;
    let quoted = part.len() >= 2 && matches!(first, '\'' | '"') && part.ends_with(first);
    quoted.then(|| &part[1..part.len() - 1])
}

/// Numbers, booleans and null written as fallbacks.
fn literal(part: &str) -> Option<Value> {
    match part {
        "true" => return Some(Value::Bool(true)),
        "false" => return Some(Value::Bool(false)),
        "null" => return Some(Value::Null),
        _ => {}
    }
    if let Ok(n) = part.parse::<i64>() {
        return Some(Value::Number(n.into()));
    }
    match part.parse::<f64>() {
        Ok(f) if f.is_finite() && part.starts_with(|c: char| c.is_ascii_digit() || c == '-') => {
            Some(Value::Number(f.into()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn opts() -> LoadOptions {
        let mut env = HashMap::new();
        env.insert("DB_HOST".to_string(), "db.local".to_string());
        env.insert("STAGE".to_string(), "staging".to_string());
        LoadOptions {
            env,
            ..LoadOptions::default()
        }
    }

    fn resolve(doc: &str, opts: &LoadOptions, path: &str) -> Result<Option<Value>, Diag> {
        let root: Value = serde_yaml::from_str(doc).unwrap();
        let path: Vec<Seg> = path.split('.').map(Seg::key).collect();
        Resolver::new(&root, opts, None).get(&path)
    }

    fn string(doc: &str, opts: &LoadOptions, path: &str) -> String {
        match resolve(doc, opts, path) {
            Ok(Some(Value::String(s))) => s,
            other => panic!("expected a string, got {other:?}"),
        }
    }

    #[test]
    fn splits_variables_out_of_text() {
        assert_eq!(
            split_vars("a-${env:X, ${opt:y}}-b").unwrap(),
            vec![
                Piece::Lit("a-"),
                Piece::Var("env:X, ${opt:y}"),
                Piece::Lit("-b")
            ]
        );
        assert_eq!(
            split_vars("${env:X, '}'}").unwrap(),
            vec![Piece::Var("env:X, '}'")]
        );
        assert!(split_vars("${env:X").is_err());
        assert_eq!(
            split_top_level("file(a,b):c, 'x,y', ${a:b, c}").unwrap(),
            vec!["file(a,b):c", " 'x,y'", " ${a:b, c}"]
        );
    }

    #[test]
    fn env_with_and_without_default() {
        let o = opts();
        assert_eq!(string("a: ${env:DB_HOST}", &o, "a"), "db.local");
        assert_eq!(string("a: ${env:MISSING, 'fallback'}", &o, "a"), "fallback");
        assert_eq!(string("a: \"${env:MISSING, \\\"dq\\\"}\"", &o, "a"), "dq");
        assert_eq!(
            resolve("a: ${env:MISSING, 42}", &o, "a").unwrap(),
            Some(Value::Number(42.into()))
        );
        let err = resolve("a: ${env:MISSING}", &o, "a").unwrap_err();
        assert!(
            err.message
                .contains("environment variable MISSING is not set"),
            "{}",
            err.message
        );
        assert_eq!(err.path, vec![Seg::key("a")]);
    }

    #[test]
    fn nested_defaults() {
        let mut o = opts();
        assert_eq!(
            string("a: ${opt:stage, ${env:STAGE, 'dev'}}", &o, "a"),
            "staging"
        );
        assert_eq!(
            string("a: ${opt:stage, ${env:NOPE, 'dev'}}", &o, "a"),
            "dev"
        );
        assert_eq!(string("a: ${opt:stage, env:STAGE}", &o, "a"), "staging");
        assert_eq!(string("a: ${opt:stage, dev}", &o, "a"), "dev");
        o.options.insert("stage".into(), "prod".into());
        assert_eq!(
            string("a: ${opt:stage, ${env:STAGE, 'dev'}}", &o, "a"),
            "prod"
        );
        let err = resolve("a: ${opt:x, ${env:NOPE}}", &o, "a").unwrap_err();
        assert!(
            err.message.contains("option --x was not given"),
            "{}",
            err.message
        );
        assert!(
            err.message.contains("environment variable NOPE"),
            "{}",
            err.message
        );
    }

    #[test]
    fn variables_inside_larger_strings() {
        let o = opts();
        assert_eq!(
            string("a: 'mysql://${env:DB_HOST}:${env:PORT, 3306}/app'", &o, "a"),
            "mysql://db.local:3306/app"
        );
    }

    #[test]
    fn self_references_keep_types_and_resolve_transitively() {
        let o = opts();
        let doc = "custom:\n  mem: 512\n  host: ${env:DB_HOST}\n  env: {A: '${self:custom.host}'}\na: ${self:custom.mem}\nb: ${self:custom.env}\n";
        assert_eq!(
            resolve(doc, &o, "a").unwrap(),
            Some(Value::Number(512.into()))
        );
        let b = resolve(doc, &o, "b").unwrap().unwrap();
        assert_eq!(b["A"], Value::String("db.local".into()));
    }

    #[test]
    fn self_with_a_variable_in_the_address() {
        let o = LoadOptions {
            stage: Some("prod".into()),
            ..opts()
        };
        let doc = "custom:\n  prod: {domain: example.com}\na: ${self:custom.${sls:stage}.domain}\n";
        assert_eq!(string(doc, &o, "a"), "example.com");
    }

    #[test]
    fn self_cycles_are_errors() {
        let o = opts();
        let err = resolve("a: ${self:b}\nb: ${self:a}\n", &o, "a").unwrap_err();
        assert!(err.message.contains("cycle"), "{}", err.message);
        let err = resolve("custom:\n  x: ${self:custom}\n", &o, "custom").unwrap_err();
        assert!(err.message.contains("cycle"), "{}", err.message);
        let err = resolve("a: ${self:nope.deeper}\n", &o, "a").unwrap_err();
        assert!(
            err.message.contains("`nope.deeper` is not defined"),
            "{}",
            err.message
        );
    }

    #[test]
    fn stage_and_region() {
        let o = opts();
        assert_eq!(string("a: ${sls:stage}", &o, "a"), "dev");
        assert_eq!(
            string(
                "provider: {stage: '${env:STAGE}'}\na: ${sls:stage}",
                &o,
                "a"
            ),
            "staging"
        );
        let o2 = LoadOptions {
            stage: Some("prod".into()),
            region: Some("eu-west-1".into()),
            ..opts()
        };
        assert_eq!(
            string(
                "provider: {stage: qa}\na: ${sls:stage}-${aws:region}",
                &o2,
                "a"
            ),
            "prod-eu-west-1"
        );
        assert_eq!(string("a: ${aws:region}", &o, "a"), "us-east-1");
        assert_eq!(string("a: ${self:provider.stage}", &o, "a"), "dev");
        assert_eq!(string("a: ${opt:stage}", &o2, "a"), "prod");
        let err = resolve(
            "provider: {stage: '${sls:stage}'}\na: ${sls:stage}",
            &o,
            "a",
        )
        .unwrap_err();
        assert!(err.message.contains("cycle"), "{}", err.message);
    }

    #[test]
    fn bref_layers_become_markers() {
        let o = opts();
        assert_eq!(
            string("a: ${bref:layer.php-82-fpm}", &o, "a"),
            "bref:layer.php-82-fpm"
        );
        assert_eq!(
            string("a: ${bref-extra:redis-php-82}", &o, "a"),
            "bref-extra:redis-php-82"
        );
    }

    #[test]
    fn params_by_stage_then_default() {
        let o = LoadOptions {
            stage: Some("prod".into()),
            ..opts()
        };
        let doc = "params:\n  default: {d: 1, x: def}\n  prod: {x: p}\na: ${param:x}\nb: ${param:d}\nc: ${param:none, 'z'}\n";
        assert_eq!(string(doc, &o, "a"), "p");
        assert_eq!(
            resolve(doc, &o, "b").unwrap(),
            Some(Value::Number(1.into()))
        );
        assert_eq!(string(doc, &o, "c"), "z");
    }

    #[test]
    fn aws_only_sources_say_to_use_env() {
        let o = opts();
        for var in [
            "${ssm:/app/key}",
            "${cf:stack.Output}",
            "${cf(eu-west-1):stack.Output}",
            "${s3:bucket/key}",
        ] {
            let err = resolve(&format!("a: '{var}'"), &o, "a").unwrap_err();
            assert!(
                err.message.contains("not supported by Tusk"),
                "{}",
                err.message
            );
            assert!(err.message.contains("${env:NAME}"), "{}", err.message);
        }
        let err = resolve("a: ${foo:bar}", &o, "a").unwrap_err();
        assert!(
            err.message.contains("unknown variable source `foo`"),
            "{}",
            err.message
        );
        let err = resolve("a: ${FOO}", &o, "a").unwrap_err();
        assert!(err.message.contains("${env:FOO}"), "{}", err.message);
        let err = resolve("a: '${file(./x.yml)}'", &o, "a").unwrap_err();
        assert!(err.message.contains("project directory"), "{}", err.message);
    }

    #[test]
    fn unused_keys_are_not_resolved() {
        let o = opts();
        let doc = "resources: {x: '${cf:other.Value}'}\nfunctions: {a: {vpc: '${ssm:/x}', handler: h.php}}\n";
        let root: Value = serde_yaml::from_str(doc).unwrap();
        let mut r = Resolver::new(&root, &o, None);
        let handler = r
            .get(&[Seg::key("functions"), Seg::key("a"), Seg::key("handler")])
            .unwrap();
        assert_eq!(handler, Some(Value::String("h.php".into())));
        let f = r
            .get_shallow(&[Seg::key("functions"), Seg::key("a")])
            .unwrap()
            .unwrap();
        assert_eq!(f["vpc"], Value::String("${ssm:/x}".into()));
    }

    /// `custom.a1` .. `custom.aN`, each `item` applied to the previous one; `b` uses the last.
    fn chain(first: &str, item: &str, levels: usize) -> String {
        let mut doc = format!("custom:\n  a0: {first}\n");
        for i in 1..=levels {
            let prev = format!("${{self:custom.a{}}}", i - 1);
            doc.push_str(&format!("  a{i}: {}\n", item.replace("PREV", &prev)));
        }
        doc.push_str(&format!("b: ${{self:custom.a{levels}}}\n"));
        doc
    }

    /// Values that use the previous one twice grow as 2^depth; they are refused quickly.
    #[test]
    fn doubling_variables_hit_the_limits() {
        let o = opts();
        // 40 levels: refused by depth before any work.
        let err = resolve(&chain("x", "PREVPREV", 40), &o, "b").unwrap_err();
        assert!(err.message.contains("more than 32 deep"), "{}", err.message);
        assert!(err.message.contains("needed by `b`"), "{}", err.message);

        // 30 levels of doubling text: refused at 1 MB.
        let err = resolve(&chain(&"x".repeat(4096), "PREVPREV", 30), &o, "b").unwrap_err();
        assert!(
            err.message.contains("expands to more than 1 MB"),
            "{}",
            err.message
        );

        // Empty values never grow, but the work still doubles per level.
        let err = resolve(&chain("''", "PREVPREV", 30), &o, "b").unwrap_err();
        assert!(err.message.contains("expand too much"), "{}", err.message);

        // Lists that double.
        let err = resolve(&chain("[x]", "['PREV', 'PREV']", 30), &o, "b").unwrap_err();
        assert!(err.message.contains("expand too much"), "{}", err.message);

        // A plain chain of 30 is fine.
        assert_eq!(string(&chain("x", "PREV", 30), &o, "b"), "x");
    }

    #[test]
    fn embedding_a_mapping_in_a_string_is_an_error() {
        let err =
            resolve("custom: {m: {a: 1}}\na: 'x-${self:custom.m}'", &opts(), "a").unwrap_err();
        assert!(
            err.message.contains("cannot be part of a string"),
            "{}",
            err.message
        );
    }
}
