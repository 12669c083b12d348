//! The rules a [`ServiceSpec`] must follow, whoever built it.
//!
//! Over 600 lines only with its unit tests: every rule sits with its example of a bad spec.
//!
//! The CLI checks them after reading `serverless.yml`, and the node checks them again on every
//! deploy: a deploy can reach the node as raw JSON without ever passing the CLI's parser, so
//! the node is the authority. Limits are Lambda's wherever Lambda has one, so a file that
//! deploys here also deploys on AWS.

use crate::events::route_path_problem;
use crate::runtime::php_name;
use crate::{Destinations, EventSpec, FunctionSpec, QueueSpec, RuntimeKind, ServiceSpec};
use std::collections::HashSet;

/// Lambda's limit on a function name (`service-stage-function`).
pub const MAX_FUNCTION_NAME: usize = 64;
/// Lambda's limit on all of a function's environment variables together (keys and values).
pub const MAX_ENVIRONMENT_BYTES: usize = 4096;
/// Concurrency above this is refused: Lambda's default account limit, and far more instances
/// than one node can hold.
pub const MAX_CONCURRENCY: u32 = 1000;
/// Lambda's limit on a handler string.
const MAX_HANDLER: usize = 128;
/// EventBridge's limit on a target's constant input.
const MAX_SCHEDULE_INPUT: usize = 8192;

/// Environment variables the instance's runtime gets from Tusk. Lambda refuses these in a
/// function's configuration (they are "reserved keys"); here a value from the spec would
/// replace Tusk's and break the runtime (`AWS_LAMBDA_RUNTIME_API`, `_HANDLER`) or lie to it.
pub const RESERVED_ENV_KEYS: [&str; 14] = [
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
];

/// What the checker may allow beyond AWS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ValidateOptions {
    /// Accept Tusk's sub-minute `rate(N seconds)` schedules (nodes started with
    /// `--allow-second-schedules`, for tests). The CLI passes `true` and lets the node decide.
    pub allow_second_schedules: bool,
}

/// Why a spec was refused. Each message names the function, key or queue at fault and says
/// what is allowed.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum ValidationError {
    /// The service, stage or region is not a plain name.
    #[error("{what} {value} {rule}")]
    Name {
        what: &'static str,
        value: String,
        rule: &'static str,
    },
    /// A number outside the range Lambda accepts.
    #[error(
        "function {function}: `{field}` is {value}; use a whole number from {min} to {max}{unit}"
    )]
    OutOfRange {
        function: String,
        field: &'static str,
        value: u64,
        min: u64,
        max: u64,
        unit: &'static str,
    },
    /// Any other problem with one function.
    #[error("function {function}: {message}")]
    Function { function: String, message: String },
    /// A declared queue that cannot exist.
    #[error("queue {queue}: {message}")]
    Queue { queue: String, message: String },
}

/// A value as it may be shown in a message: control characters escaped, long values cut.
fn shown(value: &str) -> String {
    let mut out: String = value
        .chars()
        .take(80)
        .flat_map(char::escape_debug)
        .collect();
    if value.chars().count() > 80 {
        out.push_str("...");
    }
    format!("`{out}`")
}

