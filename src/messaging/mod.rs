//! Secure messages between a patient's side and the care team, kept as FHIR Communication and read and
//! written through the gate as the signed-in person. Knows FHIR, not HTML; the rules a message from the
//! patient's side must follow are enforced in `records::messages`, so the FHIR API keeps them too.
//!
//! Read state: a message is unread until its recipient opens it; the first open records `received` (one new
//! version, never again). A patient's inbox is shared by the patient and those acting for them.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::access::Actor;
use crate::clock::{self, Clock};
use crate::config::MessageCategory;
use crate::error::{Error, Issue, Result};
use crate::mail::{Mailer, templates};
use crate::records::messages::{PROFILE, RE_REPLY, from_care_team, reply_id, writer};
use crate::records::{Records, Stored};
use crate::store::{AccountKey, SharedStore};

pub const CATEGORY_SYSTEM: &str = "http://carespace.example/fhir/CodeSystem/message-category";
pub const SUBJECT_MAX: usize = 120;
pub const BODY_MAX: usize = 5000;
/// Messages per page of a list.
pub const PAGE: i64 = 20;

/// One message, ready to show.
#[derive(Debug, Clone)]
pub struct Message {
    pub id: String,
    pub patient: String,
    pub patient_name: String,
    pub category: String,
    pub subject: String,
    pub body: String,
    /// `YYYY-MM-DD HH:MM` (UTC).
    pub sent: String,
    pub sent_ms: i64,
    /// `Type/id` of who wrote it.
    pub sender: String,
    pub sender_name: String,
    pub from_care_team: bool,
    /// Not yet opened by its recipient.
    pub unread: bool,
    pub in_response_to: Option<String>,
}

/// Which side of the conversation someone reads from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Patient,
    CareTeam,
}

impl Message {
    /// Whether `side` may answer this message: the patient's side once, and only what the care team wrote;
    /// the care team anything the patient's side wrote.
    pub fn answerable_by(&self, side: Side, thread: &[Message]) -> bool {
        match side {
            Side::Patient => self.from_care_team && !thread.iter().any(|m| m.id == reply_id(&self.id)),
            Side::CareTeam => !self.from_care_team,
        }
    }
}

/// A new message as typed (a reply has no category or subject of its own).
#[derive(Debug, Default)]
pub struct Draft<'a> {
    pub category: &'a str,
    pub subject: &'a str,
    pub body: &'a str,
}

#[derive(Clone)]
pub struct Messages {
    records: Records,
    categories: Arc<[MessageCategory]>,
    clock: Clock,
}

fn bad(field: &str, message: impl Into<String>) -> Error {
    Error::invalid(Issue::new("required", message).at(field))
}

fn first_time(v: &Value) -> (String, i64) {
    let raw = v["sent"].as_str().unwrap_or("");
    let ms = crate::fhir::datetime::range(raw).map_or(0, |r| r.0);
    let shown = clock::instant(ms);
    (format!("{} {}", &shown[..10], &shown[11..16]), ms)
}

impl Messages {
    pub fn new(records: Records, categories: &[MessageCategory], clock: Clock) -> Self {
        Messages {
            records,
            categories: categories.into(),
            clock,
        }
    }

    /// Makes sure the Organization patients write to exists (named after the practice when it has to be made).
    pub async fn ensure_care_team(&self, practice_name: &str) -> Result<()> {
        let system = Actor::system("carespace");
        let reference = self.records.practice_reference();
        let id = reference.trim_start_matches("Organization/");
        match self.records.read(&system, "Organization", id).await {
            Ok(_) => Ok(()),
            Err(Error::NotFound(_) | Error::Gone(_)) => {
                let org = json!({"resourceType": "Organization", "id": id, "active": true, "name": practice_name});
                self.records
                    .update(&system, "Organization", id, &org.to_string(), None)
                    .await
                    .map(|_| ())
            }
            Err(e) => Err(e),
        }
    }

    /// The categories offered when composing.
    pub fn enabled_categories(&self) -> impl Iterator<Item = &MessageCategory> {
        self.categories.iter().filter(|c| c.enabled)
    }

    fn category_label(&self, code: &str) -> String {
        self.categories
            .iter()
            .find(|c| c.code == code)
            .map_or_else(|| code.to_owned(), |c| c.label.clone())
    }

