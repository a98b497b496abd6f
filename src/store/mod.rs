//! Storage: the only place with SQL. One narrow [`Store`] trait over resources, their search index and
//! compartment membership; one implementation (rusqlite for SQLite, sqlx for PostgreSQL) with an engine-specific
//! connection setup and migrations per engine (`sqlite/migrations`, `postgres/migrations`), picked once from the database URL.
//! Everything that touches patient data takes an [`access::Grant`](crate::access::Grant), whose patient set
//! is applied in the SQL itself, so paging and counts never see rows the caller may not.

pub mod accounts;
pub mod oauth;
mod sql;

use std::sync::Arc;

use async_trait::async_trait;

use self::accounts::{
    Account, AccountToken, OutboxMail, ProxyGrantRow, Redeem, SessionRow, ShareLink, ShareRow, ThrottleRow,
    TokenPurpose,
};
use self::oauth::{ClientRow, CodeRow, ConnectedApp, LaunchRow, TokenRow};
use crate::access::Grant;
use crate::error::Result;

pub use sql::{connect, restore};

/// A value extracted for one search parameter of one resource version.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub enum IndexValue {
    /// token and uri: `system` is `None` when the element carries none (uri always).
    Token { system: Option<String>, code: String },
    /// string: `norm` is lower-cased and accent-free for the default and `:contains` matches.
    Text { norm: String, exact: String },
    /// date: the instant range the value covers, in epoch milliseconds, both ends inclusive.
    Date { low: i64, high: i64 },
    /// reference: `Type/id` for local references, the URL otherwise.
    Reference { target: String },
    /// number and quantity.
    Quantity {
        value: f64,
        system: Option<String>,
        code: Option<String>,
    },
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct IndexEntry {
    pub param: String,
    pub value: IndexValue,
}

/// One resource version to write. `prev_version` is what the writer read as current (`None`: must not exist);
/// the store refuses the write with `Error::Conflict` if that no longer holds, so concurrent writers never
/// both succeed from the same version.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct VersionWrite {
    pub rtype: String,
    pub id: String,
    pub prev_version: Option<i64>,
    pub version: i64,
    pub last_updated: i64,
    /// `None` deletes (a tombstone version).
    pub body: Option<String>,
    pub index: Vec<IndexEntry>,
    /// Patient ids whose compartment holds this version.
    pub compartments: Vec<String>,
    /// This version ends the portal access granted through it (a RelatedPerson made inactive or deleted,
    /// whichever door wrote it): the grant, its sessions and tokens end in the same transaction.
    pub ends_access: bool,
}

/// A stored resource version.
#[derive(Debug, Clone)]
pub struct Row {
    pub rtype: String,
    pub id: String,
    pub version: i64,
    /// Epoch milliseconds.
    pub last_updated: i64,
    /// `None` for a deletion.
    pub body: Option<String>,
    /// The patients whose compartments hold this version, as recorded when it was written; `None` for an
    /// earlier version (history), whose compartments are not kept.
    pub owners: Option<Vec<String>>,
}

/// The head of a resource as needed before writing: its current version, whether it is deleted, and whether
/// the grant may see it (a limited grant sees resources in its patients' compartments; whether it may change
/// one is decided on writing).
#[derive(Debug, Clone, Copy)]
pub struct Head {
    pub version: i64,
    pub deleted: bool,
    pub visible: bool,
}

/// A comparison used in date, number and quantity searches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
    Sa,
    Eb,
    Ap,
}

