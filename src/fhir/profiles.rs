//! Our profiles (`profiles/`): StructureDefinitions, the ValueSets and CodeSystems they bind to, and our
//! SearchParameters, shipped inside the binary. A resource that claims one of our profiles in `meta.profile`
//! is checked against its differential: cardinality, patterns, reference targets, choice types and required
//! bindings. Profiles we do not hold (US Core, ...) are accepted unchecked, as FHIR servers commonly do.

use std::collections::HashMap;

use serde_json::Value;

use super::path::{self, Path};
use crate::error::Issue;

/// Every definition in `profiles/`, as shipped with this build.
const EMBEDDED: &[&str] = &[
    include_str!("../../profiles/StructureDefinition-carespace-lab-observation.json"),
    include_str!("../../profiles/StructureDefinition-carespace-portal-message.json"),
    include_str!("../../profiles/CodeSystem-message-category.json"),
    include_str!("../../profiles/ValueSet-message-category.json"),
    include_str!("../../profiles/SearchParameter-communication-in-response-to.json"),
];

/// The definitions in `profiles/`, parsed.
pub fn embedded() -> Result<Vec<Value>, String> {
    EMBEDDED
        .iter()
        .map(|text| serde_json::from_str(text).map_err(|e| format!("profiles/: {e}")))
        .collect()
}

/// One differential element, compiled.
struct Rule {
    /// The element path as the definition writes it, for messages.
    path: String,
    /// Where the element's parents are (`None`: the resource itself).
    parent: Option<Path>,
    /// The element name without `[x]`.
    name: String,
    /// Allowed types of a choice element (`content[x]` with `string` → `contentString`).
    choice_types: Vec<String>,
    min: usize,
    max: Option<usize>,
    pattern: Option<Value>,
    /// Allowed reference target types.
    targets: Vec<String>,
    /// A required binding's ValueSet URL.
    binding: Option<String>,
}

struct Profile {
    rtype: String,
    rules: Vec<Rule>,
}

/// The loaded profiles and terminology.
pub struct Profiles {
    by_url: HashMap<String, Profile>,
    /// ValueSet URL → allowed (system, code) pairs; `None` code: any code of that system.
    value_sets: HashMap<String, Vec<(String, Option<String>)>>,
}

fn last_segment(url: &str) -> String {
    url.rsplit('/').next().unwrap_or(url).to_owned()
}

impl Profiles {
    pub fn new(resources: &[Value]) -> Result<Profiles, String> {
        let str_of = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let mut code_systems: HashMap<String, Vec<String>> = HashMap::new();
        for cs in resources.iter().filter(|r| r["resourceType"] == "CodeSystem") {
            let codes = cs["concept"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| str_of(c, "code"))
                .collect();
            code_systems.insert(str_of(cs, "url").ok_or("CodeSystem without url")?, codes);
        }
        let mut value_sets = HashMap::new();
        for vs in resources.iter().filter(|r| r["resourceType"] == "ValueSet") {
            let mut allowed = Vec::new();
            for include in vs["compose"]["include"].as_array().into_iter().flatten() {
                let system = str_of(include, "system").ok_or("ValueSet include without system")?;
                match include["concept"].as_array() {
                    Some(concepts) => allowed.extend(
                        concepts
                            .iter()
                            .filter_map(|c| str_of(c, "code"))
                            .map(|c| (system.clone(), Some(c))),
                    ),
                    None => match code_systems.get(&system) {
                        Some(codes) => allowed.extend(codes.iter().map(|c| (system.clone(), Some(c.clone())))),
                        None => allowed.push((system.clone(), None)),
                    },
                }
            }
            value_sets.insert(str_of(vs, "url").ok_or("ValueSet without url")?, allowed);
        }
        let mut by_url = HashMap::new();
        for sd in resources.iter().filter(|r| r["resourceType"] == "StructureDefinition") {
            let url = str_of(sd, "url").ok_or("StructureDefinition without url")?;
            let rtype = str_of(sd, "type").ok_or_else(|| format!("{url}: no type"))?;
            let mut rules = Vec::new();
            for el in sd["differential"]["element"].as_array().into_iter().flatten() {
                let full = str_of(el, "path").ok_or_else(|| format!("{url}: element without path"))?;
                let Some((parent, last)) = full.rsplit_once('.') else {
                    continue;
                }; // the root element
                let parent = if parent == rtype {
                    None
                } else {
                    let mut paths =
                        path::parse(&parent.replace("[x]", ""), &rtype).map_err(|e| format!("{url}: {e}"))?;
                    Some(paths.pop().ok_or_else(|| format!("{url}: empty path {full}"))?)
                };
                let types: Vec<&Value> = el["type"].as_array().into_iter().flatten().collect();
                let binding = (el["binding"]["strength"] == "required")
                    .then(|| str_of(&el["binding"], "valueSet"))
                    .flatten();
                if let Some(vs) = &binding
                    && !value_sets.contains_key(vs)
                {
                    return Err(format!("{url}: {full} binds to unknown ValueSet {vs}"));
                }
                rules.push(Rule {
                    path: full.clone(),
                    parent,
                    name: last.trim_end_matches("[x]").to_owned(),
                    choice_types: if last.ends_with("[x]") {
                        types.iter().filter_map(|t| str_of(t, "code")).collect()
                    } else {
                        Vec::new()
                    },
                    min: el["min"].as_u64().unwrap_or(0) as usize,
                    max: el["max"].as_str().and_then(|m| m.parse().ok()),
                    pattern: el.as_object().and_then(|o| {
                        o.iter()
                            .find(|(k, _)| k.starts_with("pattern") || k.starts_with("fixed"))
                            .map(|(_, v)| v.clone())
                    }),
                    targets: types
                        .iter()
                        .flat_map(|t| t["targetProfile"].as_array().into_iter().flatten())
                        .filter_map(Value::as_str)
                        .map(last_segment)
                        .collect(),
                    binding,
                });
            }
            by_url.insert(url, Profile { rtype, rules });
        }
        Ok(Profiles { by_url, value_sets })
    }

