//! `fileSystemConfig` (Lambda's EFS mounts) → named Tusk volumes.

use tusk_manifest::{load_str, FunctionSpec, LoadOptions, VolumeSpec};

const YML: &str = r#"
service: wiki
provider:
  name: aws
  runtime: php-82-fpm
functions:
  web:
    handler: public/index.php
    fileSystemConfig:
      localMountPath: /mnt/uploads
      arn: arn:aws:elasticfilesystem:eu-west-1:123456789012:access-point/fsap-0abc
  worker:
    handler: worker.php
    fileSystemConfig:
      - localMountPath: /mnt/uploads
        volume: shared-files
      - localMountPath: /mnt/cache/sessions
"#;

fn vol(name: &str, at: &str) -> VolumeSpec {
    VolumeSpec {
        name: name.into(),
        mount_path: at.into(),
    }
}

#[test]
fn volumes_are_named_from_the_key_the_access_point_or_the_path() {
    let loaded = load_str("serverless.yml", YML, &LoadOptions::default()).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let f = &loaded.spec.functions;
    assert_eq!(f[0].volumes, vec![vol("fsap-0abc", "/mnt/uploads")]);
    assert_eq!(
        f[1].volumes,
        vec![
            vol("shared-files", "/mnt/uploads"),
            vol("sessions", "/mnt/cache/sessions")
        ]
    );
}

#[test]
fn mount_paths_outside_mnt_are_errors_naming_the_line() {
    let text = YML.replace(
        "localMountPath: /mnt/uploads\n      arn",
        "localMountPath: /var/www\n      arn",
    );
    let err = load_str("serverless.yml", &text, &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("serverless.yml:10:7:"), "{err}");
    assert!(err.contains("under /mnt/"), "{err}");

    let text = YML.replace("/mnt/cache/sessions", "/mnt/../etc");
    let err = load_str("serverless.yml", &text, &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("under /mnt/"), "{err}");
}

#[test]
fn bad_names_and_shapes_are_errors() {
    let text = YML.replace("volume: shared-files", "volume: 'a/b'");
    let err = load_str("serverless.yml", &text, &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("serverless.yml:16:9:"), "{err}");
    assert!(err.contains("volume name `a/b`"), "{err}");

    let text = YML.replace(
        "    fileSystemConfig:\n      localMountPath: /mnt/uploads\n      arn: arn:aws:elasticfilesystem:eu-west-1:123456789012:access-point/fsap-0abc\n",
        "    fileSystemConfig: /mnt/uploads\n",
    );
    let err = load_str("serverless.yml", &text, &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("localMountPath"), "{err}");
}

#[test]
fn specs_stored_before_the_key_existed_still_load() {
    let loaded = load_str("serverless.yml", YML, &LoadOptions::default()).unwrap();
    let mut json = serde_json::to_value(&loaded.spec.functions[0]).unwrap();
    json.as_object_mut().unwrap().remove("volumes");
    let f: FunctionSpec = serde_json::from_value(json).unwrap();
    assert!(f.volumes.is_empty());
}

#[test]
fn specs_from_elsewhere_are_checked_by_is_valid() {
    assert!(vol("data", "/mnt/data").is_valid());
    assert!(vol("fsap-0abc.v2", "/mnt/a/b").is_valid());
    for (name, at) in [
        ("../etc", "/mnt/data"),
        ("a/b", "/mnt/data"),
        ("..", "/mnt/data"),
        ("", "/mnt/data"),
        ("data", "/var/task"),
        ("data", "/mnt/"),
        ("data", "/mnt/../etc"),
        ("data", "/mnt//x"),
    ] {
        assert!(!vol(name, at).is_valid(), "{name} at {at}");
    }
}
