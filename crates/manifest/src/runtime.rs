//! Which process serves a function: from the runtime name, or from Bref layers on `provided*`.

use crate::RuntimeKind;

/// The PHP version Tusk nodes ship; other versions load with a warning.
pub(crate) const INSTALLED_PHP: &str = "8.2";

pub(crate) const SUPPORTED: &str = "php-82, php-82-fpm, php-82-console (also php-81, php-83, php-84 and their -fpm/-console forms), provided.al2023, provided.al2, provided";

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Detected {
    pub kind: RuntimeKind,
    pub php_version: Option<String>,
}

/// What went wrong, and whether the runtime name or the layers list is to blame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DetectError {
    /// The runtime name is not one Tusk runs.
    UnknownRuntime,
    Layers(String),
}

#[derive(Debug, PartialEq, Eq)]
enum Layer {
    Php {
        version: String,
        fpm: bool,
    },
    Console,
    /// `${bref-extra:...}`: PHP extensions come from the node instead.
    Extra(String),
    Other(String),
}

/// `runtime` as written; `layers` after variable resolution (`${bref:layer.X}` is
/// `bref:layer.X` by then). Notes about ignored layers go to `notes`.
pub(crate) fn detect(
    runtime: &str,
    layers: &[String],
    notes: &mut Vec<String>,
) -> Result<Detected, DetectError> {
    let mut php = Vec::new();
    let mut console = false;
    for layer in layers {
        match classify(layer) {
            Layer::Php { version, fpm } => php.push((layer.as_str(), version, fpm)),
            Layer::Console => console = true,
            Layer::Extra(name) => notes.push(format!(
                "layer `{name}` (Bref extra extension) is ignored: Tusk uses the PHP extensions installed on the node"
            )),
            Layer::Other(name) => notes.push(format!(
                "layer `{name}` is not supported by Tusk; ignored (install what it provides on the node)"
            )),
        }
    }
    let runtime = runtime.trim();
    if let Some((version, kind)) = php_name(runtime) {
        if !php.is_empty() {
            notes.push(format!(
                "Bref PHP layers are ignored: runtime `{runtime}` already provides PHP"
            ));
        }
        // Bref 1 style: a PHP function runtime plus the console layer.
        let kind = if console && kind == RuntimeKind::PhpFunction {
            RuntimeKind::PhpConsole
        } else {
            kind
        };
        return Ok(Detected {
            kind,
            php_version: Some(version),
        });
    }
    if !matches!(runtime, "provided" | "provided.al2" | "provided.al2023") {
        return Err(DetectError::UnknownRuntime);
    }
    match php.as_slice() {
        [] if console => Err(DetectError::Layers(
            "the Bref console layer needs a PHP layer too: add ${bref:layer.php-82} to `layers`"
                .to_string(),
        )),
        [] => Ok(Detected {
            kind: RuntimeKind::Provided,
            php_version: None,
        }),
        [(_, version, fpm)] => {
            let kind = match (console, fpm) {
                (true, _) => RuntimeKind::PhpConsole,
                (false, true) => RuntimeKind::PhpFpm,
                (false, false) => RuntimeKind::PhpFunction,
            };
            Ok(Detected {
                kind,
                php_version: Some(version.clone()),
            })
        }
        several => {
            let names: Vec<&str> = several.iter().map(|(name, _, _)| *name).collect();
            Err(DetectError::Layers(format!(
                "several Bref PHP layers ({}); keep exactly one",
                names.join(", ")
            )))
        }
    }
}

/// `php-82` → (8.2, function), `php-82-fpm` → fpm, `php-82-console` → console.
pub(crate) fn php_name(name: &str) -> Option<(String, RuntimeKind)> {
    let rest = name.strip_prefix("php-")?;
    let (digits, kind) = match rest.split_once('-') {
        None => (rest, RuntimeKind::PhpFunction),
        Some((d, "fpm")) => (d, RuntimeKind::PhpFpm),
        Some((d, "console")) => (d, RuntimeKind::PhpConsole),
        Some(_) => return None,
    };
    let mut chars = digits.chars();
    match (chars.next(), chars.next(), chars.next()) {
        (Some(major @ ('7' | '8')), Some(minor), None) if minor.is_ascii_digit() => {
            Some((format!("{major}.{minor}"), kind))
        }
        _ => None,
    }
}

