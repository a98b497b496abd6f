//! AuditEvents for what the gate granted: who (the actor), on whose behalf (the patients actually touched),
//! what (the resources), when, and the outcome. Built here, written by the caller through the store: in the
//! same transaction as a write, right after a read.

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
            .take(100)
            .map(|r| json!({ "what": { "reference": r }, "role": role("4", "Domain Resource") })),
    );
    if let Some(query) = access.query {
        entities.push(json!({
            "role": role("24", "Query"),
            "query": base64_encode(query.as_bytes()),
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

/// Standard base64 with padding (AuditEvent.entity.query is base64Binary).
pub fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::base64_encode;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(input.as_bytes()), want);
        }
    }
}
