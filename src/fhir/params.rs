//! Search parameter definitions: the standard R4 parameters the server supports (as FHIRPath, in the table
//! below) plus our own SearchParameter resources from `profiles/`. Each is compiled once into a [`Param`];
//! indexing and search parsing both read this registry, so what is indexed is what can be searched.

use std::collections::HashMap;

use serde_json::Value;

use super::path::{self, Path};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Token,
    String,
    Date,
    Reference,
    Quantity,
    Number,
    Uri,
}

impl Kind {
    pub fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "token" => Kind::Token,
            "string" => Kind::String,
            "date" => Kind::Date,
            "reference" => Kind::Reference,
            "quantity" => Kind::Quantity,
            "number" => Kind::Number,
            "uri" => Kind::Uri,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Token => "token",
            Kind::String => "string",
            Kind::Date => "date",
            Kind::Reference => "reference",
            Kind::Quantity => "quantity",
            Kind::Number => "number",
            Kind::Uri => "uri",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    pub kind: Kind,
    pub expression: String,
    /// The canonical URL of the definition (ours for profiles/, the spec's otherwise).
    pub url: String,
    paths: Vec<Path>,
}

impl Param {
    pub fn eval<'a>(&self, resource: &'a Value) -> Vec<&'a Value> {
        self.paths.iter().flat_map(|p| p.eval(resource)).collect()
    }
}

/// Parameters on every resource type (`_id` and `_lastUpdated` are answered from the resource table).
const COMMON: &[(&str, Kind, &str)] = &[
    ("_tag", Kind::Token, "Resource.meta.tag"),
    ("_profile", Kind::Uri, "Resource.meta.profile"),
    ("_security", Kind::Token, "Resource.meta.security"),
    // Every type with a subject or patient element gets these two, so any record can be searched by patient.
    (
        "patient",
        Kind::Reference,
        "X.subject.where(resolve() is Patient) | X.patient",
    ),
    ("subject", Kind::Reference, "X.subject"),
];