/// An SQS queue name: 1 to 80 letters, digits, `-` and `_`, where a `.fifo` suffix counts
/// in the 80 (SQS's own rule). Used by deploys, the admin queue API and the SQS API alike.
pub fn valid_queue_name(name: &str) -> bool {
    let base = name.strip_suffix(".fifo").unwrap_or(name);
    !base.is_empty()
        && name.len() <= 80
        && base
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// What [`valid_queue_name`] accepts, for messages.
pub const QUEUE_NAME_RULE: &str =
    "a queue name is 1 to 80 letters, digits, `-` and `_` (a `.fifo` suffix included)";

/// Lambda's function name charset: letters, digits, `-` and `_`.
fn lambda_name_chars(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl ServiceSpec {
    /// Checks every rule; `Ok` carries warnings (things that run here but not on AWS).
    pub fn validate(&self, opts: &ValidateOptions) -> Result<Vec<String>, ValidationError> {
        validate(self, opts)
    }
}

/// See [`ServiceSpec::validate`].
pub fn validate(
    spec: &ServiceSpec,
    opts: &ValidateOptions,
) -> Result<Vec<String>, ValidationError> {
    const NAME_RULE: &str = "may use only letters, digits, `-` and `_` (at most 64)";
    if !lambda_name_chars(&spec.service) || spec.service.len() > MAX_FUNCTION_NAME {
        return Err(ValidationError::Name {
            what: "service",
            value: shown(&spec.service),
            rule: NAME_RULE,
        });
    }
    if !lambda_name_chars(&spec.stage) || spec.stage.len() > MAX_FUNCTION_NAME {
        return Err(ValidationError::Name {
            what: "stage",
            value: shown(&spec.stage),
            rule: NAME_RULE,
        });
    }
    let region_ok = !spec.region.is_empty()
        && spec.region.len() <= 32
        && spec
            .region
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !region_ok {
        return Err(ValidationError::Name {
            what: "region",
            value: shown(&spec.region),
            rule: "may use only up to 32 letters, digits and `-` (e.g. us-east-1)",
        });
    }
    if let Some(p) = spec.package_patterns.iter().find(|p| p.contains('\0')) {
        return Err(ValidationError::Name {
            what: "package pattern",
            value: shown(p),
            rule: "must not contain a NUL character",
        });
    }
    let mut warnings = Vec::new();
    let mut names = HashSet::new();
    for f in &spec.functions {
        if !names.insert(f.name.as_str()) {
            return Err(function_error(
                &f.name,
                "is declared twice; give each function its own name",
            ));
        }
        check_function(spec, f, opts, &mut warnings)?;
    }
    check_queues(&spec.queues)?;
    Ok(warnings)
}

fn function_error(function: &str, message: impl Into<String>) -> ValidationError {
    ValidationError::Function {
        function: shown(function).trim_matches('`').to_string(),
        message: message.into(),
    }
}

fn range(
    function: &str,
    field: &'static str,
    value: u32,
    (min, max): (u32, u32),
    unit: &'static str,
) -> Result<(), ValidationError> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    Err(ValidationError::OutOfRange {
        function: function.to_string(),
        field,
        value: value.into(),
        min: min.into(),
        max: max.into(),
        unit,
    })
}

fn check_function(
    spec: &ServiceSpec,
    f: &FunctionSpec,
    opts: &ValidateOptions,
    warnings: &mut Vec<String>,
) -> Result<(), ValidationError> {
    if !lambda_name_chars(&f.name) {
        return Err(function_error(
            &f.name,
            "a function name may use only letters, digits, `-` and `_`",
        ));
    }
    let full = spec.function_name(f);
    if full.len() > MAX_FUNCTION_NAME {
        return Err(function_error(
            &f.name,
            format!(
                "the function name {full} is {} characters; Lambda allows {MAX_FUNCTION_NAME}: shorten the service, stage or function name",
                full.len()
            ),
        ));
    }
    let name = f.name.as_str();
    range(name, "memorySize", f.memory_size, (128, 10240), " (MB)")?;
    range(name, "timeout", f.timeout, (1, 900), " (seconds)")?;
    range(
        name,
        "ephemeralStorageSize",
        f.ephemeral_storage_size,
        (512, 10240),
        " (MB)",
    )?;
    if let Some(reserved) = f.reserved_concurrency {
        range(
            name,
            "reservedConcurrency",
            reserved,
            (0, MAX_CONCURRENCY),
            "",
        )?;
    }
    range(
        name,
        "provisionedConcurrency",
        f.provisioned_concurrency,
        (0, MAX_CONCURRENCY),
        "",
    )?;
    if let Some(reserved) = f
        .reserved_concurrency
        .filter(|r| f.provisioned_concurrency > *r)
    {
        return Err(function_error(
            name,
            format!(
                "provisionedConcurrency ({}) is above reservedConcurrency ({reserved}); lower it or raise reservedConcurrency",
                f.provisioned_concurrency
            ),
        ));
    }
    if let Some(retries) = f.maximum_retry_attempts {
        range(name, "maximumRetryAttempts", retries, (0, 2), "")?;
    }
    if let Some(age) = f.maximum_event_age {
        range(name, "maximumEventAge", age, (60, 21600), " (seconds)")?;
    }
    check_handler(f)?;
    check_runtime(f)?;
    check_environment(f)?;
    for event in &f.events {
        check_event(f, event, opts, warnings)?;
    }
    check_destinations(name, &f.destinations)?;
    let mut mounts = HashSet::new();
    for v in &f.volumes {
        if !v.is_valid() {
            return Err(function_error(
                name,
                format!(
                    "volume {} at {} is invalid: a name of up to 64 letters, digits, `-`, `_` and `.`, mounted at a path under /mnt/",
                    shown(&v.name),
                    shown(&v.mount_path)
                ),
            ));
        }
        if !mounts.insert(v.mount_path.as_str()) {
            return Err(function_error(
                name,
                format!("two volumes are mounted at {}", v.mount_path),
            ));
        }
    }
    Ok(())
}

fn check_handler(f: &FunctionSpec) -> Result<(), ValidationError> {
    let h = &f.handler;
    let problem = if h.is_empty() {
        Some("is empty")
    } else if h.len() > MAX_HANDLER {
        Some("is longer than Lambda's 128 characters")
    } else if h.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some("contains whitespace or control characters")
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(why) => Err(function_error(
            &f.name,
            format!(
                "handler {} {why}; use a file in the package (e.g. index.php) or a class name",
                shown(h)
            ),
        )),
    }
}

