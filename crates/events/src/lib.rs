//! Events that are never lost: async invocations, schedules and queues.

pub mod store;
