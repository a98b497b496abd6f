//! The permission a successful [`authorize`] hands out. Its fields are private: the store reads them through
//! getters, and only this module can build one, so a store call without a check does not compile.

use super::Actor;
use crate::error::{Error, Result};

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
    };
    Ok(Grant {
        actor: actor.clone(),
        action,
        patients,
    })
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
}