fn check_runtime(f: &FunctionSpec) -> Result<(), ValidationError> {
    let unknown = || {
        function_error(
            &f.name,
            format!(
                "runtime {} with kind {:?} is not one Tusk runs; use one of {}",
                shown(&f.runtime),
                f.kind,
                crate::runtime::SUPPORTED
            ),
        )
    };
    match php_name(&f.runtime) {
        Some((version, kind)) => {
            // Bref 1's console layer turns a php-8x function into a console one.
            let console_layer =
                kind == RuntimeKind::PhpFunction && f.kind == RuntimeKind::PhpConsole;
            if (kind != f.kind && !console_layer) || f.php_version.as_deref() != Some(&version) {
                return Err(unknown());
            }
        }
        None if matches!(
            f.runtime.as_str(),
            "provided" | "provided.al2" | "provided.al2023"
        ) =>
        {
            let php = f.kind != RuntimeKind::Provided;
            let version_ok = match &f.php_version {
                None => !php,
                Some(v) => {
                    php && v.len() == 3
                        && v.as_bytes()[1] == b'.'
                        && v.bytes()
                            .enumerate()
                            .all(|(i, b)| i == 1 || b.is_ascii_digit())
                }
            };
            if !version_ok {
                return Err(unknown());
            }
        }
        None => return Err(unknown()),
    }
    Ok(())
}

fn check_environment(f: &FunctionSpec) -> Result<(), ValidationError> {
    let mut total = 0;
    for (key, value) in &f.environment {
        let mut chars = key.chars();
        let key_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !key_ok {
            return Err(function_error(
                &f.name,
                format!(
                    "environment variable name {} is invalid; a name is letters, digits and `_`, not starting with a digit",
                    shown(key)
                ),
            ));
        }
        if RESERVED_ENV_KEYS.contains(&key.as_str()) {
            return Err(function_error(
                &f.name,
                format!("environment variable {key} is reserved: Tusk sets it for the runtime, as Lambda does; remove it"),
            ));
        }
        if value.contains('\0') {
            return Err(function_error(
                &f.name,
                format!("environment variable {key} contains a NUL character, which no environment can hold"),
            ));
        }
        total += key.len() + value.len();
    }
    if total > MAX_ENVIRONMENT_BYTES {
        return Err(function_error(
            &f.name,
            format!(
                "the environment variables take {total} bytes; Lambda allows {MAX_ENVIRONMENT_BYTES} in all: move large values into a file in the package"
            ),
        ));
    }
    Ok(())
}

