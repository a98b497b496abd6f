//! Is this JSON a valid R4 resource? fhir-sdk's model checks types and required bindings, but it silently
//! drops unknown elements and bad `[x]` values and checks no ids, empties or invariants; this module closes
//! those gaps: structural checks on the JSON, a typed parse with the path of the bad element, and a round trip
//! whose missing keys are exactly what the model dropped. The client's JSON is what gets stored (decimals keep
//! their precision); the typed model only judges it.

use fhir_sdk::r4b::resources as r4;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::{datetime, types};
use crate::error::{Error, Issue, Result};

/// Checks `value` is a valid resource of a supported type and returns that type.
pub fn validate(value: &Value) -> Result<String> {
    let rtype = resource_type(value)?;
    let mut issues = Vec::new();
    structure(value, &rtype, true, &mut issues);
    if !issues.is_empty() {
        return Err(Error::Invalid(issues));
    }
    let round_trip = typed_round_trip(&rtype, value).map_err(Error::invalid)?;
    dropped_keys(value, &round_trip, &rtype, &mut issues);
    if issues.is_empty() {
        Ok(rtype)
    } else {
        Err(Error::Invalid(issues))
    }
}

/// The `resourceType` of a JSON resource, if it is one we support.
pub fn resource_type(value: &Value) -> Result<String> {
    let Some(obj) = value.as_object() else {
        return Err(Error::invalid(Issue::new(
            "structure",
            "a resource must be a JSON object",
        )));
    };
    let Some(rtype) = obj.get("resourceType").and_then(Value::as_str) else {
        return Err(Error::invalid(Issue::new("required", "resourceType is missing")));
    };
    if types::is_supported(rtype) {
        Ok(rtype.to_owned())
    } else if types::R4_ONLY.contains(&rtype) {
        Err(Error::NotSupported(format!(
            "{rtype} is an R4 resource type this server cannot store"
        )))
    } else {
        Err(Error::invalid(Issue::new(
            "not-supported",
            format!("'{rtype}' is not an R4 resource type"),
        )))
    }
}

/// A FHIR id: 1 to 64 of `[A-Za-z0-9\-\.]`.
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// JSON-level rules the model does not check: empty values, nulls, ids, Attachment size, narrative safety,
/// Period order, Bundle fullUrl and link rules.
fn structure(value: &Value, path: &str, is_resource: bool, issues: &mut Vec<Issue>) {
    let Value::Object(obj) = value else { return };
    if obj.is_empty() {
        issues.push(Issue::new("structure", "objects must not be empty").at(path));
        return;
    }
    if is_resource {
        if let Some(id) = obj.get("id") {
            match id.as_str() {
                Some(id) if valid_id(id) => {}
                _ => issues.push(
                    Issue::new("value", format!("invalid id {id} (1-64 of A-Z a-z 0-9 - .)")).at(child(path, "id")),
                ),
            }
        }
        if let Some(div) = obj.get("text").and_then(|t| t.get("div")).and_then(Value::as_str) {
            narrative(div, &child(path, "text.div"), issues);
        }
        if obj.get("resourceType").and_then(Value::as_str) == Some("Bundle") {
            bundle_rules(obj, path, issues);
        }
    }
    attachment_size(obj, path, issues);
    period_order(obj, path, issues);
    if let Some(p) = obj
        .get("probabilityDecimal")
        .and_then(Value::as_f64)
        .filter(|p| *p > 100.0)
    {
        issues.push(
            Issue::new("invariant", format!("ras-2: probability must be <= 100, not {p}"))
                .at(child(path, "probabilityDecimal")),
        );
    }
    for (key, v) in obj {
        let at = child(path, key);
        match v {
            Value::Null => issues.push(Issue::new("structure", "null is not allowed here").at(&at)),
            Value::String(s) if s.is_empty() => {
                issues.push(Issue::new("structure", "strings must not be empty").at(&at))
            }
            Value::Array(items) => {
                if items.is_empty() {
                    issues.push(Issue::new("structure", "arrays must not be empty").at(&at));
                }
                // A null in an array is only allowed to keep it aligned with its `_key`/`key` twin.
                let twin = key.strip_prefix('_').map_or_else(|| format!("_{key}"), str::to_owned);
                for (i, item) in items.iter().enumerate() {
                    let at = format!("{at}[{i}]");
                    match item {
                        Value::Null if !obj.contains_key(&twin) => {
                            issues.push(Issue::new("structure", "null is not allowed here").at(&at))
                        }
                        Value::String(s) if s.is_empty() => {
                            issues.push(Issue::new("structure", "strings must not be empty").at(&at))
                        }
                        item => structure(item, &at, key == "contained", issues),
                    }
                }
            }
            Value::Object(inner) => {
                let nested_resource = key == "resource" || inner.contains_key("resourceType") && key != "resourceType";
                structure(v, &at, nested_resource, issues);
            }
            _ => {}
        }
    }
}

