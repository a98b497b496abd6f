//! Friends and family ("Manage Users"): a patient grants someone access to their record by email and birth
//! date. The grant is a RelatedPerson in the record (written through the gate as the patient) and a row the
//! sign-in reads; the person registers from an invitation (4 days, single use) or, with an account already,
//! is told to sign in. A grant opens only when the account's birth date is the one the patient entered, and
//! stops at once when revoked (its sessions and app tokens end in the same transaction).

use serde_json::{Value, json};

use super::identity::{BirthDate, Email};
use super::{Accounts, INVITE_VALID_DAYS, SignedIn, throttle};
use crate::access::Actor;
use crate::access::audit::{AccountAction, AccountEvent};
use crate::error::{Error, Result};
use crate::mail::templates;
use crate::store::AccountKey;
use crate::store::accounts::{Account, AccountKind, ProxyGrantRow};

/// Relationships a patient can pick (HL7 v3 RoleCode).
pub const RELATIONSHIPS: &[(&str, &str)] = &[
    ("SPS", "Spouse"),
    ("DOMPART", "Domestic partner"),
    ("PRN", "Parent"),
    ("CHILD", "Child"),
    ("SIB", "Sibling"),
    ("FAMMEMB", "Other family member"),
    ("GUARD", "Guardian"),
    ("FRND", "Friend"),
];
const ROLE_CODE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-RoleCode";

/// What a patient types to grant access.
#[derive(Debug, Default)]
pub struct NewProxy<'a> {
    pub email: &'a str,
    pub birth_date: &'a str,
    pub name: &'a str,
    pub relationship: &'a str,
}

/// Where a grant stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyStatus {
    Invited,
    Active,
    Revoked,
}

impl ProxyStatus {
    pub fn words(self) -> &'static str {
        match self {
            ProxyStatus::Invited => "Invited",
            ProxyStatus::Active => "Active",
            ProxyStatus::Revoked => "Revoked",
        }
    }
}

/// One grant as the patient (or the care team) sees it.
#[derive(Debug, Clone)]
pub struct Proxy {
    pub grant: ProxyGrantRow,
    pub email: String,
    pub name: String,
    pub relationship: String,
    pub status: ProxyStatus,
    /// When it last changed: granted, accepted or revoked (epoch ms).
    pub since: i64,
}

/// A record the signed-in person may open: their own, or a patient's through a grant.
#[derive(Debug, Clone)]
pub struct Openable {
    pub patient: String,
    pub name: String,
    /// `None`: the account's own record.
    pub grant: Option<ProxyGrantRow>,
}

impl Accounts {
    async fn audit_grant(
        &self,
        action: AccountAction,
        agent: &str,
        grant: &ProxyGrantRow,
        address: Option<&str>,
    ) -> Result<()> {
        let proxy = format!("RelatedPerson/{}", grant.related_person);
        self.records
            .audit_account(&AccountEvent {
                action,
                agent,
                patient: Some(&grant.patient),
                proxy: Some(&proxy),
                disclosed: None,
                success: true,
                address,
                recorded: "",
            })
            .await
    }

    /// Grants that open for this account now: accepted (at registration or sign-in with the birth date the
    /// patient entered) and not revoked.
    pub(super) async fn open_grants(&self, account: &Account) -> Result<Vec<ProxyGrantRow>> {
        Ok(self
            .store
            .proxy_grants(false, &account.id)
            .await?
            .into_iter()
            .filter(|g| g.opens_for(account))
            .collect())
    }

    /// Marks accepted (and audits) the grants that open for this account for the first time.
    pub(super) async fn accept_grants(&self, account: &Account, address: &str) -> Result<()> {
        let Some(birth_date) = &account.birth_date else {
            return Ok(());
        };
        let now = self.clock.now_millis();
        for grant in self.store.accept_proxy_grants(&account.id, birth_date, now).await? {
            let agent = format!("RelatedPerson/{}", grant.related_person);
            self.audit_grant(AccountAction::ProxyAccepted, &agent, &grant, Some(address))
                .await?;
        }
        Ok(())
    }

