//! [`RecordTranslator`]: how a Kafka record becomes a tuple (Storm's
//! `RecordTranslator`).

use squall_topology_api::{Fields, Value, Values, DEFAULT_STREAM};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// A record as the spout polled it; key and value are raw bytes.
#[derive(Debug, Clone, Copy)]
pub struct KafkaRecord<'a> {
    /// The record's topic.
    pub topic: &'a str,
    /// The record's partition.
    pub partition: i32,
    /// The record's offset in its partition.
    pub offset: i64,
    /// The record's timestamp (ms since the epoch), if it has one.
    pub timestamp_ms: Option<i64>,
    /// The record's key (`None`: a null key).
    pub key: Option<&'a [u8]>,
    /// The record's value (`None`: a null value, a tombstone).
    pub value: Option<&'a [u8]>,
}

impl<'a> KafkaRecord<'a> {
    /// The record `message` holds.
    pub fn of(message: &'a impl rdkafka::Message) -> Self {
        Self {
            topic: message.topic(),
            partition: message.partition(),
            offset: message.offset(),
            timestamp_ms: message.timestamp().to_millis(),
            key: message.key(),
            value: message.payload(),
        }
    }

    /// The key as UTF-8 text, `Value::Null` for a null key.
    ///
    /// # Errors
    /// [`TranslateError`] naming the record when the key is not UTF-8.
    pub fn key_text(&self) -> Result<Value, TranslateError> {
        self.text(self.key, "key")
    }

    /// The value as UTF-8 text, `Value::Null` for a null value.
    ///
    /// # Errors
    /// [`TranslateError`] naming the record when the value is not UTF-8.
    pub fn value_text(&self) -> Result<Value, TranslateError> {
        self.text(self.value, "value")
    }

    fn text(&self, bytes: Option<&[u8]>, what: &str) -> Result<Value, TranslateError> {
        match bytes {
            None => Ok(Value::Null),
            Some(b) => std::str::from_utf8(b)
                .map(Value::from)
                .map_err(|e| TranslateError::new(self, format!("its {what} is not UTF-8: {e}"))),
        }
    }
}

/// A record a translator cannot turn into a tuple.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record {topic}-{partition}@{offset}: {reason}")]
pub struct TranslateError {
    /// The record's topic.
    pub topic: String,
    /// The record's partition.
    pub partition: i32,
    /// The record's offset.
    pub offset: i64,
    /// What is wrong with it.
    pub reason: String,
}

impl TranslateError {
    /// An error about `record`.
    pub fn new(record: &KafkaRecord<'_>, reason: impl Into<String>) -> Self {
        Self {
            topic: record.topic.to_owned(),
            partition: record.partition,
            offset: record.offset,
            reason: reason.into(),
        }
    }
}

/// Turns records into tuples (Storm's `RecordTranslator`): the stream and
/// the values of each record's tuple, or `None` to drop the record (its
/// offset still commits). Shared by all tasks of a spout.
pub trait RecordTranslator: Send + Sync {
    /// The tuple of `record`: its stream (one of [`Self::streams`]) and
    /// values, or `None` to drop it.
    ///
    /// # Errors
    /// [`TranslateError`] when the record cannot be translated; the spout
    /// reports it and skips or fails the record as configured
    /// ([`super::BadRecord`]).
    fn translate(&self, record: &KafkaRecord<'_>)
        -> Result<Option<(&str, Values)>, TranslateError>;

    /// The streams this translator emits on, with their fields.
    fn streams(&self) -> Vec<(String, Fields)>;
}

/// The fields of [`DefaultRecordTranslator`]'s tuples: `topic`,
/// `partition`, `offset`, `key`, `value` (Storm's
/// `DefaultRecordTranslator.FIELDS`).
pub fn default_fields() -> Fields {
    Fields::new(["topic", "partition", "offset", "key", "value"])
}

/// Every record as (`topic`, `partition`, `offset`, `key`, `value`) on
/// one stream (`default` unless set), key and value as UTF-8 text (Kafka's
/// `StringDeserializer`, Storm's default); a key or value that is not
/// UTF-8 is a [`TranslateError`].
#[derive(Debug, Clone)]
pub struct DefaultRecordTranslator {
    stream: String,
}

impl Default for DefaultRecordTranslator {
    fn default() -> Self {
        Self {
            stream: DEFAULT_STREAM.to_owned(),
        }
    }
}

impl DefaultRecordTranslator {
    /// Emits on `stream` instead of `default`.
    pub fn on_stream(stream: &str) -> Self {
        Self {
            stream: stream.to_owned(),
        }
    }

    /// The default tuple of `record`.
    ///
    /// # Errors
    /// [`TranslateError`] when its key or value is not UTF-8.
    pub fn values(record: &KafkaRecord<'_>) -> Result<Values, TranslateError> {
        let mut values = Values::new();
        values.push(record.topic);
        values.push(i64::from(record.partition));
        values.push(record.offset);
        values.push(record.key_text()?);
        values.push(record.value_text()?);
        Ok(values)
    }
}

impl RecordTranslator for DefaultRecordTranslator {
    fn translate(
        &self,
        record: &KafkaRecord<'_>,
    ) -> Result<Option<(&str, Values)>, TranslateError> {
        Ok(Some((&self.stream, Self::values(record)?)))
    }

