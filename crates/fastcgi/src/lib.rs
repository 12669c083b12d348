//! tusk-fastcgi: a small, fast FastCGI client for one PHP worker.
//!
//! Tusk's web runtime (`php-82-fpm`) runs one PHP process per instance
//! (`php-cgi -b ADDR` or a one-child php-fpm pool) and sends it HTTP requests
//! over one kept-alive connection, one request at a time.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tusk_fastcgi::FastCgiError> {
//! use tusk_fastcgi::{parse_cgi_response, Connection, Params};
//! let mut conn = Connection::connect_tcp("127.0.0.1:9000".parse().unwrap()).await?;
//! let mut params = Params::with_capacity(1024);
//! params
//!     .push("SCRIPT_FILENAME", "/var/task/public/index.php")
//!     .push("REQUEST_METHOD", "GET")
//!     .push("REDIRECT_STATUS", "200");
//! let raw = conn.request(&params, b"").await?;
//! let response = parse_cgi_response(raw.stdout)?;
//! println!("{} {:?}", response.status, response.headers);
//! # Ok(()) }
//! ```
//!
//! Limits, written down so callers can plan for them:
//! - one request in flight per connection (request id 1); PHP never multiplexes;
//! - one name/value pair must fit one PARAMS record (64 KiB encoded), because
//!   PHP parses each record on its own ([`FastCgiError::ParamTooLarge`]);
//! - the response is buffered whole in memory (cap it with
//!   [`Connection::set_max_response_size`]);
//! - after any failed or cancelled request the connection is unusable.

mod cgi;
mod connection;
mod error;
mod params;
pub mod record;

pub use cgi::{
    is_final_status, is_framing_header, parse_cgi_response, CgiResponse, MAX_HEADERS,
    MAX_HEADER_LINE,
};
pub use connection::{Connection, RawResponse};
pub use error::FastCgiError;
pub use params::Params;
