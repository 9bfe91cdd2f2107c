//! Integration tests of the platform runtime against real PostgreSQL and real sockets.

mod db;
mod events;
mod faults;
mod helpers;
mod leader;
mod server;
