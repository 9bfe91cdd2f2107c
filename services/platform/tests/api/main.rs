//! Integration tests of the platform runtime against real PostgreSQL and real sockets.

mod db;
mod helpers;
mod server;
