//! Send Record: a patient (or someone acting for them) sends the part of the record dated within a range, with
//! notes, to an outside provider's email. The package is the Download zip for that range (`health::export`)
//! with every entry AES-256 encrypted with a password the patient chooses and gives the provider separately;
//! the server never stores the password or the package, only what was sent to whom (and an AuditEvent). The
//! same Bundle is offered as a SMART Health Link (`share_link`): the email carries the `shlink:/…` (never the
//! password, which is also its passcode).

use base64::Engine as _;

use crate::access::Actor;
use crate::access::audit::{AccountAction, AccountEvent};
use crate::accounts::identity::Email;
use crate::accounts::password;
use crate::clock::{self, Clock};
use crate::error::{Error, Issue, Result};
use crate::health::export::{self, Package};
use crate::mail::{Letter, Mailer, templates};
use crate::records::Records;
use crate::share_link;
use crate::store::SharedStore;
use crate::store::accounts::{MailAttachment, OutboxMail, ShareLink, ShareRow};

/// The longest note for the recipient.
pub const NOTES_MAX: usize = 2000;

/// What the patient typed.
#[derive(Debug, Default)]
pub struct SendForm<'a> {
    pub recipient: &'a str,
    pub start: &'a str,
    pub end: &'a str,
    pub notes: &'a str,
    pub password: &'a str,
    pub confirm: &'a str,
}

#[derive(Clone)]
pub struct Sharing {
    records: Records,
    store: SharedStore,
    mailer: Mailer,
    clock: Clock,
    practice: String,
    base_url: String,
}

/// Where a sent record's link stands.
pub fn link_status(share: &ShareRow, now: i64) -> &'static str {
    match share.disabled {
        Some(_) if share.failures >= share_link::MAX_FAILURES => "Locked (too many wrong passwords)",
        Some(_) => "Deactivated",
        None if share.expires <= now => "Expired",
        None => "Active",
    }
}

/// A `YYYY-MM-DD` date, or the field's message.
fn day(field: &str, label: &str, value: &str) -> std::result::Result<String, Issue> {
    let v = value.trim();
    let valid = v.len() == 10 && crate::fhir::datetime::range(v).is_some();
    if valid {
        Ok(v.to_owned())
    } else {
        Err(Issue::new("value", format!("Enter the {label} date (YYYY-MM-DD).")).at(field))
    }
}

impl Sharing {
    pub fn new(
        records: Records,
        store: SharedStore,
        mailer: Mailer,
        clock: Clock,
        practice: String,
        base_url: String,
    ) -> Self {
        Sharing {
            records,
            store,
            mailer,
            clock,
            practice,
            base_url,
        }
    }

    /// Checks every field at once, so each gets its message.
    fn check(form: &SendForm<'_>) -> Result<(Email, String, String)> {
        let mut issues = Vec::new();
        let recipient = Email::parse(form.recipient)
            .map_err(|_| issues.push(Issue::new("value", "Enter the provider's email address.").at("recipient")))
            .ok();
        let start = day("start", "start", form.start).map_err(|i| issues.push(i)).ok();
        let end = day("end", "end", form.end).map_err(|i| issues.push(i)).ok();
        if let (Some(s), Some(e)) = (&start, &end)
            && s > e
        {
            issues.push(Issue::new("value", "The end date is before the start date.").at("end"));
        }
        if form.notes.chars().count() > NOTES_MAX {
            issues.push(Issue::new("too-long", format!("The notes can be up to {NOTES_MAX} characters.")).at("notes"));
        }
        if let Err(Error::Invalid(found)) = password::check_new(form.password, form.confirm) {
            issues.extend(found);
        }
        match (recipient, start, end) {
            (Some(r), Some(s), Some(e)) if issues.is_empty() => Ok((r, s, e)),
            _ => Err(Error::Invalid(issues)),
        }
    }

