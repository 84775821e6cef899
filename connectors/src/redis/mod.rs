//! Redis (Storm's `storm-redis`), on the `redis` crate: Trident map states
//! ([`RedisMapState`]), a `KeyValueState` provider for stateful bolts
//! ([`RedisStateProvider`]), a sink ([`RedisBolt`]) and a Redis Streams
//! spout with a consumer group ([`RedisStreamSpout`]) and a transactional
//! Trident spout over a stream ([`RedisStreamTridentSpout`]).

mod bolt;
mod config;
mod kv;
mod state;
mod streams;
mod trident;

pub use bolt::{RedisBolt, RedisCommand, RedisMapper};
pub use config::RedisConfig;
pub use kv::{RedisStateProvider, REDIS_PROVIDER};
pub use state::{decode_key, encode_key, RedisBackingMap, RedisMapState};
pub use streams::{RedisStreamConfig, RedisStreamSpout};
pub use trident::RedisStreamTridentSpout;
