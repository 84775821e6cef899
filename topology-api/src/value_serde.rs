//! The serialized form of a [`Value`]: the format's own types, untagged —
//! null, bool, integer, float, string, bytes, array, map — so a tuple in
//! MessagePack or JSON reads as plain data (Storm's multilang JSON carries
//! tuple values the same way) and costs no variant tags on the wire.
//!
//! Reading back is by the format's type: an unsigned integer over
//! `i64::MAX` is refused (Squall's integers are `i64`), map keys must be
//! strings. Formats without a bytes type (JSON) write [`Value::Bytes`] as
//! an array of numbers, which reads back as a [`Value::List`].

use crate::Value;
use compact_str::CompactString;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, Serializer};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::fmt;

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::Float(f) => s.serialize_f64(*f),
            Value::Str(v) => s.serialize_str(v),
            Value::Bytes(b) => s.serialize_bytes(b),
            Value::List(l) => s.collect_seq(l),
            Value::Map(m) => s.collect_map(m),
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("null, a bool, a 64-bit integer, a float, a string, bytes, a list or a map")
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        i64::try_from(v)
            .map(Value::Int)
            .map_err(|_| E::custom(format!("integer {v} is over the 64-bit signed range")))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(CompactString::from(v)))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(CompactString::from(v)))
    }

    fn visit_bytes<E>(self, v: &[u8]) -> Result<Value, E> {
        Ok(Value::Bytes(v.to_vec()))
    }

    fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Value, E> {
        Ok(Value::Bytes(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut list = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(v) = seq.next_element()? {
            list.push(v);
        }
        Ok(Value::List(list))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut m = BTreeMap::new();
        while let Some((k, v)) = map.next_entry::<String, Value>()? {
            m.insert(k, v);
        }
        Ok(Value::Map(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Value> {
        let mut m = BTreeMap::new();
        m.insert(
            "k".to_owned(),
            Value::List(vec![Value::Int(-3), Value::Null]),
        );
        vec![
            Value::Null,
            Value::Bool(true),
            Value::Int(0),
            Value::Int(-1),
            Value::Int(i64::MAX),
            Value::Int(i64::MIN),
            Value::Float(1.5),
            Value::from("a string longer than twenty-four bytes"),
            Value::from("short"),
            Value::Bytes(vec![0, 255, 7]),
            Value::List(vec![Value::from("x"), Value::Float(-0.25)]),
            Value::Map(m),
        ]
    }

    #[test]
    fn msgpack_round_trips_every_type() {
        for v in samples() {
            let bytes = rmp_serde::to_vec(&v).unwrap();
            assert_eq!(rmp_serde::from_slice::<Value>(&bytes).unwrap(), v, "{v:?}");
        }
    }

    #[test]
    fn json_is_plain_data() {
        let v = Value::List(vec![Value::from("to"), Value::Int(2), Value::Null]);
        assert_eq!(serde_json::to_string(&v).unwrap(), r#"["to",2,null]"#);
        let back: Value = serde_json::from_str(r#"{"a": [1, 2.5, "b", true]}"#).unwrap();
        let list = vec![
            Value::Int(1),
            Value::Float(2.5),
            Value::from("b"),
            Value::Bool(true),
        ];
        assert_eq!(
            back,
            Value::Map(BTreeMap::from([("a".to_owned(), Value::List(list))]))
        );
    }

    #[test]
    fn out_of_range_integer_and_non_string_key_are_refused() {
        let err = serde_json::from_str::<Value>("18446744073709551615").unwrap_err();
        assert!(
            err.to_string().contains("over the 64-bit signed range"),
            "{err}"
        );
        let bytes = rmp_serde::to_vec(&BTreeMap::from([(1, ())])).unwrap();
        assert!(rmp_serde::from_slice::<Value>(&bytes).is_err());
    }
}