    /// Adds the configured categories the shipped CodeSystem lacks, so that the profile's binding accepts them.
    pub fn extend_code_system(definitions: &mut [Value], categories: &[MessageCategory]) {
        for cs in definitions
            .iter_mut()
            .filter(|d| d["resourceType"] == "CodeSystem" && d["url"] == CATEGORY_SYSTEM)
        {
            let concepts = cs["concept"].as_array_mut();
            let Some(concepts) = concepts else { continue };
            for c in categories {
                if !concepts.iter().any(|k| k["code"] == c.code.as_str()) {
                    concepts.push(json!({"code": c.code, "display": c.label}));
                }
            }
        }
    }

    fn message(&self, c: &Value, names: &HashMap<String, String>) -> Message {
        let local = |r: &Value| {
            r["reference"]
                .as_str()
                .map(|s| crate::fhir::extract::local_reference(s, self.records.base()))
                .unwrap_or_default()
        };
        let sender = local(&c["sender"]);
        let patient = local(&c["subject"]);
        let (sent, sent_ms) = first_time(c);
        let name = |reference: &str, fallback: &str| {
            names
                .get(reference)
                .filter(|n| !n.is_empty())
                .cloned()
                .unwrap_or_else(|| fallback.to_owned())
        };
        let coding = &c["category"][0]["coding"][0];
        Message {
            id: c["id"].as_str().unwrap_or("").to_owned(),
            patient_name: name(&patient, "the patient"),
            patient: patient.trim_start_matches("Patient/").to_owned(),
            category: coding["code"]
                .as_str()
                .map(|code| self.category_label(code))
                .or_else(|| c["category"][0]["text"].as_str().map(str::to_owned))
                .unwrap_or_default(),
            subject: c["topic"]["text"].as_str().unwrap_or("(no subject)").to_owned(),
            body: c["payload"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p["contentString"].as_str())
                .collect::<Vec<_>>()
                .join("\n\n"),
            sent,
            sent_ms,
            from_care_team: from_care_team(&sender),
            sender_name: name(
                &sender,
                if from_care_team(&sender) {
                    "Your care team"
                } else if sender.starts_with("RelatedPerson/") {
                    // Those given access do not read who else has it.
                    "A family member or friend"
                } else {
                    "Patient"
                },
            ),
            sender,
            unread: c.get("received").is_none(),
            in_response_to: c["inResponseTo"][0]["reference"]
                .as_str()
                .map(|r| crate::fhir::extract::local_reference(r, self.records.base()))
                .and_then(|r| r.strip_prefix("Communication/").map(str::to_owned)),
        }
    }

    /// Searches Communications (senders and subjects included for their names), newest first.
    async fn list(&self, actor: &Actor, mut params: Vec<(String, String)>) -> Result<(Vec<Message>, i64)> {
        params.extend([
            ("_sort".to_owned(), "-sent".to_owned()),
            ("_include".to_owned(), "Communication:sender".to_owned()),
            ("_include".to_owned(), "Communication:subject".to_owned()),
            ("_total".to_owned(), "accurate".to_owned()),
        ]);
        let found = self.records.find(actor, "Communication", &params).await?;
        let mut names = HashMap::new();
        for r in &found.included {
            names.insert(format!("{}/{}", r.rtype, r.id), crate::fhir::display_name(&r.json()?));
        }
        let messages = found
            .matches
            .iter()
            .map(|r| Ok(self.message(&r.json()?, &names)))
            .collect::<Result<_>>()?;
        Ok((messages, found.total.unwrap_or(0)))
    }

    fn paged(page: i64) -> [(String, String); 2] {
        [
            ("_count".to_owned(), PAGE.to_string()),
            ("_offset".to_owned(), ((page.max(1) - 1) * PAGE).to_string()),
        ]
    }

    /// What the care team sent the patient, newest first (`page` from 1).
    pub async fn inbox(&self, actor: &Actor, patient: &str, page: i64) -> Result<(Vec<Message>, i64)> {
        let mut params = vec![("recipient".to_owned(), format!("Patient/{patient}"))];
        params.extend(Self::paged(page));
        self.list(actor, params).await
    }

    /// What the patient's side sent the care team, newest first.
    pub async fn sent(&self, actor: &Actor, patient: &str, page: i64) -> Result<(Vec<Message>, i64)> {
        let mut params = vec![
            ("subject".to_owned(), format!("Patient/{patient}")),
            ("recipient".to_owned(), self.records.practice_reference()),
        ];
        params.extend(Self::paged(page));
        self.list(actor, params).await
    }

