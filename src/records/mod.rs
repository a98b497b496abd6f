//! The resource rules: validate on write, stamp id and meta, index, compute compartments, store, audit; and
//! read, history, search and `$everything` through the gate. Knows no HTTP: doors call these functions with
//! an [`Actor`] and get resources (as JSON text) or a domain error back.

mod audit_sink;
mod audit_trail;
mod bundle;
pub mod messages;
mod read;
pub mod transaction;

use std::sync::Arc;

use serde_json::{Value, json};

pub use bundle::BundleEntry;

use self::audit_sink::AuditSink;

use crate::access::{self, Action, Actor, Grant};
use crate::clock::{self, Clock};
use crate::error::{Error, Issue, Result};
use crate::fhir::json::{self as fjson, RawObject};
use crate::fhir::params::Registry;
use crate::fhir::profiles::Profiles;
use crate::fhir::search::{self, Limits};
use crate::fhir::{extract, parse};
use crate::store::{Row, SharedStore, VersionWrite};

/// The id of a resource the server creates: a UUID led by the time (version 7), so new resources go to the end
/// of the `(rtype, id)` index rather than to a random page of it (with random ids every audited read's event
/// rewrote a page of that index, and reads slowed as the trail grew: docs/benchmarks.md).
fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// A resource as stored: its JSON text and version facts.
#[derive(Debug, Clone)]
pub struct Stored {
    pub rtype: String,
    pub id: String,
    pub version: i64,
    pub last_updated: i64,
    pub body: String,
    /// The patients whose compartments hold it, where the store said (else found from the body when needed).
    pub owners: Option<Vec<String>>,
}

impl Stored {
    /// The stored body as a JSON tree (bodies are validated when written, so a failure is the store's).
    pub fn json(&self) -> Result<Value> {
        serde_json::from_str(&self.body).map_err(|e| Error::Store(e.to_string()))
    }
}

/// What a search found: its page of matches, what `_include`/`_revinclude` added, and the total if counted.
#[derive(Debug)]
pub struct Found {
    pub matches: Vec<Stored>,
    pub included: Vec<Stored>,
    pub total: Option<i64>,
}

/// How a write ended.
#[derive(Debug, Clone)]
pub struct Written {
    pub resource: Stored,
    pub created: bool,
}

#[derive(Clone)]
pub struct Records {
    store: SharedStore,
    audit: AuditSink,
    registry: Arc<Registry>,
    profiles: Arc<Profiles>,
    clock: Clock,
    limits: Limits,
    /// The FHIR base URL (`<base>/fhir`), for links and for recognising our own absolute references.
    base: String,
    /// The id of the practice's Organization (the care team patients write to).
    practice: String,
    /// Every Communication created, once committed (the practice's messages are announced by email).
    messages_sent: tokio::sync::broadcast::Sender<Arc<Stored>>,
}

/// One write prepared for the store, plus the parsed resource for the audit.
struct Prepared {
    write: VersionWrite,
    stored: Stored,
    created: bool,
    /// The patients whose data this touches (for a deletion, those of the deleted version).
    patients: Vec<String>,
}

