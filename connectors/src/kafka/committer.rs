//! The spout's committer thread: commits offsets to the consumer group
//! and reports each commit's outcome, so the executor thread never waits
//! for the broker.

use super::client::{client_config, describe};
use super::TopicPartition;
use crossbeam_channel::{Receiver, Sender};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::thread::JoinHandle;
use std::time::Duration;

/// Offsets to commit: partition → the next offset to read.
pub(crate) type Offsets = Vec<(TopicPartition, i64)>;

/// A running committer.
pub(crate) struct Committer {
    requests: Option<Sender<Offsets>>,
    /// One outcome per commit made (requests queued together are merged
    /// into one commit).
    pub results: Receiver<Result<(), String>>,
    handle: Option<JoinHandle<()>>,
}

impl Committer {
    /// Starts a committer with its own client of `properties` (the group's
    /// `group.id` among them); each commit carries `metadata`.
    pub fn start(
        properties: &BTreeMap<String, String>,
        metadata: String,
        name: String,
    ) -> Result<Self, String> {
        let consumer: BaseConsumer = client_config(properties)
            .create()
            .map_err(|e| describe(&e))?;
        let (requests, rx) = crossbeam_channel::unbounded();
        let (tx, results) = crossbeam_channel::unbounded();
        let handle = std::thread::Builder::new()
            .name(name)
            .spawn(move || run(&consumer, &metadata, &rx, &tx))
            .map_err(|e| e.to_string())?;
        Ok(Self {
            requests: Some(requests),
            results,
            handle: Some(handle),
        })
    }

    /// Queues a commit of `offsets`.
    pub fn commit(&self, offsets: Offsets) {
        if let Some(r) = &self.requests {
            let _ = r.send(offsets);
        }
    }

    /// Commits `last` (if any), waits up to `timeout` for every queued
    /// commit, and stops the thread.
    pub fn finish(mut self, last: Offsets, timeout: Duration) -> Vec<Result<(), String>> {
        if !last.is_empty() {
            self.commit(last);
        }
        drop(self.requests.take());
        let deadline = std::time::Instant::now() + timeout;
        let mut outcomes = Vec::new();
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match self.results.recv_timeout(left) {
                Ok(r) => outcomes.push(r),
                Err(_) => break,
            }
        }
        if let Some(h) = self.handle.take() {
            if h.is_finished() {
                let _ = h.join();
            }
        }
        outcomes
    }
}

fn run(
    consumer: &BaseConsumer,
    metadata: &str,
    requests: &Receiver<Offsets>,
    results: &Sender<Result<(), String>>,
) {
    while let Ok(first) = requests.recv() {
        // Later requests of a partition supersede earlier ones.
        let mut merged: BTreeMap<TopicPartition, i64> = first.into_iter().collect();
        while let Ok(more) = requests.try_recv() {
            merged.extend(more);
        }
        let mut tpl = TopicPartitionList::new();
        for (tp, offset) in &merged {
            let _ = tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*offset));
        }
        for mut e in tpl.elements() {
            e.set_metadata(metadata);
        }
        let outcome = consumer
            .commit(&tpl, CommitMode::Sync)
            .map_err(|e| describe(&e));
        if results.send(outcome).is_err() {
            return;
        }
    }
}
