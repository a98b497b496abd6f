//! The rules of portal messages (FHIR Communication) written on a patient's side — by the patient, someone
//! acting for them, or an app they authorized — kept here, in the write path, so that the portal and the FHIR
//! API cannot disagree:
//! - a message claims our portal-message profile (stamped when absent) and is checked against it;
//! - its sender is the writer and it is addressed to the care team (the practice's Organization among them);
//! - a reply answers a message from the care team, once: its id is derived from the message it answers, so a
//!   second reply collides with the first in the store even when both race;
//! - once sent, a message changes only to record, once, when its recipient opened it (`received`).
//!
//! The practice side (staff, backend systems) is not bound by these rules: it may reply any number of times.

use serde_json::Value;

use super::Records;
use crate::access::{Actor, Grant};
use crate::error::{Error, Issue, Result};
use crate::fhir::extract::local_reference;

pub const PROFILE: &str = "http://carespace.example/fhir/StructureDefinition/carespace-portal-message";

/// What the patient's side is told when a message cannot be answered (again).
pub const RE_REPLY: &str = "You cannot re-reply to a message: each message from the care team can be answered once, and replies cannot be answered.";

/// Reference types that stand for the practice's side of a conversation.
const CARE_TEAM_TYPES: &[&str] = &["Practitioner", "PractitionerRole", "Organization", "CareTeam"];

/// Whether a local reference (`Type/id`) names someone on the practice's side.
pub fn from_care_team(reference: &str) -> bool {
    reference
        .split_once('/')
        .is_some_and(|(t, _)| CARE_TEAM_TYPES.contains(&t))
}

/// The id of the one reply a message may get from the patient's side.
pub fn reply_id(answered: &str) -> String {
    format!("re-{}", &crate::accounts::secret::hash(answered)[..40])
}

/// Who writes: the person the actor stands for (`None` for the server itself and backend systems).
pub fn writer(actor: &Actor) -> Option<String> {
    match actor {
        Actor::Patient { patient_id } => Some(format!("Patient/{patient_id}")),
        Actor::Proxy { related_person, .. } => Some(format!("RelatedPerson/{related_person}")),
        Actor::App(app) => app
            .user
            .clone()
            .or_else(|| app.patient.as_ref().map(|p| format!("Patient/{p}"))),
        Actor::Staff { practitioner_id } => Some(format!("Practitioner/{practitioner_id}")),
        Actor::System { .. } => None,
    }
}

fn unprocessable(path: &str, message: impl Into<String>) -> Error {
    Error::Unprocessable(vec![Issue::new("business-rule", message).at(path)])
}

/// What the rules decided about a message written on the patient's side.
pub(super) struct Checked {
    /// The id the message must get (a reply's), when the server assigns one.
    pub id: Option<String>,
}

impl Records {
    fn local(&self, reference: &Value) -> Option<String> {
        reference["reference"].as_str().map(|r| local_reference(r, &self.base))
    }

    /// Checks a Communication written under a grant limited to some patients (`id` is `None` on create).
    pub(super) async fn message_rules(&self, grant: &Grant, id: Option<&str>, value: &Value) -> Result<Checked> {
        // Staff using an app launched for one patient write for the practice.
        if writer(grant.actor()).is_some_and(|w| from_care_team(&w)) {
            return Ok(Checked { id: None });
        }
        match id {
            None => self.new_message(grant, value).await,
            Some(id) => self.receipt(grant, id, value).await.map(|()| Checked { id: None }),
        }
    }

