//! A patient's audit trail in plain words: the patient's "Who has viewed your record" (what others did) and
//! the care team's "Audit trail" page for one patient (everything, with where it came from and whether it
//! was refused). Both read the trail through the gate as the person looking.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use serde_json::Value;

use super::Visitor;
use super::render::{self, Chrome};
use crate::AppState;
use crate::access::Actor;
use crate::access::audit::{ACCOUNT_EVENT_SYSTEM, CLIENT_SYSTEM, RESOURCE_TYPES};
use crate::error::Result;

/// One event, in words.
pub struct Entry {
    /// `YYYY-MM-DD HH:MM` (UTC).
    pub when: String,
    pub who: String,
    pub what: String,
    /// The client's network address, when recorded.
    pub from: String,
    pub succeeded: bool,
    /// Done by the patient themselves, or by the server on its own.
    pub by_patient: bool,
    pub by_server: bool,
}

fn verb(action: &str) -> &'static str {
    match action {
        "C" => "added",
        "U" => "changed",
        "D" => "deleted",
        _ => "viewed",
    }
}

/// Words for the kinds of data an event touched (`Observation/1` → "results").
fn data_words(event: &Value) -> String {
    let mut kinds: Vec<&str> = event["entity"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| match e["type"]["system"].as_str() {
            // A read of many names their kinds (`Observation`), a read of one the resource (`Observation/1`).
            Some(RESOURCE_TYPES) => e["type"]["code"].as_str(),
            _ => e["what"]["reference"].as_str().and_then(|r| r.split('/').next()),
        })
        .filter(|t| *t != "Patient")
        .map(|t| match t {
            "Observation" => "results",
            "DiagnosticReport" => "reports",
            "DocumentReference" | "Binary" => "documents",
            "Communication" => "messages",
            "RelatedPerson" => "who has access",
            _ => "record details",
        })
        .collect();
    kinds.sort_unstable();
    kinds.dedup();
    if kinds.is_empty() {
        "the record".to_owned()
    } else {
        kinds.join(", ")
    }
}

/// Names people by reading their resource as `actor` (once each).
struct Names<'a> {
    state: &'a AppState,
    actor: &'a Actor,
    known: HashMap<String, String>,
}

impl Names<'_> {
    async fn of(&mut self, reference: &str) -> String {
        if let Some(name) = self.known.get(reference) {
            return name.clone();
        }
        let (rtype, id) = reference.split_once('/').unwrap_or_default();
        let resource: Value = match self.state.records.read(self.actor, rtype, id).await {
            Ok(r) => serde_json::from_str(&r.body).unwrap_or_default(),
            Err(_) => Value::Null,
        };
        let name = crate::fhir::display_name(&resource);
        let email = resource["telecom"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["system"] == "email")
            .and_then(|t| t["value"].as_str())
            .unwrap_or_default();
        let words = match (rtype, name.trim(), email) {
            ("RelatedPerson", "", "") => "Someone given access".to_owned(),
            ("RelatedPerson", "", email) => format!("{email} (family and friends)"),
            ("RelatedPerson", name, _) => format!("{name} (family and friends)"),
            ("Practitioner", "", _) => "The care team".to_owned(),
            ("Practitioner", name, _) => format!("{name} (care team)"),
            (_, "", _) => reference.to_owned(),
            (_, name, _) => name.to_owned(),
        };
        self.known.insert(reference.to_owned(), words.clone());
        words
    }
}

