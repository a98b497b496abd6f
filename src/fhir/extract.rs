//! From a resource to what the store indexes: one [`IndexEntry`] per searchable value of each parameter,
//! and the patients whose compartment holds it.

use serde_json::Value;
use unicode_normalization::UnicodeNormalization;

use super::datetime;
use super::params::{Kind, Param, Registry, compartment_params};
use crate::store::{IndexEntry, IndexValue};

/// Lower-case, accent-free, whitespace-collapsed: how string search compares.
pub fn normalize(s: &str) -> String {
    let stripped: String = s
        .nfd()
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
        .collect();
    stripped.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// `Type/id` for a reference to this server (relative, or absolute under `base`), else the reference as is.
pub fn local_reference(reference: &str, base: &str) -> String {
    let rel = reference
        .strip_prefix(base)
        .map_or(reference, |r| r.trim_start_matches('/'));
    let rel = rel.split("/_history/").next().unwrap_or(rel);
    rel.to_owned()
}

/// Every local reference (`Type`, `id`) anywhere in a resource.
pub fn references(resource: &Value, base: &str) -> Vec<(String, String)> {
    fn walk(v: &Value, base: &str, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("reference") {
                    let local = local_reference(r, base);
                    if let Some((t, id)) = local
                        .split_once('/')
                        .filter(|(t, id)| !id.contains('/') && !t.contains(':'))
                    {
                        out.push((t.to_owned(), id.to_owned()));
                    }
                }
                map.values().for_each(|v| walk(v, base, out));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, base, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(resource, base, &mut out);
    out.sort();
    out.dedup();
    out
}

/// Index entries of every parameter of the resource's type.
pub fn index(registry: &Registry, rtype: &str, resource: &Value, base: &str) -> Vec<IndexEntry> {
    let mut out = Vec::new();
    for param in registry.of_type(rtype) {
        for node in param.eval(resource) {
            values(param, node, base, &mut out);
        }
    }
    out.dedup();
    out
}

/// The patients whose compartment holds a stored resource, evaluating only the compartment parameters
/// (cheaper than a whole [`index`] when only the owners are wanted, as for the audit of a read).
pub fn owners(registry: &Registry, rtype: &str, id: &str, resource: &Value, base: &str) -> Vec<String> {
    let mut entries = Vec::new();
    for param in registry
        .of_type(rtype)
        .iter()
        .filter(|p| compartment_params(rtype).contains(&p.name.as_str()))
    {
        for node in param.eval(resource) {
            values(param, node, base, &mut entries);
        }
    }
    compartments(rtype, id, &entries)
}

/// The patients (ids) whose compartment holds the resource, read from its index entries.
pub fn compartments(rtype: &str, id: &str, entries: &[IndexEntry]) -> Vec<String> {
    let params = compartment_params(rtype);
    let mut patients: Vec<String> = entries
        .iter()
        .filter(|e| params.contains(&e.param.as_str()))
        .filter_map(|e| match &e.value {
            IndexValue::Reference { target } => target.strip_prefix("Patient/").map(str::to_owned),
            _ => None,
        })
        .collect();
    if rtype == "Patient" {
        patients.push(id.to_owned());
    }
    patients.sort();
    patients.dedup();
    patients
}

fn push(out: &mut Vec<IndexEntry>, param: &str, value: IndexValue) {
    out.push(IndexEntry {
        param: param.to_owned(),
        value,
    });
}

fn token(out: &mut Vec<IndexEntry>, param: &str, system: Option<&Value>, code: Option<&Value>) {
    if let Some(code) = code.and_then(scalar) {
        let system = system.and_then(Value::as_str).map(|s| clip(s.to_owned()));
        push(
            out,
            param,
            IndexValue::Token {
                system,
                code: clip(code),
            },
        );
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Index values are cut to this many bytes (at a character boundary): B-tree index entries have a size limit
/// on PostgreSQL, and no search needs more of a string to tell values apart.
const MAX_INDEXED: usize = 512;

/// A value as the index keeps it (searches clip theirs the same way).
pub fn clip(mut s: String) -> String {
    if s.len() > MAX_INDEXED {
        let mut end = MAX_INDEXED;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

fn text(out: &mut Vec<IndexEntry>, param: &str, s: &str) {
    if !s.trim().is_empty() {
        push(
            out,
            param,
            IndexValue::Text {
                norm: clip(normalize(s)),
                exact: clip(s.to_owned()),
            },
        );
    }
}

fn values(param: &Param, node: &Value, base: &str, out: &mut Vec<IndexEntry>) {
    let name = param.name.as_str();
    match param.kind {
        Kind::Token => match node {
            Value::Object(map) => {
                if let Some(Value::Array(codings)) = map.get("coding") {
                    for c in codings {
                        token(out, name, c.get("system"), c.get("code"));
                    }
                } else if map.contains_key("code") {
                    token(out, name, map.get("system"), map.get("code")); // Coding, Quantity
                } else if map.contains_key("value") {
                    token(out, name, map.get("system"), map.get("value")); // Identifier, ContactPoint
                }
            }
            v => token(out, name, None, Some(v)),
        },
        Kind::Uri => {
            if let Some(s) = node.as_str() {
                push(
                    out,
                    name,
                    IndexValue::Token {
                        system: None,
                        code: clip(s.to_owned()),
                    },
                );
            }
        }
        Kind::String => match node {
            Value::String(s) => text(out, name, s),
            Value::Object(map) => {
                // HumanName and Address: every part is searchable.
                for key in [
                    "text",
                    "family",
                    "given",
                    "prefix",
                    "suffix",
                    "line",
                    "city",
                    "district",
                    "state",
                    "postalCode",
                    "country",
                ] {
                    match map.get(key) {
                        Some(Value::String(s)) => text(out, name, s),
                        Some(Value::Array(parts)) => {
                            parts.iter().filter_map(Value::as_str).for_each(|s| text(out, name, s))
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        },
        Kind::Date => {
            let range = match node {
                Value::String(s) => datetime::range(s),
                Value::Object(map) => {
                    let start = map.get("start").and_then(Value::as_str).and_then(datetime::range);
                    let end = map.get("end").and_then(Value::as_str).and_then(datetime::range);
                    (start.is_some() || end.is_some())
                        .then(|| (start.map_or(i64::MIN, |s| s.0), end.map_or(i64::MAX, |e| e.1)))
                }
                _ => None,
            };
            if let Some((low, high)) = range {
                push(out, name, IndexValue::Date { low, high });
            }
        }
        Kind::Reference => {
            let reference = match node {
                Value::String(s) => Some(s.as_str()), // canonical
                Value::Object(map) => {
                    if let Some(identifier) = map.get("identifier") {
                        token(
                            out,
                            &format!("{name}:identifier"),
                            identifier.get("system"),
                            identifier.get("value"),
                        );
                    }
                    map.get("reference").and_then(Value::as_str)
                }
                _ => None,
            };
            if let Some(r) = reference.filter(|r| !r.starts_with('#')) {
                push(
                    out,
                    name,
                    IndexValue::Reference {
                        target: clip(local_reference(r, base)),
                    },
                );
            }
        }
        Kind::Quantity | Kind::Number => {
            let (value, system, code) = match node {
                Value::Number(n) => (n.as_f64(), None, None),
                Value::Object(map) => (
                    map.get("value").and_then(Value::as_f64),
                    map.get("system").and_then(Value::as_str).map(str::to_owned),
                    map.get("code")
                        .or_else(|| map.get("unit"))
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                ),
                _ => (None, None, None),
            };
            if let Some(value) = value {
                push(out, name, IndexValue::Quantity { value, system, code });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn indexes_an_observation_and_its_compartment() {
        let registry = Registry::new(&[]).unwrap();
        let obs = json!({
            "resourceType": "Observation",
            "status": "final",
            "code": { "coding": [{ "system": "http://loinc.org", "code": "718-7" }] },
            "subject": { "reference": "http://x/fhir/Patient/p1" },
            "performer": [{ "reference": "Practitioner/d1" }],
            "effectiveDateTime": "2024-01-02",
            "valueQuantity": { "value": 13.2, "unit": "g/dL", "system": "http://unitsofmeasure.org", "code": "g/dL" }
        });
        let entries = index(&registry, "Observation", &obs, "http://x/fhir");
        let has = |param: &str, value: IndexValue| {
            entries.contains(&IndexEntry {
                param: param.into(),
                value,
            })
        };
        assert!(has(
            "code",
            IndexValue::Token {
                system: Some("http://loinc.org".into()),
                code: "718-7".into()
            }
        ));
        assert!(has(
            "status",
            IndexValue::Token {
                system: None,
                code: "final".into()
            }
        ));
        assert!(has(
            "patient",
            IndexValue::Reference {
                target: "Patient/p1".into()
            }
        ));
        assert!(has(
            "performer",
            IndexValue::Reference {
                target: "Practitioner/d1".into()
            }
        ));
        assert!(entries.iter().any(|e| e.param == "date"));
        assert!(entries.iter().any(|e| e.param == "value-quantity"));
        assert_eq!(compartments("Observation", "o1", &entries), vec!["p1".to_owned()]);
        assert_eq!(normalize("  Zoë   ÉLISE "), "zoe elise");
        let long = "é".repeat(400);
        assert_eq!(clip(long.clone()).len(), 512);
        assert!(long.starts_with(&clip(long.clone())));
    }
}
