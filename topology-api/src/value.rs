//! The dynamic values tuples carry.

use compact_str::CompactString;
use smallvec::SmallVec;
use std::collections::BTreeMap;
use std::fmt;
use std::hash::Hasher;

/// One value in a tuple: null, bool, 64-bit int, 64-bit float, UTF-8 string,
/// bytes, list or string-keyed map. Strings up to 24 bytes are stored inline
/// (no heap allocation).
/// Serialized untagged, as the format's own types (see `value_serde`).
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    /// No value.
    #[default]
    Null,
    /// A boolean.
    Bool(bool),
    /// A signed 64-bit integer.
    Int(i64),
    /// A 64-bit float.
    Float(f64),
    /// A UTF-8 string.
    Str(CompactString),
    /// Raw bytes.
    Bytes(Vec<u8>),
    /// A list of values.
    List(Vec<Value>),
    /// A map from string keys to values, ordered by key.
    Map(BTreeMap<String, Value>),
}

impl Value {
    /// The name of this value's type, as used in error messages
    /// (`"null"`, `"bool"`, `"int"`, `"float"`, `"string"`, `"bytes"`,
    /// `"list"`, `"map"`).
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "string",
            Value::Bytes(_) => "bytes",
            Value::List(_) => "list",
            Value::Map(_) => "map",
        }
    }

    /// The string, if this is a [`Value::Str`].
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is a [`Value::Int`].
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The float, if this is a [`Value::Float`] (ints are widened).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            Value::Int(i) => Some(*i as f64),
            _ => None,
        }
    }

    /// The boolean, if this is a [`Value::Bool`].
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The bytes, if this is a [`Value::Bytes`].
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The list, if this is a [`Value::List`].
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    /// Feeds a stable, type-tagged encoding of the value to `h`. Used by
    /// fields grouping: equal values hash equally in every process and on
    /// every platform (unlike `std`'s randomly seeded hasher).
    pub fn stable_hash<H: Hasher>(&self, h: &mut H) {
        match self {
            Value::Null => h.write_u8(0),
            Value::Bool(b) => {
                h.write_u8(1);
                h.write_u8(*b as u8)
            }
            Value::Int(i) => {
                h.write_u8(2);
                h.write(&i.to_le_bytes())
            }
            Value::Float(f) => {
                h.write_u8(3);
                h.write(&f.to_bits().to_le_bytes())
            }
            Value::Str(s) => {
                h.write_u8(4);
                h.write(&(s.len() as u64).to_le_bytes());
                h.write(s.as_bytes())
            }
            Value::Bytes(b) => {
                h.write_u8(5);
                h.write(&(b.len() as u64).to_le_bytes());
                h.write(b)
            }
            Value::List(l) => {
                h.write_u8(6);
                h.write(&(l.len() as u64).to_le_bytes());
                l.iter().for_each(|v| v.stable_hash(h));
            }
            Value::Map(m) => {
                h.write_u8(7);
                h.write(&(m.len() as u64).to_le_bytes());
                for (k, v) in m {
                    h.write(&(k.len() as u64).to_le_bytes());
                    h.write(k.as_bytes());
                    v.stable_hash(h);
                }
            }
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Str(s) => write!(f, "{s:?}"),
            Value::Bytes(b) => write!(f, "<{} bytes>", b.len()),
            Value::List(l) => {
                f.write_str("[")?;
                for (i, v) in l.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            Value::Map(m) => {
                f.write_str("{")?;
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k:?}: {v}")?;
                }
                f.write_str("}")
            }
        }
    }
}

macro_rules! from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Self {
                Value::Int(v as i64)
            }
        }
    )*};
}
from_int!(i8, i16, i32, i64, u8, u16, u32, isize);

impl From<u64> for Value {
    /// Stores the bits of `v` as an [`Value::Int`] (values above `i64::MAX`
    /// wrap to negatives; `as u64` on the way out restores them).
    fn from(v: u64) -> Self {
        Value::Int(v as i64)
    }
}
impl From<usize> for Value {
    fn from(v: usize) -> Self {
        Value::Int(v as i64)
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}
impl From<f32> for Value {
    fn from(v: f32) -> Self {
        Value::Float(v as f64)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Str(CompactString::from(v))
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Str(CompactString::from(v))
    }
}
impl From<CompactString> for Value {
    fn from(v: CompactString) -> Self {
        Value::Str(v)
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Bytes(v)
    }
}
impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Self {
        Value::Bytes(v.to_vec())
    }
}
impl From<Vec<Value>> for Value {
    fn from(v: Vec<Value>) -> Self {
        Value::List(v)
    }
}
impl From<BTreeMap<String, Value>> for Value {
    fn from(v: BTreeMap<String, Value>) -> Self {
        Value::Map(v)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// The values of one tuple, in the order of its stream's [`Fields`](crate::Fields).
/// Up to two values are stored inline (no heap allocation).
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Values(pub SmallVec<[Value; 2]>);

impl Values {
    /// An empty list of values.
    #[inline]
    pub fn new() -> Self {
        Self(SmallVec::new())
    }

    /// Appends a value.
    #[inline]
    pub fn push(&mut self, v: impl Into<Value>) {
        self.0.push(v.into())
    }
}

impl std::ops::Deref for Values {
    type Target = [Value];
    #[inline]
    fn deref(&self) -> &[Value] {
        &self.0
    }
}

impl std::ops::DerefMut for Values {
    #[inline]
    fn deref_mut(&mut self) -> &mut [Value] {
        &mut self.0
    }
}

impl From<Vec<Value>> for Values {
    fn from(v: Vec<Value>) -> Self {
        Self(SmallVec::from_vec(v))
    }
}

impl FromIterator<Value> for Values {
    fn from_iter<I: IntoIterator<Item = Value>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl IntoIterator for Values {
    type Item = Value;
    type IntoIter = smallvec::IntoIter<[Value; 2]>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl fmt::Display for Values {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", Value::List(self.0.to_vec()))
    }
}

/// Builds [`Values`] from expressions convertible into [`Value`].
///
/// ```
/// use squall_topology_api::{values, Value};
/// let v = values!["the", 2];
/// assert_eq!(v[0], Value::from("the"));
/// assert_eq!(v[1], Value::Int(2));
/// ```
#[macro_export]
macro_rules! values {
    () => { $crate::Values::new() };
    ($($v:expr),+ $(,)?) => {{
        let mut vals = $crate::Values::new();
        $( vals.push($v); )+
        vals
    }};
}