/// The standard R4 parameters we support, per type: (type, name, kind, FHIRPath).
const STANDARD: &[(&str, &str, Kind, &str)] = &[
    ("Patient", "name", Kind::String, "Patient.name"),
    ("Patient", "family", Kind::String, "Patient.name.family"),
    ("Patient", "given", Kind::String, "Patient.name.given"),
    ("Patient", "birthdate", Kind::Date, "Patient.birthDate"),
    ("Patient", "death-date", Kind::Date, "(Patient.deceased as dateTime)"),
    ("Patient", "gender", Kind::Token, "Patient.gender"),
    ("Patient", "identifier", Kind::Token, "Patient.identifier"),
    ("Patient", "email", Kind::Token, "Patient.telecom.where(system='email')"),
    ("Patient", "phone", Kind::Token, "Patient.telecom.where(system='phone')"),
    ("Patient", "telecom", Kind::Token, "Patient.telecom"),
    ("Patient", "address", Kind::String, "Patient.address"),
    ("Patient", "address-city", Kind::String, "Patient.address.city"),
    ("Patient", "address-state", Kind::String, "Patient.address.state"),
    (
        "Patient",
        "address-postalcode",
        Kind::String,
        "Patient.address.postalCode",
    ),
    ("Patient", "active", Kind::Token, "Patient.active"),
    (
        "Patient",
        "general-practitioner",
        Kind::Reference,
        "Patient.generalPractitioner",
    ),
    (
        "Patient",
        "organization",
        Kind::Reference,
        "Patient.managingOrganization",
    ),
    ("Patient", "link", Kind::Reference, "Patient.link.other"),
    ("Observation", "category", Kind::Token, "Observation.category"),
    ("Observation", "code", Kind::Token, "Observation.code"),
    ("Observation", "date", Kind::Date, "Observation.effective"),
    ("Observation", "status", Kind::Token, "Observation.status"),
    (
        "Observation",
        "value-quantity",
        Kind::Quantity,
        "(Observation.value as Quantity)",
    ),
    (
        "Observation",
        "value-concept",
        Kind::Token,
        "(Observation.value as CodeableConcept)",
    ),
    (
        "Observation",
        "value-string",
        Kind::String,
        "(Observation.value as string)",
    ),
    (
        "Observation",
        "combo-code",
        Kind::Token,
        "Observation.code | Observation.component.code",
    ),
    (
        "Observation",
        "component-code",
        Kind::Token,
        "Observation.component.code",
    ),
    ("Observation", "encounter", Kind::Reference, "Observation.encounter"),
    ("Observation", "performer", Kind::Reference, "Observation.performer"),
    ("Observation", "based-on", Kind::Reference, "Observation.basedOn"),
    (
        "Observation",
        "derived-from",
        Kind::Reference,
        "Observation.derivedFrom",
    ),
    ("Observation", "has-member", Kind::Reference, "Observation.hasMember"),
    ("Observation", "specimen", Kind::Reference, "Observation.specimen"),
    ("Observation", "identifier", Kind::Token, "Observation.identifier"),
    ("DocumentReference", "type", Kind::Token, "DocumentReference.type"),
    (
        "DocumentReference",
        "category",
        Kind::Token,
        "DocumentReference.category",
    ),
    ("DocumentReference", "date", Kind::Date, "DocumentReference.date"),
    (
        "DocumentReference",
        "period",
        Kind::Date,
        "DocumentReference.context.period",
    ),
    ("DocumentReference", "status", Kind::Token, "DocumentReference.status"),
    (
        "DocumentReference",
        "identifier",
        Kind::Token,
        "DocumentReference.masterIdentifier | DocumentReference.identifier",
    ),
    (
        "DocumentReference",
        "author",
        Kind::Reference,
        "DocumentReference.author",
    ),
    (
        "DocumentReference",
        "custodian",
        Kind::Reference,
        "DocumentReference.custodian",
    ),
    (
        "DocumentReference",
        "encounter",
        Kind::Reference,
        "DocumentReference.context.encounter",
    ),
    (
        "DocumentReference",
        "contenttype",
        Kind::Token,
        "DocumentReference.content.attachment.contentType",
    ),
    (
        "DocumentReference",
        "relatesto",
        Kind::Reference,
        "DocumentReference.relatesTo.target",
    ),
    ("Communication", "category", Kind::Token, "Communication.category"),
    ("Communication", "sender", Kind::Reference, "Communication.sender"),
    ("Communication", "recipient", Kind::Reference, "Communication.recipient"),
    ("Communication", "sent", Kind::Date, "Communication.sent"),
    ("Communication", "received", Kind::Date, "Communication.received"),
    ("Communication", "status", Kind::Token, "Communication.status"),
    ("Communication", "encounter", Kind::Reference, "Communication.encounter"),
    ("Communication", "based-on", Kind::Reference, "Communication.basedOn"),
    ("Communication", "part-of", Kind::Reference, "Communication.partOf"),
    ("Communication", "identifier", Kind::Token, "Communication.identifier"),
    ("Communication", "medium", Kind::Token, "Communication.medium"),
    ("RelatedPerson", "patient", Kind::Reference, "RelatedPerson.patient"),
    (
        "RelatedPerson",
        "email",
        Kind::Token,
        "RelatedPerson.telecom.where(system='email')",
    ),
    (
        "RelatedPerson",
        "phone",
        Kind::Token,
        "RelatedPerson.telecom.where(system='phone')",
    ),
    ("RelatedPerson", "telecom", Kind::Token, "RelatedPerson.telecom"),
    ("RelatedPerson", "birthdate", Kind::Date, "RelatedPerson.birthDate"),
    ("RelatedPerson", "name", Kind::String, "RelatedPerson.name"),
    ("RelatedPerson", "identifier", Kind::Token, "RelatedPerson.identifier"),
    ("RelatedPerson", "active", Kind::Token, "RelatedPerson.active"),
    ("RelatedPerson", "gender", Kind::Token, "RelatedPerson.gender"),
    (
        "RelatedPerson",
        "relationship",
        Kind::Token,
        "RelatedPerson.relationship",
    ),
    ("RelatedPerson", "address", Kind::String, "RelatedPerson.address"),
    ("Practitioner", "name", Kind::String, "Practitioner.name"),
    ("Practitioner", "family", Kind::String, "Practitioner.name.family"),
    ("Practitioner", "given", Kind::String, "Practitioner.name.given"),
    ("Practitioner", "identifier", Kind::Token, "Practitioner.identifier"),
    (
        "Practitioner",
        "email",
        Kind::Token,
        "Practitioner.telecom.where(system='email')",
    ),
    ("Practitioner", "active", Kind::Token, "Practitioner.active"),
    (
        "PractitionerRole",
        "practitioner",
        Kind::Reference,
        "PractitionerRole.practitioner",
    ),
    (
        "PractitionerRole",
        "organization",
        Kind::Reference,
        "PractitionerRole.organization",
    ),
    (
        "PractitionerRole",
        "specialty",
        Kind::Token,
        "PractitionerRole.specialty",
    ),
    ("PractitionerRole", "role", Kind::Token, "PractitionerRole.code"),
    (
        "Organization",
        "name",
        Kind::String,
        "Organization.name | Organization.alias",
    ),
    ("Organization", "identifier", Kind::Token, "Organization.identifier"),
    ("Organization", "address", Kind::String, "Organization.address"),
    ("Organization", "type", Kind::Token, "Organization.type"),
    ("Organization", "active", Kind::Token, "Organization.active"),
    ("Organization", "partof", Kind::Reference, "Organization.partOf"),
    ("Location", "name", Kind::String, "Location.name | Location.alias"),
    ("Location", "address", Kind::String, "Location.address"),
    ("Location", "address-city", Kind::String, "Location.address.city"),
    ("Location", "address-state", Kind::String, "Location.address.state"),
    (
        "Location",
        "address-postalcode",
        Kind::String,
        "Location.address.postalCode",
    ),
    ("Location", "identifier", Kind::Token, "Location.identifier"),
    (
        "AuditEvent",
        "patient",
        Kind::Reference,
        "AuditEvent.agent.who.where(resolve() is Patient) | AuditEvent.entity.what.where(resolve() is Patient)",
    ),
    ("AuditEvent", "agent", Kind::Reference, "AuditEvent.agent.who"),
    ("AuditEvent", "entity", Kind::Reference, "AuditEvent.entity.what"),
    ("AuditEvent", "date", Kind::Date, "AuditEvent.recorded"),
    ("AuditEvent", "type", Kind::Token, "AuditEvent.type"),
    ("AuditEvent", "subtype", Kind::Token, "AuditEvent.subtype"),
    ("AuditEvent", "action", Kind::Token, "AuditEvent.action"),
    ("AuditEvent", "outcome", Kind::Token, "AuditEvent.outcome"),
    ("Provenance", "target", Kind::Reference, "Provenance.target"),
    (
        "Provenance",
        "patient",
        Kind::Reference,
        "Provenance.target.where(resolve() is Patient)",
    ),
    ("Provenance", "agent", Kind::Reference, "Provenance.agent.who"),
    ("Provenance", "recorded", Kind::Date, "Provenance.recorded"),
    ("Condition", "category", Kind::Token, "Condition.category"),
    ("Condition", "code", Kind::Token, "Condition.code"),
    ("Condition", "clinical-status", Kind::Token, "Condition.clinicalStatus"),
    (
        "Condition",
        "verification-status",
        Kind::Token,
        "Condition.verificationStatus",
    ),
    (
        "Condition",
        "onset-date",
        Kind::Date,
        "Condition.onset.ofType(dateTime) | Condition.onset.ofType(Period)",
    ),
    (
        "Condition",
        "abatement-date",
        Kind::Date,
        "Condition.abatement.ofType(dateTime) | Condition.abatement.ofType(Period)",
    ),
    ("Condition", "recorded-date", Kind::Date, "Condition.recordedDate"),
    ("Condition", "encounter", Kind::Reference, "Condition.encounter"),
    ("Condition", "identifier", Kind::Token, "Condition.identifier"),
    ("Encounter", "date", Kind::Date, "Encounter.period"),
    ("Encounter", "class", Kind::Token, "Encounter.class"),
    ("Encounter", "type", Kind::Token, "Encounter.type"),
    ("Encounter", "status", Kind::Token, "Encounter.status"),
    ("Encounter", "identifier", Kind::Token, "Encounter.identifier"),
    ("Encounter", "location", Kind::Reference, "Encounter.location.location"),
    (
        "Encounter",
        "participant",
        Kind::Reference,
        "Encounter.participant.individual",
    ),
    (
        "Encounter",
        "practitioner",
        Kind::Reference,
        "Encounter.participant.individual.where(resolve() is Practitioner)",
    ),
    (
        "Encounter",
        "service-provider",
        Kind::Reference,
        "Encounter.serviceProvider",
    ),
    ("Encounter", "reason-code", Kind::Token, "Encounter.reasonCode"),
    (
        "Encounter",
        "discharge-disposition",
        Kind::Token,
        "Encounter.hospitalization.dischargeDisposition",
    ),
    ("MedicationRequest", "intent", Kind::Token, "MedicationRequest.intent"),
    ("MedicationRequest", "status", Kind::Token, "MedicationRequest.status"),
    (
        "MedicationRequest",
        "authoredon",
        Kind::Date,
        "MedicationRequest.authoredOn",
    ),
    (
        "MedicationRequest",
        "encounter",
        Kind::Reference,
        "MedicationRequest.encounter",
    ),
    (
        "MedicationRequest",
        "code",
        Kind::Token,
        "(MedicationRequest.medication as CodeableConcept)",
    ),
    (
        "MedicationRequest",
        "medication",
        Kind::Reference,
        "(MedicationRequest.medication as Reference)",
    ),
    (
        "MedicationRequest",
        "requester",
        Kind::Reference,
        "MedicationRequest.requester",
    ),
    (
        "MedicationRequest",
        "identifier",
        Kind::Token,
        "MedicationRequest.identifier",
    ),
    ("Immunization", "date", Kind::Date, "Immunization.occurrence"),
    ("Immunization", "status", Kind::Token, "Immunization.status"),
    ("Immunization", "vaccine-code", Kind::Token, "Immunization.vaccineCode"),
    ("Immunization", "identifier", Kind::Token, "Immunization.identifier"),
    ("DiagnosticReport", "category", Kind::Token, "DiagnosticReport.category"),
    ("DiagnosticReport", "code", Kind::Token, "DiagnosticReport.code"),
    ("DiagnosticReport", "date", Kind::Date, "DiagnosticReport.effective"),
    ("DiagnosticReport", "issued", Kind::Date, "DiagnosticReport.issued"),
    ("DiagnosticReport", "status", Kind::Token, "DiagnosticReport.status"),
    ("DiagnosticReport", "result", Kind::Reference, "DiagnosticReport.result"),
    (
        "DiagnosticReport",
        "encounter",
        Kind::Reference,
        "DiagnosticReport.encounter",
    ),
    (
        "DiagnosticReport",
        "performer",
        Kind::Reference,
        "DiagnosticReport.performer",
    ),
    (
        "DiagnosticReport",
        "identifier",
        Kind::Token,
        "DiagnosticReport.identifier",
    ),
    ("Procedure", "date", Kind::Date, "Procedure.performed"),
    ("Procedure", "code", Kind::Token, "Procedure.code"),
    ("Procedure", "status", Kind::Token, "Procedure.status"),
    ("Procedure", "encounter", Kind::Reference, "Procedure.encounter"),
    (
        "AllergyIntolerance",
        "clinical-status",
        Kind::Token,
        "AllergyIntolerance.clinicalStatus",
    ),
    ("AllergyIntolerance", "code", Kind::Token, "AllergyIntolerance.code"),
    (
        "AllergyIntolerance",
        "category",
        Kind::Token,
        "AllergyIntolerance.category",
    ),
    (
        "AllergyIntolerance",
        "date",
        Kind::Date,
        "AllergyIntolerance.recordedDate",
    ),
    ("CarePlan", "category", Kind::Token, "CarePlan.category"),
    ("CarePlan", "date", Kind::Date, "CarePlan.period"),
    ("CarePlan", "status", Kind::Token, "CarePlan.status"),
    ("CareTeam", "status", Kind::Token, "CareTeam.status"),
    ("CareTeam", "category", Kind::Token, "CareTeam.category"),
    (
        "CareTeam",
        "participant",
        Kind::Reference,
        "CareTeam.participant.member",
    ),
    ("Goal", "lifecycle-status", Kind::Token, "Goal.lifecycleStatus"),
    ("Goal", "target-date", Kind::Date, "(Goal.target.due as date)"),
    ("Goal", "description", Kind::Token, "Goal.description"),
    ("Device", "type", Kind::Token, "Device.type"),
    ("Device", "status", Kind::Token, "Device.status"),
    ("MedicationDispense", "status", Kind::Token, "MedicationDispense.status"),
    ("MedicationDispense", "type", Kind::Token, "MedicationDispense.type"),
    ("ServiceRequest", "category", Kind::Token, "ServiceRequest.category"),
    ("ServiceRequest", "code", Kind::Token, "ServiceRequest.code"),
    ("ServiceRequest", "authored", Kind::Date, "ServiceRequest.authoredOn"),
    ("ServiceRequest", "status", Kind::Token, "ServiceRequest.status"),
    ("Coverage", "beneficiary", Kind::Reference, "Coverage.beneficiary"),
    ("Coverage", "patient", Kind::Reference, "Coverage.beneficiary"),
    ("Coverage", "subscriber", Kind::Reference, "Coverage.subscriber"),
    ("Coverage", "policy-holder", Kind::Reference, "Coverage.policyHolder"),
    (
        "QuestionnaireResponse",
        "authored",
        Kind::Date,
        "QuestionnaireResponse.authored",
    ),
    (
        "QuestionnaireResponse",
        "questionnaire",
        Kind::Reference,
        "QuestionnaireResponse.questionnaire",
    ),
    (
        "QuestionnaireResponse",
        "status",
        Kind::Token,
        "QuestionnaireResponse.status",
    ),
    ("Claim", "created", Kind::Date, "Claim.created"),
    (
        "ExplanationOfBenefit",
        "created",
        Kind::Date,
        "ExplanationOfBenefit.created",
    ),
    (
        "Binary",
        "patient",
        Kind::Reference,
        "Binary.securityContext.where(resolve() is Patient)",
    ),
];

