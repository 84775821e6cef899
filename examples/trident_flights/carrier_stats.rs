//! The flights example's aggregator (also used by `tests/trident.rs`).

use squall::trident::operation::add;
use squall::trident::{CombinerAggregator, TridentTuple};
use squall::Value;

/// Per carrier: `[flights, flights with an arrival delay, sum of delays]`.
pub struct CarrierStats;

impl CombinerAggregator for CarrierStats {
    fn init(&self, t: &TridentTuple) -> Value {
        let delay = t.value(0).ok().and_then(Value::as_i64);
        Value::List(vec![
            Value::Int(1),
            Value::Int(delay.is_some() as i64),
            Value::Int(delay.unwrap_or(0)),
        ])
    }

    fn combine(&self, a: Value, b: Value) -> Value {
        match (a, b) {
            (Value::List(a), Value::List(b)) => {
                Value::List(a.into_iter().zip(b).map(|(x, y)| add(x, y)).collect())
            }
            (a, _) => a,
        }
    }

    fn zero(&self) -> Value {
        Value::List(vec![Value::Int(0); 3])
    }
}
