//! [`RedisStreamTridentSpout`]: a transactional Trident spout over a Redis
//! stream.

use super::RedisConfig;
use redis::streams::StreamRangeReply;
use redis::FromRedisValue;
use squall_topology_api::{ExecuteError, Fields, TopologyContext, Value, Values};
use squall_trident::spout::{BatchCoordinator, Emitter, TransactionalSpout};
use squall_trident::{BatchId, TridentCollector};

/// A transactional Trident spout reading a Redis stream in order: each
/// batch is the range of entry ids after the previous batch's last, at
/// most `batch_size` entries, so a replayed txid reads the very same
/// entries (`XRANGE (after end`) as long as the stream is not trimmed
/// below them. Each entry is emitted as the values of `fields` (text;
/// null when missing), dealt over the emitter tasks by position.
///
/// The coordinator asks Redis (one `XRANGE … COUNT`, with the server's
/// timeout) when a batch starts; an unreachable server makes an empty
/// batch and is logged, naming the server and stream. An emitter that
/// cannot read fails its batch, which is replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisStreamTridentSpout {
    /// The server.
    pub redis: RedisConfig,
    /// The stream's key.
    pub stream: String,
    /// The entry fields emitted, in order.
    pub fields: Vec<String>,
    /// Entries per batch, at most (default 1000).
    pub batch_size: usize,
}

impl RedisStreamTridentSpout {
    /// Reads `stream` on `redis`, emitting `fields`.
    pub fn new(redis: RedisConfig, stream: &str, fields: &[&str]) -> Self {
        Self {
            redis,
            stream: stream.to_owned(),
            fields: fields.iter().map(|f| (*f).to_owned()).collect(),
            batch_size: 1000,
        }
    }

    /// At most `n` entries per batch.
    pub fn with_batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }
}

/// A batch's metadata: `[after, last]`, entry ids (`after` exclusive).
fn meta(after: &str, last: &str) -> Value {
    Value::List(vec![Value::from(after), Value::from(last)])
}

fn meta_ids(meta: &Value) -> Option<(&str, &str)> {
    match meta.as_list()? {
        [a, l] => Some((a.as_str()?, l.as_str()?)),
        _ => None,
    }
}

/// Keeps one connection, made again after an error.
struct Link {
    config: RedisConfig,
    con: Option<redis::Connection>,
}

impl Link {
    fn range(
        &mut self,
        stream: &str,
        after: &str,
        last: &str,
        count: Option<usize>,
    ) -> Result<StreamRangeReply, String> {
        if self.con.is_none() {
            self.con = Some(self.config.connect()?);
        }
        let con = self.con.as_mut().expect("just connected");
        let mut cmd = redis::cmd("XRANGE");
        cmd.arg(stream).arg(format!("({after}")).arg(last);
        if let Some(n) = count {
            cmd.arg("COUNT").arg(n);
        }
        cmd.query(con).map_err(|e| {
            self.con = None;
            format!("{}: stream {stream}: {e}", self.config.server())
        })
    }
}

struct Coordinator {
    spout: RedisStreamTridentSpout,
    link: Link,
    /// The last id of the newest batch decided.
    last: Option<String>,
}

impl BatchCoordinator for Coordinator {
    fn initialize_transaction(&mut self, _txid: u64, prev: Option<&Value>) -> Value {
        let after = prev
            .and_then(meta_ids)
            .map_or("0-0".to_owned(), |(_, l)| l.to_owned());
        let last =
            match self
                .link
                .range(&self.spout.stream, &after, "+", Some(self.spout.batch_size))
            {
                Ok(r) => r.ids.last().map_or(after.clone(), |e| e.id.clone()),
                Err(e) => {
                    tracing::warn!(target: "squall::redis", "{e}");
                    after.clone()
                }
            };
        self.last = Some(last.clone());
        meta(&after, &last)
    }

    fn is_ready(&mut self, _txid: u64) -> bool {
        let Some(after) = self.last.clone() else {
            return true;
        };
        self.link
            .range(&self.spout.stream, &after, "+", Some(1))
            .is_ok_and(|r| !r.ids.is_empty())
    }
}

struct StreamEmitter {
    spout: RedisStreamTridentSpout,
    link: Link,
}

impl Emitter for StreamEmitter {
    fn emit_batch(
        &mut self,
        _batch: BatchId,
        meta: &Value,
        task_index: usize,
        tasks: usize,
        out: &mut TridentCollector,
    ) -> Result<(), ExecuteError> {
        let (after, last) = meta_ids(meta).ok_or("malformed batch metadata")?;
        if after == last {
            return Ok(());
        }
        let reply = self.link.range(&self.spout.stream, after, last, None)?;
        for (i, entry) in reply.ids.iter().enumerate() {
            if i % tasks.max(1) != task_index {
                continue;
            }
            let values: Values = self
                .spout
                .fields
                .iter()
                .map(|f| {
                    entry
                        .map
                        .get(f)
                        .and_then(|v| String::from_redis_value_ref(v).ok())
                        .map_or(Value::Null, Value::from)
                })
                .collect();
            out.emit(values);
        }
        Ok(())
    }
}

impl TransactionalSpout for RedisStreamTridentSpout {
    fn output_fields(&self) -> Fields {
        Fields::from(self.fields.clone())
    }

    fn coordinator(&self, _context: &TopologyContext) -> Box<dyn BatchCoordinator> {
        Box::new(Coordinator {
            spout: self.clone(),
            link: Link {
                config: self.redis.clone(),
                con: None,
            },
            last: None,
        })
    }

    fn emitter(&self, _context: &TopologyContext) -> Box<dyn Emitter> {
        Box::new(StreamEmitter {
            spout: self.clone(),
            link: Link {
                config: self.redis.clone(),
                con: None,
            },
        })
    }
}
