//! tusk-auth
