//! tusk-pool
