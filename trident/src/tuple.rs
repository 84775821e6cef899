//! What Trident operations see: [`TridentTuple`] (a projection of a row),
//! [`TridentCollector`], [`BatchId`] and [`Key`].

use squall_topology_api::{Fields, Value, Values};
use std::hash::{Hash, Hasher};

/// Which batch a tuple belongs to: its transaction id and the attempt
/// (0 first, +1 at every replay of the same txid).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BatchId {
    /// The transaction id, from 1, increasing by one per batch.
    pub txid: u64,
    /// How many times this txid was emitted before.
    pub attempt: u32,
}

/// A tuple as a Trident operation sees it: the values of the fields it
/// asked for (Storm's `TridentTuple`), by position or by name. Borrowed
/// from the row; no copy is made.
#[derive(Debug, Clone, Copy)]
pub struct TridentTuple<'a> {
    row: &'a [Value],
    select: &'a [usize],
    fields: &'a Fields,
}

/// A missing field or a value of the wrong type in a [`TridentTuple`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TupleError {
    /// No field of that name among the selected fields.
    #[error("no field {name:?} in this tuple (fields: {fields:?})")]
    NoField {
        /// The requested name.
        name: String,
        /// The fields the tuple has.
        fields: Vec<String>,
    },
    /// A position past the selected fields.
    #[error("no value at index {index}: the tuple has {len}")]
    NoIndex {
        /// The requested position.
        index: usize,
        /// How many values the tuple has.
        len: usize,
    },
    /// The value is not of the requested type.
    #[error("value {index} is {found}, not {wanted}")]
    Type {
        /// The position.
        index: usize,
        /// The requested type.
        wanted: &'static str,
        /// The value's type.
        found: &'static str,
    },
}

impl<'a> TridentTuple<'a> {
    /// The projection of `row` on positions `select`, named `fields`
    /// (the runtime makes these).
    pub fn new(row: &'a [Value], select: &'a [usize], fields: &'a Fields) -> Self {
        Self {
            row,
            select,
            fields,
        }
    }

    /// How many values.
    pub fn len(&self) -> usize {
        self.select.len()
    }

    /// Whether it has no values.
    pub fn is_empty(&self) -> bool {
        self.select.is_empty()
    }

    /// The names of its values.
    pub fn fields(&self) -> &'a Fields {
        self.fields
    }

    /// The value at `index`.
    pub fn value(&self, index: usize) -> Result<&'a Value, TupleError> {
        self.select
            .get(index)
            .and_then(|&i| self.row.get(i))
            .ok_or(TupleError::NoIndex {
                index,
                len: self.select.len(),
            })
    }

    /// The value of field `name`.
    pub fn value_by_field(&self, name: &str) -> Result<&'a Value, TupleError> {
        let index = self
            .fields
            .index_of(name)
            .ok_or_else(|| TupleError::NoField {
                name: name.to_owned(),
                fields: self.fields.names().to_vec(),
            })?;
        self.value(index)
    }

    /// The string at `index`.
    pub fn str(&self, index: usize) -> Result<&'a str, TupleError> {
        let v = self.value(index)?;
        v.as_str().ok_or(TupleError::Type {
            index,
            wanted: "string",
            found: v.type_name(),
        })
    }

    /// The integer at `index`.
    pub fn int(&self, index: usize) -> Result<i64, TupleError> {
        let v = self.value(index)?;
        v.as_i64().ok_or(TupleError::Type {
            index,
            wanted: "int",
            found: v.type_name(),
        })
    }

    /// The number at `index` as a float (ints convert).
    pub fn float(&self, index: usize) -> Result<f64, TupleError> {
        let v = self.value(index)?;
        match v {
            Value::Int(i) => Ok(*i as f64),
            _ => v.as_f64().ok_or(TupleError::Type {
                index,
                wanted: "float",
                found: v.type_name(),
            }),
        }
    }

    /// Its values, in order.
    pub fn values(&self) -> impl Iterator<Item = &'a Value> + 'a {
        let row = self.row;
        self.select.iter().map(move |&i| &row[i])
    }

    /// Its values, copied.
    pub fn to_values(&self) -> Values {
        Values(self.values().cloned().collect())
    }
}

/// Where an operation puts its output values (Storm's `TridentCollector`).
/// For `each` they are appended to the input tuple's fields; for
/// aggregators they are the whole output tuple.
#[derive(Debug, Default)]
pub struct TridentCollector {
    out: Vec<Values>,
}

impl TridentCollector {
    /// An empty collector.
    pub fn new() -> Self {
        Self::default()
    }

    /// Emits one tuple's values.
    pub fn emit(&mut self, values: Values) {
        self.out.push(values);
    }

    /// Takes what was emitted so far.
    pub fn drain(&mut self) -> std::vec::Drain<'_, Values> {
        self.out.drain(..)
    }

    /// How many tuples were emitted and not yet taken.
    pub fn len(&self) -> usize {
        self.out.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }
}

/// Values used as a map key (a group of `group_by`, a state key). Equal
/// when the values are equal; hashed with [`Value::stable_hash`]. Floats
/// compare by value, so a NaN key never finds itself: avoid them as keys.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Key(pub Values);

impl Eq for Key {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, h: &mut H) {
        for v in self.0 .0.iter() {
            v.stable_hash(h);
        }
    }
}

impl From<Values> for Key {
    fn from(v: Values) -> Self {
        Self(v)
    }
}

impl<T: Into<Value>, const N: usize> From<[T; N]> for Key {
    fn from(v: [T; N]) -> Self {
        Self(Values(v.into_iter().map(Into::into).collect()))
    }
}
