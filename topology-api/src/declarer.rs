//! Declaring output streams.

use crate::{Fields, StreamId, DEFAULT_STREAM};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One declared output stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamDef {
    /// The stream's fields.
    pub fields: Fields,
    /// Whether tuples are sent with `emit_direct` to a named task.
    pub direct: bool,
}

/// Collects a component's output streams in `declare_output_fields`
/// (Storm's `OutputFieldsDeclarer`).
#[derive(Debug, Default)]
pub struct OutputFieldsDeclarer {
    streams: BTreeMap<StreamId, StreamDef>,
    duplicates: Vec<StreamId>,
}

impl OutputFieldsDeclarer {
    /// An empty declarer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares the default stream.
    pub fn declare(&mut self, fields: impl Into<Fields>) {
        self.add(DEFAULT_STREAM, fields.into(), false)
    }

    /// Declares the default stream as a direct stream.
    pub fn declare_direct(&mut self, fields: impl Into<Fields>) {
        self.add(DEFAULT_STREAM, fields.into(), true)
    }

    /// Declares a named stream.
    pub fn declare_stream(&mut self, stream: &str, fields: impl Into<Fields>) {
        self.add(stream, fields.into(), false)
    }

    /// Declares a named direct stream.
    pub fn declare_direct_stream(&mut self, stream: &str, fields: impl Into<Fields>) {
        self.add(stream, fields.into(), true)
    }

    fn add(&mut self, stream: &str, fields: Fields, direct: bool) {
        let id = StreamId::from(stream);
        match self.streams.entry(id) {
            std::collections::btree_map::Entry::Occupied(e) => {
                self.duplicates.push(e.key().clone())
            }
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(StreamDef { fields, direct });
            }
        }
    }

    /// The declared streams, and the ids declared more than once.
    pub fn finish(self) -> (BTreeMap<StreamId, StreamDef>, Vec<StreamId>) {
        (self.streams, self.duplicates)
    }
}
