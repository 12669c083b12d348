//! AWS identifiers as Tusk spells them: the one account id, the one default region, queue URLs
//! and ARNs, built and parsed here and nowhere else (except Bref layer ARNs, which `runtime.rs`
//! only searches for a layer name).
//!
//! Tusk is one account in one partition: every ARN it writes uses [`ACCOUNT_ID`], and the ones
//! it reads name a function or a queue by their last part (the account in them is not checked,
//! so ARNs copied from AWS keep working). Nothing here knows whether a function or queue exists.

/// The account every ARN, queue URL and event Tusk writes carries.
pub const ACCOUNT_ID: &str = "000000000000";

/// The region when neither `--region` nor `provider.region` says one (Lambda's own default).
pub const DEFAULT_REGION: &str = "us-east-1";

/// `arn:aws:lambda:REGION:ACCOUNT:function:NAME`.
pub fn function_arn(region: &str, name: &str) -> String {
    format!("arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{name}")
}

/// `arn:aws:sqs:REGION:ACCOUNT:QUEUE`.
pub fn queue_arn(region: &str, queue: &str) -> String {
    format!("arn:aws:sqs:{region}:{ACCOUNT_ID}:{queue}")
}

/// `arn:aws:events:REGION:ACCOUNT:rule/RULE`, the rule a scheduled event names.
pub fn rule_arn(region: &str, rule: &str) -> String {
    format!("arn:aws:events:{region}:{ACCOUNT_ID}:rule/{rule}")
}

/// `arn:aws:iam::ACCOUNT:role/ROLE` (IAM is global: no region).
pub fn role_arn(role: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT_ID}:role/{role}")
}

/// `BASE_URL/ACCOUNT/QUEUE`: an SQS queue URL on the node at `base_url`.
pub fn queue_url(base_url: &str, queue: &str) -> String {
    format!("{base_url}/{ACCOUNT_ID}/{queue}")
}

/// The parts of `arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE`. Any part may be empty (IAM's
/// region is); the resource keeps its own `:` and `/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arn<'a> {
    pub partition: &'a str,
    pub service: &'a str,
    pub region: &'a str,
    pub account: &'a str,
    pub resource: &'a str,
}

/// Splits an ARN into its parts; `None` when `s` is not `arn:` followed by five more parts.
pub fn parse_arn(s: &str) -> Option<Arn<'_>> {
    let mut parts = s.splitn(6, ':');
    if parts.next()? != "arn" {
        return None;
    }
    Some(Arn {
        partition: parts.next()?,
        service: parts.next()?,
        region: parts.next()?,
        account: parts.next()?,
        resource: parts.next()?,
    })
}

impl<'a> Arn<'a> {
    /// The function a Lambda function ARN names, without its qualifier
    /// (`function:NAME` or `function:NAME:QUALIFIER`).
    pub fn function_name(&self) -> Option<&'a str> {
        if self.partition != "aws" || self.service != "lambda" {
            return None;
        }
        let rest = self.resource.strip_prefix("function:")?;
        rest.split(':').next()
    }

    /// The queue an SQS queue ARN names (not checked against the queue-name rule: see
    /// [`crate::sqs_queue`]).
    pub fn queue_name(&self) -> Option<&'a str> {
        (self.partition == "aws" && self.service == "sqs").then_some(self.resource)
    }
}

/// The function `raw` names: the name inside a Lambda function ARN, else `raw` itself.
pub fn function_name_or_self(raw: &str) -> &str {
    parse_arn(raw)
        .and_then(|a| a.function_name())
        .unwrap_or(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_arns_carry_the_one_account_and_parse_back() {
        let f = function_arn(DEFAULT_REGION, "app-dev-hello");
        assert_eq!(
            f,
            "arn:aws:lambda:us-east-1:000000000000:function:app-dev-hello"
        );
        let parsed = parse_arn(&f).unwrap();
        assert_eq!(
            parsed,
            Arn {
                partition: "aws",
                service: "lambda",
                region: "us-east-1",
                account: ACCOUNT_ID,
                resource: "function:app-dev-hello",
            }
        );
        assert_eq!(parsed.function_name(), Some("app-dev-hello"));

        let q = queue_arn("eu-west-1", "jobs");
        assert_eq!(q, "arn:aws:sqs:eu-west-1:000000000000:jobs");
        assert_eq!(parse_arn(&q).unwrap().queue_name(), Some("jobs"));

        assert_eq!(
            rule_arn("us-east-1", "app-dev-tick"),
            "arn:aws:events:us-east-1:000000000000:rule/app-dev-tick"
        );
        assert_eq!(
            queue_url("http://127.0.0.1:9000", "jobs"),
            "http://127.0.0.1:9000/000000000000/jobs"
        );
        let role = role_arn("tusk");
        assert_eq!(role, "arn:aws:iam::000000000000:role/tusk");
        let role = parse_arn(&role).unwrap();
        assert_eq!(
            (role.service, role.region, role.resource),
            ("iam", "", "role/tusk")
        );
    }

    #[test]
    fn a_function_arn_loses_its_qualifier_and_any_account_is_accepted() {
        let arn = parse_arn("arn:aws:lambda:us-east-1:123456789012:function:other-fn:$LATEST");
        assert_eq!(arn.unwrap().function_name(), Some("other-fn"));
        assert_eq!(
            function_name_or_self("arn:aws:lambda:eu-west-1:1:function:f:live"),
            "f"
        );
        assert_eq!(function_name_or_self("app-dev-hello"), "app-dev-hello");
    }

    #[test]
    fn the_resource_keeps_its_separators() {
        let arn = parse_arn("arn:aws:lambda:us-east-1:534081306603:layer:php-82-fpm:60").unwrap();
        assert_eq!(arn.resource, "layer:php-82-fpm:60");
        assert_eq!(arn.function_name(), None);
        let ap = parse_arn("arn:aws:elasticfilesystem:eu-west-1:1:access-point/fsap-0abc").unwrap();
        assert_eq!(ap.resource, "access-point/fsap-0abc");
    }

    #[test]
    fn not_arns_and_other_services_name_nothing() {
        for s in [
            "",
            "arn",
            "arn:aws:sqs:x",
            "arn:aws:sqs:r:a",
            "urn:aws:sqs:r:a:q",
            "jobs",
        ] {
            assert_eq!(parse_arn(s), None, "{s}");
        }
        // Not a function: another service, another partition, another resource type.
        for s in [
            "arn:aws:sqs:us-east-1:0:function:f",
            "arn:aws-cn:lambda:cn-north-1:0:function:f",
            "arn:aws:lambda:us-east-1:0:layer:f:1",
        ] {
            assert_eq!(parse_arn(s).unwrap().function_name(), None, "{s}");
        }
        assert_eq!(
            parse_arn("arn:aws:lambda:us-east-1:0:function:f")
                .unwrap()
                .queue_name(),
            None
        );
        assert_eq!(
            function_name_or_self("arn:aws:lambda:broken"),
            "arn:aws:lambda:broken"
        );
    }
}
