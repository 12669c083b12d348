//! tusk-instance
