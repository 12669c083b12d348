//! Errors returned by the client and the CGI response parser.

use std::io;

/// Everything that can go wrong talking FastCGI or parsing the CGI response.
///
/// After any error from [`crate::Connection::request`] except
/// [`FastCgiError::ParamTooLarge`], the connection must be discarded: the
/// byte stream is in an unknown state. [`crate::Connection::is_reusable`]
/// tells the same thing.
#[derive(thiserror::Error, Debug)]
pub enum FastCgiError {
    /// A socket error other than the peer going away.
    #[error("FastCGI I/O error: {0}")]
    Io(#[from] io::Error),

    /// The peer sent bytes that are not valid FastCGI.
    #[error("FastCGI protocol error: {0}")]
    Protocol(String),

    /// The peer closed (or reset) the connection before FCGI_END_REQUEST:
    /// usually the PHP worker crashed, hit a limit, or was killed.
    #[error("FastCGI server closed the connection before the request ended (worker died?)")]
    ClosedEarly,

    /// FCGI_END_REQUEST with protocol status FCGI_CANT_MPX_CONN.
    #[error(
        "FastCGI server refused the request: it cannot multiplex connections (FCGI_CANT_MPX_CONN)"
    )]
    CantMultiplex,

    /// FCGI_END_REQUEST with protocol status FCGI_OVERLOADED.
    #[error("FastCGI server refused the request: overloaded (FCGI_OVERLOADED)")]
    Overloaded,

    /// FCGI_END_REQUEST with protocol status FCGI_UNKNOWN_ROLE.
    #[error("FastCGI server refused the request: it does not support the RESPONDER role (FCGI_UNKNOWN_ROLE)")]
    UnknownRole,

    /// One name/value pair is too big to fit in a single FCGI_PARAMS record.
    /// PHP parses every PARAMS record on its own, so a pair cannot be split.
    /// Nothing was sent; the connection is still usable.
    #[error("FastCGI param {name:?} is {size} bytes encoded; PHP accepts at most {max} per param (shorten the header or variable)")]
    ParamTooLarge {
        /// Lossy UTF-8 of the first bytes of the param name.
        name: String,
        /// Encoded size of the pair.
        size: usize,
        /// Largest encoded pair that fits in one record.
        max: usize,
    },

    /// STDOUT + STDERR exceeded the limit set with
    /// [`crate::Connection::set_max_response_size`].
    #[error("the response is larger than the limit of {limit} bytes (serve big files as static files or from object storage)")]
    ResponseTooLarge {
        /// The configured limit.
        limit: usize,
    },

    /// A previous request on this connection failed or was cancelled half-way,
    /// so the stream cannot be trusted; open a new connection.
    #[error("FastCGI connection is unusable after an earlier failed or cancelled request; open a new one")]
    Broken,

    /// The CGI response (the STDOUT stream) is not `headers CRLF CRLF body`.
    #[error("malformed CGI response from the script: {0}")]
    MalformedResponse(String),
}

impl FastCgiError {
    /// Maps an I/O error, folding "the peer went away" into [`FastCgiError::ClosedEarly`]
    /// so callers have one variant to check for a dead worker.
    pub(crate) fn from_io(err: io::Error) -> FastCgiError {
        match err.kind() {
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted => FastCgiError::ClosedEarly,
            _ => FastCgiError::Io(err),
        }
    }
}