/// Recognises `bref:layer.php-82-fpm` markers and real layer ARNs such as
/// `arn:aws:lambda:us-east-1:534081306603:layer:php-82-fpm:60`.
fn classify(layer: &str) -> Layer {
    let layer = layer.trim();
    if let Some(name) = layer.strip_prefix("bref-extra:") {
        return Layer::Extra(name.to_string());
    }
    let name = if let Some(name) = layer.strip_prefix("bref:layer.") {
        name
    } else if let Some(at) = layer.find(":layer:") {
        layer[at + ":layer:".len()..]
            .split(':')
            .next()
            .unwrap_or("")
    } else {
        return Layer::Other(layer.to_string());
    };
    // Bref publishes ARM builds as `arm-php-82`.
    let name = name.strip_prefix("arm-").unwrap_or(name);
    match (name, php_name(name)) {
        ("console", _) => Layer::Console,
        (_, Some((version, RuntimeKind::PhpFunction))) => Layer::Php {
            version,
            fpm: false,
        },
        (_, Some((version, RuntimeKind::PhpFpm))) => Layer::Php { version, fpm: true },
        _ => Layer::Other(layer.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(runtime: &str, layers: &[&str]) -> Result<(RuntimeKind, Option<String>), DetectError> {
        let layers: Vec<String> = layers.iter().map(|s| s.to_string()).collect();
        detect(runtime, &layers, &mut Vec::new()).map(|d| (d.kind, d.php_version))
    }

    fn v(s: &str) -> Option<String> {
        Some(s.to_string())
    }

    #[test]
    fn runtime_names() {
        assert_eq!(run("php-82", &[]), Ok((RuntimeKind::PhpFunction, v("8.2"))));
        assert_eq!(run("php-83-fpm", &[]), Ok((RuntimeKind::PhpFpm, v("8.3"))));
        assert_eq!(
            run("php-84-console", &[]),
            Ok((RuntimeKind::PhpConsole, v("8.4")))
        );
        assert_eq!(run("php-81", &[]), Ok((RuntimeKind::PhpFunction, v("8.1"))));
        assert_eq!(
            run("provided.al2023", &[]),
            Ok((RuntimeKind::Provided, None))
        );
        assert_eq!(run("provided", &[]), Ok((RuntimeKind::Provided, None)));
        for bad in [
            "php-99-xyz",
            "nodejs18.x",
            "php-8",
            "php-82-web",
            "php-99",
            "python3.12",
        ] {
            assert_eq!(run(bad, &[]), Err(DetectError::UnknownRuntime), "{bad}");
        }
    }

    #[test]
    fn layer_markers_and_arns() {
        assert_eq!(
            run("provided.al2", &["bref:layer.php-82"]),
            Ok((RuntimeKind::PhpFunction, v("8.2")))
        );
        assert_eq!(
            run("provided.al2023", &["bref:layer.php-83-fpm"]),
            Ok((RuntimeKind::PhpFpm, v("8.3")))
        );
        assert_eq!(
            run("provided.al2", &["bref:layer.php-82", "bref:layer.console"]),
            Ok((RuntimeKind::PhpConsole, v("8.2")))
        );
        assert_eq!(
            run(
                "provided.al2",
                &["arn:aws:lambda:us-east-1:534081306603:layer:php-82-fpm:60"]
            ),
            Ok((RuntimeKind::PhpFpm, v("8.2")))
        );
        assert_eq!(
            run(
                "provided.al2",
                &["arn:aws:lambda:eu-west-1:534081306603:layer:arm-php-84:12"]
            ),
            Ok((RuntimeKind::PhpFunction, v("8.4")))
        );
        assert!(matches!(
            run("provided.al2", &["bref:layer.console"]),
            Err(DetectError::Layers(_))
        ));
        assert!(matches!(
            run("provided.al2", &["bref:layer.php-82", "bref:layer.php-83-fpm"]),
            Err(DetectError::Layers(m)) if m.contains("keep exactly one")
        ));
    }

    #[test]
    fn other_layers_are_noted() {
        let mut notes = Vec::new();
        let layers = vec![
            "bref:layer.php-82-fpm".to_string(),
            "bref-extra:redis-php-82".to_string(),
            "arn:aws:lambda:us-east-1:1:layer:datadog:3".to_string(),
        ];
        let d = detect("provided.al2", &layers, &mut notes).unwrap();
        assert_eq!(d.kind, RuntimeKind::PhpFpm);
        assert_eq!(notes.len(), 2);
        assert!(notes[0].contains("redis-php-82"));
        assert!(notes[1].contains("datadog"));
    }
}