    fn streams(&self) -> Vec<(String, Fields)> {
        vec![(self.stream.clone(), default_fields())]
    }
}

type TranslateFn = dyn Fn(&KafkaRecord<'_>) -> Result<Option<Values>, TranslateError> + Send + Sync;

/// A translator from a function and the fields of what it returns, on one
/// stream (Storm's `SimpleRecordTranslator`).
#[derive(Clone)]
pub struct FnTranslator {
    stream: String,
    fields: Fields,
    f: Arc<TranslateFn>,
}

impl fmt::Debug for FnTranslator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnTranslator")
            .field("stream", &self.stream)
            .field("fields", &self.fields)
            .finish()
    }
}

impl FnTranslator {
    /// Tuples of `fields` from `f` (`None` drops a record), on `default`.
    pub fn new(
        fields: impl Into<Fields>,
        f: impl Fn(&KafkaRecord<'_>) -> Result<Option<Values>, TranslateError> + Send + Sync + 'static,
    ) -> Self {
        Self {
            stream: DEFAULT_STREAM.to_owned(),
            fields: fields.into(),
            f: Arc::new(f),
        }
    }

    /// Emits on `stream` instead of `default`.
    pub fn on_stream(mut self, stream: &str) -> Self {
        self.stream = stream.to_owned();
        self
    }
}

impl RecordTranslator for FnTranslator {
    fn translate(
        &self,
        record: &KafkaRecord<'_>,
    ) -> Result<Option<(&str, Values)>, TranslateError> {
        Ok((self.f)(record)?.map(|v| (self.stream.as_str(), v)))
    }

    fn streams(&self) -> Vec<(String, Fields)> {
        vec![(self.stream.clone(), self.fields.clone())]
    }
}

/// Routes each topic's records to its own translator (and so its own
/// stream); records of other topics go to the fallback, or are dropped
/// when there is none (Storm's `ByTopicRecordTranslator`).
#[derive(Default)]
pub struct ByTopicTranslator {
    topics: BTreeMap<String, Box<dyn RecordTranslator>>,
    fallback: Option<Box<dyn RecordTranslator>>,
}

impl fmt::Debug for ByTopicTranslator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByTopicTranslator")
            .field("topics", &self.topics.keys().collect::<Vec<_>>())
            .field("fallback", &self.fallback.is_some())
            .finish()
    }
}

impl ByTopicTranslator {
    /// A router with no routes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Translates `topic`'s records with `translator`.
    pub fn route(mut self, topic: &str, translator: impl RecordTranslator + 'static) -> Self {
        self.topics.insert(topic.to_owned(), Box::new(translator));
        self
    }

    /// Translates the records of unrouted topics with `translator`.
    pub fn fallback(mut self, translator: impl RecordTranslator + 'static) -> Self {
        self.fallback = Some(Box::new(translator));
        self
    }
}

impl RecordTranslator for ByTopicTranslator {
    fn translate(
        &self,
        record: &KafkaRecord<'_>,
    ) -> Result<Option<(&str, Values)>, TranslateError> {
        match self.topics.get(record.topic).or(self.fallback.as_ref()) {
            Some(t) => t.translate(record),
            None => Ok(None),
        }
    }

    fn streams(&self) -> Vec<(String, Fields)> {
        let mut streams: Vec<(String, Fields)> = Vec::new();
        for t in self.topics.values().chain(&self.fallback) {
            for (stream, fields) in t.streams() {
                if !streams.iter().any(|(s, _)| *s == stream) {
                    streams.push((stream, fields));
                }
            }
        }
        streams
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record<'a>(topic: &'a str, value: Option<&'a [u8]>) -> KafkaRecord<'a> {
        KafkaRecord {
            topic,
            partition: 3,
            offset: 17,
            timestamp_ms: None,
            key: None,
            value,
        }
    }

    #[test]
    fn the_default_tuple_has_storms_fields() {
        let t = DefaultRecordTranslator::default();
        let (stream, values) = t
            .translate(&record("lines", Some(b"to be")))
            .unwrap()
            .unwrap();
        assert_eq!(stream, "default");
        let expected: Vec<Value> = vec![
            "lines".into(),
            3i64.into(),
            17i64.into(),
            Value::Null,
            "to be".into(),
        ];
        assert_eq!(values.0.to_vec(), expected);
        assert_eq!(t.streams(), [("default".to_owned(), default_fields())]);
    }

    #[test]
    fn a_value_that_is_not_utf8_names_the_record() {
        let err = DefaultRecordTranslator::default()
            .translate(&record("lines", Some(&[0xff, 0xfe])))
            .unwrap_err();
        assert_eq!(
            (err.topic.as_str(), err.partition, err.offset),
            ("lines", 3, 17)
        );
        assert!(err
            .to_string()
            .starts_with("record lines-3@17: its value is not UTF-8"));
    }

    #[test]
    fn topics_route_to_streams_and_unrouted_records_drop() {
        let t = ByTopicTranslator::new()
            .route("a", DefaultRecordTranslator::on_stream("from_a"))
            .route(
                "b",
                FnTranslator::new(["v"], |r| Ok(Some(Values::from_iter([r.value_text()?]))))
                    .on_stream("from_b"),
            );
        let (s, _) = t.translate(&record("a", Some(b"x"))).unwrap().unwrap();
        assert_eq!(s, "from_a");
        let (s, v) = t.translate(&record("b", Some(b"y"))).unwrap().unwrap();
        assert_eq!((s, v.0.len()), ("from_b", 1));
        assert!(t.translate(&record("c", Some(b"z"))).unwrap().is_none());
        let streams: Vec<String> = t.streams().into_iter().map(|(s, _)| s).collect();
        assert_eq!(streams, ["from_a", "from_b"]);
    }
}