    /// Builds the encrypted package, emails it and records that it was sent. `actor` is the patient or
    /// someone acting for them, `sender_name` their name as their account has it (the letter names who sent it).
    pub async fn send(
        &self,
        (actor, sender_name): (&Actor, &str),
        patient: &str,
        form: &SendForm<'_>,
        address: &str,
    ) -> Result<ShareRow> {
        let (recipient, start, end) = Self::check(form)?;
        let patient_resource = self.records.read(actor, "Patient", patient).await?;
        let patient_name = serde_json::from_str(&patient_resource.body)
            .map(|v: serde_json::Value| crate::fhir::display_name(&v))
            .unwrap_or_default();
        // The zip, and the Bundle alone for the link (blocking writers: a blocking thread runs them).
        let (zip, bundle) = {
            let (records, actor, patient) = (self.records.clone(), actor.clone(), patient.to_owned());
            let (practice, start, end) = (self.practice.clone(), start.clone(), end.clone());
            let (notes, password) = (form.notes.to_owned(), form.password.to_owned());
            let rt = tokio::runtime::Handle::current();
            tokio::task::spawn_blocking(move || {
                let range = Some((start.as_str(), end.as_str()));
                let mut zip = Vec::new();
                let package = Package {
                    range,
                    password: Some(&password),
                    notes: Some(&notes),
                };
                export::write_zip(&records, &actor, &patient, &practice, package, &rt, &mut zip)?;
                let mut bundle = Vec::new();
                export::write_bundle(&records, &actor, &patient, range, &rt, &mut bundle)?;
                Ok::<_, Error>((zip, bundle))
            })
            .await
            .map_err(|e| Error::Store(format!("building the package failed: {e}")))??
        };
        let (link_id, key) = share_link::new_link()?;
        let file = share_link::encrypt(&key, "application/fhir+json", &bundle)?;
        let expires = self.clock.now_millis() + share_link::VALID_DAYS * 24 * 3600 * 1000;
        let link = share_link::shlink(
            &format!("{}/shl/{link_id}", self.base_url),
            &key,
            expires,
            &format!("Health records of {patient_name}, {start} to {end}"),
        );
        let sender = actor.audit_name();
        let now = self.clock.now_millis();
        let mut letter: Letter = templates::record_sent(
            recipient.as_str(),
            &self.practice,
            (
                &patient_name,
                matches!(actor, Actor::Proxy { .. }).then_some(sender_name),
            ),
            (&start, &end),
            form.notes.trim(),
            // The viewer's address with the link in its fragment: EHRs read the `shlink:/` part, people open it.
            &format!("{}/shl/view#{link}", self.base_url),
        );
        letter.attachment = Some(MailAttachment {
            name: "health-record.zip".into(),
            content_type: "application/zip".into(),
            data: base64::engine::general_purpose::STANDARD.encode(&zip),
        });
        let share = ShareRow {
            id: uuid::Uuid::new_v4().to_string(),
            patient: patient.to_owned(),
            sent_by: sender.clone(),
            recipient: recipient.as_str().to_owned(),
            range_start: start.clone(),
            range_end: end.clone(),
            created: now,
            link_id,
            expires,
            failures: 0,
            disabled: None,
        };
        let stored = ShareLink {
            share: share.clone(),
            passcode_hash: password::hash(form.password)?,
            file,
        };
        // The letter's outbox id is the share's, so deactivating the link also withdraws a letter not yet sent.
        let mail = OutboxMail {
            id: share.id.clone(),
            ..letter.queued(now)
        };
        self.store.save_share(&stored, &mail).await?;
        self.mailer.queued();
        let what = format!(
            "Records dated {start} to {end} sent to {} ({} bytes, encrypted)",
            recipient.as_str(),
            zip.len()
        );
        self.records
            .audit_account(&AccountEvent {
                action: AccountAction::RecordSent,
                agent: &sender,
                patient: Some(patient),
                proxy: None,
                disclosed: Some(&what),
                success: true,
                address: Some(address),
                recorded: "",
            })
            .await?;
        Ok(share)
    }

    /// Turns off a sent record's link, and withdraws its letter if it has not gone out yet (one that has, with
    /// its zip, cannot be called back).
    pub async fn deactivate(&self, patient: &str, id: &str) -> Result<()> {
        self.store.disable_share(id, patient, self.clock.now_millis()).await
    }

    /// What was sent from the record, newest first.
    pub async fn sent(&self, patient: &str) -> Result<Vec<ShareRow>> {
        self.store.shares(patient).await
    }
}

/// `YYYY-MM-DD HH:MM` of a share, for lists.
pub fn when(share: &ShareRow) -> String {
    let t = clock::instant(share.created);
    format!("{} {}", &t[..10], &t[11..16])
}
