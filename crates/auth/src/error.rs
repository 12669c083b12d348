//! Why a request was refused, and how to say so the way AWS does.

/// Why a request failed authentication.
///
/// The `Display` text is meant for the client: it says what was wrong and what to do next,
/// without ever revealing the secret. [`AuthError::aws_error_type`] and [`AuthError::status`]
/// give the `X-Amzn-ErrorType` and HTTP status Lambda uses, so SDKs raise the error they expect.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization` header and no presigned query parameters.
    #[error(
        "Missing Authentication Token: send `Authorization: Bearer <admin token>` \
         or sign the request with AWS Signature Version 4"
    )]
    Missing,

    /// `Authorization: Bearer` with a token that is not the admin token.
    #[error(
        "The bearer token is invalid: use the admin token the node wrote to <data-dir>/admin.token"
    )]
    BadToken,

    /// SigV4 signed with an access key id this node does not know.
    #[error(
        "The security token included in the request is invalid: access key id `{0}` is unknown \
         to this node (use the node's access key id, `tusk` by default)"
    )]
    UnknownAccessKey(String),

    /// The SigV4 signature does not match the one computed here.
    #[error(
        "The request signature we calculated does not match the signature you provided. \
         Check your AWS Secret Access Key (for Tusk: the node's admin token) and signing method; \
         a proxy that rewrites the path, query or signed headers also breaks the signature."
    )]
    SignatureMismatch,

    /// The signing time is too far in the past, or a presigned URL has run out.
    #[error("Signature expired: {0}")]
    Expired(String),

    /// The signing time is too far in the future: the client's clock is off.
    #[error("Signature not yet current: {0}")]
    ClockSkew(String),

    /// `X-Amz-Content-Sha256` names a hash that is not the hash of the body received.
    #[error(
        "The provided 'x-amz-content-sha256' header does not match what was computed \
         from the request body"
    )]
    PayloadHashMismatch,

    /// `x-amz-*` headers outside the signature (names, comma-separated).
    #[error(
        "There were headers present in the request which were not signed: {0}; \
         sign every x-amz-* header the request carries (AWS SDKs do), or leave it out"
    )]
    UnsignedHeaders(String),

    /// The credentials are present but cannot be understood.
    #[error("{0}")]
    Malformed(String),
}

impl AuthError {
    /// The error code for the `X-Amzn-ErrorType` header, as AWS Lambda names it.
    pub fn aws_error_type(&self) -> &'static str {
        match self {
            AuthError::Missing => "MissingAuthenticationTokenException",
            AuthError::BadToken | AuthError::UnknownAccessKey(_) => "UnrecognizedClientException",
            // Lambda reports expired and future-dated signatures as signature errors too.
            AuthError::SignatureMismatch
            | AuthError::Expired(_)
            | AuthError::ClockSkew(_)
            | AuthError::PayloadHashMismatch
            | AuthError::UnsignedHeaders(_) => "InvalidSignatureException",
            AuthError::Malformed(_) => "IncompleteSignatureException",
        }
    }

    /// The HTTP status to answer with.
    ///
    /// AWS's REST-JSON services (Lambda among them) answer every authentication failure with
    /// 403, and SDK clients expect that. A rejected bearer token is Tusk's own scheme, so it
    /// gets the 401 RFC 6750 prescribes for an invalid token.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::BadToken => 401,
            _ => 403,
        }
    }
}
