//! The permission a successful [`authorize`] hands out. Its fields are private: the store reads them through
//! getters, and only this module can build one, so a store call without a check does not compile.

use super::Actor;
use super::actor::App;
use crate::error::{Error, Result};
use crate::oauth::scope::{Context, Ops};

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

    /// Whether the grant covers a resource in these compartments (`[]`: not patient data).
    pub fn covers(&self, compartments: &[String]) -> bool {
        match &self.patients {
            None => true,
            Some(mine) => !compartments.is_empty() && compartments.iter().all(|p| mine.contains(p)),
        }
    }
}

/// May `actor` do `action` on resources of type `rtype`? On success the grant says on which patients.
pub fn authorize(actor: &Actor, action: Action, rtype: &str) -> Result<Grant> {
    let patients = match actor {
        Actor::System { .. } | Actor::Staff { .. } => None,
        Actor::Patient { patient_id } => {
            if action.writes() && rtype != "Communication" {
                return Err(Error::Forbidden(format!(
                    "a patient may not {action:?} {rtype} resources"
                )));
            }
            Some(vec![patient_id.clone()])
        }
        Actor::App(app) => app_patients(app, action, rtype)?,
    };
    Ok(Grant {
        actor: actor.clone(),
        action,
        patients,
    })
}

/// What an access token's scopes reach for `action` on `rtype`: `system/` every patient, `user/` what the user
/// may see (a staff member: every patient; a patient: their own record), `patient/` the launch patient.
/// Granular scopes (`?category=…`) are not applied yet, so they grant nothing.
fn app_patients(app: &App, action: Action, rtype: &str) -> Result<Option<Vec<String>>> {
    let contexts: Vec<Context> = app
        .scopes
        .allowing(rtype, |ops| action.allowed_by(ops))
        .filter(|s| s.query.is_none())
        .map(|s| s.context)
        .collect();
    let refused = || {
        Error::Forbidden(format!(
            "the access token's scopes do not allow {} on {rtype}",
            format!("{action:?}").to_lowercase()
        ))
    };
    if contexts.is_empty() {
        return Err(refused());
    }
    if contexts.contains(&Context::System) {
        return Ok(None);
    }
    let mut patients = Vec::new();
    if contexts.contains(&Context::User) {
        match app.user.as_deref().and_then(|u| u.split_once('/')) {
            Some(("Practitioner", _)) => return Ok(None),
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
    Ok(Some(patients))
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
        assert!(
            authorize(&Actor::system("t"), Action::Delete, "Patient")
                .unwrap()
                .covers(&[])
        );
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
        assert!(
            authorize(
                &app("patient/Observation.rs?category=laboratory", Some("a"), None),
                Action::Read,
                "Observation"
            )
            .is_err()
        );
    }
}