    async fn new_message(&self, grant: &Grant, value: &Value) -> Result<Checked> {
        let me =
            writer(grant.actor()).ok_or_else(|| Error::Forbidden("only a person can send a portal message".into()))?;
        if self.local(&value["sender"]).as_deref() != Some(me.as_str()) {
            return Err(unprocessable(
                "Communication.sender",
                format!("a message from the patient's side must name its writer ({me}) as sender"),
            ));
        }
        let recipients: Vec<String> = value["recipient"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| self.local(r))
            .collect();
        let practice = self.practice_reference();
        if !recipients.contains(&practice) || !recipients.iter().all(|r| from_care_team(r)) {
            return Err(unprocessable(
                "Communication.recipient",
                format!("a message from the patient's side goes to the care team: recipient {practice}"),
            ));
        }
        let answered: Vec<&Value> = value["inResponseTo"].as_array().into_iter().flatten().collect();
        let parent = match answered.as_slice() {
            [] => return Ok(Checked { id: None }),
            [one] => self.local(one),
            _ => None,
        };
        let Some(parent_id) = parent.as_deref().and_then(|p| p.strip_prefix("Communication/")) else {
            return Err(unprocessable(
                "Communication.inResponseTo",
                "a reply answers exactly one Communication",
            ));
        };
        let Some(body) = self
            .store
            .read(grant, "Communication", parent_id)
            .await?
            .and_then(|row| row.body)
        else {
            return Err(unprocessable(
                "Communication.inResponseTo",
                format!("the message Communication/{parent_id} is not known"),
            ));
        };
        let answered: Value = serde_json::from_str(&body).map_err(|e| Error::Store(e.to_string()))?;
        if !self.local(&answered["sender"]).is_some_and(|s| from_care_team(&s)) {
            return Err(unprocessable("Communication.inResponseTo", RE_REPLY));
        }
        if answered["subject"]["reference"] != value["subject"]["reference"] {
            return Err(unprocessable(
                "Communication.subject",
                "a reply is about the same patient as the message it answers",
            ));
        }
        let id = reply_id(parent_id);
        if self.store.head(grant, "Communication", &id).await?.is_some() {
            return Err(unprocessable("Communication.inResponseTo", RE_REPLY));
        }
        Ok(Checked { id: Some(id) })
    }

    /// An update from the patient's side may only record when a message addressed to them was opened.
    async fn receipt(&self, grant: &Grant, id: &str, value: &Value) -> Result<()> {
        let refused = || {
            Error::Forbidden(
                "a sent message cannot be changed; its recipient may only record, once, when it was received".into(),
            )
        };
        let Some(body) = self
            .store
            .read(grant, "Communication", id)
            .await?
            .and_then(|row| row.body)
        else {
            // Not theirs (or not there): the same answer, so nothing is revealed.
            return Err(super::not_found("Communication", id));
        };
        let mut current: Value = serde_json::from_str(&body).map_err(|e| Error::Store(e.to_string()))?;
        let mine = grant.patients().unwrap_or_default();
        let to_me = current["recipient"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| self.local(r))
            .any(|r| r.strip_prefix("Patient/").is_some_and(|p| mine.iter().any(|m| m == p)));
        let mut wanted = value.clone();
        let stamped = current.get("received").is_none() && wanted.get("received").is_some();
        for v in [&mut current, &mut wanted] {
            if let Some(o) = v.as_object_mut() {
                o.remove("meta");
                o.remove("received");
            }
        }
        if to_me && stamped && current == wanted {
            Ok(())
        } else {
            Err(refused())
        }
    }

    /// `Organization/<id>`: the care team patients write to.
    pub fn practice_reference(&self) -> String {
        format!("Organization/{}", self.practice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_ids_are_stable_valid_and_distinct() {
        let a = reply_id("demo-alice-msg-0");
        assert_eq!(a, reply_id("demo-alice-msg-0"));
        assert_ne!(a, reply_id("demo-alice-msg-1"));
        assert!(crate::fhir::parse::valid_id(&a));
        assert!(crate::fhir::parse::valid_id(&reply_id(&"x".repeat(64))));
        assert!(from_care_team("Practitioner/p") && from_care_team("Organization/o"));
        assert!(!from_care_team("Patient/p") && !from_care_team("RelatedPerson/r") && !from_care_team("x"));
    }
}