fn narrative(div: &str, path: &str, issues: &mut Vec<Issue>) {
    if let Some(problem) = super::narrative::check(div) {
        issues.push(Issue::new("invariant", format!("txt-1: {problem}")).at(path));
    }
}

fn attachment_size(obj: &Map<String, Value>, path: &str, issues: &mut Vec<Issue>) {
    let (Some(Value::String(data)), Some(size)) = (obj.get("data"), obj.get("size").and_then(Value::as_u64)) else {
        return;
    };
    let clean: Vec<u8> = data.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let padding = clean.iter().rev().take_while(|b| **b == b'=').count();
    let decoded = (clean.len() / 4 * 3).saturating_sub(padding);
    if decoded as u64 != size {
        issues.push(
            Issue::new(
                "value",
                format!("Attachment.size is {size} but the data holds {decoded} bytes"),
            )
            .at(child(path, "size")),
        );
    }
}

/// per-1: a Period's start must not be after its end; values of different precision that overlap cannot
/// be ordered, which the FHIRPath invariant also counts as a failure.
fn period_order(obj: &Map<String, Value>, path: &str, issues: &mut Vec<Issue>) {
    let (Some(start), Some(end)) = (
        obj.get("start").and_then(Value::as_str),
        obj.get("end").and_then(Value::as_str),
    ) else {
        return;
    };
    let (Some(s), Some(e)) = (datetime::range(start), datetime::range(end)) else {
        return;
    };
    let same_precision = start.len() == end.len() || (start.len() >= 19 && end.len() >= 19);
    let ordered = if same_precision { s.0 <= e.0 } else { s.1 < e.0 };
    if !ordered {
        issues.push(Issue::new("invariant", format!("per-1: start {start} is not before end {end}")).at(path));
    }
}

fn bundle_rules(obj: &Map<String, Value>, path: &str, issues: &mut Vec<Issue>) {
    let mut relations = Vec::new();
    for (i, link) in obj
        .get("link")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if let Some(rel) = link.get("relation").and_then(Value::as_str) {
            if relations.contains(&rel) {
                issues.push(
                    Issue::new("invariant", format!("link relation '{rel}' appears twice"))
                        .at(format!("{}link[{i}]", prefix(path))),
                );
            }
            relations.push(rel);
        }
    }
    for (i, entry) in obj
        .get("entry")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if let Some(url) = entry.get("fullUrl").and_then(Value::as_str) {
            let absolute = url.starts_with("urn:uuid:") || url.starts_with("urn:oid:") || url.contains("://");
            if !absolute {
                issues.push(
                    Issue::new("value", format!("fullUrl '{url}' must be an absolute URL"))
                        .at(format!("{}entry[{i}].fullUrl", prefix(path))),
                );
            }
        }
    }
}

fn prefix(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("{path}.")
    }
}

/// Keys of `input` that the model's serialization of it lacks: unknown elements and values it dropped.
fn dropped_keys(input: &Value, output: &Value, path: &str, issues: &mut Vec<Issue>) {
    match (input, output) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                let at = child(path, key);
                match b.get(key) {
                    Some(out) => dropped_keys(value, out, &at, issues),
                    None => issues.push(Issue::new("structure", format!("unknown or invalid element '{key}'")).at(at)),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                dropped_keys(x, y, &format!("{path}[{i}]"), issues);
            }
        }
        _ => {}
    }
}

