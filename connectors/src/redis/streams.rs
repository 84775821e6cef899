//! [`RedisStreamSpout`]: reads a Redis stream through a consumer group,
//! at least once.

use super::RedisConfig;
use crossbeam_channel::{Receiver, Sender};
use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamId, StreamReadOptions, StreamReadReply,
};
use redis::{FromRedisValue, TypedCommands};
use squall_topology_api::{
    FailReason, OutputFieldsDeclarer, Spout, SpoutOutputCollector, TopologyContext, Value, Values,
};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A [`RedisStreamSpout`]'s settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisStreamConfig {
    /// The server.
    pub redis: RedisConfig,
    /// The stream's key.
    pub stream: String,
    /// The consumer group (created at the stream's start, `0`, when
    /// missing; with the stream, if that is missing too).
    pub group: String,
    /// The entry fields emitted after the entry id, in order (a missing
    /// field is null).
    pub fields: Vec<String>,
    /// Entries asked for per read (default 500).
    pub batch: usize,
    /// Entries pending in any consumer for longer than this are claimed
    /// (`XAUTOCLAIM`) by a running task (default 60 s; keep it above the
    /// message timeout so entries in flight are not claimed twice).
    pub claim_idle: Duration,
}

impl RedisStreamConfig {
    /// Reads `stream` in `group`, emitting each entry's `fields`.
    pub fn new(redis: RedisConfig, stream: &str, group: &str, fields: &[&str]) -> Self {
        Self {
            redis,
            stream: stream.to_owned(),
            group: group.to_owned(),
            fields: fields.iter().map(|f| (*f).to_owned()).collect(),
            batch: 500,
            claim_idle: Duration::from_secs(60),
        }
    }

    /// Claims entries idle for `idle` in other consumers.
    pub fn with_claim_idle(mut self, idle: Duration) -> Self {
        self.claim_idle = idle;
        self
    }
}

enum Event {
    Entry(StreamId),
    Error(String),
}

struct Running {
    entries: Receiver<Event>,
    acks: Sender<String>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// The values of each entry in flight, by entry id (re-emitted on
    /// fail; still pending in the group until acked).
    pending: HashMap<String, Values>,
    /// Failed entries, emitted again before new ones.
    retry: VecDeque<String>,
}

/// A spout reading a Redis stream through a consumer group (`XREADGROUP`).
///
/// Each task is the consumer `<component>-<task index>` of the group, so a
/// restarted task first takes back its own pending entries (`XREADGROUP
/// … 0`), then reads new ones (`>`); every task also claims entries left
/// pending by other consumers for longer than `claim_idle` (`XAUTOCLAIM`:
/// a consumer killed mid-run, a topology running with fewer tasks). Each
/// entry is emitted as `[id, field…]` with its id as message id; an
/// acked tuple's entry is `XACK`ed; a failed one is emitted again, still
/// pending. At least once: an entry leaves the group's pending list only
/// when its tuple tree completed.
///
/// Redis is read and acked on a helper thread per task (`BLOCK 100`), so
/// `next_tuple` never waits; errors are reported naming the server and
/// the stream, and the thread reconnects.
pub struct RedisStreamSpout {
    config: RedisStreamConfig,
    run: Option<Running>,
}

impl std::fmt::Debug for RedisStreamSpout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStreamSpout")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl RedisStreamSpout {
    /// A spout reading as `config` says.
    pub fn new(config: RedisStreamConfig) -> Self {
        Self { config, run: None }
    }
}

fn text(v: &redis::Value) -> Value {
    match String::from_redis_value_ref(v) {
        Ok(s) => Value::from(s),
        Err(_) => Value::Null,
    }
}

impl Spout for RedisStreamSpout {
    fn open(&mut self, context: &TopologyContext) {
        let consumer = format!(
            "{}-{}",
            context.this_component_id(),
            context.this_task_index()
        );
        let (tx, entries) = crossbeam_channel::bounded(self.config.batch.max(1) * 2);
        let (acks, ack_rx) = crossbeam_channel::unbounded();
        let stop = Arc::new(AtomicBool::new(false));
        let reader = Reader {
            config: self.config.clone(),
            consumer,
            con: None,
            own_pending_done: false,
            next_claim: Instant::now(),
            claim_cursor: "0-0".to_owned(),
        };
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("redis-stream-{}", context.this_task_id()))
            .spawn(move || reader.run(&tx, &ack_rx, &flag))
            .expect("spawn the stream reader");
        self.run = Some(Running {
            entries,
            acks,
            stop,
            thread: Some(thread),
            pending: HashMap::new(),
            retry: VecDeque::new(),
        });
    }

    fn next_tuple(&mut self, collector: &mut SpoutOutputCollector<'_>) {
        let Some(run) = &mut self.run else { return };
        while let Some(id) = run.retry.pop_front() {
            if let Some(values) = run.pending.get(&id) {
                collector.emit_with_id(values.clone(), Value::from(id.as_str()));
            }
        }
        for _ in 0..self.config.batch {
            match run.entries.try_recv() {
                Ok(Event::Entry(e)) => {
                    if run.pending.contains_key(&e.id) {
                        continue; // Claimed back while still in flight here.
                    }
                    let mut values = Values::new();
                    values.push(Value::from(e.id.as_str()));
                    for f in &self.config.fields {
                        values.push(e.map.get(f).map_or(Value::Null, text));
                    }
                    collector.emit_with_id(values.clone(), Value::from(e.id.as_str()));
                    run.pending.insert(e.id, values);
                }
                Ok(Event::Error(e)) => collector.report_error(&e),
                Err(_) => break,
            }
        }
    }

    fn ack(&mut self, msg_id: Value) {
        let Some(run) = &mut self.run else { return };
        if let Some(id) = msg_id.as_str() {
            run.pending.remove(id);
            let _ = run.acks.send(id.to_owned());
        }
    }

    fn fail(&mut self, msg_id: Value, _reason: FailReason) {
        let Some(run) = &mut self.run else { return };
        if let Some(id) = msg_id.as_str() {
            if run.pending.contains_key(id) {
                run.retry.push_back(id.to_owned());
            }
        }
    }

    fn close(&mut self) {
        if let Some(mut run) = self.run.take() {
            run.stop.store(true, Ordering::Relaxed);
            drop(run.acks);
            if let Some(t) = run.thread.take() {
                let _ = t.join();
            }
        }
    }

    fn declare_output_fields(&self, declarer: &mut OutputFieldsDeclarer) {
        let mut fields = vec!["id".to_owned()];
        fields.extend(self.config.fields.iter().cloned());
        declarer.declare(fields);
    }
}

