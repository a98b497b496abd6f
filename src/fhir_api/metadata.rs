//! `GET /metadata`: the CapabilityStatement, generated from what the server really supports (resource types,
//! their search parameters, interactions). `capability-statement/CapabilityStatement.json` is checked against it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use crate::AppState;
use crate::fhir::types::SUPPORTED;
use crate::records::Records;

pub async fn capability_statement(State(state): State<AppState>) -> Response {
    super::fhir_json(StatusCode::OK, state.capability_statement.to_string())
}

const AUDIT_RULES: &str = "The audit trail: the server records every access, refusal and account action. Backend services \
(system scopes) may add events; no one updates or deletes one. Someone acting for a patient cannot read it.";

const RELATED_PERSON_RULES: &str = "A RelatedPerson may stand for family access granted in the portal: making it inactive, or \
deleting it, ends that access and its sessions and tokens at once. Someone acting for a patient cannot read these.";

/// What a client acting for a patient must know before writing a portal message.
const COMMUNICATION_RULES: &str = "Portal messages. Written for a patient (patient or user scopes of a patient), a Communication \
is checked against the carespace-portal-message profile (stamped when meta.profile lacks it); its sender must be the \
writer and its recipients the care team, Organization/<practice> among them. inResponseTo may name one Communication \
from the care team, which the patient's side can answer once; a second reply, or a reply to a reply, is refused with \
422. A sent message cannot be deleted, and an update may only add `received` to a message addressed to the patient \
(marking it read). The practice's side (staff, system scopes) is not bound by these rules.";

/// The CapabilityStatement for this build (made once at start); deterministic so the published file can be
/// compared with it.
pub fn statement(records: &Records) -> Value {
    let registry = records.registry();
    let interactions = [
        "read",
        "vread",
        "update",
        "delete",
        "history-instance",
        "history-type",
        "create",
        "search-type",
    ];
    let resources: Vec<Value> = SUPPORTED
        .iter()
        .map(|rtype| {
            let mut params: Vec<Value> = vec![
                json!({ "name": "_id", "type": "token", "definition": "http://hl7.org/fhir/SearchParameter/Resource-id" }),
                json!({ "name": "_lastUpdated", "type": "date", "definition": "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated" }),
            ];
            params.extend(registry.of_type(rtype).iter().map(|p| json!({ "name": p.name, "type": p.kind.as_str(), "definition": p.url })));
            // The audit trail is append-only: no one updates or deletes an event.
            let offered = interactions
                .iter()
                .filter(|c| *rtype != "AuditEvent" || !matches!(**c, "update" | "delete"));
            let mut r = json!({
                "type": rtype,
                "interaction": offered.map(|c| json!({ "code": c })).collect::<Vec<_>>(),
                "versioning": "versioned",
                "readHistory": true,
                "updateCreate": true,
                "conditionalCreate": true,
                "conditionalUpdate": false,
                "conditionalDelete": "not-supported",
                "searchParam": params,
            });
            let profiles = records.profiles().urls_for(rtype);
            if !profiles.is_empty() {
                r["supportedProfile"] = json!(profiles);
            }
            match *rtype {
                "Communication" => r["documentation"] = json!(COMMUNICATION_RULES),
                "AuditEvent" => r["documentation"] = json!(AUDIT_RULES),
                "RelatedPerson" => r["documentation"] = json!(RELATED_PERSON_RULES),
                _ => {}
            }
            if *rtype == "Patient" {
                r["operation"] = json!([{ "name": "everything", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything" }]);
            }
            r
        })
        .collect();
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-26",
        "publisher": "CareSpace",
        "kind": "instance",
        "software": { "name": "CareSpace", "version": env!("CARGO_PKG_VERSION") },
        "implementation": { "description": "CareSpace FHIR server" },
        "fhirVersion": "4.0.1",
        "format": ["json", "application/fhir+json"],
        "rest": [{
            "mode": "server",
            "security": smart_security(records.base().trim_end_matches("/fhir")),
            "resource": resources,
            "interaction": [{ "code": "transaction" }, { "code": "batch" }, { "code": "history-system" }],
        }],
    })
}

/// The SMART security section: where apps get tokens (the `oauth-uris` extension) and that CORS is on.
fn smart_security(base: &str) -> Value {
    let uri = |name: &str, path: &str| json!({ "url": name, "valueUri": format!("{base}/oauth/{path}") });
    json!({
        "extension": [{
            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
            "extension": [uri("token", "token"), uri("authorize", "authorize"), uri("introspect", "introspect"), uri("revoke", "revoke")],
        }],
        "cors": true,
        "service": [{
            "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR" }],
            "text": "OAuth 2 bearer tokens from this server (SMART App Launch 2)",
        }],
        "description": "Every interaction but /metadata needs a bearer token; its SMART scopes are enforced per resource type and interaction.",
    })
}
