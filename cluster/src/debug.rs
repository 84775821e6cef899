//! A topology's event sampling (Storm's topology event logger and its
//! `DebugOptions`): which components' emitted tuples are sampled, and at
//! what percentage. Nimbus keeps them in the topology's record; workers
//! turn them into per-component sampling rates. Pure.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Sampling rates are in hundredths of a percent: 10,000 samples every
/// tuple.
pub const RATE_SCALE: u32 = 10_000;

/// Storm's `DebugOptions`: sampling on, and the percentage of emitted
/// tuples sampled (0 < pct <= 100).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DebugOptions {
    /// Whether sampling is on.
    pub enable: bool,
    /// Percentage of emitted tuples sampled.
    pub sampling_pct: f64,
}

impl DebugOptions {
    /// The rate in hundredths of a percent (0 when off).
    pub fn rate(&self) -> u32 {
        if self.enable {
            (self.sampling_pct * 100.0)
                .round()
                .clamp(0.0, RATE_SCALE as f64) as u32
        } else {
            0
        }
    }
}

/// A topology's sampling: the topology-wide setting, and per-component
/// ones, which take precedence for their component (Storm keeps both in
/// `StormBase.component_debug`, the topology's under its id).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TopologyDebug {
    /// For every component without its own.
    pub topology: Option<DebugOptions>,
    /// Per component id.
    pub components: BTreeMap<String, DebugOptions>,
}

/// Why a sampling change was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DebugError {
    /// The percentage is not in (0, 100].
    #[error("sampling percentage {0} is not in (0, 100]")]
    BadPercentage(f64),
}

impl TopologyDebug {
    /// With sampling of `component` (the whole topology when `None`)
    /// turned on at `pct` percent, or off. Turning the topology off
    /// also clears every component's setting, as Storm's UI does.
    ///
    /// # Errors
    /// [`DebugError::BadPercentage`] when turning on with `pct` not in
    /// (0, 100].
    pub fn with(
        mut self,
        component: Option<&str>,
        enable: bool,
        pct: f64,
    ) -> Result<Self, DebugError> {
        if enable && !(pct > 0.0 && pct <= 100.0) {
            return Err(DebugError::BadPercentage(pct));
        }
        let options = DebugOptions {
            enable,
            sampling_pct: if enable { pct } else { 0.0 },
        };
        match component {
            Some(c) => {
                self.components.insert(c.to_owned(), options);
            }
            None => {
                self.topology = enable.then_some(options);
                if !enable {
                    self.components.clear();
                }
            }
        }
        Ok(self)
    }

    /// The options in force for `component`: its own, else the
    /// topology's.
    pub fn of(&self, component: &str) -> Option<DebugOptions> {
        self.components.get(component).copied().or(self.topology)
    }

    /// `component`'s sampling rate in hundredths of a percent (0: off).
    pub fn rate_of(&self, component: &str) -> u32 {
        self.of(component).map_or(0, |o| o.rate())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_components_own_setting_wins_over_the_topologys() {
        let d = TopologyDebug::default()
            .with(None, true, 10.0)
            .unwrap()
            .with(Some("split"), true, 100.0)
            .unwrap()
            .with(Some("count"), false, 0.0)
            .unwrap();
        assert_eq!(d.rate_of("split"), RATE_SCALE);
        assert_eq!(d.rate_of("count"), 0);
        assert_eq!(d.rate_of("lines"), 1_000);
        let off = d.with(None, false, 0.0).unwrap();
        assert_eq!(off, TopologyDebug::default());
        assert_eq!(off.rate_of("split"), 0);
    }

    #[test]
    fn percentages_outside_zero_to_a_hundred_are_refused() {
        for bad in [0.0, -1.0, 100.5, f64::NAN] {
            let e = TopologyDebug::default().with(None, true, bad).unwrap_err();
            assert!(e.to_string().contains("not in (0, 100]"), "{e}");
        }
        let small = TopologyDebug::default().with(None, true, 0.01).unwrap();
        assert_eq!(small.rate_of("x"), 1);
    }
}
