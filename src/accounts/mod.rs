//! People and their credentials: staff accounts, patient invitations, registration, sign-in with date of
//! birth, sessions, password reset and throttling. The rules live here; the portal only renders them. Never
//! touches patient data except through `Records` (reading the Patient an invitation is for) and never keeps a
//! token or password: only hashes.

pub mod demo;
pub mod identity;
pub mod password;
pub mod proxies;
pub mod secret;
pub mod throttle;

use serde_json::json;

use self::identity::{BirthDate, Email};
use self::throttle::Throttle;
use crate::access::Actor;
use crate::access::audit::{AccountAction, AccountEvent};
use crate::clock::Clock;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::mail::{Mailer, templates};
use crate::records::Records;
use crate::store::accounts::{Account, AccountKind, AccountToken, ProxyGrantRow, Redeem, SessionRow, TokenPurpose};
use crate::store::{AccountKey, SharedStore};

const MINUTE: i64 = 60_000;
pub const INVITE_VALID_DAYS: i64 = 4;
pub const RESET_VALID_MINUTES: i64 = 60;
/// A session ends after this long without a request...
pub const SESSION_IDLE_MS: i64 = 30 * MINUTE;
/// ...and this long after sign-in, whatever happens.
pub const SESSION_MAX_MS: i64 = 12 * 60 * MINUTE;
/// `last_seen` is written at most this often, so that browsing is not a write per page.
const TOUCH_EVERY_MS: i64 = MINUTE;

/// Where a single-use link stands.
#[derive(Debug, Clone)]
pub enum LinkState {
    Open(Account),
    Expired,
    Used,
    /// A newer link of the same kind was sent.
    Replaced,
    Unknown,
}

/// A valid session: who is signed in, and whose record they have open when it is not their own.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub account: Account,
    /// The grant through which another patient's record is open.
    pub opened: Option<ProxyGrantRow>,
    /// Whether the person may open more than one record (their own and granted ones).
    pub can_switch: bool,
    session_hash: String,
}

impl SignedIn {
    /// Whether a record is open: the account's own (patients) or one through a grant.
    pub fn has_record(&self) -> bool {
        self.opened.is_some() || self.account.kind != AccountKind::Proxy
    }

    /// The actor for the gate.
    pub fn actor(&self) -> Result<Actor> {
        if let Some(grant) = &self.opened {
            return Ok(Actor::Proxy {
                related_person: grant.related_person.clone(),
                patient_id: grant.patient.clone(),
            });
        }
        let (rtype, id) = self
            .account
            .person
            .split_once('/')
            .ok_or_else(|| Error::Store(format!("account {} has no person", self.account.id)))?;
        Ok(match (self.account.kind, rtype) {
            (AccountKind::Patient, "Patient") => Actor::Patient {
                patient_id: id.to_owned(),
            },
            (AccountKind::Staff, "Practitioner") => Actor::Staff {
                practitioner_id: id.to_owned(),
            },
            (AccountKind::Proxy, _) => {
                return Err(Error::Forbidden("Choose whose record to open first.".into()));
            }
            _ => {
                return Err(Error::Store(format!(
                    "account {} stands for {}",
                    self.account.id, self.account.person
                )));
            }
        })
    }
}

/// A sign-in that worked: the cookie value to hand to the browser.
pub struct NewSession {
    pub cookie: String,
    pub account: Account,
}

/// An account with the state of its newest invitation, for the staff page.
#[derive(Debug, Clone)]
pub struct Invitation {
    pub account: Account,
    pub latest: Option<AccountToken>,
}

#[derive(Clone)]
pub struct Accounts {
    store: SharedStore,
    records: Records,
    mailer: Mailer,
    throttle: Throttle,
    clock: Clock,
    practice: String,
    base_url: String,
}

/// The words shown for every failed sign-in: they never say which part was wrong or whether the account exists.
pub const SIGN_IN_FAILED: &str = "The email address, password or date of birth is not correct.";
pub const STAFF_SIGN_IN_FAILED: &str = "The email address or password is not correct.";

