//! AuditEvents for what the gate granted: who (the actor), on whose behalf (the patients actually touched),
//! what (the resources), when, and the outcome. Built here, written by the caller through the store: in the
//! same transaction as a write, right after a read.

use base64::Engine as _;
use serde_json::{Value, json};

use super::{Action, Actor, Grant};

tokio::task_local! {
    /// The network address of the client whose request is being served: the trail's "from where".
    static CLIENT_ADDRESS: String;
}

/// Runs `request` with `address` as the client address its AuditEvents record.
pub async fn from_address<F: std::future::Future>(address: String, request: F) -> F::Output {
    CLIENT_ADDRESS.scope(address, request).await
}

/// Identifies OAuth clients in AuditEvent agents.
pub const CLIENT_SYSTEM: &str = "http://carespace.example/fhir/sid/oauth-client";

/// Who acted, as AuditEvent agents: the person (a reference, so `AuditEvent?agent=` finds it) and, for an
/// app, the app itself; the first agent made the request. The client address goes on the requestor.
fn agents(actor: &Actor) -> Vec<Value> {
    let person = |reference: String| json!({ "who": { "reference": reference }, "requestor": true });
    let mut agents = match actor {
        Actor::System { name } => vec![json!({ "who": { "display": format!("system:{name}") }, "requestor": true })],
        Actor::Patient { patient_id } => vec![person(format!("Patient/{patient_id}"))],
        Actor::Proxy { related_person, .. } => vec![person(format!("RelatedPerson/{related_person}"))],
        Actor::Staff { practitioner_id } => vec![person(format!("Practitioner/{practitioner_id}"))],
        Actor::App(app) => {
            let client = json!({
                "who": {
                    "identifier": { "system": CLIENT_SYSTEM, "value": app.client_id },
                    "display": format!("client {}", app.client_id),
                },
                "requestor": app.user.is_none(),
            });
            match &app.user {
                Some(user) => vec![person(user.clone()), client],
                None => vec![client],
            }
        }
    };
    if let Ok(address) = CLIENT_ADDRESS.try_with(Clone::clone) {
        agents[0]["network"] = json!({ "address": address, "type": "2" });
    }
    agents
}

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

/// The system of `AuditEvent.entity.type` codes naming a kind of resource.
pub const RESOURCE_TYPES: &str = "http://hl7.org/fhir/resource-types";

/// The AuditEvent resource for an access (without id and meta; the store gives those).
///
/// A read of one resource and every write name each resource. A read of many (a search page, a history,
/// `$everything`) names the patients, the query and how many resources of each kind it returned, as IHE's
/// Basic Audit Log Patterns record a query: naming every lab of a Health page view made each event tens of
/// kilobytes (docs/benchmarks.md).
pub fn event(access: &Access<'_>) -> Value {
    let actor = access.grant.actor();
    let mut entities: Vec<Value> = access
        .patients
        .iter()
        .map(|p| json!({ "what": { "reference": format!("Patient/{p}") }, "role": role("1", "Patient") }))
        .collect();
    let others = access
        .what
        .iter()
        .filter(|r| !r.starts_with("Patient/") || !access.patients.iter().any(|p| r[8..] == **p));
    let itemized = access.what.len() <= 1 || !matches!(access.grant.action(), Action::Read | Action::Search);
    if itemized {
        entities.extend(others.map(|r| json!({ "what": { "reference": r }, "role": role("4", "Domain Resource") })));
    } else {
        let mut kinds: Vec<(&str, usize)> = Vec::new();
        for rtype in others.map(|r| r.split('/').next().unwrap_or_default()) {
            match kinds.iter_mut().find(|(t, _)| *t == rtype) {
                Some((_, n)) => *n += 1,
                None => kinds.push((rtype, 1)),
            }
        }
        entities.extend(kinds.into_iter().map(|(rtype, n)| {
            json!({
                "type": { "system": RESOURCE_TYPES, "code": rtype },
                "role": role("4", "Domain Resource"),
                "description": format!("{n} {rtype} resource{}", if n == 1 { "" } else { "s" }),
            })
        }));
    }
    if let Some(query) = access.query {
        entities.push(json!({
            "role": role("24", "Query"),
            "query": base64::engine::general_purpose::STANDARD.encode(query),
        }));
    }
    json!({
        "resourceType": "AuditEvent",
        "type": rest_type(),
        "subtype": [{
            "system": "http://hl7.org/fhir/restful-interaction",
            "code": access.interaction,
        }],
        "action": access.grant.action().audit_code(),
        "recorded": access.recorded,
        "outcome": "0",
        "agent": agents(actor),
        "source": { "observer": { "display": "CareSpace" } },
        "entity": entities,
    })
}

/// The AuditEvent for a request the gate refused (outcome 4): who asked for what, and why not. It names no
/// patient: the refusal happened before any record was touched.
pub fn refusal(actor: &Actor, action: Action, rtype: &str, reason: &str, recorded: &str) -> Value {
    json!({
        "resourceType": "AuditEvent",
        "type": rest_type(),
        "action": action.audit_code(),
        "recorded": recorded,
        "outcome": "4",
        "outcomeDesc": reason,
        "agent": agents(actor),
        "source": { "observer": { "display": "CareSpace" } },
        "entity": [{ "what": { "display": format!("{rtype} resources") }, "role": role("4", "Domain Resource") }],
    })
}

