//! The control plane of a node: what is deployed and how it runs, never how it is reached.
//!
//! - [`plane`]: the registry of services and versions, deploy, and turning a stored service
//!   into live pools, routes and event sources ([`ControlPlane`]);
//! - [`routes`]: the `httpApi`/`http` route table; [`event_config`]: schedules, SQS mappings
//!   and destinations of a function; [`package`]: unpacking a deployment package safely;
//! - [`pool_invoker`]: the events engine's `Invoker` over this node's pools;
//! - [`php`]: finding PHP and installing Tusk's PHP runtime; [`sandbox`]: starting the node's
//!   sandbox; [`data_dir`]: the data directory's layout;
//!   [`logs`]: the function log sink; [`cluster_sync`]: following the cluster registry.
//!
//! This crate never speaks HTTP (no axum, hyper or http): `tusk-gateway` translates requests
//! into calls here, and maps [`ControlError`] to statuses.

pub mod cluster_sync;
pub mod data_dir;
mod error;
pub mod event_config;
pub mod logs;
pub mod package;
pub mod php;
pub mod plane;
pub mod pool_invoker;
pub mod routes;
pub mod sandbox;

pub use error::ControlError;
pub use plane::{is_sha256, socket_dir, ControlPlane, PhpInstall};
