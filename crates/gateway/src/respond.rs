//! The response shapes every handler shares: JSON bodies, the admin API's `{"error": ...}`,
//! Lambda's typed errors, and control-plane errors mapped to statuses. A leaf: it imports no
//! handler module, so handlers never import each other for these.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};
use serde_json::{json, Value};
use tusk_control::ControlError;

pub fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

pub fn admin_error(status: StatusCode, message: &str) -> Response {
    json_response(status, &json!({ "error": message }))
}

/// Lambda's error shape: the type in `X-Amzn-ErrorType`, details in the JSON body.
pub fn lambda_error(status: StatusCode, error_type: &str, body: Value) -> Response {
    let mut r = json_response(status, &body);
    if let Ok(v) = HeaderValue::from_str(error_type) {
        r.headers_mut().insert("x-amzn-errortype", v);
    }
    r
}

/// The admin API's answer to a control-plane error: 400/404/409 for the caller's mistakes, 500
/// for the node's own.
pub fn control_error(e: ControlError) -> Response {
    let status = match &e {
        ControlError::BadRequest(_) => StatusCode::BAD_REQUEST,
        ControlError::NotFound(_) => StatusCode::NOT_FOUND,
        ControlError::Conflict(_) => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    admin_error(status, &e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_errors_map_to_the_admin_api_statuses() {
        let status = |e| control_error(e).status();
        assert_eq!(
            status(ControlError::BadRequest("x".into())),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(ControlError::NotFound("x".into())),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status(ControlError::Conflict("x".into())),
            StatusCode::CONFLICT
        );
        let io = ControlError::Io {
            context: "cannot write /x".into(),
            source: std::io::Error::other("boom"),
        };
        assert_eq!(status(io), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
