//! librdkafka client settings and error text shared by the spout, the bolt
//! and the admin helpers.

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::KafkaError;
use std::collections::BTreeMap;

/// A librdkafka configuration with `properties`, logging at warning level.
pub(crate) fn client_config(properties: &BTreeMap<String, String>) -> ClientConfig {
    let mut c = ClientConfig::new();
    for (k, v) in properties {
        c.set(k, v);
    }
    c.set_log_level(RDKafkaLogLevel::Warning);
    c
}

/// An error's text for people: librdkafka's own description.
pub(crate) fn describe(e: &KafkaError) -> String {
    match e.rdkafka_error_code() {
        Some(code) => format!("{e} ({code})"),
        None => e.to_string(),
    }
}