    /// The patient gives someone access: a RelatedPerson in the record, the grant, and an email (an
    /// invitation to register, or word that access is waiting for an existing account).
    pub async fn grant_access(&self, patient_id: &str, new: &NewProxy<'_>, address: &str) -> Result<Proxy> {
        let actor = Actor::Patient {
            patient_id: patient_id.to_owned(),
        };
        let throttle_key = format!("invite:Patient/{patient_id}");
        self.throttle.check(&[&throttle_key]).await?;
        let email = Email::parse(new.email)?;
        let birth_date = BirthDate::parse(new.birth_date)?;
        let relationship = match new.relationship.trim() {
            "" => None,
            code => Some(
                RELATIONSHIPS
                    .iter()
                    .find(|(c, _)| *c == code)
                    .ok_or_else(|| Error::field("relationship", "Choose a relationship from the list."))?,
            ),
        };
        let name = new.name.trim();
        if name.chars().count() > 100 {
            return Err(Error::field("name", "The name can be up to 100 characters."));
        }
        let own = self
            .store
            .account(AccountKey::Person(&format!("Patient/{patient_id}")))
            .await?;
        if own.as_ref().is_some_and(|a| a.email == email.as_str()) {
            return Err(Error::field("email", "This is your own email address."));
        }
        let existing = self.store.account(AccountKey::Email(email.as_str())).await?;
        if let Some(account) = &existing {
            if account.kind == AccountKind::Staff {
                return Err(Error::field(
                    "email",
                    "This address belongs to the care team; use a personal address.",
                ));
            }
            let grants = self.store.proxy_grants(true, patient_id).await?;
            if grants.iter().any(|g| g.account_id == account.id && g.revoked.is_none()) {
                return Err(Error::field(
                    "email",
                    "This person already has access (or an invitation); resend or revoke it below.",
                ));
            }
        }
        let mut related = json!({
            "resourceType": "RelatedPerson",
            "active": true,
            "patient": {"reference": format!("Patient/{patient_id}")},
            "telecom": [{"system": "email", "value": email.as_str()}],
            "birthDate": birth_date.as_str(),
        });
        if !name.is_empty() {
            related["name"] = json!([{"text": name}]);
        }
        if let Some((code, display)) = relationship {
            related["relationship"] =
                json!([{"coding": [{"system": ROLE_CODE_SYSTEM, "code": code, "display": display}], "text": display}]);
        }
        let written = self
            .records
            .create(&actor, "RelatedPerson", &related.to_string())
            .await?
            .resource;
        let patient_name = self.patient_name(&actor, patient_id).await?;
        let now = self.clock.now_millis();
        let account = match existing {
            Some(a) => a,
            None => {
                let account = Account {
                    id: uuid::Uuid::new_v4().to_string(),
                    email: email.as_str().to_owned(),
                    kind: AccountKind::Proxy,
                    person: format!("RelatedPerson/{}", written.id),
                    display_name: if name.is_empty() {
                        email.as_str().to_owned()
                    } else {
                        name.to_owned()
                    },
                    birth_date: Some(birth_date.as_str().to_owned()),
                    password_hash: None,
                    created: now,
                    registered: None,
                };
                self.store.save_account(&account).await?;
                account
            }
        };
        let grant = ProxyGrantRow {
            related_person: written.id.clone(),
            patient: patient_id.to_owned(),
            account_id: account.id.clone(),
            birth_date: birth_date.as_str().to_owned(),
            patient_name,
            created: now,
            accepted: None,
            revoked: None,
        };
        self.store.save_proxy_grant(&grant).await?;
        self.audit_grant(AccountAction::ProxyGranted, &actor.audit_name(), &grant, Some(address))
            .await?;
        self.tell_proxy(&account, &grant).await?;
        self.throttle.count(&throttle_key, throttle::INVITE).await?;
        self.proxy_view(&actor, grant).await
    }

    /// The email for a grant: an invitation to register (a new link; older ones stop working), or, for an
    /// account that can sign in already, word that a record is waiting.
    async fn tell_proxy(&self, account: &Account, grant: &ProxyGrantRow) -> Result<()> {
        let patient = &grant.patient_name;
        // An account that can sign in (or a patient's, whose own invitation link must stay as it is) is told
        // to log in; the grant opens at that login.
        if account.registered.is_some() || account.kind == AccountKind::Patient {
            let letter = templates::proxy_access(
                &account.email,
                &self.practice,
                patient,
                &format!("{}/login", self.base_url),
            );
            self.store.enqueue_mail(&letter.queued(self.clock.now_millis())).await?;
            self.mailer.queued();
            Ok(())
        } else {
            self.send_invitation(account, |link| {
                templates::proxy_invite(&account.email, &self.practice, patient, link, INVITE_VALID_DAYS)
            })
            .await
        }
    }

    /// The patient's name, read as the patient granting access.
    async fn patient_name(&self, patient: &Actor, patient_id: &str) -> Result<String> {
        let patient = self.records.read(patient, "Patient", patient_id).await?;
        let v = patient.json()?;
        Ok(crate::fhir::display_name(&v))
    }

    /// A grant the patient gave, or "not found" (a grant of another patient is not theirs to touch).
    async fn own_grant(&self, patient_id: &str, related_person: &str) -> Result<ProxyGrantRow> {
        self.store
            .proxy_grant(related_person)
            .await?
            .filter(|g| g.patient == patient_id)
            .ok_or_else(|| Error::NotFound("This person has no access to the record.".into()))
    }