impl Records {
    pub fn new(
        store: SharedStore,
        registry: Arc<Registry>,
        profiles: Arc<Profiles>,
        clock: Clock,
        limits: Limits,
        base: String,
        practice: String,
    ) -> Self {
        Records {
            practice,
            messages_sent: tokio::sync::broadcast::channel(1024).0,
            audit: AuditSink::start(store.clone()),
            store,
            registry,
            profiles,
            clock,
            limits,
            base,
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Whether the store holds no Patient yet (only a count is read, so nothing is audited).
    pub async fn is_empty(&self) -> Result<bool> {
        let grant = access::authorize(&Actor::system("carespace"), Action::Search, "Patient")?;
        let query = crate::store::Query {
            rtype: "Patient".into(),
            count: 0,
            total: true,
            ..Default::default()
        };
        Ok(self.store.search(&grant, &query).await?.1 == Some(0))
    }

    /// The gate, with the queries of granular scopes parsed into search clauses the store applies.
    pub(crate) fn authorize(&self, actor: &Actor, action: Action, rtype: &str) -> Result<Grant> {
        let mut grant = access::authorize(actor, action, rtype).inspect_err(|e| {
            if let Error::Forbidden(reason) = e {
                self.audit_refusal(actor, action, rtype, reason);
            }
        })?;
        grant.resolve_filter(|rtype, query| {
            let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
            let req = search::parse(
                rtype,
                &params,
                &self.registry,
                self.limits,
                &self.base,
                self.clock.now_millis(),
            )?;
            if !req.ignored.is_empty() || req.query.clauses.is_empty() {
                return Err(Error::Forbidden(format!(
                    "the scope's query '{query}' is not a search this server understands for {rtype}"
                )));
            }
            Ok(req.query.clauses)
        })?;
        Ok(grant)
    }

    /// Communications created from now on, as they are committed.
    pub fn subscribe_messages(&self) -> tokio::sync::broadcast::Receiver<Arc<Stored>> {
        self.messages_sent.subscribe()
    }

    pub fn profiles(&self) -> &Profiles {
        &self.profiles
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    fn to_stored(row: Row) -> Result<Stored> {
        let body = row
            .body
            .ok_or_else(|| Error::Gone(format!("{}/{} was deleted", row.rtype, row.id)))?;
        Ok(Stored {
            rtype: row.rtype,
            id: row.id,
            version: row.version,
            last_updated: row.last_updated,
            body,
            owners: row.owners,
        })
    }

    /// Validates a resource's JSON text for `rtype` (and `id` on update) and prepares its next version.
    async fn prepare(
        &self,
        grant: &Grant,
        rtype: &str,
        id: Option<&str>,
        text: &str,
        expect: Option<i64>,
    ) -> Result<Prepared> {
        let (value, raw) = fjson::parse(text)?;
        self.prepare_value(grant, rtype, id, &value, &raw, expect).await
    }

    async fn prepare_value(
        &self,
        grant: &Grant,
        rtype: &str,
        id: Option<&str>,
        value: &Value,
        raw: &RawObject,
        expect: Option<i64>,
    ) -> Result<Prepared> {
        let found = parse::validate(value)?;
        if found != rtype {
            return Err(Error::invalid(Issue::new(
                "invalid",
                format!("resourceType {found} does not match the URL's {rtype}"),
            )));
        }
        // Messages written for a patient follow the portal's rules and always claim its profile.
        let message = if rtype == "Communication" && grant.patients().is_some() {
            Some(self.message_rules(grant, id, value).await?)
        } else {
            None
        };
        let mut profiled = None;
        if message.is_some()
            && !value["meta"]["profile"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p == messages::PROFILE))
        {
            let mut v = value.clone();
            let profiles = v["meta"]["profile"].as_array().cloned().unwrap_or_default();
            v["meta"]["profile"] = Value::Array([profiles, vec![json!(messages::PROFILE)]].concat());
            profiled = Some(v);
        }
        let value = profiled.as_ref().unwrap_or(value);
        let violations = self.profiles.check(rtype, value);
        if !violations.is_empty() {
            return Err(Error::Unprocessable(violations));
        }
        let body_id = value.get("id").and_then(Value::as_str);
        let id = match (id, body_id) {
            (Some(url_id), Some(b)) if url_id != b => {
                return Err(Error::invalid(
                    Issue::new("invalid", format!("id {b} does not match the URL's {url_id}")).at("id"),
                ));
            }
            (Some(url_id), None) => {
                return Err(Error::invalid(
                    Issue::new(
                        "required",
                        format!("the resource must carry its id ({url_id}) on update"),
                    )
                    .at("id"),
                ));
            }
            (Some(url_id), Some(_)) => {
                if !parse::valid_id(url_id) {
                    return Err(Error::invalid(Issue::new("value", format!("invalid id '{url_id}'"))));
                }
                url_id.to_owned()
            }
            (None, _) => message.and_then(|m| m.id).unwrap_or_else(new_id),
        };
        let head = if body_id.is_some() || expect.is_some() || grant.action() == Action::Update {
            self.store.head(grant, rtype, &id).await?
        } else {
            None
        };
        // Another patient's resource is "not found", before a version comparison could tell it exists.
        if head.is_some_and(|h| !h.visible) {
            return Err(not_found(rtype, &id));
        }
        if let (Some(want), Some(h)) = (expect, head) {
            if h.version != want {
                return Err(Error::PreconditionFailed(format!(
                    "{rtype}/{id} is at version {}, not {want}",
                    h.version
                )));
            }
        } else if expect.is_some() && head.is_none() {
            return Err(Error::PreconditionFailed(format!("{rtype}/{id} does not exist")));
        }
        let version = head.map_or(1, |h| h.version + 1);
        let now = self.clock.now_millis();
        let mut meta = value
            .get("meta")
            .cloned()
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({}));
        meta["versionId"] = json!(version.to_string());
        meta["lastUpdated"] = json!(clock::instant(now));
        let body = raw.stamped(rtype, &id, &meta);
        let index = extract::index(&self.registry, rtype, value, &self.base);
        let compartments = extract::compartments(rtype, &id, &index);
        if !grant.covers(&compartments) {
            return Err(Error::Forbidden(format!(
                "this {rtype} is outside the records you may change"
            )));
        }
        Ok(Prepared {
            created: head.is_none_or(|h| h.deleted),
            patients: compartments.clone(),
            write: VersionWrite {
                rtype: rtype.to_owned(),
                id: id.clone(),
                prev_version: head.map(|h| h.version),
                version,
                last_updated: now,
                body: Some(body.clone()),
                index,
                compartments,
                ends_access: rtype == "RelatedPerson" && value.get("active") == Some(&Value::Bool(false)),
            },
            stored: Stored {
                rtype: rtype.to_owned(),
                id,
                version,
                last_updated: now,
                body,
                owners: None,
            },
        })
    }

    async fn commit(&self, grant: &Grant, interaction: &'static str, prepared: Vec<Prepared>) -> Result<Vec<Written>> {
        let touched: Vec<(String, Vec<String>)> = prepared
            .iter()
            .map(|p| (format!("{}/{}", p.stored.rtype, p.stored.id), p.patients.clone()))
            .collect();
        let mut writes = Vec::with_capacity(prepared.len() + 1);
        let mut written = Vec::with_capacity(prepared.len());
        for p in prepared {
            writes.push(p.write);
            written.push(Written {
                resource: p.stored,
                created: p.created,
            });
        }
        writes.extend(self.audit_writes(grant, interaction, &touched, None)?);
        self.store.write(grant, &writes).await?;
        if self.messages_sent.receiver_count() > 0 {
            for w in written
                .iter()
                .filter(|w| w.created && w.resource.rtype == "Communication")
            {
                // Nobody listening (a command-line import) is not an error.
                let _ = self.messages_sent.send(Arc::new(w.resource.clone()));
            }
        }
        Ok(written)
    }

    /// Creates from JSON text; the server assigns the id.
    pub async fn create(&self, actor: &Actor, rtype: &str, text: &str) -> Result<Written> {
        let grant = self.authorize(actor, Action::Create, rtype)?;
        let (mut value, raw) = fjson::parse(text)?;
        if let Some(id) = value.get("id").filter(|id| !id.as_str().is_some_and(parse::valid_id)) {
            return Err(Error::invalid(
                Issue::new("value", format!("invalid id {id} (1-64 of A-Z a-z 0-9 - .)")).at(format!("{rtype}.id")),
            ));
        }
        // A client id on create is ignored (the server assigns one), as the spec says.
        if let Some(obj) = value.as_object_mut() {
            obj.remove("id");
        }
        let prepared = self.prepare_value(&grant, rtype, None, &value, &raw, None).await?;
        match self.commit(&grant, "create", vec![prepared]).await {
            // Only a reply's derived id can collide on create: a second reply raced the first.
            Err(Error::Conflict(_)) => Err(Error::Unprocessable(vec![
                Issue::new("business-rule", messages::RE_REPLY).at("Communication.inResponseTo"),
            ])),
            other => other.map(|mut w| w.remove(0)),
        }
    }

    /// The matches (at most two) of conditional criteria (`If-None-Exist`, conditional update and delete).
    pub async fn matches(&self, actor: &Actor, rtype: &str, criteria: &str) -> Result<Vec<Stored>> {
        let params: Vec<(String, String)> = form_urlencoded::parse(criteria.trim_start_matches('?').as_bytes())
            .into_owned()
            .collect();
        let mut req = search::parse(
            rtype,
            &params,
            &self.registry,
            self.limits,
            &self.base,
            self.clock.now_millis(),
        )?;
        // Criteria that would match everything (none, or only parameters we ignore) must not pick a resource.
        if !req.ignored.is_empty() || req.query.clauses.is_empty() {
            let why = req
                .ignored
                .first()
                .cloned()
                .unwrap_or_else(|| "no search criteria".into());
            return Err(Error::invalid(Issue::new(
                "processing",
                format!("conditional criteria '{criteria}': {why}"),
            )));
        }
        req.query.count = 2;
        req.query.total = false;
        let grant = self.authorize(actor, Action::Search, rtype)?;
        let (rows, _) = self.store.search(&grant, &req.query).await?;
        let found: Vec<Stored> = rows.into_iter().map(Self::to_stored).collect::<Result<_>>()?;
        self.audit_read(&grant, "search-type", &found, Some(criteria)).await?;
        Ok(found)
    }

    /// Update (or create with the client's id); `if_match` is the version the client read.
    pub async fn update(
        &self,
        actor: &Actor,
        rtype: &str,
        id: &str,
        text: &str,
        if_match: Option<i64>,
    ) -> Result<Written> {
        let grant = self.authorize(actor, Action::Update, rtype)?;
        // Without If-Match a concurrent writer is not an error: take the newer head and try again.
        for _ in 0..5 {
            let prepared = self.prepare(&grant, rtype, Some(id), text, if_match).await?;
            match self.commit(&grant, "update", vec![prepared]).await {
                Err(Error::Conflict(_)) if if_match.is_none() => continue,
                Err(Error::Conflict(why)) => return Err(Error::PreconditionFailed(why)),
                other => return other.map(|mut w| w.remove(0)),
            }
        }
        Err(Error::Conflict(format!(
            "{rtype}/{id} is being changed by others; try again"
        )))
    }

    pub async fn delete(&self, actor: &Actor, rtype: &str, id: &str) -> Result<()> {
        let grant = self.authorize(actor, Action::Delete, rtype)?;
        // Deleting what is not there (or already deleted) succeeds: delete is idempotent.
        if let Some(p) = self.prepare_delete(&grant, rtype, id).await? {
            self.commit(&grant, "delete", vec![p]).await?;
        }
        Ok(())
    }

    /// The tombstone version that deletes a resource, or `None` if there is nothing to delete.
    async fn prepare_delete(&self, grant: &Grant, rtype: &str, id: &str) -> Result<Option<Prepared>> {
        let Some(row) = self.store.read(grant, rtype, id).await? else {
            return Ok(None);
        };
        if row.body.is_none() {
            return Ok(None);
        }
        let version = row.version + 1;
        let patients = self.touched(grant, &[Self::to_stored(row.clone())?]).remove(0).1;
        let now = self.clock.now_millis();
        Ok(Some(Prepared {
            write: VersionWrite {
                rtype: rtype.to_owned(),
                id: id.to_owned(),
                prev_version: Some(row.version),
                version,
                last_updated: now,
                body: None,
                index: Vec::new(),
                compartments: Vec::new(),
                ends_access: rtype == "RelatedPerson",
            },
            stored: Stored {
                rtype: rtype.to_owned(),
                id: id.to_owned(),
                version,
                last_updated: now,
                body: String::new(),
                owners: None,
            },
            created: false,
            patients,
        }))
    }
}

pub fn not_found(rtype: &str, id: &str) -> Error {
    Error::NotFound(format!("{rtype}/{id} is not known"))
}
