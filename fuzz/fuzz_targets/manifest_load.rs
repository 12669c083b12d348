//! serverless.yml text → `tusk_manifest::load_str`, the function the CLI (and the node, for
//! validation) uses: YAML parsing, merge keys, `${self:}`/`${opt:}`/`${env:}`/`${sls:}`
//! variables, then validation. Invariants: no panic, no hang (libFuzzer's -timeout), every
//! error and warning names the file, and a loaded spec serialises to JSON and back unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;
use std::sync::OnceLock;
use tusk_manifest::{load_str, LoadOptions, ServiceSpec};

const FILE: &str = "serverless.yml";

fn options() -> &'static LoadOptions {
    static OPTS: OnceLock<LoadOptions> = OnceLock::new();
    OPTS.get_or_init(|| LoadOptions {
        stage: Some("prod".into()),
        region: None,
        env: HashMap::from([
            ("HOME".into(), "/root".into()),
            ("APP_ENV".into(), "production".into()),
            ("EMPTY".into(), String::new()),
            ("NESTED".into(), "${env:HOME}".into()),
        ]),
        options: HashMap::from([
            ("stage".into(), "prod".into()),
            ("region".into(), "eu-west-1".into()),
        ]),
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match load_str(FILE, text, options()) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                assert!(w.starts_with(FILE), "warning without the file name: {w}");
            }
            let spec = &loaded.spec;
            assert!(!spec.service.is_empty(), "a loaded spec has a service name");
            for f in &spec.functions {
                assert!(!f.name.is_empty(), "a loaded function has a name");
            }
            let json = serde_json::to_string(spec).expect("a spec serialises");
            let back: ServiceSpec = serde_json::from_str(&json).expect("a spec deserialises");
            assert_eq!(&back, spec, "spec JSON round trip");
        }
        Err(e) => {
            let shown = e.to_string();
            assert!(shown.contains(FILE), "error without the file name: {shown}");
        }
    }
});