/// One alternative of a search clause (alternatives are OR-ed, clauses AND-ed).
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// `system`: `None` = any system, `Some(None)` = no system (`|code`), `Some(Some(s))`. `code`: `None` = any code.
    Token {
        system: Option<Option<String>>,
        code: Option<String>,
    },
    /// `norm` must be normalized the same way as [`IndexValue::Text`].
    TextStarts(String),
    TextContains(String),
    TextExact(String),
    Date {
        prefix: Prefix,
        low: i64,
        high: i64,
    },
    Reference(String),
    Quantity {
        prefix: Prefix,
        value: f64,
        low: f64,
        high: f64,
        system: Option<String>,
        code: Option<String>,
    },
    Id(String),
    LastUpdated {
        prefix: Prefix,
        low: i64,
        high: i64,
    },
    /// `:missing=true|false`.
    Missing(bool),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Clause {
    pub param: String,
    pub any_of: Vec<Condition>,
    /// `:not` on a token: none of the alternatives may match.
    pub negate: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SortKey {
    LastUpdated,
    Id,
    /// A date parameter (sorted by the start of its range).
    Date(String),
    /// A string parameter (normalized value).
    Text(String),
    /// A token parameter (code).
    Token(String),
    /// A number or quantity parameter.
    Number(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sort {
    pub key: SortKey,
    pub descending: bool,
}

/// A parsed, typed search over one resource type.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Query {
    pub rtype: String,
    pub clauses: Vec<Clause>,
    /// The one patient every match belongs to, when the search says so (`patient=X`): index lookups then
    /// use the compartment-first keys, one range scan per parameter.
    pub patient: Option<String>,
    pub sort: Vec<Sort>,
    pub count: i64,
    pub offset: i64,
    pub total: bool,
}

/// What a history listing covers.
#[derive(Debug, Clone)]
pub struct HistoryQuery {
    pub rtype: Option<String>,
    pub id: Option<String>,
    /// Epoch milliseconds, inclusive.
    pub since: Option<i64>,
    pub count: i64,
    pub offset: i64,
}

/// Narrow storage interface; patient data goes in and out only with a [`Grant`].
/// Makes a new secret value (see [`Store::shared_secret`]).
pub type MakeSecret = Box<dyn FnOnce() -> Result<String> + Send>;

#[async_trait]
pub trait Store: Send + Sync {
    /// Engine name for logs and metrics (`sqlite` or `postgres`).
    fn engine(&self) -> &'static str;

    /// The folder where reads' audit records are journaled before they are moved into the database (SQLite:
    /// `<database>-audit/`, see `records::audit_sink`); `None` where they are committed directly (PostgreSQL).
    fn audit_journal(&self) -> Option<&std::path::Path>;

    /// Writes a consistent copy of the whole database to a new file, online (SQLite; PostgreSQL has pg_dump).
    async fn backup(&self, to: &std::path::Path) -> Result<()>;

    /// Cheap round trip, for `/readyz`.
    async fn ping(&self) -> Result<()>;

    /// Refreshes the planner's statistics after a bulk load (PostgreSQL's `ANALYZE`; SQLite plans from the
    /// indexes alone, so nothing there).
    async fn analyze(&self) -> Result<()>;

    /// The shared secret called `name`; when there is none yet, `make`'s is stored (the first process to start
    /// wins a race) and every process on this database gets the same one.
    async fn shared_secret(&self, name: &str, make: MakeSecret, now: i64) -> Result<String>;

    /// The current head of a resource: the version to write against, and whether the grant may see it (the
    /// caller must answer "not found" for one it may not, before anything else reveals it exists).
    async fn head(&self, grant: &Grant, rtype: &str, id: &str) -> Result<Option<Head>>;

    /// Writes the versions atomically: all or none.
    async fn write(&self, grant: &Grant, writes: &[VersionWrite]) -> Result<()>;

    /// The current version (a deleted resource comes back with `body: None`).
    async fn read(&self, grant: &Grant, rtype: &str, id: &str) -> Result<Option<Row>>;

    /// Several current versions by `Type/id` reference (for `_include`); missing ones are left out.
    async fn read_many(&self, grant: &Grant, refs: &[(String, String)]) -> Result<Vec<Row>>;

    async fn vread(&self, grant: &Grant, rtype: &str, id: &str, version: i64) -> Result<Option<Row>>;

    /// Versions newest first, with the total count.
    async fn history(&self, grant: &Grant, query: &HistoryQuery) -> Result<(Vec<Row>, i64)>;

    /// Matching current versions in the asked order, with the total when asked.
    async fn search(&self, grant: &Grant, query: &Query) -> Result<(Vec<Row>, Option<i64>)>;

    /// Resources of `rtype` whose `param` references one of `targets` (for `_revinclude`).
    async fn referencing(
        &self,
        grant: &Grant,
        rtype: &str,
        param: &str,
        targets: &[String],
        limit: i64,
    ) -> Result<Vec<Row>>;

    /// Every current resource in a patient's compartment, filtered by type and last update, paged.
    async fn compartment(&self, grant: &Grant, patient: &str, filter: &CompartmentFilter) -> Result<(Vec<Row>, i64)>;

    // The application tables (`accounts/`, `mail/`): people and their credentials, no patient data, no grant.

    /// Inserts or replaces an account (by id); `Error::Conflict` when its email or person has another account.
    async fn save_account(&self, account: &Account) -> Result<()>;

    async fn account(&self, key: AccountKey<'_>) -> Result<Option<Account>>;

    /// The accounts standing for these FHIR resources (`Patient/x`, ...).
    async fn accounts_of(&self, persons: &[String]) -> Result<Vec<Account>>;

    /// Saves the account, replaces its open links of the token's purpose with the token, and queues the
    /// mail that carries it: one transaction, so a link is never issued without its email or the reverse.
    async fn issue_token(&self, account: &Account, token: &AccountToken, mail: &OutboxMail) -> Result<()>;

    async fn token(&self, hash: &str) -> Result<Option<AccountToken>>;

    /// The newest link of `purpose` issued to an account.
    async fn latest_token(&self, account_id: &str, purpose: TokenPurpose) -> Result<Option<AccountToken>>;

    /// Uses a link once: if it is still open at `now`, marks it used, sets the account's password and ends
    /// all the account's sessions and app tokens, in one transaction.
    async fn redeem_token(&self, hash: &str, purpose: TokenPurpose, now: i64, password_hash: &str) -> Result<Redeem>;

    async fn create_session(&self, session: &SessionRow) -> Result<()>;

    async fn session(&self, hash: &str) -> Result<Option<SessionRow>>;

    async fn touch_session(&self, hash: &str, now: i64) -> Result<()>;

    async fn end_session(&self, hash: &str) -> Result<()>;

    /// Opens another record in a session (`None`: the account's own).
    async fn open_record(&self, hash: &str, patient: Option<&str>) -> Result<()>;

    // Send Record (`sharing/`).

    /// Records a sent package with its link and queues the letter that carries it, in one transaction.
    async fn save_share(&self, link: &ShareLink, mail: &OutboxMail) -> Result<()>;

    /// What was sent from a patient's record, newest first.
    async fn shares(&self, patient: &str) -> Result<Vec<ShareRow>>;

    async fn share_link(&self, link_id: &str) -> Result<Option<ShareLink>>;

    /// Takes one of the link's `max` passcode attempts before the passcode is checked, so parallel guesses
    /// cannot all be checked before the count catches up; `None` when none is left or the link is off.
    async fn reserve_share_attempt(&self, link_id: &str, max: i64) -> Result<Option<i64>>;

    /// Settles a reserved attempt: a right passcode gives it back; a wrong one keeps it and disables the link
    /// once `max` are spent. Returns the attempts spent.
    async fn settle_share_attempt(&self, link_id: &str, right: bool, max: i64, now: i64) -> Result<i64>;

    /// Deactivates a patient's link (no-op when already off) and deletes its letter if still in the outbox.
    async fn disable_share(&self, id: &str, patient: &str, now: i64) -> Result<()>;

    // Friends and family (`accounts/proxies.rs`).

    async fn save_proxy_grant(&self, grant: &ProxyGrantRow) -> Result<()>;

    /// The grants a patient gave (`by_patient`), or those an account holds (`key` is the account id).
    async fn proxy_grants(&self, by_patient: bool, key: &str) -> Result<Vec<ProxyGrantRow>>;

    async fn proxy_grant(&self, related_person: &str) -> Result<Option<ProxyGrantRow>>;

    /// Marks accepted the open grants of an account entered with `birth_date`; returns them.
    async fn accept_proxy_grants(&self, account_id: &str, birth_date: &str, now: i64) -> Result<Vec<ProxyGrantRow>>;

    /// Revokes a grant and, in the same transaction, ends the sessions that have that record open through it
    /// and the app tokens issued through it.
    async fn revoke_proxy_grant(&self, related_person: &str, now: i64) -> Result<()>;

    async fn throttle(&self, key: &str) -> Result<Option<ThrottleRow>>;

    async fn save_throttle(&self, row: &ThrottleRow) -> Result<()>;

    async fn clear_throttle(&self, key: &str) -> Result<()>;

    async fn enqueue_mail(&self, mail: &OutboxMail) -> Result<()>;

    /// Takes up to `limit` mails due at `now` for sending, hiding them from other senders until `lease_until`
    /// (a sender that dies mid-send leaves them to be retried then).
    async fn claim_mail(&self, now: i64, lease_until: i64, limit: i64) -> Result<Vec<OutboxMail>>;

    /// A sent mail leaves the outbox (and with it the link it carried).
    async fn mail_sent(&self, id: &str) -> Result<()>;

    async fn mail_failed(&self, id: &str, next_attempt: i64, error: &str) -> Result<()>;

    /// Deletes sessions idle since `sessions_before`, throttles that ended before `throttles_before` and links
    /// that expired before `tokens_before`.
    async fn purge(&self, sessions_before: i64, throttles_before: i64, tokens_before: i64) -> Result<()>;

    // OAuth (`oauth/`): clients, codes, tokens, assertion ids.

    /// Registers a client; `Error::Conflict` when its id exists.
    async fn save_client(&self, client: &ClientRow) -> Result<()>;

    async fn client(&self, id: &str) -> Result<Option<ClientRow>>;

    async fn save_code(&self, code: &CodeRow) -> Result<()>;

    /// Marks a code used and returns it as it was (a `used` value means it had been used before).
    async fn take_code(&self, hash: &str, now: i64) -> Result<Option<CodeRow>>;

    /// Saves tokens issued together, atomically.
    async fn save_tokens(&self, tokens: &[TokenRow]) -> Result<()>;

    async fn oauth_token(&self, hash: &str) -> Result<Option<TokenRow>>;

    /// Revokes a token (or every token of its grant); returns how many were revoked.
    async fn revoke_token(&self, hash: &str, whole_grant: bool, now: i64) -> Result<u64>;

    async fn revoke_grant(&self, grant_id: &str, now: i64) -> Result<()>;

    /// Records a client assertion id until it expires; `false` if it was already seen.
    async fn first_jti(&self, client_id: &str, jti: &str, expires: i64, now: i64) -> Result<bool>;

    /// The apps holding live tokens an account authorized.
    async fn connected_apps(&self, account_id: &str, now: i64) -> Result<Vec<ConnectedApp>>;

    /// Revokes every token an account gave one app.
    async fn revoke_app(&self, account_id: &str, client_id: &str, now: i64) -> Result<()>;

    /// Clients with an EHR launch URL, by name.
    async fn launchable_clients(&self) -> Result<Vec<ClientRow>>;

    async fn save_launch(&self, launch: &LaunchRow) -> Result<()>;

    async fn launch(&self, hash: &str) -> Result<Option<LaunchRow>>;
}

/// How an account is looked up.
#[derive(Debug, Clone, Copy)]
pub enum AccountKey<'a> {
    Id(&'a str),
    /// Lower-cased email.
    Email(&'a str),
    /// `Patient/x`, `Practitioner/y`.
    Person(&'a str),
}

#[derive(Debug, Clone, Default)]
pub struct CompartmentFilter {
    pub types: Vec<String>,
    /// Types left out when `types` is empty (the audit trail is not part of the record).
    pub exclude: Vec<String>,
    /// `$everything` start/end: keep resources whose clinical date overlaps this range (epoch ms), and those
    /// without a clinical date.
    pub clinical: Option<(i64, i64)>,
    pub since: Option<i64>,
    pub count: i64,
    pub offset: i64,
}

/// The parameters that carry a resource's clinical date, for `$everything` start/end.
pub const CLINICAL_DATE_PARAMS: &[&str] = &[
    "date",
    "authoredon",
    "onset-date",
    "recorded-date",
    "recorded",
    "sent",
    "created",
    "issued",
    "authored",
];

pub type SharedStore = Arc<dyn Store>;
