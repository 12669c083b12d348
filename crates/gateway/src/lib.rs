//! The node's HTTP front: one listener carrying user routes, the Lambda and SQS APIs and
//! `/_tusk/*`, each request translated from its wire format into a call on the pools or the
//! control plane (`tusk-control`) and back. It owns no state of its own beyond [`AppState`]
//! and never decides what is deployed; the `tusk` binary builds both and calls [`serve`].
//!
//! - [`listener`]: the accept loop and its limits; [`http_server`]: routing to handlers and the
//!   user routes; [`auth`]: credentials and request bodies; [`respond`]: shared response shapes;
//! - wire formats: [`apigw`] (API Gateway events), [`lambda_api`] (Invoke API), [`sqs_api`],
//!   [`admin`] and [`events_api`] (`/_tusk/*`), [`web`] (FastCGI params, static files),
//!   [`forward`] (calls between nodes), [`metrics`] (Prometheus text);
//! - [`dispatch`]: the one path of every synchronous call: here, else a peer, else throttle.

mod admin;
pub mod apigw;
mod auth;
mod dispatch;
mod events_api;
mod forward;
mod http_server;
mod lambda_api;
mod listener;
mod metrics;
mod respond;
mod sqs_api;
mod state;
mod web;

pub use admin::load_or_create_token;
pub use http_server::serve;
pub use listener::{default_max_connections, raise_nofile_limit, ConnLimits, MAX_CONNECTIONS};
pub use state::AppState;
