//! The account id and function ARNs: one definition shared by the control plane (event
//! destinations) and the gateway's AWS APIs, so they always agree.

/// The one account every resource of a node belongs to (AWS tools need a 12-digit id).
pub const ACCOUNT_ID: &str = "000000000000";

pub fn function_arn(region: &str, name: &str) -> String {
    format!("arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{name}")
}