impl Accounts {
    pub fn new(config: &Config, store: SharedStore, records: Records, mailer: Mailer, clock: Clock) -> Self {
        Accounts {
            throttle: Throttle::new(store.clone(), clock.clone()),
            store,
            records,
            mailer,
            clock,
            practice: config.practice_name.clone(),
            base_url: config.base_url.clone(),
        }
    }

    pub fn practice(&self) -> &str {
        &self.practice
    }

    async fn audit(
        &self,
        action: AccountAction,
        agent: &str,
        patient: Option<&str>,
        success: bool,
        address: Option<&str>,
    ) -> Result<()> {
        self.records
            .audit_account(&AccountEvent {
                action,
                agent,
                patient,
                proxy: None,
                disclosed: None,
                success,
                address,
                recorded: "",
            })
            .await
    }

    /// The patient id an account stands for, for its audit events.
    fn patient_of(account: &Account) -> Option<&str> {
        account.person.strip_prefix("Patient/")
    }

    /// Creates a staff account and the Practitioner it stands for (the command line: `carespace staff add`).
    pub async fn add_staff(&self, email: &str, name: &str, password: &str) -> Result<Account> {
        let email = Email::parse(email)?;
        let name = name.trim();
        if name.is_empty() {
            return Err(Error::field("name", "Enter the staff member's name."));
        }
        password::check_new(password, password)?;
        if self.store.account(AccountKey::Email(email.as_str())).await?.is_some() {
            return Err(Error::Conflict(format!(
                "an account for {} exists already",
                email.as_str()
            )));
        }
        let practitioner = json!({
            "resourceType": "Practitioner",
            "active": true,
            "name": [{ "text": name }],
            "telecom": [{ "system": "email", "value": email.as_str() }],
        });
        let written = self
            .records
            .create(&Actor::system("staff-add"), "Practitioner", &practitioner.to_string())
            .await?;
        let now = self.clock.now_millis();
        let account = Account {
            id: uuid::Uuid::new_v4().to_string(),
            email: email.as_str().to_owned(),
            kind: AccountKind::Staff,
            person: format!("Practitioner/{}", written.resource.id),
            display_name: name.to_owned(),
            birth_date: None,
            password_hash: Some(password::hash(password)?),
            created: now,
            registered: Some(now),
        };
        self.store.save_account(&account).await?;
        Ok(account)
    }

    /// Invites the patient `patient_id` to the portal at `email` (or sends a new invitation, which replaces the
    /// old link). The patient's name and date of birth come from the Patient resource, read through the gate.
    pub async fn invite(&self, by: &Actor, patient_id: &str, email: &str, address: Option<&str>) -> Result<Account> {
        let email = Email::parse(email)?;
        let by_name = by.audit_name();
        self.throttle.check(&[&format!("invite:{by_name}")]).await?;
        let patient = self.records.read(by, "Patient", patient_id).await?.json()?;
        let birth_date = patient["birthDate"]
            .as_str()
            .and_then(|d| BirthDate::parse(d).ok())
            .ok_or_else(|| {
                Error::field(
                    "patient",
                    format!("Patient/{patient_id} has no full birth date; sign-in needs one, so add it first."),
                )
            })?;
        let person = format!("Patient/{patient_id}");
        let existing = self.store.account(AccountKey::Person(&person)).await?;
        if existing.as_ref().is_some_and(|a| a.registered.is_some()) {
            return Err(Error::Conflict(format!(
                "Patient/{patient_id} already has a portal account"
            )));
        }
        if let Some(other) = self.store.account(AccountKey::Email(email.as_str())).await?
            && other.person != person
        {
            return Err(Error::field("email", "Another portal account uses this email address."));
        }
        let now = self.clock.now_millis();
        let account = Account {
            email: email.as_str().to_owned(),
            display_name: crate::fhir::display_name(&patient),
            birth_date: Some(birth_date.as_str().to_owned()),
            ..existing.unwrap_or_else(|| Account {
                id: uuid::Uuid::new_v4().to_string(),
                email: String::new(),
                kind: AccountKind::Patient,
                person: person.clone(),
                display_name: String::new(),
                birth_date: None,
                password_hash: None,
                created: now,
                registered: None,
            })
        };
        self.send_invitation(&account, |link| {
            templates::invite(&account.email, &self.practice, link, INVITE_VALID_DAYS)
        })
        .await?;
        self.throttle
            .count(&format!("invite:{by_name}"), throttle::INVITE)
            .await?;
        self.audit(AccountAction::InviteSent, &by_name, Some(patient_id), true, address)
            .await?;
        Ok(account)
    }

