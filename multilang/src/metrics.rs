//! Metrics a subprocess reports with `{"command": "metrics", "name", "params"}`
//! (Storm's `IShellMetric`): the component registers each name as a counter
//! or a gauge; values land in the task's user metrics.

use crate::protocol::ShellMsg;
use squall_topology_api::MetricUpdate;

/// How a registered shell metric takes `params`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShellMetric {
    /// Adds `params` (a number; absent or null adds 1), as Storm's
    /// `CountShellMetric`.
    Count,
    /// Takes `params` (a number) as the current value.
    Gauge,
}

/// The metrics a shell component accepts, by name.
#[derive(Debug, Clone, Default)]
pub struct Registered(Vec<(String, ShellMetric)>);

impl Registered {
    /// Registers `name`.
    pub fn add(&mut self, name: &str, kind: ShellMetric) {
        self.0.push((name.to_owned(), kind));
    }

    /// The update a `metrics` command asks for, or why it is refused
    /// (no name, an unregistered name, non-numeric params).
    pub fn update(&self, msg: &ShellMsg) -> Result<(String, MetricUpdate), String> {
        let name = msg
            .name
            .as_deref()
            .filter(|n| !n.is_empty())
            .ok_or("a metrics command without a `name`")?;
        let kind = self
            .0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, k)| *k)
            .ok_or_else(|| format!("metric {name:?} is not registered on this component (register it with count_metric or gauge_metric)"))?;
        let number = match &msg.params {
            None | Some(serde_json::Value::Null) if kind == ShellMetric::Count => Some(1.0),
            Some(v) => v.as_f64(),
            None => None,
        };
        let v = number.ok_or_else(|| {
            format!(
                "metric {name:?} got non-numeric params {}",
                msg.params
                    .as_ref()
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "(none)".into())
            )
        })?;
        Ok((
            name.to_owned(),
            match kind {
                ShellMetric::Count => MetricUpdate::Add(v),
                ShellMetric::Gauge => MetricUpdate::Set(v),
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::parse_shell_msg;

    #[test]
    fn registered_metrics_update_and_others_are_refused() {
        let mut r = Registered::default();
        r.add("words", ShellMetric::Count);
        r.add("queue", ShellMetric::Gauge);
        let m = |s: &str| parse_shell_msg(s.as_bytes()).unwrap();
        assert_eq!(
            r.update(&m(r#"{"command":"metrics","name":"words","params":3}"#)),
            Ok(("words".into(), MetricUpdate::Add(3.0)))
        );
        assert_eq!(
            r.update(&m(r#"{"command":"metrics","name":"words"}"#)),
            Ok(("words".into(), MetricUpdate::Add(1.0)))
        );
        assert_eq!(
            r.update(&m(r#"{"command":"metrics","name":"queue","params":2.5}"#)),
            Ok(("queue".into(), MetricUpdate::Set(2.5)))
        );
        let e = r
            .update(&m(r#"{"command":"metrics","name":"other","params":1}"#))
            .unwrap_err();
        assert!(e.contains("\"other\" is not registered"), "{e}");
        let e = r
            .update(&m(r#"{"command":"metrics","name":"queue","params":"x"}"#))
            .unwrap_err();
        assert!(e.contains("non-numeric"), "{e}");
        assert!(r.update(&m(r#"{"command":"metrics"}"#)).is_err());
    }
}
