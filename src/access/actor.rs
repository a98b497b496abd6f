//! Who is asking. Doors turn each request into one [`Actor`] before any data is touched.

use crate::oauth::scope::Scopes;

/// The party behind a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// The server itself and its operators' command line (import, demo data). Until SMART bearer tokens
    /// land, the FHIR API also acts as this.
    System { name: String },
    /// A signed-in patient: their own compartment only.
    Patient { patient_id: String },
    /// Someone a patient gave access to (friends and family) with that patient's record open: the patient's
    /// compartment, acting as the RelatedPerson the grant is recorded as.
    Proxy { related_person: String, patient_id: String },
    /// A signed-in member of the care team: every patient of the practice.
    Staff { practitioner_id: String },
    /// A SMART app or backend service presenting an access token: limited by its scopes.
    App(App),
}

/// What an access token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub client_id: String,
    pub scopes: Scopes,
    /// The launch patient (`patient/` scopes reach only this compartment).
    pub patient: Option<String>,
    /// The user who authorized the app, as `Patient/x` or `Practitioner/y` (`user/` scopes reach what they may).
    pub user: Option<String>,
}

impl Actor {
    pub fn system(name: &str) -> Self {
        Actor::System { name: name.to_owned() }
    }

    /// The one patient whose record a person has open: a patient's own, or the one a proxy opened.
    pub fn record_patient(&self) -> Option<&str> {
        match self {
            Actor::Patient { patient_id } | Actor::Proxy { patient_id, .. } => Some(patient_id),
            _ => None,
        }
    }

    /// How the actor is named in an AuditEvent agent.
    pub fn audit_name(&self) -> String {
        match self {
            Actor::System { name } => format!("system:{name}"),
            Actor::Patient { patient_id } => format!("Patient/{patient_id}"),
            Actor::Proxy { related_person, .. } => format!("RelatedPerson/{related_person}"),
            Actor::Staff { practitioner_id } => format!("Practitioner/{practitioner_id}"),
            Actor::App(app) => match &app.user {
                Some(user) => format!("{user} via client {}", app.client_id),
                None => format!("client {}", app.client_id),
            },
        }
    }
}
