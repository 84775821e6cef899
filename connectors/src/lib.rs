//! Connectors: spouts, bolts and states for the systems pipelines live in,
//! after Apache Storm's `external/` modules, on well-kept clients.
//! [`kafka`] holds the parts of Storm's `storm-kafka-client` that decide
//! what a Kafka spout does — which offsets it may commit, when a failed
//! record is retried, which partitions each task reads — as pure
//! functions of their inputs. [`redis`] (`storm-redis`), [`postgres`]
//! (`storm-jdbc`) and [`mqtt`] (`storm-mqtt`) hold Trident states, a
//! stateful bolts' state provider, sinks and spouts; the sinks write on an
//! I/O thread per task, so no executor waits for a server.

pub mod kafka;
pub mod mqtt;
pub mod postgres;
pub mod redis;
mod sink;
