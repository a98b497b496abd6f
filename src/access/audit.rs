//! AuditEvents for what the gate granted: who (the actor), on whose behalf (the patients actually touched),
//! what (the resources), when, and the outcome. Built here, written by the caller through the store: in the
//! same transaction as a write, right after a read.

use base64::Engine as _;
use serde_json::{Value, json};

use super::Grant;

/// One audited access: `what` are `Type/id` references, `patients` the compartments they belong to.
pub struct Access<'a> {
    pub grant: &'a Grant,
    /// FHIR restful interaction code (`read`, `vread`, `search-type`, `create`, `update`, `delete`, `history-instance`, ...).
    pub interaction: &'static str,
    pub what: &'a [String],
    pub patients: &'a [String],
    /// The query string of a search, recorded as the entity query.
    pub query: Option<&'a str>,
    pub recorded: &'a str,
}

/// The AuditEvent resource for an access (without id and meta; the store gives those).
pub fn event(access: &Access<'_>) -> Value {
    let actor = access.grant.actor();
    let mut entities: Vec<Value> = access
        .patients
        .iter()
        .map(|p| json!({ "what": { "reference": format!("Patient/{p}") }, "role": role("1", "Patient") }))
        .collect();
    entities.extend(
        access
            .what
            .iter()
            .filter(|r| !r.starts_with("Patient/") || !access.patients.iter().any(|p| r[8..] == **p))
            .map(|r| json!({ "what": { "reference": r }, "role": role("4", "Domain Resource") })),
    );
    if let Some(query) = access.query {
        entities.push(json!({
            "role": role("24", "Query"),
            "query": base64::engine::general_purpose::STANDARD.encode(query),
        }));
    }
    json!({
        "resourceType": "AuditEvent",
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
            "display": "RESTful Operation"
        },
        "subtype": [{
            "system": "http://hl7.org/fhir/restful-interaction",
            "code": access.interaction,
        }],
        "action": access.grant.action().audit_code(),
        "recorded": access.recorded,
        "outcome": "0",
        "agent": [{
            "who": { "display": actor.audit_name() },
            "requestor": true,
        }],
        "source": { "observer": { "display": "CareSpace" } },
        "entity": entities,
    })
}

fn role(code: &str, display: &str) -> Value {
    json!({ "system": "http://terminology.hl7.org/CodeSystem/object-role", "code": code, "display": display })
}
