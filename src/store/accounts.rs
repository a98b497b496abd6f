//! Rows of the application tables behind the portal's front door: accounts, single-use links, sessions,
//! throttles and the mail outbox. Plain data; the rules live in `accounts/` and `mail/`.

/// Whom an account belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountKind {
    Patient,
    Staff,
    /// Someone with access to others' records only (friends and family): `person` is their first RelatedPerson.
    Proxy,
}

impl AccountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::Patient => "patient",
            AccountKind::Staff => "staff",
            AccountKind::Proxy => "proxy",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "patient" => Some(AccountKind::Patient),
            "staff" => Some(AccountKind::Staff),
            "proxy" => Some(AccountKind::Proxy),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Account {
    pub id: String,
    /// Lower-cased.
    pub email: String,
    pub kind: AccountKind,
    /// The FHIR resource the account stands for: `Patient/x` or `Practitioner/y`.
    pub person: String,
    pub display_name: String,
    /// `YYYY-MM-DD`; sign-in must match it (patients).
    pub birth_date: Option<String>,
    /// Argon2id PHC string; `None` until the invitation is accepted.
    pub password_hash: Option<String>,
    pub created: i64,
    pub registered: Option<i64>,
}

/// What a single-use link is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPurpose {
    Invite,
    Reset,
}

impl TokenPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenPurpose::Invite => "invite",
            TokenPurpose::Reset => "reset",
        }
    }
}

/// A single-use link, known by the SHA-256 of its token.
#[derive(Debug, Clone)]
pub struct AccountToken {
    pub hash: String,
    pub account_id: String,
    pub purpose: TokenPurpose,
    pub created: i64,
    pub expires: i64,
    pub used: Option<i64>,
    /// Set when a newer link of the same purpose replaced this one.
    pub superseded: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct SessionRow {
    /// SHA-256 of the cookie value.
    pub hash: String,
    pub account_id: String,
    pub created: i64,
    pub last_seen: i64,
    /// Whose record is open, when it is not the account's own (a proxy's choice).
    pub patient: Option<String>,
}

/// A patient's grant of access to someone (friends and family), as the store keeps it.
#[derive(Debug, Clone)]
pub struct ProxyGrantRow {
    /// The RelatedPerson id the grant is recorded as.
    pub related_person: String,
    pub patient: String,
    pub account_id: String,
    /// `YYYY-MM-DD`, as the patient entered it.
    pub birth_date: String,
    /// The patient's name when access was granted.
    pub patient_name: String,
    pub created: i64,
    /// First sign-in (or registration) with that birth date.
    pub accepted: Option<i64>,
    pub revoked: Option<i64>,
}

impl ProxyGrantRow {
    /// Whether the grant opens the record for `account` now: accepted, not revoked, and entered with the
    /// account's birth date.
    pub fn opens_for(&self, account: &Account) -> bool {
        self.accepted.is_some()
            && self.revoked.is_none()
            && self.account_id == account.id
            && account.birth_date.as_deref() == Some(self.birth_date.as_str())
    }
}

/// Failed attempts counted under one key within a window.
#[derive(Debug, Clone)]
pub struct ThrottleRow {
    pub key: String,
    pub failures: i64,
    pub first_failure: i64,
    pub locked_until: i64,
}

/// One email waiting in the outbox.
#[derive(Debug, Clone)]
pub struct OutboxMail {
    pub id: String,
    pub created: i64,
    pub recipient: String,
    pub subject: String,
    pub text_body: String,
    pub html_body: String,
    pub attempts: i64,
    pub next_attempt: i64,
    pub attachment: Option<MailAttachment>,
}

/// A record package a patient's side sent to an outside provider (the package itself is not kept).
#[derive(Debug, Clone)]
pub struct ShareRow {
    pub id: String,
    pub patient: String,
    /// Who sent it: `Patient/x` or `RelatedPerson/y`.
    pub sent_by: String,
    pub recipient: String,
    pub range_start: String,
    pub range_end: String,
    pub created: i64,
    /// The SMART Health Link's manifest id.
    pub link_id: String,
    pub expires: i64,
    /// Wrong passcodes so far.
    pub failures: i64,
    pub disabled: Option<i64>,
}

/// A share's SMART Health Link as the manifest endpoint needs it.
#[derive(Debug, Clone)]
pub struct ShareLink {
    pub share: ShareRow,
    pub passcode_hash: String,
    /// The JWE of the Bundle.
    pub file: String,
}

/// A file a letter carries.
#[derive(Debug, Clone)]
pub struct MailAttachment {
    pub name: String,
    pub content_type: String,
    /// Base64 (standard alphabet).
    pub data: String,
}

/// Why a single-use link could not be redeemed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redeem {
    Done,
    /// Unknown, used, replaced or expired by the time the transaction ran.
    NotValid,
}