    /// Sends a new invitation to the address of the pending one.
    pub async fn resend(&self, by: &Actor, patient_id: &str, address: Option<&str>) -> Result<Account> {
        let account = self
            .store
            .account(AccountKey::Person(&format!("Patient/{patient_id}")))
            .await?
            .ok_or_else(|| Error::NotFound(format!("no invitation for Patient/{patient_id}")))?;
        self.invite(by, patient_id, &account.email, address).await
    }

    /// Saves the account with a new registration link (4 days, single use; open ones are replaced) and queues
    /// the letter `write` makes around the link, in one transaction.
    async fn send_invitation(&self, account: &Account, write: impl FnOnce(&str) -> crate::mail::Letter) -> Result<()> {
        let token = secret::token()?;
        let now = self.clock.now_millis();
        let letter = write(&format!("{}/register?token={token}", self.base_url));
        let row = AccountToken {
            hash: secret::hash(&token),
            account_id: account.id.clone(),
            purpose: TokenPurpose::Invite,
            created: now,
            expires: now + INVITE_VALID_DAYS * 24 * 60 * MINUTE,
            used: None,
            superseded: None,
        };
        self.store.issue_token(account, &row, &letter.queued(now)).await?;
        self.mailer.queued();
        Ok(())
    }

    /// The accounts (with their newest invitation) of these patients, for the staff page.
    pub async fn invitations(&self, patient_ids: &[String]) -> Result<Vec<Invitation>> {
        let persons: Vec<String> = patient_ids.iter().map(|p| format!("Patient/{p}")).collect();
        let mut out = Vec::new();
        for account in self.store.accounts_of(&persons).await? {
            let latest = self.store.latest_token(&account.id, TokenPurpose::Invite).await?;
            out.push(Invitation { account, latest });
        }
        Ok(out)
    }

    /// Where the link with `token` stands.
    pub async fn link(&self, token: &str, purpose: TokenPurpose) -> Result<LinkState> {
        let Some(row) = self
            .store
            .token(&secret::hash(token))
            .await?
            .filter(|t| t.purpose == purpose)
        else {
            return Ok(LinkState::Unknown);
        };
        Ok(if row.used.is_some() {
            LinkState::Used
        } else if row.superseded.is_some() {
            LinkState::Replaced
        } else if row.expires <= self.clock.now_millis() {
            LinkState::Expired
        } else {
            match self.store.account(AccountKey::Id(&row.account_id)).await? {
                Some(account) => LinkState::Open(account),
                None => LinkState::Unknown,
            }
        })
    }

    /// Uses a single-use link: completes a registration (invitation) or sets a new password (reset; every
    /// other session and app token of the account ends). The date of birth must match the account's.
    pub async fn redeem(
        &self,
        purpose: TokenPurpose,
        token: &str,
        birth_date: &str,
        password: &str,
        confirm: &str,
        address: &str,
    ) -> Result<Account> {
        let address_key = format!("link-address:{address}");
        self.throttle.check(&[&address_key]).await?;
        let account = match self.link(token, purpose).await? {
            LinkState::Open(account) => account,
            _ => return Err(Error::Gone("This link is no longer valid.".into())),
        };
        if let Some(expected) = &account.birth_date {
            let given = BirthDate::parse(birth_date)?;
            if given.as_str() != expected {
                let counted = self.throttle.count(&address_key, throttle::LINK).await?;
                tokio::time::sleep(counted.delay).await;
                self.audit(
                    AccountAction::SignInFailed,
                    &account.person,
                    Self::patient_of(&account),
                    false,
                    Some(address),
                )
                .await?;
                return Err(Error::field(
                    "birth_date",
                    "The date of birth does not match our records.",
                ));
            }
        }
        password::check_new(password, confirm)?;
        let hash = password::hash(password)?;
        let now = self.clock.now_millis();
        if self
            .store
            .redeem_token(&secret::hash(token), purpose, now, &hash)
            .await?
            != Redeem::Done
        {
            return Err(Error::Gone("This link is no longer valid.".into()));
        }
        let action = match purpose {
            TokenPurpose::Invite => AccountAction::Registered,
            TokenPurpose::Reset => AccountAction::PasswordReset,
        };
        self.audit(action, &account.person, Self::patient_of(&account), true, Some(address))
            .await?;
        self.accept_grants(&account, address).await?;
        Ok(account)
    }

