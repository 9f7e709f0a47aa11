//! JSON that keeps its keys in the order they were written.
//!
//! `attune pack index-update` rewrites an index that people and other tools
//! also edit, so everything it does not change must come back as it was,
//! unknown keys and their order included. `serde_json::Value` sorts object
//! keys unless the crate-wide `preserve_order` feature is on, which would
//! change the key order of every other JSON output attune prints; this small
//! value type keeps the order here only.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

/// A JSON value whose objects are lists of (key, value) in file order.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    /// The value of `key` when this is an object that has it (the first, if repeated).
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Json> {
        match self {
            Json::Object(fields) => fields.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Replaces the value of `key` where it stands, or appends it.
    pub fn set(&mut self, key: &str, value: Json) {
        if let Some(v) = self.get_mut(key) {
            *v = value;
        } else if let Json::Object(fields) = self {
            fields.push((key.to_owned(), value));
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    /// Re-reads any serializable value, keeping the order its `Serialize`
    /// writes fields in (struct field order).
    pub fn from_serialize<T: Serialize>(value: &T) -> serde_json::Result<Json> {
        serde_json::from_str(&serde_json::to_string(value)?)
    }

    /// Pretty-printed (two-space indent) with a final newline: stable output
    /// that diffs well in a registry's repository.
    pub fn to_pretty(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("a JSON value always serializes");
        s.push('\n');
        s
    }
}

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Json::Null => s.serialize_unit(),
            Json::Bool(b) => s.serialize_bool(*b),
            Json::Number(n) => n.serialize(s),
            Json::String(v) => s.serialize_str(v),
            Json::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Json::Object(fields) => {
                let mut map = s.serialize_map(Some(fields.len()))?;
                for (k, v) in fields {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Json, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_none<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Json, D::Error> {
        Json::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Json, E> {
        serde_json::Number::from_f64(v).map(Json::Number).ok_or_else(|| E::custom("a number JSON cannot hold"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Json, E> {
        Ok(Json::String(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut fields = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, Json>()? {
            fields.push((k, v));
        }
        Ok(Json::Object(fields))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_key_order_and_values() {
        let text = r#"{"z": 1, "a": {"y": [true, null, 1.5, -2], "b": "x"}, "m": 18446744073709551615}"#;
        let v: Json = serde_json::from_str(text).unwrap();
        let out = serde_json::to_string(&v).unwrap();
        assert_eq!(out, r#"{"z":1,"a":{"y":[true,null,1.5,-2],"b":"x"},"m":18446744073709551615}"#);
    }

    #[test]
    fn set_replaces_in_place_or_appends() {
        let mut v: Json = serde_json::from_str(r#"{"b": 1, "a": 2}"#).unwrap();
        v.set("b", Json::String("x".into()));
        v.set("c", Json::Null);
        assert_eq!(serde_json::to_string(&v).unwrap(), r#"{"b":"x","a":2,"c":null}"#);
    }
}
