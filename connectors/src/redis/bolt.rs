//! [`RedisBolt`]: writes tuples to Redis (Storm's `RedisStoreBolt`).

use super::RedisConfig;
use crate::sink::{Sink, Writer};
use squall_topology_api::{Bolt, OutputCollector, OutputFieldsDeclarer, TopologyContext, Tuple};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// One Redis write (Storm's `RedisDataType`s as commands).
#[derive(Debug, Clone, PartialEq)]
pub enum RedisCommand {
    /// `SET key value`.
    Set {
        /// The key.
        key: String,
        /// Its value.
        value: String,
    },
    /// `HSET key field value`.
    HSet {
        /// The hash.
        key: String,
        /// The field.
        field: String,
        /// Its value.
        value: String,
    },
    /// `HINCRBY key field by`.
    HIncrBy {
        /// The hash.
        key: String,
        /// The field.
        field: String,
        /// The increment.
        by: i64,
    },
    /// `LPUSH key value`.
    LPush {
        /// The list.
        key: String,
        /// The value pushed.
        value: String,
    },
    /// `XADD key * field value …`.
    XAdd {
        /// The stream.
        key: String,
        /// The entry's fields and values.
        fields: Vec<(String, String)>,
    },
}

impl RedisCommand {
    /// The key the command writes.
    pub fn key(&self) -> &str {
        match self {
            RedisCommand::Set { key, .. }
            | RedisCommand::HSet { key, .. }
            | RedisCommand::HIncrBy { key, .. }
            | RedisCommand::LPush { key, .. }
            | RedisCommand::XAdd { key, .. } => key,
        }
    }

    fn add_to(&self, pipe: &mut redis::Pipeline) {
        match self {
            RedisCommand::Set { key, value } => pipe.cmd("SET").arg(key).arg(value),
            RedisCommand::HSet { key, field, value } => {
                pipe.cmd("HSET").arg(key).arg(field).arg(value)
            }
            RedisCommand::HIncrBy { key, field, by } => {
                pipe.cmd("HINCRBY").arg(key).arg(field).arg(by)
            }
            RedisCommand::LPush { key, value } => pipe.cmd("LPUSH").arg(key).arg(value),
            RedisCommand::XAdd { key, fields } => {
                let c = pipe.cmd("XADD").arg(key).arg("*");
                for (f, v) in fields {
                    c.arg(f).arg(v);
                }
                c
            }
        };
    }
}

/// Maps a tuple to its writes (Storm's `RedisStoreMapper`); an error fails
/// the tuple and is reported.
pub type RedisMapper = Arc<dyn Fn(&Tuple) -> Result<Vec<RedisCommand>, String> + Send + Sync>;

/// A bolt writing each tuple to Redis through a [`RedisMapper`] (Storm's
/// `RedisStoreBolt`).
///
/// The executor thread never waits for Redis: writes go to the task's I/O
/// thread, which sends them in pipelines of up to `max_batch` tuples'
/// commands and reconnects on its own (backoff 0.1 s to 5 s, the error
/// reported naming the server). A tuple is acked once Redis answered
/// every command of its write, and failed (so its spout replays it) when
/// one of them was refused — the error names the key and Redis's reason,
/// as `WRONGTYPE` — or the connection failed; other tuples of the same
/// pipeline are not affected. With a TTL, every key written gets
/// `EXPIRE key ttl` in the same pipeline. Tick tuples are acked and
/// ignored. Declares no output.
pub struct RedisBolt {
    config: RedisConfig,
    mapper: RedisMapper,
    ttl: Option<Duration>,
    max_batch: usize,
    sink: Option<Sink<Vec<RedisCommand>>>,
}

impl fmt::Debug for RedisBolt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBolt")
            .field("config", &self.config)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl RedisBolt {
    /// A bolt writing to `config`'s server what `mapper` makes of each tuple.
    pub fn new(
        config: RedisConfig,
        mapper: impl Fn(&Tuple) -> Result<Vec<RedisCommand>, String> + Send + Sync + 'static,
    ) -> Self {
        Self {
            config,
            mapper: Arc::new(mapper),
            ttl: None,
            max_batch: 500,
            sink: None,
        }
    }

    /// Keys written expire after `ttl` (whole seconds, at least 1).
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// At most `n` tuples' writes per pipeline (default 500).
    pub fn with_max_batch(mut self, n: usize) -> Self {
        self.max_batch = n.max(1);
        self
    }
}

struct RedisWriter {
    config: RedisConfig,
    ttl: Option<u64>,
    con: Option<redis::Connection>,
}

impl Writer for RedisWriter {
    type Job = Vec<RedisCommand>;

    fn connect(&mut self) -> Result<(), String> {
        self.con = Some(self.config.connect()?);
        Ok(())
    }

    fn write(
        &mut self,
        jobs: &[(Tuple, Vec<RedisCommand>)],
    ) -> Result<Vec<Result<(), String>>, String> {
        let con = self.con.as_mut().ok_or("not connected")?;
        let mut pipe = redis::pipe();
        let mut owners = Vec::new();
        for (i, (_, cmds)) in jobs.iter().enumerate() {
            for c in cmds {
                c.add_to(&mut pipe);
                owners.push((i, c.key()));
                if let Some(ttl) = self.ttl {
                    pipe.cmd("EXPIRE").arg(c.key()).arg(ttl);
                    owners.push((i, c.key()));
                }
            }
        }
        let replies: Vec<redis::RedisResult<redis::Value>> =
            pipe.ignore_errors().query(con).map_err(|e| {
                self.con = None;
                self.config.error(&e)
            })?;
        let mut out: Vec<Result<(), String>> = vec![Ok(()); jobs.len()];
        for ((i, key), reply) in owners.into_iter().zip(replies) {
            if let Err(e) = reply {
                if out[i].is_ok() {
                    out[i] = Err(format!("{}: key {key}: {e}", self.config.server()));
                }
            }
        }
        Ok(out)
    }
}

impl Bolt for RedisBolt {
    fn prepare(&mut self, context: &TopologyContext) {
        let writer = RedisWriter {
            config: self.config.clone(),
            ttl: self.ttl.map(|t| t.as_secs().max(1)),
            con: None,
        };
        self.sink = Some(Sink::start(
            &format!("redis-bolt-{}", context.this_task_id()),
            writer,
            self.max_batch,
            10_000,
            context.waker().cloned(),
        ));
    }

    fn execute(&mut self, tuple: &Tuple, collector: &mut OutputCollector<'_>) {
        let server = || self.config.server();
        crate::sink::execute(
            self.sink.as_mut(),
            tuple,
            collector,
            |t| (self.mapper)(t).map(|c| (!c.is_empty()).then_some(c)),
            |e| format!("cannot write a tuple to {}: {e}", server()),
        );
    }

    fn wake(&mut self, collector: &mut OutputCollector<'_>) {
        if let Some(sink) = &mut self.sink {
            sink.settle_ready(collector);
        }
    }

    fn cleanup(&mut self) {
        self.sink = None;
    }

    fn declare_output_fields(&self, _declarer: &mut OutputFieldsDeclarer) {}
}