    /// Signs in: email, password and (for patients) date of birth must all match. Failures are counted per
    /// email and per client address, slowed down and then locked; every one gets the same words.
    pub async fn sign_in(
        &self,
        kind: AccountKind,
        email: &str,
        password: &str,
        birth_date: Option<&str>,
        address: &str,
    ) -> Result<NewSession> {
        let email = Email::parse(email)?;
        let birth_date = birth_date.map(BirthDate::parse).transpose()?;
        let account_key = format!("sign-in:{}", email.as_str());
        let address_key = format!("sign-in-address:{address}");
        self.throttle.check(&[&account_key, &address_key]).await?;
        let account = self
            .store
            .account(AccountKey::Email(email.as_str()))
            .await?
            // The patients' door is also the door of those they gave access to.
            .filter(|a| a.kind == kind || (kind == AccountKind::Patient && a.kind == AccountKind::Proxy));
        // The password is always checked (against a decoy when there is no account) so timing tells nothing.
        let password_ok = password::verify(password, account.as_ref().and_then(|a| a.password_hash.as_deref()));
        let birth_ok = match (&account, &birth_date) {
            (Some(a), Some(given)) => a.birth_date.as_deref() == Some(given.as_str()),
            (Some(a), None) => a.birth_date.is_none(),
            (None, _) => false,
        };
        let Some(account) = account.filter(|_| password_ok && birth_ok) else {
            let agent = email.as_str().to_owned();
            let known = self.store.account(AccountKey::Email(email.as_str())).await?;
            let patient = known.as_ref().and_then(Self::patient_of);
            let counted = self.throttle.count(&account_key, throttle::SIGN_IN_ACCOUNT).await?;
            let by_address = self.throttle.count(&address_key, throttle::SIGN_IN_ADDRESS).await?;
            tokio::time::sleep(counted.delay.max(by_address.delay)).await;
            self.audit(AccountAction::SignInFailed, &agent, patient, false, Some(address))
                .await?;
            if counted.locked_now || by_address.locked_now {
                self.audit(AccountAction::Locked, &agent, patient, false, Some(address))
                    .await?;
            }
            for key in [&account_key, &address_key] {
                if let Some(locked) = self.throttle.lock_error(key).await? {
                    return Err(locked);
                }
            }
            return Err(Error::Unauthenticated(
                match kind {
                    AccountKind::Patient | AccountKind::Proxy => SIGN_IN_FAILED,
                    AccountKind::Staff => STAFF_SIGN_IN_FAILED,
                }
                .into(),
            ));
        };
        self.throttle.clear(&account_key).await?;
        let cookie = secret::token()?;
        let now = self.clock.now_millis();
        self.accept_grants(&account, address).await?;
        // Someone who is only a proxy starts in the one record they may open, or chooses.
        let grants = self.open_grants(&account).await?;
        let patient = match (account.kind, grants.as_slice()) {
            (AccountKind::Proxy, [only]) => Some(only.patient.clone()),
            _ => None,
        };
        self.store
            .create_session(&SessionRow {
                hash: secret::hash(&cookie),
                account_id: account.id.clone(),
                created: now,
                last_seen: now,
                patient,
            })
            .await?;
        self.audit(
            AccountAction::SignedIn,
            &account.person,
            Self::patient_of(&account),
            true,
            Some(address),
        )
        .await?;
        Ok(NewSession { cookie, account })
    }

