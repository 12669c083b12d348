//! End-to-end: `serverless.yml` text in, `ServiceSpec` (or a located error) out.
//!
//! Long on purpose: one test per documented serverless.yml behaviour.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use tusk_manifest::{
    load_dir, load_str, EventSpec, LoadOptions, Loaded, ManifestError, RuntimeKind,
};

fn load(text: &str) -> Loaded {
    load_with(text, &LoadOptions::default())
}

fn load_with(text: &str, opts: &LoadOptions) -> Loaded {
    match load_str("serverless.yml", text, opts) {
        Ok(loaded) => loaded,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

fn error(text: &str) -> String {
    error_with(text, &LoadOptions::default())
}

fn error_with(text: &str, opts: &LoadOptions) -> String {
    match load_str("serverless.yml", text, opts) {
        Ok(loaded) => panic!("expected an error, got {:?}", loaded.spec),
        Err(e) => e.to_string(),
    }
}

fn has_warning(loaded: &Loaded, needle: &str) -> bool {
    loaded.warnings.iter().any(|w| w.contains(needle))
}

const BREF_PROJECT: &str = r#"
service: my-app

provider:
  name: aws
  region: eu-west-3
  runtime: php-82
  environment:
    APP_ENV: prod
    LOG_LEVEL: info

plugins:
  - ./vendor/bref/bref

package:
  patterns:
    - '!node_modules/**'
    - '!tests/**'
    - 'tests/fixtures/keep.json'

functions:
  hello:
    handler: index.php
    description: 'Greets'
    events:
      - schedule: rate(5 minutes)
  web:
    handler: public/index.php
    runtime: php-82-fpm
    timeout: 28
    environment:
      LOG_LEVEL: debug
    events:
      - httpApi: '*'
  console:
    handler: bin/console
    runtime: php-82-console
    timeout: 120
"#;

#[test]
fn typical_bref_project() {
    let loaded = load(BREF_PROJECT);
    let spec = &loaded.spec;
    assert_eq!(spec.service, "my-app");
    assert_eq!(spec.stage, "dev");
    assert_eq!(spec.region, "eu-west-3");
    assert_eq!(
        spec.package_patterns,
        vec!["!node_modules/**", "!tests/**", "tests/fixtures/keep.json"]
    );
    let names: Vec<&str> = spec.functions.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, vec!["hello", "web", "console"]);

    let hello = &spec.functions[0];
    assert_eq!(hello.kind, RuntimeKind::PhpFunction);
    assert_eq!(hello.php_version.as_deref(), Some("8.2"));
    assert_eq!(hello.runtime, "php-82");
    assert_eq!(hello.handler, "index.php");
    assert_eq!(
        (
            hello.memory_size,
            hello.timeout,
            hello.ephemeral_storage_size
        ),
        (1024, 6, 512)
    );
    assert_eq!(hello.reserved_concurrency, None);
    assert_eq!(hello.provisioned_concurrency, 0);
    assert_eq!(
        hello.events,
        vec![EventSpec::Schedule {
            expression: "rate(5 minutes)".into(),
            input: None,
            enabled: true
        }]
    );
    assert_eq!(hello.environment["LOG_LEVEL"], "info");

    let web = &spec.functions[1];
    assert_eq!(web.kind, RuntimeKind::PhpFpm);
    assert_eq!(web.handler, "public/index.php");
    assert_eq!(web.timeout, 28);
    assert_eq!(
        web.events,
        vec![EventSpec::HttpApi {
            method: "*".into(),
            path: "*".into()
        }]
    );
    let expected: BTreeMap<String, String> = [("APP_ENV", "prod"), ("LOG_LEVEL", "debug")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(web.environment, expected);

    let console = &spec.functions[2];
    assert_eq!(console.kind, RuntimeKind::PhpConsole);
    assert_eq!(console.timeout, 120);
    assert!(console.events.is_empty());

    assert_eq!(spec.function_name(web), "my-app-dev-web");
    // Only the plugin note: the description is harmless and silent.
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
}

#[test]
fn plugins_warning_names_them_with_its_line() {
    let loaded = load(BREF_PROJECT);
    assert!(
        loaded.warnings[0].starts_with("serverless.yml:12:1:"),
        "{:?}",
        loaded.warnings
    );
    assert!(loaded.warnings[0].contains("./vendor/bref/bref"));

    let loaded = load("service: a\nplugins:\n  - serverless-lift\n  - serverless-offline\nprovider: {runtime: php-82}\nfunctions: {}\n");
    assert!(
        has_warning(&loaded, "ignored: serverless-lift, serverless-offline"),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn layer_form() {
    let loaded = load(
        r#"
service: app
provider:
  name: aws
  runtime: provided.al2023
  layers:
    - ${bref:layer.php-82}
functions:
  api:
    handler: public/index.php
    layers:
      - ${bref:layer.php-83-fpm}
  worker:
    handler: worker.php
  artisan:
    handler: artisan
    runtime: provided.al2
    layers:
      - ${bref:layer.php-82}
      - ${bref:layer.console}
  arn:
    handler: public/index.php
    layers:
      - arn:aws:lambda:us-east-1:534081306603:layer:php-82-fpm:60
  custom:
    handler: function.handler
    layers: []
"#,
    );
    let f = &loaded.spec.functions;
    assert_eq!(
        (f[0].kind, f[0].php_version.as_deref()),
        (RuntimeKind::PhpFpm, Some("8.3"))
    );
    assert_eq!(
        (f[1].kind, f[1].php_version.as_deref()),
        (RuntimeKind::PhpFunction, Some("8.2"))
    );
    assert_eq!(
        (f[2].kind, f[2].php_version.as_deref()),
        (RuntimeKind::PhpConsole, Some("8.2"))
    );
    assert_eq!(
        (f[3].kind, f[3].php_version.as_deref()),
        (RuntimeKind::PhpFpm, Some("8.2"))
    );
    assert_eq!(
        (f[4].kind, f[4].php_version.as_deref()),
        (RuntimeKind::Provided, None)
    );
    assert_eq!(f[4].handler, "function.handler");
    assert_eq!(f[0].runtime, "provided.al2023");
    // PHP 8.3 was asked for: a warning, not an error, pointing at the runtime line.
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert!(
        loaded.warnings[0].starts_with("serverless.yml:5:3:"),
        "{:?}",
        loaded.warnings
    );
    assert!(loaded.warnings[0].contains("runs on the installed PHP 8.2"));
}

#[test]
fn other_php_versions_warn() {
    let loaded = load("service: a\nprovider: {runtime: php-84}\nfunctions:\n  f:\n    handler: x.php\n    runtime: php-83-fpm\n");
    assert_eq!(loaded.spec.functions[0].php_version.as_deref(), Some("8.3"));
    assert!(
        loaded.warnings[0].starts_with("serverless.yml:6:5:"),
        "{:?}",
        loaded.warnings
    );
    assert!(loaded.warnings[0].contains("asks for PHP 8.3"));
}

#[test]
fn unknown_runtime_names_its_line() {
    let text = "service: app\nprovider:\n  name: aws\nfunctions:\n  hello:\n    handler: index.php\n    runtime: php-99-xyz\n";
    let e = error(text);
    assert!(e.starts_with("serverless.yml:7:5: unknown runtime `php-99-xyz` for function `hello`; use one of php-82, php-82-fpm, php-82-console"), "{e}");
    assert!(e.contains("provided.al2023"), "{e}");

    // Inherited from the provider: the provider's line is the one to fix.
    let e = error("service: app\nprovider:\n  runtime: nodejs18.x\nfunctions:\n  hello:\n    handler: index.handler\n");
    assert!(
        e.starts_with("serverless.yml:3:3: unknown runtime `nodejs18.x`"),
        "{e}"
    );
}

#[test]
fn missing_handler_and_runtime_name_the_function() {
    let e = error(
        "service: app\nprovider:\n  runtime: php-82\nfunctions:\n  hello:\n    timeout: 10\n",
    );
    assert!(
        e.starts_with("serverless.yml:5:3: function `hello` has no `handler`"),
        "{e}"
    );
    let e = error("service: app\nfunctions:\n  hello:\n    handler: index.php\n");
    assert!(
        e.starts_with("serverless.yml:3:3: function `hello` has no runtime"),
        "{e}"
    );
    let e = error("service: app\nprovider: {runtime: php-82}\nfunctions:\n  hello:\n");
    assert!(
        e.starts_with("serverless.yml:4:3: function `hello` is empty"),
        "{e}"
    );
}

#[test]
fn malformed_yaml_names_the_line() {
    let e =
        error("service: app\nprovider:\n  runtime: php-82\n functions:\n  hello: {handler: x}\n");
    assert!(e.starts_with("serverless.yml:4:"), "{e}");
    assert!(e.contains("invalid YAML"), "{e}");

    let e = error("service: app\nfunctions:\n  hello:\n    handler: 'unterminated\n");
    assert!(e.contains("serverless.yml:"), "{e}");

    let e = error("service: app\nfunctions:\n  a: {handler: x}\n  a: {handler: y}\n");
    assert!(e.starts_with("serverless.yml:4:3:"), "{e}");
    assert!(e.contains("duplicate"), "{e}");

    let e = error("service: app\nfunctions:\n  a:\n    events:\n      - http:\n          path: /x\n          method: get\n          path: /y\n");
    assert!(e.starts_with("serverless.yml:8:11:"), "{e}");

    let err = load_str("serverless.yml", "key: [1, 2\n", &LoadOptions::default()).unwrap_err();
    assert!(matches!(err, ManifestError::Syntax { .. }));
    assert!(err.line().is_some());
}

#[test]
fn defaults_and_overrides() {
    let loaded = load(
        r#"
service: app
provider:
  runtime: php-82
  memorySize: 512
  timeout: 10
functions:
  a:
    handler: a.php
  b:
    handler: b.php
    memorySize: 2048
    timeout: '30'
    ephemeralStorageSize: 1024
    reservedConcurrency: 5
    provisionedConcurrency: 2
"#,
    );
    let [a, b] = loaded.spec.functions.as_slice() else {
        panic!("two functions")
    };
    assert_eq!(
        (a.memory_size, a.timeout, a.ephemeral_storage_size),
        (512, 10, 512)
    );
    assert_eq!(
        (b.memory_size, b.timeout, b.ephemeral_storage_size),
        (2048, 30, 1024)
    );
    assert_eq!(
        (b.reserved_concurrency, b.provisioned_concurrency),
        (Some(5), 2)
    );
}

#[test]
fn limits_are_validated_with_lines() {
    let base = "service: app\nprovider:\n  runtime: php-82\nfunctions:\n  f:\n    handler: f.php\n";
    for (line, what) in [
        ("memorySize: 64", "memorySize"),
        ("memorySize: 20000", "memorySize"),
        ("timeout: 0", "timeout"),
        ("timeout: 901", "timeout"),
        ("timeout: 1.5", "timeout"),
        ("ephemeralStorageSize: 100", "ephemeralStorageSize"),
        ("reservedConcurrency: -1", "reservedConcurrency"),
    ] {
        let e = error(&format!("{base}    {line}\n"));
        assert!(e.starts_with("serverless.yml:7:5:"), "{line}: {e}");
        assert!(e.contains(what), "{e}");
    }
    let e = error(&format!(
        "{base}    reservedConcurrency: 1\n    provisionedConcurrency: 3\n"
    ));
    assert!(e.starts_with("serverless.yml:8:5:"), "{e}");
}

#[test]
fn environment_scalars_become_strings() {
    let loaded = load(
        "service: app\nprovider:\n  runtime: php-82\n  environment:\n    A: 1\n    B: true\n    C: 1.5\n    D: keep\nfunctions:\n  f:\n    handler: f.php\n    environment:\n      D: ~\n      E: ''\n",
    );
    let env = &loaded.spec.functions[0].environment;
    assert_eq!(env.get("A").map(String::as_str), Some("1"));
    assert_eq!(env.get("B").map(String::as_str), Some("true"));
    assert_eq!(env.get("C").map(String::as_str), Some("1.5"));
    assert_eq!(env.get("D"), None);
    assert_eq!(env.get("E").map(String::as_str), Some(""));
    let e = error("service: app\nprovider: {runtime: php-82}\nfunctions:\n  f:\n    handler: f.php\n    environment:\n      X: [1]\n");
    assert!(e.starts_with("serverless.yml:7:7:"), "{e}");
}

fn options() -> LoadOptions {
    let env: HashMap<String, String> = [
        ("DB_HOST", "db.internal"),
        ("MEMORY", "2048"),
        ("APP_STAGE", "qa"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    LoadOptions {
        env,
        ..LoadOptions::default()
    }
}

const WITH_VARIABLES: &str = r#"
service: app
custom:
  memory: 256
  domains:
    prod: example.com
    qa: qa.example.com
  settings:
    LEVEL: ${opt:level, 'warning'}
provider:
  name: aws
  stage: ${opt:stage, ${env:APP_STAGE, 'dev'}}
  runtime: php-82
  environment:
    DB_HOST: ${env:DB_HOST}
    DB_PORT: ${env:DB_PORT, 3306}
    DOMAIN: ${self:custom.domains.${sls:stage}}
    URL: 'https://${self:custom.domains.${sls:stage}}/${sls:stage}/${aws:region}'
    STAGE_OPT: ${opt:stage, 'none'}
functions:
  api:
    handler: public/index.php
    runtime: php-82-fpm
    memorySize: ${env:MEMORY}
    timeout: ${self:custom.missing, 12}
    environment: ${self:custom.settings}
  small:
    handler: small.php
    memorySize: ${self:custom.memory}
"#;

#[test]
fn every_variable_kind() {
    let loaded = load_with(WITH_VARIABLES, &options());
    let spec = &loaded.spec;
    assert_eq!(spec.stage, "qa");
    let api = &spec.functions[0];
    assert_eq!(api.memory_size, 2048);
    assert_eq!(api.timeout, 12);
    assert_eq!(api.environment["DB_HOST"], "db.internal");
    assert_eq!(api.environment["DB_PORT"], "3306");
    assert_eq!(api.environment["DOMAIN"], "qa.example.com");
    assert_eq!(
        api.environment["URL"],
        "https://qa.example.com/qa/us-east-1"
    );
    assert_eq!(api.environment["STAGE_OPT"], "none");
    assert_eq!(api.environment["LEVEL"], "warning");
    assert_eq!(spec.functions[1].memory_size, 256);
}

#[test]
fn cli_stage_region_and_options_win() {
    let mut opts = options();
    opts.stage = Some("prod".into());
    opts.region = Some("eu-central-1".into());
    opts.options.insert("level".into(), "debug".into());
    let loaded = load_with(WITH_VARIABLES, &opts);
    assert_eq!(
        (loaded.spec.stage.as_str(), loaded.spec.region.as_str()),
        ("prod", "eu-central-1")
    );
    let api = &loaded.spec.functions[0];
    assert_eq!(
        api.environment["URL"],
        "https://example.com/prod/eu-central-1"
    );
    assert_eq!(api.environment["STAGE_OPT"], "prod");
    assert_eq!(api.environment["LEVEL"], "debug");
}

#[test]
fn unresolvable_variables_name_the_line() {
    let mut opts = options();
    opts.env.remove("DB_HOST");
    let e = error_with(WITH_VARIABLES, &opts);
    assert!(
        e.starts_with("serverless.yml:15:5: cannot resolve `${env:DB_HOST}`"),
        "{e}"
    );
    assert!(e.contains("environment variable DB_HOST is not set"), "{e}");

    let e = error("service: app\nprovider:\n  runtime: php-82\n  environment:\n    KEY: ${ssm:/app/key}\nfunctions: {}\n");
    assert!(e.starts_with("serverless.yml:5:5:"), "{e}");
    assert!(
        e.contains("not supported by Tusk") && e.contains("${env:NAME}"),
        "{e}"
    );

    let e = error("service: app\nprovider:\n  runtime: php-82\nfunctions:\n  f:\n    handler: ${self:custom.handler}\n");
    assert!(e.starts_with("serverless.yml:6:5:"), "{e}");
    assert!(e.contains("custom.handler"), "{e}");

    let e = error("service: ${opt:service}\nprovider: {runtime: php-82}\n");
    assert!(e.starts_with("serverless.yml:1:1:"), "{e}");
    assert!(e.contains("option --service was not given"), "{e}");
}

#[test]
fn variables_in_ignored_keys_do_not_fail() {
    let loaded = load(
        r#"
service: app
provider:
  runtime: php-82
  iam:
    role:
      statements:
        - Effect: Allow
          Resource: ${cf:other-stack.QueueArn}
functions:
  f:
    handler: f.php
    vpc:
      securityGroupIds: ['${ssm:/vpc/sg}']
resources:
  Resources:
    Queue:
      Type: AWS::SQS::Queue
      Properties:
        QueueName: !Sub '${AWS::StackName}-queue'
"#,
    );
    assert_eq!(loaded.spec.functions.len(), 1);
    assert!(
        has_warning(&loaded, "provider.iam"),
        "{:?}",
        loaded.warnings
    );
    assert!(has_warning(&loaded, "`vpc`"), "{:?}", loaded.warnings);
    assert!(has_warning(&loaded, "`resources`"), "{:?}", loaded.warnings);
}

#[test]
fn each_event_form() {
    let loaded = load(
        r#"
service: app
provider:
  runtime: php-82
functions:
  f:
    handler: f.php
    events:
      - httpApi: 'GET /users/{id}'
      - httpApi:
          method: post
          path: /users
      - httpApi: {method: ANY, path: /any}
      - http: 'ANY /{proxy+}'
      - http: 'GET hello'
      - http:
          method: delete
          path: /items/{id}
      - schedule: cron(0 12 * * ? *)
      - schedule:
          rate:
            - rate(1 hour)
            - cron(0 0 * * ? *)
          enabled: false
          input:
            job: cleanup
            ids: [1, 2]
      - sqs: arn:aws:sqs:us-east-1:123456789012:jobs
      - sqs:
          arn: arn:aws:sqs:us-east-1:123456789012:mail
          batchSize: 1
          maximumBatchingWindow: 5
          functionResponseType: ReportBatchItemFailures
"#,
    );
    let http_api = |m: &str, p: &str| EventSpec::HttpApi {
        method: m.into(),
        path: p.into(),
    };
    let http = |m: &str, p: &str| EventSpec::Http {
        method: m.into(),
        path: p.into(),
    };
    let input = Some(serde_json::json!({"job": "cleanup", "ids": [1, 2]}));
    assert_eq!(
        loaded.spec.functions[0].events,
        vec![
            http_api("GET", "/users/{id}"),
            http_api("POST", "/users"),
            http_api("*", "/any"),
            http("*", "/{proxy+}"),
            http("GET", "/hello"),
            http("DELETE", "/items/{id}"),
            EventSpec::Schedule {
                expression: "cron(0 12 * * ? *)".into(),
                input: None,
                enabled: true
            },
            EventSpec::Schedule {
                expression: "rate(1 hour)".into(),
                input: input.clone(),
                enabled: false
            },
            EventSpec::Schedule {
                expression: "cron(0 0 * * ? *)".into(),
                input,
                enabled: false
            },
            EventSpec::Sqs {
                arn: "arn:aws:sqs:us-east-1:123456789012:jobs".into(),
                batch_size: 10,
                maximum_batching_window: 0,
                function_response_type: None
            },
            EventSpec::Sqs {
                arn: "arn:aws:sqs:us-east-1:123456789012:mail".into(),
                batch_size: 1,
                maximum_batching_window: 5,
                function_response_type: Some("ReportBatchItemFailures".into())
            },
        ]
    );
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn bad_events_name_their_line() {
    let base = "service: app\nprovider:\n  runtime: php-82\nfunctions:\n  f:\n    handler: f.php\n    events:\n";
    let e = error(&format!("{base}      - httpApi: 'GET /a/{{rest+}}/b'\n"));
    assert!(e.starts_with("serverless.yml:8:9:"), "{e}");
    assert!(e.contains("{proxy+} must be the last segment"), "{e}");
    let e = error(&format!(
        "{base}      - schedule:\n          rate: every day\n"
    ));
    assert!(e.starts_with("serverless.yml:9:11:"), "{e}");
    let e = error(&format!(
        "{base}      - sqs:\n          arn: arn:aws:sqs:us-east-1:1:q\n          batchSize: 0\n"
    ));
    assert!(e.starts_with("serverless.yml:10:11:"), "{e}");
    let e = error(&format!(
        "{base}      - httpApi: {{method: get, path: '/_tusk/x'}}\n"
    ));
    assert!(e.contains("reserved"), "{e}");
    let e = error(&format!("{base}      - httpApi: '*'\n      - httpApi\n"));
    assert!(e.starts_with("serverless.yml:9:7:"), "{e}");
}

#[test]
fn duplicate_routes_are_refused() {
    let e = error(
        "service: app\nprovider: {runtime: php-82}\nfunctions:\n  a:\n    handler: a.php\n    events:\n      - httpApi: 'GET /x'\n  b:\n    handler: b.php\n    events:\n      - httpApi: 'get /x'\n",
    );
    assert!(e.starts_with("serverless.yml:11:7:"), "{e}");
    assert!(e.contains("already used by function `a`"), "{e}");
}

#[test]
fn unsupported_events_and_aws_keys_warn() {
    let loaded = load(
        r#"
service: app
frameworkVersion: '3'
provider:
  name: aws
  runtime: php-82
  deploymentMethod: direct
  vpc: {subnetIds: [a]}
functions:
  f:
    handler: f.php
    url: true
    role: arn:aws:iam::1:role/x
    events:
      - s3: photos
      - sns: topic
      - eventBridge:
          pattern: {source: [x]}
      - httpApi: '*'
constructs:
  files: {type: storage}
layers:
  mine: {path: layer}
"#,
    );
    let w = &loaded.warnings;
    assert!(
        w.iter().any(|w| w.starts_with("serverless.yml:15:9:")
            && w.contains("event type s3 is not supported by Tusk yet; ignored")),
        "{w:?}"
    );
    assert!(has_warning(&loaded, "event type sns"));
    assert!(has_warning(&loaded, "event type eventBridge"));
    assert!(has_warning(&loaded, "provider.vpc"));
    assert!(has_warning(&loaded, "`url`"));
    assert!(has_warning(&loaded, "`role`"));
    assert!(has_warning(&loaded, "construct `files` of type `storage`"));
    assert!(has_warning(&loaded, "`layers` has no meaning"));
    assert!(!has_warning(&loaded, "deploymentMethod"), "{w:?}");
    assert!(!has_warning(&loaded, "frameworkVersion"), "{w:?}");
    assert_eq!(loaded.spec.functions[0].events.len(), 1);
}

#[test]
fn service_and_provider_checks() {
    assert_eq!(
        load("service:\n  name: named\nprovider: {runtime: php-82}\n")
            .spec
            .service,
        "named"
    );
    let e = error("provider: {runtime: php-82}\nfunctions: {}\n");
    assert!(e.contains("missing `service`"), "{e}");
    let e = error("service: my_app\n");
    assert!(e.starts_with("serverless.yml:1:1:"), "{e}");
    let e = error("service: app\nprovider:\n  name: google\n");
    assert!(
        e.starts_with("serverless.yml:3:3:") && e.contains("set `name: aws`"),
        "{e}"
    );
    assert!(error("# nothing\n").starts_with("serverless.yml: the file is empty"));
    let e = error("- a\n- b\n");
    assert!(
        e.starts_with("serverless.yml: expected a YAML mapping"),
        "{e}"
    );
}

#[test]
fn merge_keys_and_anchors() {
    let loaded = load(
        "service: app\nprovider: {runtime: php-82}\ncustom:\n  base: &base\n    handler: base.php\n    timeout: 20\nfunctions:\n  a:\n    <<: *base\n    memorySize: 256\n",
    );
    let a = &loaded.spec.functions[0];
    assert_eq!(
        (a.handler.as_str(), a.timeout, a.memory_size),
        ("base.php", 20, 256)
    );
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("tusk-manifest-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.0.join(name), text).unwrap();
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn load_dir_reads_yml_then_yaml_and_file_variables() {
    let dir = TempDir::new("dir");
    let e = load_dir(&dir.0, &LoadOptions::default()).unwrap_err();
    assert!(matches!(e, ManifestError::NotFound { .. }));
    assert!(e.to_string().contains("no serverless.yml"), "{e}");

    dir.write(
        "serverless.yaml",
        "service: app\nprovider:\n  runtime: php-82\n  environment: ${file(./env.${sls:stage}.yml)}\nfunctions:\n  f:\n    handler: f.php\n    timeout: ${file(./config.json):timeout}\n    memorySize: ${file(./nope.yml):m, 256}\n",
    );
    dir.write("env.dev.yml", "A: a\nB: ${sls:stage}\n");
    dir.write("config.json", "{\"timeout\": 42}");
    let loaded = load_dir(&dir.0, &LoadOptions::default()).unwrap();
    let f = &loaded.spec.functions[0];
    assert_eq!((f.timeout, f.memory_size), (42, 256));
    assert_eq!(f.environment["A"], "a");
    assert_eq!(f.environment["B"], "dev");

    let e = load_dir(
        &dir.0,
        &LoadOptions {
            stage: Some("prod".into()),
            ..LoadOptions::default()
        },
    )
    .unwrap_err();
    let e = e.to_string();
    assert!(e.contains("serverless.yaml:4:3:"), "{e}");
    assert!(e.contains("env.prod.yml does not exist"), "{e}");
}

#[test]
fn errors_in_load_dir_carry_the_path() {
    let dir = TempDir::new("path");
    dir.write(
        "serverless.yml",
        "service: app\nprovider:\n  runtime: php-99-xyz\nfunctions:\n  f: {handler: f.php}\n",
    );
    let e = load_dir(&dir.0, &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!("{}:3:3:", dir.0.join("serverless.yml").display())),
        "{e}"
    );
}

#[test]
fn lift_queue_constructs_destinations_and_async_settings() {
    let loaded = load(
        r#"
service: shop
provider:
  name: aws
  runtime: php-82
functions:
  api:
    handler: api.php
    maximumRetryAttempts: 1
    maximumEventAge: 120
    destinations:
      onSuccess: other
      onFailure: arn:aws:sqs:us-east-1:000000000000:failed
    environment:
      QUEUE_URL: ${construct:jobs.queueUrl}
      QUEUE_ARN: ${construct:jobs.queueArn}
constructs:
  jobs:
    type: queue
    maxRetries: 5
    batchSize: 10
    worker:
      handler: worker.php
      timeout: 20
"#,
    );
    let spec = &loaded.spec;
    let api = &spec.functions[0];
    assert_eq!(api.maximum_retry_attempts, Some(1));
    assert_eq!(api.maximum_event_age, Some(120));
    assert_eq!(api.destinations.on_success.as_deref(), Some("other"));
    assert_eq!(api.environment["QUEUE_URL"], "tusk:queue-url:shop-dev-jobs");
    assert_eq!(
        api.environment["QUEUE_ARN"],
        "arn:aws:sqs:us-east-1:000000000000:shop-dev-jobs"
    );
    let worker = &spec.functions[1];
    assert_eq!(worker.name, "jobsWorker");
    assert_eq!(worker.handler, "worker.php");
    assert_eq!(
        worker.events,
        vec![tusk_manifest::EventSpec::Sqs {
            arn: "arn:aws:sqs:us-east-1:000000000000:shop-dev-jobs".into(),
            batch_size: 10,
            maximum_batching_window: 0,
            function_response_type: Some("ReportBatchItemFailures".into()),
        }]
    );
    assert_eq!(
        spec.queues,
        vec![tusk_manifest::QueueSpec {
            name: "shop-dev-jobs".into(),
            visibility_timeout: 120,
            max_receive_count: 5,
        }]
    );
}