    /// What patients' sides wrote to the care team: the unread ones (all of them) and a page of the rest.
    pub async fn care_team_inbox(
        &self,
        actor: &Actor,
        category: Option<&str>,
        page: i64,
    ) -> Result<(Vec<Message>, Vec<Message>, i64)> {
        let mut base = vec![("recipient".to_owned(), self.records.practice_reference())];
        if let Some(code) = category.filter(|c| !c.is_empty()) {
            base.push(("category".to_owned(), format!("{CATEGORY_SYSTEM}|{code}")));
        }
        let mut unread_query = base.clone();
        unread_query.extend([
            ("received:missing".to_owned(), "true".to_owned()),
            ("_count".to_owned(), "200".to_owned()),
        ]);
        let (unread, _) = self.list(actor, unread_query).await?;
        base.push(("received:missing".to_owned(), "false".to_owned()));
        base.extend(Self::paged(page));
        let (read, total) = self.list(actor, base).await?;
        Ok((unread, read, total))
    }

    /// A message's whole conversation, oldest first, as `actor` may see it; `None` when it is not theirs.
    pub async fn thread(&self, actor: &Actor, id: &str) -> Result<Option<Vec<Message>>> {
        let one = |id: &str| vec![("_id".to_owned(), id.to_owned())];
        let Some(mut root) = self.list(actor, one(id)).await?.0.pop() else {
            return Ok(None);
        };
        // Up to the first message (a long conversation is still short), then every answer below it.
        for _ in 0..100 {
            let Some(parent) = &root.in_response_to else { break };
            match self.list(actor, one(parent)).await?.0.pop() {
                Some(p) => root = p,
                None => break,
            }
        }
        let mut thread = vec![root];
        let mut next = 0;
        while next < thread.len() && thread.len() < 500 {
            let params = vec![
                (
                    "in-response-to".to_owned(),
                    format!("Communication/{}", thread[next].id),
                ),
                ("_count".to_owned(), "100".to_owned()),
            ];
            thread.extend(self.list(actor, params).await?.0);
            next += 1;
        }
        thread.sort_by_key(|m| m.sent_ms);
        Ok(Some(thread))
    }

