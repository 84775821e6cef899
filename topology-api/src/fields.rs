//! Field names of a stream.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The ordered field names of a stream, e.g. `["word", "count"]`. Lookup by
/// name is a linear scan, which beats hashing for the handful of fields a
/// stream has.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Fields(Vec<String>);

impl Fields {
    /// Fields with the given names, in order.
    pub fn new<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self(names.into_iter().map(Into::into).collect())
    }

    /// The index of the field `name`, if the stream has it.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.0.iter().position(|f| f == name)
    }

    /// Whether the stream has a field `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.index_of(name).is_some()
    }

    /// The number of fields.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no fields.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The field names in order.
    pub fn names(&self) -> &[String] {
        &self.0
    }
}

impl<S: Into<String>, const N: usize> From<[S; N]> for Fields {
    fn from(names: [S; N]) -> Self {
        Self::new(names)
    }
}

impl From<Vec<String>> for Fields {
    fn from(names: Vec<String>) -> Self {
        Self(names)
    }
}

impl From<Vec<&str>> for Fields {
    fn from(names: Vec<&str>) -> Self {
        Self::new(names)
    }
}

impl fmt::Display for Fields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}]", self.0.join(", "))
    }
}
