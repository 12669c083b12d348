//! tusk-manifest
