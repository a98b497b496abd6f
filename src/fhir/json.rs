//! The client's JSON text, kept as written: numbers keep their form (`1.50` stays `1.50`) because only the
//! top-level `id` and `meta` are rewritten and every other element is copied as raw text.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::error::{Error, Issue, Result};

/// A JSON object's top-level members in their original order, values as raw text.
pub struct RawObject(pub Vec<(String, Box<RawValue>)>);

impl<'de> serde::Deserialize<'de> for RawObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawObject;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawObject, A::Error> {
                let mut fields: Vec<(String, Box<RawValue>)> = Vec::new();
                while let Some(entry) = map.next_entry::<String, Box<RawValue>>()? {
                    fields.push(entry);
                }
                Ok(RawObject(fields))
            }
        }
        d.deserialize_map(V)
    }
}

/// A `Value` that refuses duplicate keys at any depth (serde_json would keep the last silently, so what is
/// validated and indexed could differ from what a client reading the stored text sees).
struct StrictValue(Value);

impl<'de> serde::Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrictValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("JSON")
            }
            fn visit_bool<E>(self, v: bool) -> Result<StrictValue, E> {
                Ok(StrictValue(Value::Bool(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<StrictValue, E> {
                Ok(StrictValue(Value::from(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<StrictValue, E> {
                Ok(StrictValue(Value::from(v)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<StrictValue, E> {
                Ok(StrictValue(Value::from(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<StrictValue, E> {
                Ok(StrictValue(Value::String(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<StrictValue, E> {
                Ok(StrictValue(Value::String(v)))
            }
            fn visit_unit<E>(self) -> Result<StrictValue, E> {
                Ok(StrictValue(Value::Null))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<StrictValue, A::Error> {
                let mut items = Vec::new();
                while let Some(StrictValue(v)) = seq.next_element()? {
                    items.push(v);
                }
                Ok(StrictValue(Value::Array(items)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StrictValue, A::Error> {
                let mut object = serde_json::Map::new();
                while let Some(key) = map.next_key::<String>()? {
                    let StrictValue(value) = map.next_value()?;
                    if object.insert(key.clone(), value).is_some() {
                        return Err(de::Error::custom(format!("duplicate element '{key}'")));
                    }
                }
                Ok(StrictValue(Value::Object(object)))
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses JSON text both ways: as a `Value` to judge and index, and as raw members to store.
pub fn parse(text: &str) -> Result<(Value, RawObject)> {
    let syntax = |e: serde_json::Error| {
        Error::invalid(Issue::new(
            "structure",
            format!("malformed JSON at line {}, column {}: {e}", e.line(), e.column()),
        ))
    };
    let StrictValue(value) = serde_json::from_str(text).map_err(syntax)?;
    let raw: RawObject = serde_json::from_str(text).map_err(syntax)?;
    Ok((value, raw))
}

impl RawObject {
    /// The object's text with `id` and `meta` replaced (and `resourceType` first), other members untouched.
    pub fn stamped(&self, rtype: &str, id: &str, meta: &Value) -> String {
        let mut out =
            String::with_capacity(self.0.iter().map(|(k, v)| k.len() + v.get().len() + 4).sum::<usize>() + 128);
        out.push_str("{\"resourceType\":");
        out.push_str(&Value::from(rtype).to_string());
        out.push_str(",\"id\":");
        out.push_str(&Value::from(id).to_string());
        out.push_str(",\"meta\":");
        out.push_str(&meta.to_string());
        for (k, v) in &self.0 {
            if matches!(k.as_str(), "resourceType" | "id" | "meta") {
                continue;
            }
            out.push(',');
            out.push_str(&Value::from(k.as_str()).to_string());
            out.push(':');
            out.push_str(v.get());
        }
        out.push('}');
        out
    }

    /// Keeps only the named top-level members (plus the mandatory ones), for `_elements`; `meta` gets the
    /// SUBSETTED tag so nobody mistakes the result for the whole resource.
    pub fn only(&self, keep: &[String]) -> String {
        let mut out = String::from("{");
        for (k, v) in &self.0 {
            let text = match k.as_str() {
                "meta" => {
                    let mut meta: Value =
                        serde_json::from_str(v.get()).unwrap_or_else(|_| Value::Object(Default::default()));
                    let subsetted = serde_json::json!({
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
                        "code": "SUBSETTED"
                    });
                    match meta.get_mut("tag").and_then(Value::as_array_mut) {
                        Some(tags) => tags.push(subsetted),
                        None => meta["tag"] = Value::Array(vec![subsetted]),
                    }
                    meta.to_string()
                }
                k if k == "resourceType" || k == "id" || keep.iter().any(|e| e == k) => v.get().to_owned(),
                _ => continue,
            };
            if out.len() > 1 {
                out.push(',');
            }
            out.push_str(&Value::from(k.as_str()).to_string());
            out.push(':');
            out.push_str(&text);
        }
        out.push('}');
        out
    }
}

/// Boxes JSON text known to be valid (it was produced or checked by us) as a raw value for embedding.
pub fn raw(text: String) -> Box<RawValue> {
    RawValue::from_string(text).unwrap_or_else(|_| {
        // Stored bodies are always valid JSON; this guards against a corrupted row without panicking.
        RawValue::from_string("{}".to_owned()).unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn stamping_keeps_number_text_and_order() {
        let (_, raw) =
            parse(r#"{"resourceType":"Observation","id":"x","valueQuantity":{"value":1.50},"status":"final"}"#)
                .unwrap();
        let text = raw.stamped("Observation", "y", &json!({"versionId": "2"}));
        assert_eq!(
            text,
            r#"{"resourceType":"Observation","id":"y","meta":{"versionId":"2"},"valueQuantity":{"value":1.50},"status":"final"}"#
        );
        assert_eq!(
            raw.only(&["status".into()]),
            r#"{"resourceType":"Observation","id":"x","status":"final"}"#
        );
        assert!(parse(r#"{"a":1,"a":2}"#).is_err());
        assert!(parse(r#"{"a":{"b":[{"c":1,"c":1}]}}"#).is_err());
        assert_eq!(
            parse(r#"{"a":[1,2.5,"x",null,true]}"#).unwrap().0,
            json!({"a": [1, 2.5, "x", null, true]})
        );
        assert!(parse("{").is_err());
    }
}
