//! The permission a successful [`authorize`] hands out. Its fields are private: the store reads them through
//! getters, and only this module can build one, so a store call without a check does not compile.

use super::Actor;
use super::actor::App;
use crate::error::{Error, Result};
use crate::oauth::scope::{Context, Ops};
use crate::store::Clause;

/// What the actor wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Read,
    Search,
    Create,
    Update,
    Delete,
}

impl Action {
    /// The AuditEvent.action code (C R U D E).
    pub fn audit_code(self) -> &'static str {
        match self {
            Action::Read => "R",
            Action::Search => "E",
            Action::Create => "C",
            Action::Update => "U",
            Action::Delete => "D",
        }
    }

    pub fn writes(self) -> bool {
        matches!(self, Action::Create | Action::Update | Action::Delete)
    }

    /// Whether a scope's interactions include this action.
    fn allowed_by(self, ops: Ops) -> bool {
        match self {
            Action::Read => ops.read,
            Action::Search => ops.search,
            Action::Create => ops.create,
            Action::Update => ops.update,
            Action::Delete => ops.delete,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Grant {
    actor: Actor,
    action: Action,
    /// `None`: every patient (system actors); `Some`: only these patients' compartments.
    patients: Option<Vec<String>>,
    /// Granular SMART scopes (`patient/Observation.rs?category=laboratory`): resources of that type must match
    /// one of the queries.
    filter: Option<ScopeFilter>,
}

/// The search queries of granular scopes, for one resource type; the store applies them once `Records` has
/// parsed them into clauses, and until then matches nothing (fail closed).
#[derive(Debug, Clone)]
pub struct ScopeFilter {
    pub rtype: String,
    pub queries: Vec<String>,
    /// One clause list per query (alternatives); `None` until parsed.
    pub clauses: Option<Vec<Vec<Clause>>>,
}

impl Grant {
    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    pub fn action(&self) -> Action {
        self.action
    }

    /// The patients whose compartments the grant covers; `None` means all.
    pub fn patients(&self) -> Option<&[String]> {
        self.patients.as_deref()
    }

    pub fn filter(&self) -> Option<&ScopeFilter> {
        self.filter.as_ref()
    }

    /// Parses the granular scopes' queries with `parse` (query text → clauses), so the store can apply them.
    pub fn resolve_filter(&mut self, parse: impl Fn(&str, &str) -> Result<Vec<Clause>>) -> Result<()> {
        if let Some(f) = &mut self.filter {
            let parsed = f
                .queries
                .iter()
                .map(|q| parse(&f.rtype, q))
                .collect::<Result<Vec<_>>>()?;
            f.clauses = Some(parsed);
        }
        Ok(())
    }

    /// Whether the grant covers a resource in these compartments (`[]`: not patient data).
    pub fn covers(&self, compartments: &[String]) -> bool {
        match &self.patients {
            None => true,
            Some(mine) => !compartments.is_empty() && compartments.iter().all(|p| mine.contains(p)),
        }
    }
}

/// Types that hold no patient's data (no patient compartment has them) but that records refer to: who
/// treated the patient, where, with what.
pub const DIRECTORY_TYPES: &[&str] = &[
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "Location",
    "Medication",
    "HealthcareService",
    "Endpoint",
    "Substance",
];

/// May `actor` do `action` on resources of type `rtype`? On success the grant says on which patients.
pub fn authorize(actor: &Actor, action: Action, rtype: &str) -> Result<Grant> {
    // Someone a patient gave access to (in the portal or through an app they authorized) uses the record
    // but never sees who else has access (their emails and birth dates) or the audit trail (addresses), and
    // writes nothing but messages.
    let proxy = match actor {
        Actor::Proxy { .. } => true,
        Actor::App(app) => app.user.as_deref().is_some_and(|u| u.starts_with("RelatedPerson/")),
        _ => false,
    };
    if proxy && (matches!(rtype, "RelatedPerson" | "AuditEvent") || (action.writes() && rtype != "Communication")) {
        return Err(Error::Forbidden(format!(
            "someone given access to a record may not {} {rtype} resources",
            format!("{action:?}").to_lowercase()
        )));
    }
    // The audit trail is written by the server (and the operator's imports); over the API a backend service
    // may add events (an EHR's own record of an access), but no one changes or removes one.
    let allowed = match actor {
        Actor::System { .. } => true,
        Actor::App(app) => action == Action::Create && app.user.is_none() && app.patient.is_none(),
        _ => false,
    };
    if rtype == "AuditEvent" && action.writes() && !allowed {
        return Err(Error::Forbidden(format!(
            "the audit trail is append-only and written by the server: {} refused",
            format!("{action:?}").to_lowercase()
        )));
    }
    let mut filter = None;
    let patients = match actor {
        Actor::System { .. } | Actor::Staff { .. } => None,
        Actor::Patient { patient_id } | Actor::Proxy { patient_id, .. } => {
            let writable = match rtype {
                // Messages (and recording that one was opened); the message rules live in `records`.
                "Communication" => action != Action::Delete,
                // Who may see the record is the patient's own decision (`accounts/proxies.rs`).
                "RelatedPerson" => matches!(actor, Actor::Patient { .. }) && action != Action::Delete,
                _ => false,
            };
            if action.writes() && !writable {
                return Err(Error::Forbidden(format!(
                    "a patient may not {action:?} {rtype} resources"
                )));
            }
            Some(vec![patient_id.clone()])
        }
        Actor::App(app) => {
            let (patients, queries) = app_patients(app, action, rtype)?;
            filter = (!queries.is_empty()).then(|| ScopeFilter {
                rtype: rtype.to_owned(),
                queries,
                clauses: None,
            });
            patients
        }
    };
    if patients.is_some() && rtype == "Communication" && action == Action::Delete {
        return Err(Error::Forbidden("a sent message cannot be deleted".into()));
    }
    // The practice's directory holds no patient's data: whoever may read at all may read all of it.
    let patients = if !action.writes() && DIRECTORY_TYPES.contains(&rtype) {
        None
    } else {
        patients
    };
    Ok(Grant {
        actor: actor.clone(),
        action,
        patients,
        filter,
    })
}

/// What an access token's scopes reach for `action` on `rtype`: `system/` every patient, `user/` what the user
/// may see (a staff member: every patient; a patient: their own record), `patient/` the launch patient. The
/// second value holds the queries of granular scopes when only such scopes allow the action (reads and
/// searches; a granular scope never allows a write).
fn app_patients(app: &App, action: Action, rtype: &str) -> Result<(Option<Vec<String>>, Vec<String>)> {
    let matching: Vec<_> = app
        .scopes
        .allowing(rtype, |ops| action.allowed_by(ops))
        .filter(|s| s.query.is_none() || !action.writes())
        .collect();
    let refused = || {
        Error::Forbidden(format!(
            "the access token's scopes do not allow {} on {rtype}",
            format!("{action:?}").to_lowercase()
        ))
    };
    if matching.is_empty() {
        return Err(refused());
    }
    let queries: Vec<String> = if matching.iter().any(|s| s.query.is_none()) {
        Vec::new()
    } else {
        matching.iter().filter_map(|s| s.query.clone()).collect()
    };
    let contexts: Vec<Context> = matching.iter().map(|s| s.context).collect();
    if contexts.contains(&Context::System) {
        return Ok((None, queries));
    }
    let mut patients = Vec::new();
    if contexts.contains(&Context::User) {
        match app.user.as_deref().and_then(|u| u.split_once('/')) {
            Some(("Practitioner", _)) => return Ok((None, queries)),
            Some(("Patient", id)) => patients.push(id.to_owned()),
            _ => {}
        }
    }
    if contexts.contains(&Context::Patient)
        && let Some(p) = &app.patient
        && !patients.contains(p)
    {
        patients.push(p.clone());
    }
    if patients.is_empty() {
        return Err(refused());
    }
    Ok((Some(patients), queries))
}

/// The resource types `actor` may read, for operations that span types (`$everything`); `None`: all. Types
/// that only granular scopes allow are left out (their filters apply to searches, not to whole records).
pub fn readable_types(actor: &Actor) -> Option<Vec<String>> {
    let Actor::App(app) = actor else { return None };
    let readable: Vec<_> = app
        .scopes
        .resources
        .iter()
        .filter(|s| s.ops.read && s.query.is_none())
        .collect();
    if readable.iter().any(|s| s.rtype.is_none()) {
        return None;
    }
    Some(readable.iter().filter_map(|s| s.rtype.clone()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patient_grant_covers_only_own_compartment() {
        let actor = Actor::Patient { patient_id: "a".into() };
        let grant = authorize(&actor, Action::Read, "Observation").unwrap();
        assert!(grant.covers(&["a".into()]));
        assert!(!grant.covers(&["b".into()]));
        assert!(!grant.covers(&[]));
        assert!(!grant.covers(&["a".into(), "b".into()]));
        assert!(authorize(&actor, Action::Create, "Observation").is_err());
        assert_eq!(
            authorize(&actor, Action::Read, "Practitioner").unwrap().patients(),
            None
        );
        assert!(authorize(&actor, Action::Update, "Practitioner").is_err());
        assert!(
            authorize(&Actor::system("t"), Action::Delete, "Patient")
                .unwrap()
                .covers(&[])
        );
    }

    #[test]
    fn proxies_never_read_access_or_audit_and_write_only_messages() {
        let proxy = Actor::Proxy {
            related_person: "r".into(),
            patient_id: "a".into(),
        };
        let via_app = Actor::App(App {
            client_id: "c".into(),
            scopes: crate::oauth::scope::Scopes::parse("patient/*.cruds").unwrap(),
            patient: Some("a".into()),
            user: Some("RelatedPerson/r".into()),
        });
        for actor in [&proxy, &via_app] {
            assert!(authorize(actor, Action::Read, "Observation").is_ok());
            assert!(authorize(actor, Action::Create, "Communication").is_ok());
            for (action, rtype) in [
                (Action::Search, "RelatedPerson"),
                (Action::Read, "AuditEvent"),
                (Action::Create, "Observation"),
                (Action::Update, "RelatedPerson"),
                (Action::Delete, "Communication"),
            ] {
                assert!(authorize(actor, action, rtype).is_err(), "{actor:?} {action:?} {rtype}");
            }
        }
        let patient = Actor::Patient { patient_id: "a".into() };
        assert!(authorize(&patient, Action::Create, "RelatedPerson").is_ok());
        assert!(authorize(&patient, Action::Search, "AuditEvent").is_ok());
    }

    #[test]
    fn app_grants_follow_scopes() {
        let app = |scopes: &str, patient: Option<&str>, user: Option<&str>| {
            Actor::App(App {
                client_id: "c".into(),
                scopes: crate::oauth::scope::Scopes::parse(scopes).unwrap(),
                patient: patient.map(str::to_owned),
                user: user.map(str::to_owned),
            })
        };
        let reader = app("patient/Observation.rs", Some("a"), Some("Patient/a"));
        assert_eq!(
            authorize(&reader, Action::Search, "Observation").unwrap().patients(),
            Some(&["a".to_owned()][..])
        );
        assert!(authorize(&reader, Action::Read, "Communication").is_err());
        assert!(authorize(&reader, Action::Create, "Observation").is_err());
        assert!(authorize(&app("patient/*.read", None, None), Action::Read, "Observation").is_err());
        assert_eq!(
            authorize(&app("system/*.cruds", None, None), Action::Delete, "Patient")
                .unwrap()
                .patients(),
            None
        );
        assert_eq!(
            authorize(&app("user/*.rs", None, Some("Practitioner/p")), Action::Read, "Patient")
                .unwrap()
                .patients(),
            None
        );
        assert_eq!(
            authorize(&app("user/*.rs", None, Some("Patient/b")), Action::Read, "Patient")
                .unwrap()
                .patients(),
            Some(&["b".to_owned()][..])
        );
        let granular = app("patient/Observation.rs?category=laboratory", Some("a"), None);
        let grant = authorize(&granular, Action::Search, "Observation").unwrap();
        assert_eq!(grant.filter().unwrap().queries, ["category=laboratory"]);
        assert!(authorize(&granular, Action::Create, "Observation").is_err());
        assert_eq!(readable_types(&granular), Some(vec![]));
        assert_eq!(readable_types(&reader), Some(vec!["Observation".to_owned()]));
    }
}
