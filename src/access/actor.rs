//! Who is asking. Doors turn each request into one [`Actor`] before any data is touched.

/// The party behind a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// The server itself and its operators' command line (import, demo data). Until SMART bearer tokens
    /// land, the FHIR API also acts as this.
    System { name: String },
    /// A signed-in patient: their own compartment only.
    Patient { patient_id: String },
    /// A signed-in member of the care team: every patient of the practice.
    Staff { practitioner_id: String },
}

impl Actor {
    pub fn system(name: &str) -> Self {
        Actor::System { name: name.to_owned() }
    }

    /// How the actor is named in an AuditEvent agent.
    pub fn audit_name(&self) -> String {
        match self {
            Actor::System { name } => format!("system:{name}"),
            Actor::Patient { patient_id } => format!("Patient/{patient_id}"),
            Actor::Staff { practitioner_id } => format!("Practitioner/{practitioner_id}"),
        }
    }
}