/// Which parameters put a resource in a patient's compartment (CompartmentDefinition "Patient", R4).
/// Types not listed use `patient`.
pub const COMPARTMENT: &[(&str, &[&str])] = &[
    ("Observation", &["subject", "performer"]),
    ("DocumentReference", &["subject", "author"]),
    ("Communication", &["subject", "sender", "recipient"]),
    ("AuditEvent", &["patient"]),
    ("Provenance", &["patient"]),
    ("RelatedPerson", &["patient"]),
    ("Coverage", &["policy-holder", "subscriber", "beneficiary"]),
    ("Encounter", &["patient"]),
    ("CareTeam", &["patient", "participant"]),
    ("Binary", &["patient"]),
];

/// All parameters by resource type (key `*` for the common ones).
pub struct Registry {
    by_type: HashMap<String, Vec<Param>>,
}

impl Registry {
    /// The standard table plus the SearchParameter resources among `custom` (from `profiles/`).
    pub fn new(custom: &[Value]) -> Result<Registry, String> {
        let mut by_type: HashMap<String, Vec<Param>> = HashMap::new();
        for (rtype, name, kind, expr) in STANDARD {
            let url = format!("http://hl7.org/fhir/SearchParameter/{rtype}-{name}");
            by_type
                .entry((*rtype).to_owned())
                .or_default()
                .push(compile(rtype, name, *kind, expr, url)?);
        }
        for sp in custom.iter().filter(|r| r["resourceType"] == "SearchParameter") {
            let field = |k: &str| {
                sp.get(k)
                    .and_then(Value::as_str)
                    .ok_or(format!("SearchParameter without {k}"))
            };
            let (name, expr, url) = (field("code")?, field("expression")?, field("url")?);
            let kind = Kind::parse(field("type")?).ok_or(format!("SearchParameter {name}: unsupported type"))?;
            for base in sp
                .get("base")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                by_type
                    .entry(base.to_owned())
                    .or_default()
                    .push(compile(base, name, kind, expr, url.to_owned())?);
            }
        }
        for rtype in super::types::SUPPORTED {
            let own = by_type.entry((*rtype).to_owned()).or_default();
            for (name, kind, expr) in COMMON {
                if !own.iter().any(|p| p.name == *name) {
                    let url = format!(
                        "http://hl7.org/fhir/SearchParameter/Resource-{}",
                        name.trim_start_matches('_')
                    );
                    own.push(compile(
                        rtype,
                        name,
                        *kind,
                        &expr.replace("X.", &format!("{rtype}.")),
                        url,
                    )?);
                }
            }
        }
        Ok(Registry { by_type })
    }

    /// The parameters of `rtype`: its own, then the common ones it does not redefine.
    pub fn of_type(&self, rtype: &str) -> &[Param] {
        self.by_type.get(rtype).map_or(&[], Vec::as_slice)
    }

    pub fn param(&self, rtype: &str, name: &str) -> Option<&Param> {
        self.of_type(rtype).iter().find(|p| p.name == name)
    }
}

fn compile(rtype: &str, name: &str, kind: Kind, expr: &str, url: String) -> Result<Param, String> {
    let paths = path::parse(expr, rtype).map_err(|e| format!("search parameter {rtype}.{name}: {e}"))?;
    Ok(Param {
        name: name.to_owned(),
        kind,
        expression: expr.to_owned(),
        url,
        paths,
    })
}

/// The compartment parameters of a type.
pub fn compartment_params(rtype: &str) -> &'static [&'static str] {
    COMPARTMENT
        .iter()
        .find(|(t, _)| *t == rtype)
        .map_or(&["patient"], |(_, p)| p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_standard_definition_compiles() {
        let registry = Registry::new(&[]).unwrap();
        let obs = registry.of_type("Observation");
        assert!(obs.iter().any(|p| p.name == "patient" && p.kind == Kind::Reference));
        assert!(obs.iter().any(|p| p.name == "_tag"));
        assert!(registry.of_type("Condition").iter().any(|p| p.name == "subject"));
        for (rtype, params) in COMPARTMENT {
            let names: Vec<&str> = registry.of_type(rtype).iter().map(|p| p.name.as_str()).collect();
            for p in *params {
                assert!(names.contains(p), "{rtype}.{p}");
            }
        }
    }
}