    /// Records that `side` opened these messages: those addressed to it that it had not opened yet.
    pub async fn mark_read(&self, actor: &Actor, side: Side, thread: &[Message]) -> Result<()> {
        for m in thread
            .iter()
            .filter(|m| m.unread && (m.from_care_team == (side == Side::Patient)))
        {
            let current = self.records.read(actor, "Communication", &m.id).await?;
            let mut v = current.json()?;
            v["received"] = json!(clock::instant(self.clock.now_millis()));
            match self
                .records
                .update(actor, "Communication", &m.id, &v.to_string(), Some(current.version))
                .await
            {
                // Someone else on the same side opened it at the same moment.
                Ok(_) | Err(Error::PreconditionFailed(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Checks a draft's fields, each with its own message.
    fn check(&self, draft: &Draft<'_>, reply: bool) -> Result<()> {
        let mut issues = Vec::new();
        if !reply {
            if !self.enabled_categories().any(|c| c.code == draft.category) {
                issues.push(Issue::new("required", "Choose what your message is about.").at("category"));
            }
            let subject = draft.subject.trim();
            if subject.is_empty() {
                issues.push(Issue::new("required", "Enter a subject.").at("subject"));
            } else if subject.chars().count() > SUBJECT_MAX {
                issues.push(
                    Issue::new(
                        "too-long",
                        format!("The subject can be up to {SUBJECT_MAX} characters."),
                    )
                    .at("subject"),
                );
            }
        }
        let body = draft.body.trim();
        if body.is_empty() {
            issues.push(Issue::new("required", "Enter your message.").at("body"));
        } else if body.chars().count() > BODY_MAX {
            issues.push(Issue::new("too-long", format!("The message can be up to {BODY_MAX} characters.")).at("body"));
        }
        if issues.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid(issues))
        }
    }

    /// Sends a new message: from the patient's side to the care team, or from a staff member to a patient.
    pub async fn compose(&self, actor: &Actor, patient: &str, draft: &Draft<'_>) -> Result<Stored> {
        self.check(draft, false)?;
        let label = self.category_label(draft.category);
        self.write(
            actor,
            patient,
            (draft.category, &label),
            draft.subject.trim(),
            draft.body,
            None,
        )
        .await
    }

    /// Answers `answered` (which `actor` must be able to read).
    pub async fn reply(&self, actor: &Actor, answered: &Message, body: &str) -> Result<Stored> {
        self.check(
            &Draft {
                body,
                ..Draft::default()
            },
            true,
        )?;
        let subject = if answered.subject.to_lowercase().starts_with("re:") {
            answered.subject.clone()
        } else {
            format!("Re: {}", answered.subject)
        };
        let current = self.records.read(actor, "Communication", &answered.id).await?;
        let v = current.json()?;
        let coding = &v["category"][0]["coding"][0];
        let code = coding["code"].as_str().unwrap_or("health-question");
        let label = self.category_label(code);
        let subject: String = subject.chars().take(SUBJECT_MAX + 4).collect();
        self.write(
            actor,
            &answered.patient,
            (code, &label),
            &subject,
            body,
            Some(&answered.id),
        )
        .await
        .map_err(|e| match e {
            // The portal names the field the person typed in.
            Error::Unprocessable(issues) if issues.iter().any(|i| i.diagnostics == RE_REPLY) => bad("body", RE_REPLY),
            other => other,
        })
    }

    async fn write(
        &self,
        actor: &Actor,
        patient: &str,
        (code, label): (&str, &str),
        subject: &str,
        body: &str,
        answers: Option<&str>,
    ) -> Result<Stored> {
        // The writer is the sender (a proxy writing for the patient is recorded as themselves).
        let sender = writer(actor).ok_or_else(|| Error::Forbidden("only people write portal messages".into()))?;
        let recipient = if from_care_team(&sender) {
            format!("Patient/{patient}")
        } else {
            self.records.practice_reference()
        };
        let mut c = json!({
            "resourceType": "Communication",
            "meta": {"profile": [PROFILE]},
            "status": "completed",
            "category": [{"coding": [{"system": CATEGORY_SYSTEM, "code": code, "display": label}]}],
            "subject": {"reference": format!("Patient/{patient}")},
            "topic": {"text": subject},
            "sent": clock::instant(self.clock.now_millis()),
            "sender": {"reference": sender},
            "recipient": [{"reference": recipient}],
            "payload": [{"contentString": body.trim()}],
        });
        if let Some(id) = answers {
            c["inResponseTo"] = json!([{"reference": format!("Communication/{id}")}]);
        }
        Ok(self
            .records
            .create(actor, "Communication", &c.to_string())
            .await?
            .resource)
    }
}

/// Tells patients by email that the care team wrote to them: a link, never the message. Runs for the life of
/// the server; messages created while no server runs (a command-line import) announce nothing.
pub fn spawn_notifier(
    records: &Records,
    store: SharedStore,
    mailer: Mailer,
    clock: Clock,
    practice: String,
    base_url: String,
) {
    let mut created = records.subscribe_messages();
    let base = records.base().to_owned();
    tokio::spawn(async move {
        loop {
            let stored = match created.recv().await {
                Ok(s) => s,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "new-message emails skipped: too many messages at once");
                    continue;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            if let Err(e) = notify(&stored, &store, &mailer, &practice, &base_url, &base, &clock).await {
                tracing::warn!(error = %e, message = %stored.id, "new-message email not queued");
            }
        }
    });
}

async fn notify(
    stored: &Stored,
    store: &SharedStore,
    mailer: &Mailer,
    practice: &str,
    base_url: &str,
    fhir_base: &str,
    clock: &Clock,
) -> Result<()> {
    let c = stored.json()?;
    let local = |r: &Value| {
        r["reference"]
            .as_str()
            .map(|s| crate::fhir::extract::local_reference(s, fhir_base))
    };
    if !local(&c["sender"]).is_some_and(|s| from_care_team(&s)) {
        return Ok(());
    }
    let patients: Vec<String> = c["recipient"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(local)
        .filter(|r| r.starts_with("Patient/"))
        .collect();
    if patients.is_empty() {
        return Ok(());
    }
    let link = format!("{base_url}/messages/{}", stored.id);
    let now = clock.now_millis();
    let mut accounts = store.accounts_of(&patients).await?;
    // And those the patient gave access to, whose grant is in force.
    for patient in &patients {
        for grant in store.proxy_grants(true, patient.trim_start_matches("Patient/")).await? {
            if grant.revoked.is_none() && grant.accepted.is_some() {
                accounts.extend(store.account(AccountKey::Id(&grant.account_id)).await?);
            }
        }
    }
    accounts.sort_by(|a, b| a.id.cmp(&b.id));
    accounts.dedup_by(|a, b| a.id == b.id);
    for account in accounts {
        if account.registered.is_some() {
            let letter = templates::new_message(&account.email, practice, &link);
            store.enqueue_mail(&letter.queued(now)).await?;
        }
    }
    mailer.queued();
    Ok(())
}