fn round_trip_as<T: DeserializeOwned + Serialize>(value: &Value, rtype: &str) -> Result<Value, Issue> {
    let typed: T = serde_path_to_error::deserialize(value).map_err(|e| {
        let at = e.path().to_string();
        let at = if at == "." {
            rtype.to_owned()
        } else {
            format!("{rtype}.{at}")
        };
        Issue::new("structure", e.into_inner().to_string()).at(at)
    })?;
    serde_json::to_value(&typed).map_err(|e| Issue::new("structure", e.to_string()).at(rtype))
}

macro_rules! dispatch {
    ($rtype:expr, $value:expr; $($t:ident)*) => {
        match $rtype {
            $(stringify!($t) => round_trip_as::<r4::$t>($value, $rtype),)*
            other => Err(Issue::new("not-supported", format!("'{other}' is not a supported resource type"))),
        }
    };
}

/// Parses into the typed model (keeping the failing element's path) and serializes back.
fn typed_round_trip(rtype: &str, value: &Value) -> Result<Value, Issue> {
    dispatch!(rtype, value;
        Account ActivityDefinition AdverseEvent AllergyIntolerance Appointment AppointmentResponse AuditEvent Basic
        Binary BiologicallyDerivedProduct BodyStructure Bundle CapabilityStatement CarePlan CareTeam CatalogEntry
        ChargeItem ChargeItemDefinition Claim ClaimResponse ClinicalImpression CodeSystem Communication
        CommunicationRequest CompartmentDefinition Composition ConceptMap Condition Consent Contract Coverage
        CoverageEligibilityRequest CoverageEligibilityResponse DetectedIssue Device DeviceDefinition DeviceMetric
        DeviceRequest DeviceUseStatement DiagnosticReport DocumentManifest DocumentReference Encounter Endpoint
        EnrollmentRequest EnrollmentResponse EpisodeOfCare EventDefinition Evidence EvidenceVariable ExampleScenario
        ExplanationOfBenefit FamilyMemberHistory Flag Goal GraphDefinition Group GuidanceResponse HealthcareService
        ImagingStudy Immunization ImmunizationEvaluation ImmunizationRecommendation ImplementationGuide
        InsurancePlan Invoice Library Linkage List Location Measure MeasureReport Media Medication
        MedicationAdministration MedicationDispense MedicationKnowledge MedicationRequest MedicationStatement
        MessageDefinition MessageHeader MolecularSequence NamingSystem NutritionOrder Observation
        ObservationDefinition OperationDefinition OperationOutcome Organization OrganizationAffiliation Parameters
        Patient PaymentNotice PaymentReconciliation Person PlanDefinition Practitioner PractitionerRole Procedure
        Provenance Questionnaire QuestionnaireResponse RelatedPerson RequestGroup ResearchDefinition
        ResearchElementDefinition ResearchStudy ResearchSubject RiskAssessment Schedule SearchParameter
        ServiceRequest Slot Specimen SpecimenDefinition StructureDefinition StructureMap Subscription Substance
        SupplyDelivery SupplyRequest Task TerminologyCapabilities TestReport TestScript ValueSet
        VerificationResult VisionPrescription
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn issues(v: Value) -> Vec<Issue> {
        match validate(&v) {
            Err(Error::Invalid(issues)) => issues,
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn accepts_a_valid_observation_and_refuses_what_the_model_would_drop() {
        let ok = json!({"resourceType": "Observation", "status": "final", "code": {"text": "Hb"},
            "valueQuantity": {"value": 1.50}});
        assert_eq!(validate(&ok).unwrap(), "Observation");
        let unknown = issues(json!({"resourceType": "Patient", "unknownElement": "foo"}));
        assert_eq!(unknown[0].expression.as_deref(), Some("Patient.unknownElement"));
        let bad_code = issues(json!({"resourceType": "Observation", "status": "done", "code": {"text": "x"}}));
        assert!(
            bad_code[0].expression.as_deref().unwrap().contains("status"),
            "{bad_code:?}"
        );
        assert!(!issues(json!({"resourceType": "Patient", "id": "bad_id"})).is_empty());
        assert!(!issues(json!({"resourceType": "Patient", "name": []})).is_empty());
        assert!(!issues(json!({"resourceType": "Patient", "birthDate": ""})).is_empty());
        assert!(validate(&json!({"resourceType": "MedicinalProduct"})).is_err());
        assert!(validate(&json!({"resourceType": "Nope"})).is_err());
    }
}