fn check_event(
    f: &FunctionSpec,
    event: &EventSpec,
    opts: &ValidateOptions,
    warnings: &mut Vec<String>,
) -> Result<(), ValidationError> {
    let name = f.name.as_str();
    match event {
        EventSpec::HttpApi { method, path } | EventSpec::Http { method, path } => {
            let method_ok = method == "*"
                || (!method.is_empty()
                    && method.len() <= 16
                    && method.bytes().all(|b| b.is_ascii_uppercase()));
            if !method_ok {
                return Err(function_error(
                    name,
                    format!(
                        "HTTP method {} is invalid; use an upper-case method such as GET or POST, or `*` for any",
                        shown(method)
                    ),
                ));
            }
            let catch_all = path == "*" && matches!(event, EventSpec::HttpApi { .. });
            if let Some(why) = (!catch_all).then(|| route_path_problem(path)).flatten() {
                return Err(function_error(
                    name,
                    format!("invalid route path {}: {why}", shown(path)),
                ));
            }
        }
        EventSpec::Schedule {
            expression, input, ..
        } => {
            let shaped = (expression.starts_with("rate(") || expression.starts_with("cron("))
                && expression.ends_with(')');
            let parsed = if shaped {
                expression
                    .parse::<tusk_schedule::Schedule>()
                    .map_err(|e| e.to_string())
            } else {
                Err(format!(
                    "schedule {} is neither rate(...) nor cron(...)",
                    shown(expression)
                ))
            };
            let schedule = parsed.map_err(|m| function_error(name, m))?;
            if !schedule.is_aws_compatible() {
                if !opts.allow_second_schedules {
                    return Err(function_error(
                        name,
                        format!("schedule {expression} is finer than AWS's minimum of rate(1 minute) (in whole minutes); Tusk runs second rates only on nodes started with --allow-second-schedules, for tests"),
                    ));
                }
                warnings.push(format!(
                    "function {name}: schedule {expression} runs on this node (--allow-second-schedules) but AWS refuses rates below 1 minute"
                ));
            }
            if let Some(input) = input {
                let size = input.to_string().len();
                if size > MAX_SCHEDULE_INPUT {
                    return Err(function_error(
                        name,
                        format!("the `input` of schedule {expression} is {size} bytes of JSON; EventBridge allows {MAX_SCHEDULE_INPUT}"),
                    ));
                }
            }
        }
        EventSpec::Sqs {
            arn,
            batch_size,
            maximum_batching_window,
            function_response_type,
        } => {
            if sqs_queue(arn).is_none() {
                return Err(function_error(
                    name,
                    format!(
                        "sqs event {} is not a queue ARN arn:aws:sqs:REGION:ACCOUNT:NAME; {QUEUE_NAME_RULE}",
                        shown(arn)
                    ),
                ));
            }
            range(name, "batchSize", *batch_size, (1, 10_000), "")?;
            range(
                name,
                "maximumBatchingWindow",
                *maximum_batching_window,
                (0, 300),
                " (seconds)",
            )?;
            if let Some(t) = function_response_type
                .as_deref()
                .filter(|t| *t != "ReportBatchItemFailures")
            {
                return Err(function_error(
                    name,
                    format!(
                        "functionResponseType {} is unknown; it can only be ReportBatchItemFailures",
                        shown(t)
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The queue an `arn:aws:sqs:REGION:ACCOUNT:NAME` names, when the name is a valid one.
pub fn sqs_queue(arn: &str) -> Option<&str> {
    let name = crate::arn::parse_arn(arn)?.queue_name()?;
    valid_queue_name(name).then_some(name)
}

fn check_destinations(function: &str, d: &Destinations) -> Result<(), ValidationError> {
    for raw in [&d.on_success, &d.on_failure].into_iter().flatten() {
        // A malformed SQS ARN is no function name either: both fail below.
        let sqs = crate::arn::parse_arn(raw).is_some_and(|a| a.queue_name().is_some());
        let ok = if sqs {
            sqs_queue(raw).is_some()
        } else {
            let name = crate::arn::function_name_or_self(raw);
            lambda_name_chars(name) && name.len() <= MAX_FUNCTION_NAME && raw.len() <= 256
        };
        if !ok {
            return Err(function_error(
                function,
                format!(
                    "destination {} is invalid; use a function name, a Lambda function ARN, or arn:aws:sqs:REGION:ACCOUNT:QUEUE ({QUEUE_NAME_RULE})",
                    shown(raw)
                ),
            ));
        }
    }
    Ok(())
}

fn check_queues(queues: &[QueueSpec]) -> Result<(), ValidationError> {
    let mut seen = HashSet::new();
    for q in queues {
        let queue_error = |message: String| ValidationError::Queue {
            queue: shown(&q.name).trim_matches('`').to_string(),
            message,
        };
        if !valid_queue_name(&q.name) {
            return Err(queue_error(format!(
                "{QUEUE_NAME_RULE}; shorten the service, stage or construct name"
            )));
        }
        if q.max_receive_count > 0 && !valid_queue_name(&format!("{}-dlq", q.name)) {
            return Err(queue_error(format!(
                "its dead-letter queue {}-dlq is longer than 80 characters; shorten the service, stage or construct name",
                q.name
            )));
        }
        if !seen.insert(q.name.as_str()) {
            return Err(queue_error("is declared twice".to_string()));
        }
        if q.visibility_timeout > 43_200 {
            return Err(queue_error(format!(
                "visibility timeout {} s is above SQS's 43200 (12 hours)",
                q.visibility_timeout
            )));
        }
        if q.max_receive_count > 1000 {
            return Err(queue_error(format!(
                "maxRetries {} is above SQS's 1000",
                q.max_receive_count
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Network, VolumeSpec};
    use std::collections::BTreeMap;

    fn function() -> FunctionSpec {
        FunctionSpec {
            name: "hello".into(),
            handler: "index.php".into(),
            runtime: "php-82".into(),
            kind: RuntimeKind::PhpFunction,
            php_version: Some("8.2".into()),
            memory_size: 1024,
            timeout: 6,
            environment: BTreeMap::new(),
            events: Vec::new(),
            reserved_concurrency: None,
            provisioned_concurrency: 0,
            ephemeral_storage_size: 512,
            maximum_retry_attempts: None,
            maximum_event_age: None,
            destinations: Destinations::default(),
            network: Network::Default,
            volumes: Vec::new(),
        }
    }

    fn spec(f: FunctionSpec) -> ServiceSpec {
        ServiceSpec {
            service: "app".into(),
            stage: "dev".into(),
            region: "us-east-1".into(),
            package_patterns: Vec::new(),
            functions: vec![f],
            queues: Vec::new(),
        }
    }

    fn refused(f: FunctionSpec) -> String {
        match validate(&spec(f), &ValidateOptions::default()) {
            Ok(_) => panic!("accepted"),
            Err(e) => e.to_string(),
        }
    }

    fn route(method: &str, path: &str) -> FunctionSpec {
        FunctionSpec {
            events: vec![EventSpec::HttpApi {
                method: method.into(),
                path: path.into(),
            }],
            ..function()
        }
    }

    fn schedule(expression: &str) -> FunctionSpec {
        FunctionSpec {
            events: vec![EventSpec::Schedule {
                expression: expression.into(),
                input: None,
                enabled: true,
            }],
            ..function()
        }
    }

    fn env(key: &str, value: &str) -> FunctionSpec {
        let mut f = function();
        f.environment.insert(key.into(), value.into());
        f
    }

    #[test]
    fn a_plain_spec_passes() {
        let mut f = route("GET", "/users/{id}");
        f.events.push(EventSpec::HttpApi {
            method: "*".into(),
            path: "*".into(),
        });
        f.environment.insert("APP_ENV".into(), "prod".into());
        f.environment.insert("_PRIVATE".into(), "".into());
        f.volumes.push(VolumeSpec {
            name: "uploads".into(),
            mount_path: "/mnt/uploads".into(),
        });
        assert_eq!(validate(&spec(f), &ValidateOptions::default()), Ok(vec![]));
        let layered = FunctionSpec {
            runtime: "provided.al2023".into(),
            kind: RuntimeKind::PhpFpm,
            ..function()
        };
        assert!(validate(&spec(layered), &ValidateOptions::default()).is_ok());
    }

    #[test]
    fn numbers_outside_lambdas_ranges() {
        let m = refused(FunctionSpec {
            memory_size: 4_000_000_000,
            ..function()
        });
        assert!(m.contains("function hello: `memorySize` is 4000000000; use a whole number from 128 to 10240 (MB)"), "{m}");
        assert!(refused(FunctionSpec {
            timeout: 0,
            ..function()
        })
        .contains("`timeout` is 0"));
        assert!(refused(FunctionSpec {
            timeout: 901,
            ..function()
        })
        .contains("from 1 to 900"));
        assert!(refused(FunctionSpec {
            ephemeral_storage_size: 100,
            ..function()
        })
        .contains("ephemeralStorageSize"));
        assert!(refused(FunctionSpec {
            provisioned_concurrency: 1_000_000,
            ..function()
        })
        .contains("provisionedConcurrency"));
        assert!(refused(FunctionSpec {
            reserved_concurrency: Some(2),
            provisioned_concurrency: 3,
            ..function()
        })
        .contains("above reservedConcurrency"));
        assert!(refused(FunctionSpec {
            maximum_retry_attempts: Some(3),
            ..function()
        })
        .contains("maximumRetryAttempts"));
    }

    #[test]
    fn names() {
        let long = FunctionSpec {
            name: "a".repeat(60),
            ..function()
        };
        assert!(refused(long).contains("Lambda allows 64"));
        assert!(refused(FunctionSpec {
            name: "../x".into(),
            ..function()
        })
        .contains("letters, digits"));
        let mut s = spec(function());
        s.service = "a b".into();
        assert!(validate(&s, &ValidateOptions::default())
            .unwrap_err()
            .to_string()
            .starts_with("service `a b`"));
        let mut s = spec(function());
        s.functions.push(function());
        assert!(validate(&s, &ValidateOptions::default())
            .unwrap_err()
            .to_string()
            .contains("declared twice"));
    }

    #[test]
    fn routes_and_methods() {
        for path in [
            "/_tusk/metrics",
            "/2015-03-31/functions",
            "/2014-11-13/x",
            "/2020-06-30/x",
            "/2021-10-31",
            "no-slash",
            "/a b",
            "/a\u{0}b",
            "/a\nb",
            "/{proxy+}/x",
            "/{a}/{a}",
            "/a{b}",
        ] {
            let m = refused(route("GET", path));
            assert!(
                m.starts_with("function hello: invalid route path"),
                "{path}: {m}"
            );
        }
        assert!(refused(route("G E T", "/x")).contains("HTTP method `G E T` is invalid"));
        assert!(refused(route("get", "/x")).contains("HTTP method"));
        let rest_star = FunctionSpec {
            events: vec![EventSpec::Http {
                method: "*".into(),
                path: "*".into(),
            }],
            ..function()
        };
        assert!(refused(rest_star).contains("invalid route path"));
    }

    #[test]
    fn environment() {
        for key in ["A=B", "A\0", "1ABC", "", "A-B", "A B"] {
            let m = refused(env(key, "x"));
            assert!(m.contains("environment variable name"), "{key}: {m}");
        }
        let m = refused(env("AWS_LAMBDA_RUNTIME_API", "evil:1"));
        assert!(m.contains("AWS_LAMBDA_RUNTIME_API is reserved"), "{m}");
        assert!(refused(env("_HANDLER", "x")).contains("reserved"));
        assert!(refused(env("A", "x\0y")).contains("NUL"));
        let m = refused(env("BIG", &"x".repeat(4094)));
        assert!(m.contains("4097 bytes; Lambda allows 4096"), "{m}");
        assert!(validate(
            &spec(env("BIG", &"x".repeat(4093))),
            &ValidateOptions::default()
        )
        .is_ok());
    }

    #[test]
    fn handler_and_runtime() {
        assert!(refused(FunctionSpec {
            handler: "a\0b".into(),
            ..function()
        })
        .contains("handler `a\\0b` contains"));
        assert!(refused(FunctionSpec {
            handler: String::new(),
            ..function()
        })
        .contains("is empty"));
        assert!(refused(FunctionSpec {
            runtime: "nodejs20.x".into(),
            ..function()
        })
        .contains("not one Tusk runs"));
        assert!(refused(FunctionSpec {
            kind: RuntimeKind::PhpFpm,
            ..function()
        })
        .contains("not one Tusk runs"));
        assert!(refused(FunctionSpec {
            runtime: "provided".into(),
            php_version: Some("../../x".into()),
            ..function()
        })
        .contains("not one Tusk runs"));
    }

    #[test]
    fn schedules() {
        let m = refused(schedule("rate(1 second)"));
        assert!(m.contains("--allow-second-schedules"), "{m}");
        assert!(refused(schedule("rate(90 seconds)")).contains("minimum"));
        assert!(refused(schedule("rate(0 minutes)")).starts_with("function hello: rate(0 minutes)"));
        assert!(refused(schedule("every minute")).contains("neither rate"));
        let opts = ValidateOptions {
            allow_second_schedules: true,
        };
        let warnings = validate(&spec(schedule("rate(1 second)")), &opts).unwrap();
        assert_eq!(warnings.len(), 1);
        assert!(validate(
            &spec(schedule("rate(2 minutes)")),
            &ValidateOptions::default()
        )
        .is_ok());
        assert!(validate(
            &spec(schedule("cron(0 12 * * ? *)")),
            &ValidateOptions::default()
        )
        .is_ok());
    }

    #[test]
    fn queues_and_destinations() {
        assert!(valid_queue_name("jobs"));
        assert!(valid_queue_name("jobs.fifo"));
        assert!(valid_queue_name(&"a".repeat(80)));
        for bad in [
            "",
            "../../x",
            "a.b",
            ".fifo",
            "a b",
            &"a".repeat(81),
            "async:f",
        ] {
            assert!(!valid_queue_name(bad), "{bad}");
        }
        let sqs = FunctionSpec {
            events: vec![EventSpec::Sqs {
                arn: "arn:aws:sqs:us-east-1:000000000000:../../x".into(),
                batch_size: 10,
                maximum_batching_window: 0,
                function_response_type: None,
            }],
            ..function()
        };
        assert!(refused(sqs).contains("is not a queue ARN"));
        let mut f = function();
        f.destinations.on_failure = Some("arn:aws:sqs:us-east-1:0:../../x".into());
        assert!(refused(f).contains("destination"));
        let mut f = function();
        f.destinations.on_success = Some("other-fn".into());
        f.destinations.on_failure =
            Some("arn:aws:lambda:us-east-1:0:function:other-fn:$LATEST".into());
        assert!(validate(&spec(f), &ValidateOptions::default()).is_ok());
        let mut s = spec(function());
        s.queues.push(QueueSpec {
            name: "../../x".into(),
            visibility_timeout: 30,
            max_receive_count: 3,
        });
        let m = validate(&s, &ValidateOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            m.starts_with("queue ../../x: a queue name is 1 to 80"),
            "{m}"
        );
        s.queues[0].name = "a".repeat(78);
        let m = validate(&s, &ValidateOptions::default())
            .unwrap_err()
            .to_string();
        assert!(m.contains("dead-letter queue"), "{m}");
    }
}