/// Something done with a portal account, for the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountAction {
    InviteSent,
    Registered,
    SignedIn,
    SignInFailed,
    SignedOut,
    Locked,
    ResetRequested,
    PasswordReset,
    ProxyGranted,
    ProxyInviteResent,
    ProxyAccepted,
    ProxyRevoked,
    /// Send Record: part of the record disclosed to an outside provider.
    RecordSent,
    /// A SMART Health Link's manifest was asked for (the agent is the recipient's name as the client gave it).
    RecordRetrieved,
    /// A sent record's link turned off by the patient.
    ShareDeactivated,
    /// An app allowed to use the record (SMART consent).
    AppAuthorized,
    /// A connected app's access removed.
    AppDisconnected,
}

impl AccountAction {
    /// Our code (CodeSystem `account-event`), its words, and the DICOM event type it falls under.
    fn codes(self) -> (&'static str, &'static str, &'static str, &'static str) {
        const AUTH: (&str, &str) = ("110114", "User Authentication");
        const ATTRS: (&str, &str) = ("110137", "User Security Attributes Changed");
        let ((t, td), code, display) = match self {
            AccountAction::InviteSent => (ATTRS, "invite-sent", "Invitation sent"),
            AccountAction::Registered => (ATTRS, "registered", "Registration completed"),
            AccountAction::SignedIn => (AUTH, "login", "Signed in"),
            AccountAction::SignInFailed => (AUTH, "login-failed", "Sign-in failed"),
            AccountAction::SignedOut => (AUTH, "logout", "Signed out"),
            AccountAction::Locked => (AUTH, "locked", "Sign-in locked after repeated failures"),
            AccountAction::ResetRequested => (ATTRS, "reset-requested", "Password reset requested"),
            AccountAction::PasswordReset => (ATTRS, "password-reset", "Password reset"),
            AccountAction::ProxyGranted => (ATTRS, "proxy-granted", "Access to the record granted"),
            AccountAction::ProxyInviteResent => (ATTRS, "proxy-invite-resent", "Access invitation sent again"),
            AccountAction::ProxyAccepted => (ATTRS, "proxy-accepted", "Access to the record accepted"),
            AccountAction::ProxyRevoked => (ATTRS, "proxy-revoked", "Access to the record revoked"),
            AccountAction::RecordSent => (("110106", "Export"), "record-sent", "Record sent to a provider"),
            AccountAction::RecordRetrieved => (
                ("110106", "Export"),
                "record-retrieved",
                "Sent record retrieved through its SMART Health Link",
            ),
            AccountAction::ShareDeactivated => (ATTRS, "share-deactivated", "Sent record's link turned off"),
            AccountAction::AppAuthorized => (ATTRS, "app-authorized", "App allowed to use the record"),
            AccountAction::AppDisconnected => (ATTRS, "app-disconnected", "App's access removed"),
        };
        (t, td, code, display)
    }
}

/// The system of our account event codes.
pub const ACCOUNT_EVENT_SYSTEM: &str = "http://carespace.example/fhir/CodeSystem/account-event";

/// One account action: who acted (`agent`: a reference such as `Practitioner/x`, or the email address typed
/// when no account matched), the patient whose account it concerns, the client address.
pub struct AccountEvent<'a> {
    pub action: AccountAction,
    pub agent: &'a str,
    pub patient: Option<&'a str>,
    /// The person given access (`RelatedPerson/x`) when the action concerns a grant: a second agent.
    pub proxy: Option<&'a str>,
    /// What was disclosed, and to whom (Send Record), in words.
    pub disclosed: Option<&'a str>,
    pub success: bool,
    pub address: Option<&'a str>,
    pub recorded: &'a str,
}

/// The AuditEvent for an account action (without id and meta).
pub fn account_event(e: &AccountEvent<'_>) -> Value {
    let (type_code, type_display, code, display) = e.action.codes();
    let who = if e.agent.contains('/') && !e.agent.contains('@') {
        json!({ "reference": e.agent })
    } else {
        json!({ "display": e.agent })
    };
    let mut agent = json!({ "who": who, "requestor": true });
    // The request's own address when the caller gave none (a SMART Health Link retrieval).
    let address = e
        .address
        .map(str::to_owned)
        .or_else(|| CLIENT_ADDRESS.try_with(Clone::clone).ok());
    if let Some(address) = address {
        agent["network"] = json!({ "address": address, "type": "2" });
    }
    let mut entity: Vec<Value> = e
        .patient
        .map(|p| json!({ "what": { "reference": format!("Patient/{p}") }, "role": role("1", "Patient") }))
        .into_iter()
        .collect();
    if let Some(what) = e.disclosed {
        entity.push(json!({ "what": { "display": what }, "role": role("3", "Report"), "description": what }));
    }
    let mut agents = vec![agent];
    if let Some(proxy) = e.proxy.filter(|p| *p != e.agent) {
        agents.push(json!({ "who": { "reference": proxy }, "requestor": false }));
    }
    let mut event = json!({
        "resourceType": "AuditEvent",
        "type": { "system": "http://dicom.nema.org/resources/ontology/DCM", "code": type_code, "display": type_display },
        "subtype": [{ "system": ACCOUNT_EVENT_SYSTEM, "code": code, "display": display }],
        "action": "E",
        "recorded": e.recorded,
        "outcome": if e.success { "0" } else { "4" },
        "agent": agents,
        "source": { "observer": { "display": "CareSpace" } },
    });
    if !entity.is_empty() {
        event["entity"] = Value::Array(entity);
    }
    event
}

/// The event type of every access over the API (and of its refusals).
fn rest_type() -> Value {
    json!({ "system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest", "display": "RESTful Operation" })
}

fn role(code: &str, display: &str) -> Value {
    json!({ "system": "http://terminology.hl7.org/CodeSystem/object-role", "code": code, "display": display })
}
