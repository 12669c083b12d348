//! tusk-gateway
