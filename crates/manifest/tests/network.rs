//! `network: none`, Tusk's extension key for functions that must not reach the network.

use tusk_manifest::{load_str, FunctionSpec, LoadOptions, Network};

const YML: &str = r#"
service: iso
provider:
  name: aws
  runtime: php-82
functions:
  open:
    handler: open.php
  closed:
    handler: closed.php
    network: none
"#;

#[test]
fn network_none_is_read_without_warnings() {
    let loaded = load_str("serverless.yml", YML, &LoadOptions::default()).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let f = &loaded.spec.functions;
    assert_eq!(f[0].network, Network::Default);
    assert_eq!(f[1].network, Network::None);
}

#[test]
fn other_network_values_are_errors_naming_the_line() {
    let text = YML.replace("network: none", "network: vpc-123");
    let err = load_str("serverless.yml", &text, &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("serverless.yml:11:5:"), "{err}");
    assert!(err.contains("network: none"), "{err}");
}

#[test]
fn specs_stored_before_the_key_existed_still_load() {
    let loaded = load_str("serverless.yml", YML, &LoadOptions::default()).unwrap();
    let mut json = serde_json::to_value(&loaded.spec.functions[0]).unwrap();
    json.as_object_mut().unwrap().remove("network");
    let f: FunctionSpec = serde_json::from_value(json).unwrap();
    assert_eq!(f.network, Network::Default);
}