    /// The URLs of our profiles on `rtype`, sorted (the CapabilityStatement's supportedProfile).
    pub fn urls_for(&self, rtype: &str) -> Vec<&str> {
        let mut urls: Vec<&str> = self
            .by_url
            .iter()
            .filter(|(_, p)| p.rtype == rtype)
            .map(|(u, _)| u.as_str())
            .collect();
        urls.sort_unstable();
        urls
    }

    /// The problems of `resource` against every profile of ours it claims.
    pub fn check(&self, rtype: &str, resource: &Value) -> Vec<Issue> {
        let mut issues = Vec::new();
        let claimed = resource["meta"]["profile"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str);
        for url in claimed {
            let url = url.split('|').next().unwrap_or(url);
            let Some(profile) = self.by_url.get(url) else { continue };
            if profile.rtype != rtype {
                issues.push(
                    Issue::new(
                        "invalid",
                        format!("profile {url} is for {}, not {rtype}", profile.rtype),
                    )
                    .at("meta.profile"),
                );
                continue;
            }
            for rule in &profile.rules {
                self.check_rule(rule, url, resource, &mut issues);
            }
        }
        issues
    }

    fn check_rule(&self, rule: &Rule, url: &str, resource: &Value, issues: &mut Vec<Issue>) {
        let parents = match &rule.parent {
            None => vec![resource],
            Some(p) => p.eval(resource),
        };
        let issue =
            |code: &'static str, what: String| Issue::new(code, format!("{what} (profile {url})")).at(&rule.path);
        for parent in parents {
            let Value::Object(map) = parent else { continue };
            let mut values = Vec::new();
            for (key, value) in map.iter().filter(|(k, _)| path::field_matches(k, &rule.name, None)) {
                let suffix = &key[rule.name.len()..];
                if !rule.choice_types.is_empty() && !rule.choice_types.iter().any(|t| t.eq_ignore_ascii_case(suffix)) {
                    issues.push(issue(
                        "structure",
                        format!("{key} is not allowed here; use {}", rule.choice_types.join(" or ")),
                    ));
                }
                match value {
                    Value::Array(items) => values.extend(items.iter()),
                    v => values.push(v),
                }
            }
            if values.len() < rule.min {
                issues.push(issue("required", format!("{} is required", rule.path)));
            }
            if rule.max.is_some_and(|max| values.len() > max) {
                issues.push(issue(
                    "structure",
                    format!("{} may appear at most {} times", rule.path, rule.max.unwrap_or(0)),
                ));
            }
            if let Some(pattern) = &rule.pattern
                && !values.is_empty()
                && !values.iter().any(|v| contains(v, pattern))
            {
                issues.push(issue("value", format!("{} must match {pattern}", rule.path)));
            }
            for v in &values {
                if !rule.targets.is_empty() && !rule.targets.iter().any(|t| t == "Resource") {
                    let reference = v["reference"].as_str().unwrap_or("");
                    let target = reference.rsplit('/').nth(1).unwrap_or("");
                    if !rule.targets.iter().any(|t| t == target) {
                        issues.push(issue(
                            "value",
                            format!("must reference a {}, not '{reference}'", rule.targets.join(" or ")),
                        ));
                    }
                }
                if let Some(vs) = &rule.binding
                    && !self.in_value_set(vs, v)
                {
                    issues.push(issue(
                        "code-invalid",
                        format!("the code is not in the required value set {vs}"),
                    ));
                }
            }
        }
    }