/// The helper thread: reads, claims and acks.
struct Reader {
    config: RedisStreamConfig,
    consumer: String,
    con: Option<redis::Connection>,
    /// Whether this consumer's own pending entries were read back.
    own_pending_done: bool,
    next_claim: Instant,
    claim_cursor: String,
}

impl Reader {
    fn run(mut self, out: &Sender<Event>, acks: &Receiver<String>, stop: &AtomicBool) {
        let mut backoff = Duration::from_millis(100);
        while !stop.load(Ordering::Relaxed) {
            match self.step(out, acks) {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(e) => {
                    self.con = None;
                    let _ = out.try_send(Event::Error(format!(
                        "{}: stream {} group {}: {e}",
                        self.config.redis.server(),
                        self.config.stream,
                        self.config.group
                    )));
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        // Acks still queued when the task closes.
        let rest: Vec<String> = acks.try_iter().collect();
        if !rest.is_empty() {
            let _ = self.xack(&rest);
        }
    }

    fn connection(&mut self) -> Result<&mut redis::Connection, String> {
        if self.con.is_none() {
            let mut con = self.config.redis.connect()?;
            match con.xgroup_create_mkstream(&self.config.stream, &self.config.group, "0") {
                Ok(()) => {}
                Err(e) if e.code() == Some("BUSYGROUP") => {}
                Err(e) => return Err(e.to_string()),
            }
            self.con = Some(con);
            self.own_pending_done = false;
        }
        Ok(self.con.as_mut().expect("just connected"))
    }

    fn xack(&mut self, ids: &[String]) -> Result<(), String> {
        let (stream, group) = (self.config.stream.clone(), self.config.group.clone());
        self.connection()?
            .xack(&stream, &group, ids)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Acks what was acked, claims what is due, reads what is next.
    fn step(&mut self, out: &Sender<Event>, acks: &Receiver<String>) -> Result<(), String> {
        let done: Vec<String> = acks.try_iter().collect();
        if !done.is_empty() {
            self.xack(&done)?;
        }
        if out.len() >= out.capacity().unwrap_or(usize::MAX) / 2 {
            std::thread::sleep(Duration::from_millis(5));
            return Ok(());
        }
        let (stream, group, consumer) = (
            self.config.stream.clone(),
            self.config.group.clone(),
            self.consumer.clone(),
        );
        let batch = self.config.batch.max(1);
        if Instant::now() >= self.next_claim {
            let idle = self.config.claim_idle.as_millis() as u64;
            let cursor = self.claim_cursor.clone();
            let reply: StreamAutoClaimReply = self
                .connection()?
                .xautoclaim_options(
                    &stream,
                    &group,
                    &consumer,
                    idle,
                    &cursor,
                    StreamAutoClaimOptions::default().count(batch),
                )
                .map_err(|e| e.to_string())?;
            if reply.next_stream_id == "0-0" {
                self.next_claim =
                    Instant::now() + (self.config.claim_idle / 2).max(Duration::from_millis(100));
            }
            self.claim_cursor = reply.next_stream_id;
            for e in reply.claimed {
                let _ = out.send(Event::Entry(e));
            }
        }
        let (start, opts) = if self.own_pending_done {
            (
                ">",
                StreamReadOptions::default()
                    .group(&group, &consumer)
                    .count(batch)
                    .block(100),
            )
        } else {
            (
                "0",
                StreamReadOptions::default()
                    .group(&group, &consumer)
                    .count(batch),
            )
        };
        let reply: Option<StreamReadReply> = self
            .connection()?
            .xread_options(&[&stream], &[start], &opts)
            .map_err(|e| e.to_string())?;
        let entries: Vec<StreamId> = reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .collect();
        if start == "0" && entries.is_empty() {
            self.own_pending_done = true;
        }
        for e in entries {
            let _ = out.send(Event::Entry(e));
        }
        Ok(())
    }
}
