//! Storm's `/api/v1/topology/:id/logconfig`: a topology's log level
//! overrides as `namedLoggerLevels`, read and changed.

use crate::nimbus::ApiError;
use serde_json::{json, Map, Value};
use squall_cluster::log_config::{LogChange, LogConfig};

/// Storm's answer: `{"namedLoggerLevels": {LOGGER: {"target_level",
/// "reset_level", "timeout", "timeout_epoch"}}}`, where `reset_level` is
/// `null` (a worker resets to its own start-up level), `timeout` is in s
/// and `timeout_epoch` in ms since the Unix epoch (0 when none).
pub fn to_json(config: &LogConfig) -> Value {
    let loggers: Map<String, Value> = config
        .loggers
        .iter()
        .map(|(name, l)| {
            (
                name.clone(),
                json!({
                    "target_level": l.level,
                    "reset_level": Value::Null,
                    "timeout": l.timeout_secs,
                    "timeout_epoch": l.expires_at_ms.unwrap_or(0),
                }),
            )
        })
        .collect();
    json!({ "namedLoggerLevels": loggers })
}

/// The changes a POST body asks, in Storm's shape: `{"namedLoggerLevels":
/// {LOGGER: {"target_level": LEVEL, "timeout": SECS}}}`; a logger whose
/// `target_level` is missing, `null` or empty is removed (Storm's UI
/// "Clear").
///
/// # Errors
/// 400 naming what is malformed; levels and logger names are checked by
/// Nimbus.
pub fn changes_from_body(body: &[u8]) -> Result<Vec<LogChange>, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("logconfig body is not JSON: {e}")))?;
    let Some(loggers) = v["namedLoggerLevels"].as_object() else {
        return Err(ApiError::bad_request(
            "logconfig body has no namedLoggerLevels object",
        ));
    };
    loggers
        .iter()
        .map(|(logger, l)| {
            let level = l["target_level"]
                .as_str()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned);
            let timeout_secs = match &l["timeout"] {
                Value::Null => 0,
                t => t
                    .as_u64()
                    .or_else(|| t.as_str().and_then(|s| s.trim().parse().ok()))
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "timeout of logger {logger:?}: {t} is not a number of seconds"
                        ))
                    })?,
            };
            Ok(LogChange {
                logger: logger.clone(),
                level,
                timeout_secs,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storms_body_gives_changes_and_the_answer_has_storms_fields() {
        let changes = changes_from_body(
            br#"{"namedLoggerLevels": {"ROOT": {"target_level": "DEBUG", "timeout": "30"},
                 "word_count": {"target_level": ""}}}"#,
        )
        .unwrap();
        assert_eq!(changes.len(), 2);
        assert_eq!(changes[0].level.as_deref(), Some("DEBUG"));
        assert_eq!(changes[0].timeout_secs, 30);
        assert_eq!(changes[1].level, None);
        let bad = changes_from_body(br#"{"namedLoggerLevels": {"ROOT": {"timeout": "x"}}}"#);
        assert!(bad.unwrap_err().message.contains("ROOT"));
        assert_eq!(changes_from_body(b"[]").unwrap_err().status, 400);

        let config = LogConfig::default()
            .with_changes(&changes[..1], 1_000)
            .unwrap();
        let v = to_json(&config);
        let root = &v["namedLoggerLevels"]["ROOT"];
        assert_eq!(root["target_level"], "DEBUG");
        assert_eq!(root["timeout"], 30);
        assert_eq!(root["timeout_epoch"], 31_000);
        assert!(root["reset_level"].is_null());
    }
}