    /// The session a cookie stands for, if it is still valid (idle and absolute timeouts).
    pub async fn session(&self, cookie: &str) -> Result<Option<SignedIn>> {
        let hash = secret::hash(cookie);
        let Some(row) = self.store.session(&hash).await? else {
            return Ok(None);
        };
        let now = self.clock.now_millis();
        if now - row.last_seen >= SESSION_IDLE_MS || now - row.created >= SESSION_MAX_MS {
            self.store.end_session(&hash).await?;
            return Ok(None);
        }
        if now - row.last_seen >= TOUCH_EVERY_MS {
            self.store.touch_session(&hash, now).await?;
        }
        let Some(account) = self.store.account(AccountKey::Id(&row.account_id)).await? else {
            return Ok(None);
        };
        // Checked on every request: a revoked grant closes the record at once.
        let grants = self.open_grants(&account).await?;
        let own = usize::from(account.kind == AccountKind::Patient);
        let can_switch = grants.len() + own > 1;
        let opened = row
            .patient
            .and_then(|patient| grants.into_iter().find(|g| g.patient == patient));
        Ok(Some(SignedIn {
            account,
            opened,
            can_switch,
            session_hash: hash,
        }))
    }

    pub async fn sign_out(&self, signed_in: &SignedIn, address: &str) -> Result<()> {
        self.store.end_session(&signed_in.session_hash).await?;
        let account = &signed_in.account;
        self.audit(
            AccountAction::SignedOut,
            &account.person,
            Self::patient_of(account),
            true,
            Some(address),
        )
        .await
    }

    /// "Forgot password": answers the same whether or not the account exists; the work for an existing
    /// account (the link, its email, the audit record) runs after the answer, so timing tells nothing either.
    pub async fn request_reset(&self, email: &str, address: &str) -> Result<()> {
        let email = Email::parse(email)?;
        let email_key = format!("reset:{}", email.as_str());
        let address_key = format!("reset-address:{address}");
        self.throttle.check(&[&email_key, &address_key]).await?;
        self.throttle.count(&email_key, throttle::RESET_REQUEST).await?;
        self.throttle.count(&address_key, throttle::RESET_REQUEST).await?;
        let this = self.clone();
        let address = address.to_owned();
        tokio::spawn(async move {
            if let Err(e) = this.send_reset(&email, &address).await {
                tracing::error!(error = %e, "password reset email could not be queued");
            }
        });
        Ok(())
    }

    async fn send_reset(&self, email: &Email, address: &str) -> Result<()> {
        let Some(account) = self
            .store
            .account(AccountKey::Email(email.as_str()))
            .await?
            .filter(|a| a.registered.is_some())
        else {
            return Ok(());
        };
        let now = self.clock.now_millis();
        let token = secret::token()?;
        let link = format!("{}/reset-password?token={token}", self.base_url);
        let letter = templates::password_reset(&account.email, &self.practice, &link, RESET_VALID_MINUTES);
        let row = AccountToken {
            hash: secret::hash(&token),
            account_id: account.id.clone(),
            purpose: TokenPurpose::Reset,
            created: now,
            expires: now + RESET_VALID_MINUTES * MINUTE,
            used: None,
            superseded: None,
        };
        self.store.issue_token(&account, &row, &letter.queued(now)).await?;
        self.mailer.queued();
        self.audit(
            AccountAction::ResetRequested,
            &account.person,
            Self::patient_of(&account),
            true,
            Some(address),
        )
        .await
    }

    /// Deletes ended sessions, old throttles and long-expired links (run now and then by the server).
    pub async fn purge(&self) -> Result<()> {
        let now = self.clock.now_millis();
        self.store
            .purge(
                now - SESSION_IDLE_MS,
                now - 24 * 60 * MINUTE,
                now - 30 * 24 * 60 * MINUTE,
            )
            .await
    }
}