    /// Whether a code, Coding or CodeableConcept has a code from the ValueSet.
    fn in_value_set(&self, vs: &str, v: &Value) -> bool {
        let Some(allowed) = self.value_sets.get(vs) else {
            return false;
        };
        let codings: Vec<&Value> = match v {
            Value::Object(o) if o.contains_key("coding") => v["coding"].as_array().into_iter().flatten().collect(),
            other => vec![other],
        };
        codings.iter().any(|c| {
            let (system, code) = match c {
                Value::String(code) => (None, Some(code.as_str())),
                c => (c["system"].as_str(), c["code"].as_str()),
            };
            allowed.iter().any(|(s, allowed_code)| {
                system.is_none_or(|system| system == s)
                    && allowed_code.as_deref().is_none_or(|a| Some(a) == code)
                    && code.is_some()
            })
        })
    }
}

/// FHIR pattern matching: every element of `pattern` is present in `value` (arrays: each pattern item is
/// matched by some value item).
fn contains(value: &Value, pattern: &Value) -> bool {
    match (value, pattern) {
        (Value::Object(v), Value::Object(p)) => p.iter().all(|(k, pv)| v.get(k).is_some_and(|vv| contains(vv, pv))),
        (Value::Array(v), Value::Array(p)) => p.iter().all(|pi| v.iter().any(|vi| contains(vi, pi))),
        (v, p) => v == p,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn lab() -> Value {
        json!({"resourceType": "Observation", "status": "final",
            "meta": {"profile": ["http://carespace.example/fhir/StructureDefinition/carespace-lab-observation"]},
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
            "subject": {"reference": "Patient/1"}, "effectiveDateTime": "2024-01-01"})
    }

    #[test]
    fn enforces_the_lab_and_message_profiles() {
        let profiles = Profiles::new(&embedded().unwrap()).unwrap();
        assert!(profiles.check("Observation", &lab()).is_empty());
        let mut no_loinc = lab();
        no_loinc["code"] = json!({"coding": [{"system": "http://snomed.info/sct", "code": "1"}]});
        assert_eq!(
            profiles.check("Observation", &no_loinc)[0].expression.as_deref(),
            Some("Observation.code")
        );
        let mut no_time = lab();
        no_time.as_object_mut().unwrap().remove("effectiveDateTime");
        assert_eq!(profiles.check("Observation", &no_time)[0].code, "required");
        let mut group = lab();
        group["subject"] = json!({"reference": "Group/1"});
        assert!(!profiles.check("Observation", &group).is_empty());
        let message = json!({"resourceType": "Communication", "status": "completed",
            "meta": {"profile": ["http://carespace.example/fhir/StructureDefinition/carespace-portal-message"]},
            "category": [{"coding": [{"system": "http://carespace.example/fhir/CodeSystem/message-category", "code": "rx-question"}]}],
            "subject": {"reference": "Patient/1"}, "topic": {"text": "Refill"}, "sent": "2024-01-01T10:00:00Z",
            "payload": [{"contentString": "Please refill"}]});
        assert!(
            profiles.check("Communication", &message).is_empty(),
            "{:?}",
            profiles.check("Communication", &message)
        );
        let mut other = message.clone();
        other["category"][0]["coding"][0]["code"] = json!("billing");
        assert_eq!(profiles.check("Communication", &other)[0].code, "code-invalid");
        let mut attachment = message.clone();
        attachment["payload"] = json!([{"contentAttachment": {"contentType": "text/plain"}}]);
        assert!(!profiles.check("Communication", &attachment).is_empty());
        // Profiles we do not hold are not enforced.
        let mut us_core = lab();
        us_core["meta"]["profile"] = json!(["http://hl7.org/fhir/us/core/StructureDefinition/us-core-observation-lab"]);
        us_core.as_object_mut().unwrap().remove("code");
        assert!(profiles.check("Observation", &us_core).is_empty());
    }
}
