//! The operations users give a Trident stream: functions, filters, maps,
//! and the three kinds of aggregator (Storm's `trident.operation`).
//!
//! Every trait has a blanket implementation for closures of its shape;
//! closures need their argument types written out, e.g.
//! `|t: &TridentTuple, out: &mut TridentCollector| { .. }`.

use crate::tuple::{BatchId, TridentCollector, TridentTuple};
use squall_topology_api::{ExecuteError, Value, Values};
use std::any::Any;

/// Adds fields to each tuple (Storm's `Function`, used by `each`): every
/// emitted [`Values`] becomes one output tuple, the input's fields followed
/// by the emitted ones; emitting nothing drops the tuple. An `Err` fails
/// the whole batch, which is replayed (Storm's `FailedException`).
pub trait Function: Send + Sync {
    /// Processes one tuple (the fields the `each` selected).
    fn execute(&self, tuple: &TridentTuple, out: &mut TridentCollector)
        -> Result<(), ExecuteError>;
}

impl<F> Function for F
where
    F: Fn(&TridentTuple, &mut TridentCollector) -> Result<(), ExecuteError> + Send + Sync,
{
    fn execute(
        &self,
        tuple: &TridentTuple,
        out: &mut TridentCollector,
    ) -> Result<(), ExecuteError> {
        self(tuple, out)
    }
}

/// Keeps the tuples for which it returns true (Storm's `Filter`).
pub trait Filter: Send + Sync {
    /// Whether to keep `tuple`.
    fn is_keep(&self, tuple: &TridentTuple) -> bool;
}

impl<F: Fn(&TridentTuple) -> bool + Send + Sync> Filter for F {
    fn is_keep(&self, tuple: &TridentTuple) -> bool {
        self(tuple)
    }
}

/// Replaces each tuple by one new tuple (Storm's `MapFunction`).
pub trait MapFunction: Send + Sync {
    /// The new tuple's values.
    fn execute(&self, tuple: &TridentTuple) -> Values;
}

impl<F: Fn(&TridentTuple) -> Values + Send + Sync> MapFunction for F {
    fn execute(&self, tuple: &TridentTuple) -> Values {
        self(tuple)
    }
}

/// Replaces each tuple by zero or more new tuples (Storm's
/// `FlatMapFunction`).
pub trait FlatMapFunction: Send + Sync {
    /// The new tuples' values.
    fn execute(&self, tuple: &TridentTuple) -> Vec<Values>;
}

impl<F: Fn(&TridentTuple) -> Vec<Values> + Send + Sync> FlatMapFunction for F {
    fn execute(&self, tuple: &TridentTuple) -> Vec<Values> {
        self(tuple)
    }
}

/// An aggregator that folds each tuple into a value and merges values
/// (Storm's `CombinerAggregator`). Because values merge, Trident
/// pre-aggregates before repartitioning, so only one tuple per group and
/// partition crosses the network. Its output is one field.
pub trait CombinerAggregator: Send + Sync {
    /// The value of one tuple.
    fn init(&self, tuple: &TridentTuple) -> Value;
    /// Merges two values (must be associative and commutative).
    fn combine(&self, a: Value, b: Value) -> Value;
    /// The value of no tuples.
    fn zero(&self) -> Value;
}

/// An aggregator that folds tuples one by one into a value, starting at
/// `init` (Storm's `ReducerAggregator`). Every tuple of a group goes to
/// one task. Its output is one field.
pub trait ReducerAggregator: Send + Sync {
    /// The starting value.
    fn init(&self) -> Value;
    /// Folds `tuple` into `current`.
    fn reduce(&self, current: Value, tuple: &TridentTuple) -> Value;
}

/// The general aggregator (Storm's `Aggregator`): a state per batch (and
/// per group under `group_by`), fed every tuple, and completed at the end
/// of the batch, emitting any number of tuples of its output fields.
pub trait Aggregator: Send + Sync {
    /// The per-batch state.
    type State: Send + 'static;
    /// A fresh state for `batch`.
    fn init(&self, batch: BatchId) -> Self::State;
    /// Folds one tuple in; may emit.
    fn aggregate(&self, state: &mut Self::State, tuple: &TridentTuple, out: &mut TridentCollector);
    /// The batch ended; emits the results.
    fn complete(&self, state: Self::State, out: &mut TridentCollector);
}

/// An [`Aggregator`] with its state type erased.
pub(crate) trait DynAggregator: Send + Sync {
    fn init(&self, batch: BatchId) -> Box<dyn Any + Send>;
    fn aggregate(
        &self,
        state: &mut (dyn Any + Send),
        tuple: &TridentTuple,
        out: &mut TridentCollector,
    );
    fn complete(&self, state: Box<dyn Any + Send>, out: &mut TridentCollector);
}

impl<A: Aggregator> DynAggregator for A {
    fn init(&self, batch: BatchId) -> Box<dyn Any + Send> {
        Box::new(Aggregator::init(self, batch))
    }

    fn aggregate(
        &self,
        state: &mut (dyn Any + Send),
        tuple: &TridentTuple,
        out: &mut TridentCollector,
    ) {
        if let Some(s) = state.downcast_mut::<A::State>() {
            Aggregator::aggregate(self, s, tuple, out)
        }
    }

    fn complete(&self, state: Box<dyn Any + Send>, out: &mut TridentCollector) {
        if let Ok(s) = state.downcast::<A::State>() {
            Aggregator::complete(self, *s, out)
        }
    }
}

/// Counts tuples (Storm's `Count`): an int.
#[derive(Debug, Clone, Copy, Default)]
pub struct Count;

impl CombinerAggregator for Count {
    fn init(&self, _tuple: &TridentTuple) -> Value {
        Value::Int(1)
    }

    fn combine(&self, a: Value, b: Value) -> Value {
        add(a, b)
    }

    fn zero(&self) -> Value {
        Value::Int(0)
    }
}

/// Sums the first selected field (Storm's `Sum`): ints stay ints, a float
/// makes the sum a float, nulls and non-numbers count as zero.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sum;

impl CombinerAggregator for Sum {
    fn init(&self, tuple: &TridentTuple) -> Value {
        match tuple.value(0) {
            Ok(v @ (Value::Int(_) | Value::Float(_))) => v.clone(),
            _ => Value::Int(0),
        }
    }

    fn combine(&self, a: Value, b: Value) -> Value {
        add(a, b)
    }

    fn zero(&self) -> Value {
        Value::Int(0)
    }
}

/// `a + b` over ints and floats (ints wrap; anything else is zero).
pub fn add(a: Value, b: Value) -> Value {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Value::Int(x.wrapping_add(y)),
        (Value::Int(x), Value::Float(y)) | (Value::Float(y), Value::Int(x)) => {
            Value::Float(x as f64 + y)
        }
        (Value::Float(x), Value::Float(y)) => Value::Float(x + y),
        (x @ (Value::Int(_) | Value::Float(_)), _) | (_, x @ (Value::Int(_) | Value::Float(_))) => {
            x
        }
        _ => Value::Int(0),
    }
}
