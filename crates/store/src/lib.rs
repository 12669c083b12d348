//! tusk-store
