//! tusk-fastcgi