/// `patient`'s trail as `actor` may read it, newest first, at most `limit` events.
pub async fn entries(state: &AppState, actor: &Actor, patient: &str, limit: usize) -> Result<Vec<Entry>> {
    let params: Vec<(String, String)> = [
        ("patient", format!("Patient/{patient}")),
        ("_sort", "-date".to_owned()),
        ("_count", limit.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let found = state.records.find(actor, "AuditEvent", &params).await?;
    let me = format!("Patient/{patient}");
    let mut names = Names {
        state,
        actor,
        known: HashMap::new(),
    };
    let mut out = Vec::new();
    for stored in &found.matches {
        let ev = stored.json()?;
        let requestor = &ev["agent"][0];
        let person = requestor["who"]["reference"]
            .as_str()
            .or_else(|| requestor["who"]["display"].as_str())
            .unwrap_or("");
        let account_event = ev["subtype"][0]["system"] == ACCOUNT_EVENT_SYSTEM;
        let mut who = match person.split_once('/') {
            _ if person == me => "The patient".to_owned(),
            Some(("RelatedPerson" | "Practitioner", _)) => names.of(person).await,
            _ if person.starts_with("system:") => "The practice's system".to_owned(),
            _ if person.starts_with("client ") => "A connected system of the practice".to_owned(),
            // A SMART Health Link's retrieval names the recipient as they gave it; a failed sign-in the email
            // that was typed.
            _ if ev["subtype"][0]["code"] == "record-retrieved" => format!("{person} (with the link you sent)"),
            _ if person.contains('@') => person.to_owned(),
            _ => "The practice".to_owned(),
        };
        // The app a person used: a second agent, named by its client id.
        if let Some(client) = ev["agent"]
            .as_array()
            .into_iter()
            .flatten()
            .skip(1)
            .find(|a| a["who"]["identifier"]["system"] == CLIENT_SYSTEM)
            .and_then(|a| a["who"]["identifier"]["value"].as_str())
        {
            who.push_str(&format!(" using the app {client}"));
        }
        let what = if account_event {
            ev["subtype"][0]["display"].as_str().unwrap_or("").to_owned()
        } else {
            format!("{} {}", verb(ev["action"].as_str().unwrap_or("")), data_words(&ev))
        };
        let recorded = ev["recorded"].as_str().unwrap_or("");
        out.push(Entry {
            when: recorded.get(..16).unwrap_or(recorded).replace('T', " "),
            who,
            what,
            from: requestor["network"]["address"].as_str().unwrap_or("").to_owned(),
            succeeded: ev["outcome"].as_str().is_none_or(|o| o == "0"),
            by_patient: person == me,
            by_server: person.starts_with("system:"),
        });
    }
    Ok(out)
}

/// `/staff/patients/{patient}/audit`: the care team's view of one patient's trail.
pub async fn staff_page(State(state): State<AppState>, visitor: Visitor, Path(patient): Path<String>) -> Response {
    let Some((signed_in, actor)) = super::staff::staff(&visitor) else {
        return super::staff::to_staff_login();
    };
    let name = match state.records.read(&actor, "Patient", &patient).await {
        Ok(p) => serde_json::from_str(&p.body)
            .map(|v: Value| crate::fhir::display_name(&v))
            .unwrap_or_default(),
        Err(e) => return render::failure(&e),
    };
    let events = match entries(&state, &actor, &patient, 200).await {
        Ok(events) => events,
        Err(e) => return render::failure(&e),
    };
    let chrome = Chrome {
        practice: &state.config.practice_name,
        signed_in: Some(signed_in),
        csrf: &visitor.csrf,
    };
    render::respond(
        StatusCode::OK,
        render::page(
            &chrome,
            &format!("Audit trail: {name}"),
            html! {
                p { a href="/staff" { "Back to patients" } }
                p { "Every access to this record, every sign-in and every change of who may see it, newest first (the latest 200). Times are UTC." }
                @if events.is_empty() {
                    p { "Nothing recorded yet." }
                } @else {
                    table.results.trail {
                        thead { tr { th { "When" } th { "Who" } th { "What" } th { "From" } th { "Outcome" } } }
                        tbody {
                            @for e in &events {
                                tr {
                                    td data-label="When" { (e.when) }
                                    td data-label="Who" { (e.who) }
                                    td data-label="What" { (e.what) }
                                    td data-label="From" { (e.from) }
                                    td data-label="Outcome" { @if e.succeeded { "Done" } @else { "Refused" } }
                                }
                            }
                        }
                    }
                }
            },
        ),
    )
}
