//! PostgreSQL (Storm's `storm-jdbc`), on the `postgres` crate: a sink
//! ([`PostgresBolt`]) and Trident map states ([`PostgresMapState`]) whose
//! values and txids are written in one SQL transaction per batch.

mod bolt;
mod config;
mod pool;
mod state;
mod types;

pub use bolt::{PostgresBolt, PostgresBoltConfig};
pub use config::PostgresConfig;
pub use state::{PostgresBackingMap, PostgresMapState};
pub use types::{Column, SqlType};