    /// "Resend invite": for a grant not accepted yet.
    pub async fn resend_access(&self, patient_id: &str, related_person: &str, address: &str) -> Result<()> {
        let grant = self.own_grant(patient_id, related_person).await?;
        if grant.revoked.is_some() || grant.accepted.is_some() {
            return Err(Error::Conflict(
                "Only an invitation that has not been accepted can be sent again.".into(),
            ));
        }
        let account = self
            .store
            .account(AccountKey::Id(&grant.account_id))
            .await?
            .ok_or_else(|| Error::Store(format!("grant {related_person} has no account")))?;
        let throttle_key = format!("invite:Patient/{patient_id}");
        self.throttle.check(&[&throttle_key]).await?;
        self.tell_proxy(&account, &grant).await?;
        self.throttle.count(&throttle_key, throttle::INVITE).await?;
        self.audit_grant(
            AccountAction::ProxyInviteResent,
            &format!("Patient/{patient_id}"),
            &grant,
            Some(address),
        )
        .await
    }

    /// "Revoke access", by the patient (`by` is the patient) or the care team: the RelatedPerson becomes
    /// inactive and, in one transaction, the grant ends with the sessions and app tokens that used it.
    pub async fn revoke_access(&self, by: &Actor, patient_id: &str, related_person: &str, address: &str) -> Result<()> {
        let grant = self.own_grant(patient_id, related_person).await?;
        if grant.revoked.is_some() {
            return Ok(());
        }
        let now = self.clock.now_millis();
        self.store.revoke_proxy_grant(related_person, now).await?;
        let current = self.records.read(by, "RelatedPerson", related_person).await?;
        let mut v = current.json()?;
        v["active"] = json!(false);
        self.records
            .update(by, "RelatedPerson", related_person, &v.to_string(), None)
            .await?;
        self.audit_grant(AccountAction::ProxyRevoked, &by.audit_name(), &grant, Some(address))
            .await
    }

    async fn proxy_view(&self, reader: &Actor, grant: ProxyGrantRow) -> Result<Proxy> {
        let email = self
            .store
            .account(AccountKey::Id(&grant.account_id))
            .await?
            .map(|a| a.email)
            .unwrap_or_default();
        let related = self.records.read(reader, "RelatedPerson", &grant.related_person).await;
        let v: Value = match related {
            Ok(r) => r.json()?,
            Err(Error::NotFound(_) | Error::Gone(_)) => Value::Null,
            Err(e) => return Err(e),
        };
        let (status, since) = match (grant.revoked, grant.accepted) {
            (Some(t), _) => (ProxyStatus::Revoked, t),
            (None, Some(t)) => (ProxyStatus::Active, t),
            (None, None) => (ProxyStatus::Invited, grant.created),
        };
        Ok(Proxy {
            email,
            name: crate::fhir::display_name(&v),
            relationship: v["relationship"][0]["text"]
                .as_str()
                .or_else(|| v["relationship"][0]["coding"][0]["display"].as_str())
                .unwrap_or("")
                .to_owned(),
            status,
            since,
            grant,
        })
    }

    /// Everyone who has or was offered access to a patient's record, read as `reader` (the patient or staff).
    pub async fn proxies(&self, reader: &Actor, patient_id: &str) -> Result<Vec<Proxy>> {
        let mut out = Vec::new();
        for grant in self.store.proxy_grants(true, patient_id).await? {
            out.push(self.proxy_view(reader, grant).await?);
        }
        Ok(out)
    }

    /// The records the signed-in person may open: their own (patients) and those granted to them.
    pub async fn openable(&self, signed_in: &SignedIn) -> Result<Vec<Openable>> {
        let mut out = Vec::new();
        if let Some(patient) = signed_in.account.person.strip_prefix("Patient/") {
            out.push(Openable {
                patient: patient.to_owned(),
                name: signed_in.account.display_name.clone(),
                grant: None,
            });
        }
        for grant in self.open_grants(&signed_in.account).await? {
            out.push(Openable {
                patient: grant.patient.clone(),
                name: grant.patient_name.clone(),
                grant: Some(grant),
            });
        }
        Ok(out)
    }

    /// Opens a record in the session: the account's own (`None` or its own id) or one granted to it.
    pub async fn open_record(&self, signed_in: &SignedIn, patient: &str) -> Result<()> {
        let choice = self
            .openable(signed_in)
            .await?
            .into_iter()
            .find(|o| o.patient == patient)
            .ok_or_else(|| Error::NotFound("You have no access to this record.".into()))?;
        let open = choice.grant.map(|g| g.patient);
        self.store.open_record(&signed_in.session_hash, open.as_deref()).await
    }
}
