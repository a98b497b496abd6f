//! SQL for the application tables: accounts, single-use links, sessions, throttles and the outbox.

use super::SqlStore;
use super::build::Sql;
use super::db::{DbRow, On, Tx, query};
use crate::error::{Error, Result};
use crate::store::AccountKey;
use crate::store::accounts::{
    Account, AccountKind, AccountToken, MailAttachment, OutboxMail, ProxyGrantRow, Redeem, SessionRow, ShareLink,
    ShareRow, ThrottleRow, TokenPurpose,
};

const ACCOUNT_COLUMNS: &str = "id, email, kind, person, display_name, birth_date, password_hash, created, registered";
const TOKEN_COLUMNS: &str = "hash, account_id, purpose, created, expires, used, superseded";
const MAIL_COLUMNS: &str = "id, created, recipient, subject, text_body, html_body, attempts, next_attempt, \
                            attachment_name, attachment_type, attachment_data";

fn account(row: &DbRow) -> Result<Account> {
    let kind: String = row.try_get(2)?;
    Ok(Account {
        id: row.try_get(0)?,
        email: row.try_get(1)?,
        kind: AccountKind::parse(&kind).ok_or_else(|| Error::Store(format!("unknown account kind {kind}")))?,
        person: row.try_get(3)?,
        display_name: row.try_get(4)?,
        birth_date: row.try_get(5)?,
        password_hash: row.try_get(6)?,
        created: row.try_get(7)?,
        registered: row.try_get(8)?,
    })
}

fn token(row: &DbRow) -> Result<AccountToken> {
    let purpose: String = row.try_get(2)?;
    Ok(AccountToken {
        hash: row.try_get(0)?,
        account_id: row.try_get(1)?,
        purpose: match purpose.as_str() {
            "invite" => TokenPurpose::Invite,
            "reset" => TokenPurpose::Reset,
            other => return Err(Error::Store(format!("unknown link purpose {other}"))),
        },
        created: row.try_get(3)?,
        expires: row.try_get(4)?,
        used: row.try_get(5)?,
        superseded: row.try_get(6)?,
    })
}

fn grant(row: &DbRow) -> Result<ProxyGrantRow> {
    Ok(ProxyGrantRow {
        related_person: row.try_get(0)?,
        patient: row.try_get(1)?,
        account_id: row.try_get(2)?,
        birth_date: row.try_get(3)?,
        patient_name: row.try_get(4)?,
        created: row.try_get(5)?,
        accepted: row.try_get(6)?,
        revoked: row.try_get(7)?,
    })
}

fn share(r: &DbRow) -> Result<ShareRow> {
    Ok(ShareRow {
        id: r.try_get(0)?,
        patient: r.try_get(1)?,
        sent_by: r.try_get(2)?,
        recipient: r.try_get(3)?,
        range_start: r.try_get(4)?,
        range_end: r.try_get(5)?,
        created: r.try_get(6)?,
        link_id: r.try_get(7)?,
        expires: r.try_get(8)?,
        failures: r.try_get(9)?,
        disabled: r.try_get(10)?,
    })
}

fn mail(row: &DbRow) -> Result<OutboxMail> {
    Ok(OutboxMail {
        id: row.try_get(0)?,
        created: row.try_get(1)?,
        recipient: row.try_get(2)?,
        subject: row.try_get(3)?,
        text_body: row.try_get(4)?,
        html_body: row.try_get(5)?,
        attempts: row.try_get(6)?,
        next_attempt: row.try_get(7)?,
        attachment: match (row.try_get(8)?, row.try_get(9)?, row.try_get(10)?) {
            (Some(name), Some(content_type), Some(data)) => Some(MailAttachment {
                name,
                content_type,
                data,
            }),
            _ => None,
        },
    })
}

async fn upsert_account<'c>(conn: impl Into<On<'c>>, a: &Account) -> Result<()> {
    query(
        "INSERT INTO accounts (id, email, kind, person, display_name, birth_date, password_hash, created, registered) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO UPDATE SET email = $2, kind = $3, \
         person = $4, display_name = $5, birth_date = $6, password_hash = $7, registered = $9",
    )
    .bind(a.id.as_str())
    .bind(a.email.as_str())
    .bind(a.kind.as_str())
    .bind(a.person.as_str())
    .bind(a.display_name.as_str())
    .bind(a.birth_date.as_deref())
    .bind(a.password_hash.as_deref())
    .bind(a.created)
    .bind(a.registered)
    .execute(conn)
    .await?;
    Ok(())
}

async fn insert_mail<'c>(conn: impl Into<On<'c>>, m: &OutboxMail) -> Result<()> {
    query(
        "INSERT INTO outbox (id, created, recipient, subject, text_body, html_body, attempts, next_attempt, \
         attachment_name, attachment_type, attachment_data) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(m.id.as_str())
    .bind(m.created)
    .bind(m.recipient.as_str())
    .bind(m.subject.as_str())
    .bind(m.text_body.as_str())
    .bind(m.html_body.as_str())
    .bind(m.attempts)
    .bind(m.next_attempt)
    .bind(m.attachment.as_ref().map(|a| a.name.as_str()))
    .bind(m.attachment.as_ref().map(|a| a.content_type.as_str()))
    .bind(m.attachment.as_ref().map(|a| a.data.as_str()))
    .execute(conn)
    .await?;
    Ok(())
}

impl SqlStore {
    pub(super) async fn save_account_row(&self, account: &Account) -> Result<()> {
        upsert_account(&self.write, account).await
    }

    pub(super) async fn account_row(&self, key: AccountKey<'_>) -> Result<Option<Account>> {
        let (column, value) = match key {
            AccountKey::Id(v) => ("id", v),
            AccountKey::Email(v) => ("email", v),
            AccountKey::Person(v) => ("person", v),
        };
        let mut sql = Sql::new(self.engine);
        sql.push(&format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE {column} = "))
            .text(value);
        sql.query()
            .fetch_optional(&self.read)
            .await?
            .as_ref()
            .map(account)
            .transpose()
    }

    pub(super) async fn account_rows(&self, persons: &[String]) -> Result<Vec<Account>> {
        if persons.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql = Sql::new(self.engine);
        sql.push(&format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE person IN "))
            .list(persons);
        sql.query().fetch_all(&self.read).await?.iter().map(account).collect()
    }

    pub(super) async fn issue_token_tx(&self, a: &Account, t: &AccountToken, m: &OutboxMail) -> Result<()> {
        let mut tx = self.write.begin(self.begin).await?;
        upsert_account(&mut tx, a).await?;
        query(
            "UPDATE account_tokens SET superseded = $3 WHERE account_id = $1 AND purpose = $2 \
             AND used IS NULL AND superseded IS NULL",
        )
        .bind(a.id.as_str())
        .bind(t.purpose.as_str())
        .bind(t.created)
        .execute(&mut tx)
        .await?;
        query("INSERT INTO account_tokens (hash, account_id, purpose, created, expires) VALUES ($1, $2, $3, $4, $5)")
            .bind(t.hash.as_str())
            .bind(t.account_id.as_str())
            .bind(t.purpose.as_str())
            .bind(t.created)
            .bind(t.expires)
            .execute(&mut tx)
            .await?;
        insert_mail(&mut tx, m).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn token_row(&self, hash: &str) -> Result<Option<AccountToken>> {
        query(&format!("SELECT {TOKEN_COLUMNS} FROM account_tokens WHERE hash = $1"))
            .bind(hash)
            .fetch_optional(&self.read)
            .await?
            .as_ref()
            .map(token)
            .transpose()
    }

    pub(super) async fn latest_token_row(
        &self,
        account_id: &str,
        purpose: TokenPurpose,
    ) -> Result<Option<AccountToken>> {
        query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM account_tokens WHERE account_id = $1 AND purpose = $2 \
             ORDER BY created DESC LIMIT 1"
        ))
        .bind(account_id)
        .bind(purpose.as_str())
        .fetch_optional(&self.read)
        .await?
        .as_ref()
        .map(token)
        .transpose()
    }

    pub(super) async fn redeem_token_tx(
        &self,
        hash: &str,
        purpose: TokenPurpose,
        now: i64,
        password_hash: &str,
    ) -> Result<Redeem> {
        let mut tx = self.write.begin(self.begin).await?;
        let account_id: Option<String> = query(
            "UPDATE account_tokens SET used = $3 WHERE hash = $1 AND purpose = $2 AND used IS NULL \
             AND superseded IS NULL AND expires > $3 RETURNING account_id",
        )
        .bind(hash)
        .bind(purpose.as_str())
        .bind(now)
        .fetch_optional(&mut tx)
        .await?
        .map(|r| r.try_get(0))
        .transpose()?;
        let Some(account_id) = account_id else {
            return Ok(Redeem::NotValid);
        };
        query("UPDATE accounts SET password_hash = $2, registered = COALESCE(registered, $3) WHERE id = $1")
            .bind(account_id.as_str())
            .bind(password_hash)
            .bind(now)
            .execute(&mut tx)
            .await?;
        query("DELETE FROM sessions WHERE account_id = $1")
            .bind(account_id.as_str())
            .execute(&mut tx)
            .await?;
        // A new password also ends what apps were given on the old one.
        query("UPDATE oauth_tokens SET revoked = $2 WHERE account_id = $1 AND revoked IS NULL")
            .bind(account_id.as_str())
            .bind(now)
            .execute(&mut tx)
            .await?;
        tx.commit().await?;
        Ok(Redeem::Done)
    }

    pub(super) async fn create_session_row(&self, s: &SessionRow) -> Result<()> {
        query("INSERT INTO sessions (hash, account_id, created, last_seen, patient) VALUES ($1, $2, $3, $4, $5)")
            .bind(s.hash.as_str())
            .bind(s.account_id.as_str())
            .bind(s.created)
            .bind(s.last_seen)
            .bind(s.patient.as_deref())
            .execute(&self.write)
            .await?;
        Ok(())
    }

    pub(super) async fn session_row(&self, hash: &str) -> Result<Option<SessionRow>> {
        let row = query("SELECT hash, account_id, created, last_seen, patient FROM sessions WHERE hash = $1")
            .bind(hash)
            .fetch_optional(&self.read)
            .await?;
        row.map(|r| {
            Ok(SessionRow {
                hash: r.try_get(0)?,
                account_id: r.try_get(1)?,
                created: r.try_get(2)?,
                last_seen: r.try_get(3)?,
                patient: r.try_get(4)?,
            })
        })
        .transpose()
    }

    /// One statement on the writer with text binds followed by integer binds.
    async fn run(&self, text: &'static str, texts: &[&str], ints: &[i64]) -> Result<()> {
        let mut query = query(text);
        for t in texts {
            query = query.bind(*t);
        }
        for i in ints {
            query = query.bind(*i);
        }
        query.execute(&self.write).await?;
        Ok(())
    }

    pub(super) async fn touch_session_row(&self, hash: &str, now: i64) -> Result<()> {
        self.run("UPDATE sessions SET last_seen = $2 WHERE hash = $1", &[hash], &[now])
            .await
    }

    pub(super) async fn save_share_tx(&self, link: &ShareLink, m: &OutboxMail) -> Result<()> {
        let s = &link.share;
        let mut tx = self.write.begin(self.begin).await?;
        query(
            "INSERT INTO record_shares (id, patient, sent_by, recipient, range_start, range_end, created, link_id, \
             expires, failures, disabled, passcode_hash, file) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(s.id.as_str())
        .bind(s.patient.as_str())
        .bind(s.sent_by.as_str())
        .bind(s.recipient.as_str())
        .bind(s.range_start.as_str())
        .bind(s.range_end.as_str())
        .bind(s.created)
        .bind(s.link_id.as_str())
        .bind(s.expires)
        .bind(s.failures)
        .bind(s.disabled)
        .bind(link.passcode_hash.as_str())
        .bind(link.file.as_str())
        .execute(&mut tx)
        .await?;
        insert_mail(&mut tx, m).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn share_rows(&self, patient: &str) -> Result<Vec<ShareRow>> {
        let rows = query(
            "SELECT id, patient, sent_by, recipient, range_start, range_end, created, link_id, expires, failures, \
             disabled FROM record_shares WHERE patient = $1 ORDER BY created DESC",
        )
        .bind(patient)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(share).collect()
    }

    pub(super) async fn share_link_row(&self, link_id: &str) -> Result<Option<ShareLink>> {
        let row = query(
            "SELECT id, patient, sent_by, recipient, range_start, range_end, created, link_id, expires, failures, \
             disabled, passcode_hash, file FROM record_shares WHERE link_id = $1",
        )
        .bind(link_id)
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| {
            Ok(ShareLink {
                share: share(&r)?,
                passcode_hash: r.try_get(11)?,
                file: r.try_get(12)?,
            })
        })
        .transpose()
    }

    pub(super) async fn reserve_share_attempt_row(&self, link_id: &str, max: i64) -> Result<Option<i64>> {
        let row = query(
            "UPDATE record_shares SET failures = failures + 1 \
             WHERE link_id = $1 AND disabled IS NULL AND failures < $2 RETURNING failures",
        )
        .bind(link_id)
        .bind(max)
        .fetch_optional(&self.write)
        .await?;
        row.map(|r| r.try_get(0)).transpose()
    }

    pub(super) async fn settle_share_attempt_row(&self, link_id: &str, right: bool, max: i64, now: i64) -> Result<i64> {
        let query = if right {
            query("UPDATE record_shares SET failures = failures - 1 WHERE link_id = $1 RETURNING failures")
                .bind(link_id)
        } else {
            query(
                "UPDATE record_shares SET disabled = CASE WHEN failures >= $2 THEN COALESCE(disabled, $3) \
                 ELSE disabled END WHERE link_id = $1 RETURNING failures",
            )
            .bind(link_id)
            .bind(max)
            .bind(now)
        };
        let row = query.fetch_optional(&self.write).await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?.unwrap_or(max))
    }

    pub(super) async fn disable_share_row(&self, id: &str, patient: &str, now: i64) -> Result<()> {
        let mut tx = self.write.begin(self.begin).await?;
        let disabled =
            query("UPDATE record_shares SET disabled = COALESCE(disabled, $3) WHERE id = $1 AND patient = $2")
                .bind(id)
                .bind(patient)
                .bind(now)
                .execute(&mut tx)
                .await?
                .rows_affected();
        if disabled == 1 {
            // Its letter, if still waiting (a letter being handed to the mail server right now may still go).
            query("DELETE FROM outbox WHERE id = $1")
                .bind(id)
                .execute(&mut tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn open_record_row(&self, hash: &str, patient: Option<&str>) -> Result<()> {
        query("UPDATE sessions SET patient = $2 WHERE hash = $1")
            .bind(hash)
            .bind(patient)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    pub(super) async fn insert_proxy_grant(&self, g: &ProxyGrantRow) -> Result<()> {
        query(
            "INSERT INTO proxy_grants (related_person, patient, account_id, birth_date, patient_name, created, accepted, revoked) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(g.related_person.as_str())
        .bind(g.patient.as_str())
        .bind(g.account_id.as_str())
        .bind(g.birth_date.as_str())
        .bind(g.patient_name.as_str())
        .bind(g.created)
        .bind(g.accepted)
        .bind(g.revoked)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Grants given by a patient (`by_patient`) or held by an account, oldest first.
    pub(super) async fn proxy_grant_rows(&self, by_patient: bool, key: &str) -> Result<Vec<ProxyGrantRow>> {
        let query = if by_patient {
            query(
                "SELECT related_person, patient, account_id, birth_date, patient_name, created, accepted, revoked \
                 FROM proxy_grants WHERE patient = $1 ORDER BY created, related_person",
            )
        } else {
            query(
                "SELECT related_person, patient, account_id, birth_date, patient_name, created, accepted, revoked \
                 FROM proxy_grants WHERE account_id = $1 ORDER BY created, related_person",
            )
        };
        let rows = query.bind(key).fetch_all(&self.read).await?;
        rows.iter().map(grant).collect()
    }

    pub(super) async fn proxy_grant_row(&self, related_person: &str) -> Result<Option<ProxyGrantRow>> {
        let row = query(
            "SELECT related_person, patient, account_id, birth_date, patient_name, created, accepted, revoked \
             FROM proxy_grants WHERE related_person = $1",
        )
        .bind(related_person)
        .fetch_optional(&self.read)
        .await?;
        row.as_ref().map(grant).transpose()
    }

    pub(super) async fn accept_proxy_grant_rows(
        &self,
        account_id: &str,
        birth_date: &str,
        now: i64,
    ) -> Result<Vec<ProxyGrantRow>> {
        let rows = query(
            "UPDATE proxy_grants SET accepted = $3 WHERE account_id = $1 AND birth_date = $2 \
             AND accepted IS NULL AND revoked IS NULL \
             RETURNING related_person, patient, account_id, birth_date, patient_name, created, accepted, revoked",
        )
        .bind(account_id)
        .bind(birth_date)
        .bind(now)
        .fetch_all(&self.write)
        .await?;
        rows.iter().map(grant).collect()
    }

    pub(super) async fn revoke_proxy_grant_row(&self, related_person: &str, now: i64) -> Result<()> {
        let mut tx = self.write.begin(self.begin).await?;
        end_proxy_grant(&mut tx, related_person, now).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn end_session_row(&self, hash: &str) -> Result<()> {
        self.run("DELETE FROM sessions WHERE hash = $1", &[hash], &[]).await
    }

    pub(super) async fn clear_throttle_row(&self, key: &str) -> Result<()> {
        self.run("DELETE FROM throttle WHERE key = $1", &[key], &[]).await
    }

    pub(super) async fn mail_sent_row(&self, id: &str) -> Result<()> {
        self.run("DELETE FROM outbox WHERE id = $1", &[id], &[]).await
    }

    pub(super) async fn throttle_row(&self, key: &str) -> Result<Option<ThrottleRow>> {
        let row = query("SELECT key, failures, first_failure, locked_until FROM throttle WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.read)
            .await?;
        row.map(|r| {
            Ok(ThrottleRow {
                key: r.try_get(0)?,
                failures: r.try_get(1)?,
                first_failure: r.try_get(2)?,
                locked_until: r.try_get(3)?,
            })
        })
        .transpose()
    }

    pub(super) async fn save_throttle_row(&self, t: &ThrottleRow) -> Result<()> {
        query(
            "INSERT INTO throttle (key, failures, first_failure, locked_until) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (key) DO UPDATE SET failures = $2, first_failure = $3, locked_until = $4",
        )
        .bind(t.key.as_str())
        .bind(t.failures)
        .bind(t.first_failure)
        .bind(t.locked_until)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    pub(super) async fn enqueue_mail_row(&self, m: &OutboxMail) -> Result<()> {
        insert_mail(&self.write, m).await
    }

    /// Claims each due mail with a compare-and-set on its `next_attempt`, so two senders (the server and a
    /// command line) never both take one, on either engine.
    pub(super) async fn claim_mail_rows(&self, now: i64, lease_until: i64, limit: i64) -> Result<Vec<OutboxMail>> {
        let due = query(&format!(
            "SELECT {MAIL_COLUMNS} FROM outbox WHERE next_attempt <= $1 ORDER BY next_attempt LIMIT $2"
        ))
        .bind(now)
        .bind(limit)
        .fetch_all(&self.write)
        .await?;
        let mut claimed = Vec::with_capacity(due.len());
        for row in &due {
            let m = mail(row)?;
            let taken = query(
                "UPDATE outbox SET next_attempt = $3, attempts = attempts + 1 WHERE id = $1 AND next_attempt = $2",
            )
            .bind(m.id.as_str())
            .bind(m.next_attempt)
            .bind(lease_until)
            .execute(&self.write)
            .await?
            .rows_affected();
            if taken == 1 {
                claimed.push(OutboxMail {
                    attempts: m.attempts + 1,
                    ..m
                });
            }
        }
        Ok(claimed)
    }

    pub(super) async fn mail_failed_row(&self, id: &str, next_attempt: i64, error: &str) -> Result<()> {
        query("UPDATE outbox SET next_attempt = $2, last_error = $3 WHERE id = $1")
            .bind(id)
            .bind(next_attempt)
            .bind(error)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    pub(super) async fn purge_rows(
        &self,
        sessions_before: i64,
        throttles_before: i64,
        tokens_before: i64,
    ) -> Result<()> {
        let mut tx = self.write.begin(self.begin).await?;
        query("DELETE FROM sessions WHERE last_seen < $1")
            .bind(sessions_before)
            .execute(&mut tx)
            .await?;
        query("DELETE FROM throttle WHERE locked_until < $1 AND first_failure < $1")
            .bind(throttles_before)
            .execute(&mut tx)
            .await?;
        query("DELETE FROM account_tokens WHERE expires < $1")
            .bind(tokens_before)
            .execute(&mut tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Ends the portal access granted through `related_person`, with the sessions and app tokens that used it.
pub(super) async fn end_proxy_grant(tx: &mut Tx, related_person: &str, now: i64) -> Result<()> {
    let row = query(
        "UPDATE proxy_grants SET revoked = COALESCE(revoked, $2) WHERE related_person = $1 \
         RETURNING account_id, patient",
    )
    .bind(related_person)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(row) = row {
        let (account_id, patient): (String, String) = (row.try_get(0)?, row.try_get(1)?);
        query("DELETE FROM sessions WHERE account_id = $1 AND patient = $2")
            .bind(account_id.as_str())
            .bind(patient.as_str())
            .execute(&mut *tx)
            .await?;
        query("UPDATE oauth_tokens SET revoked = $3 WHERE account_id = $1 AND patient = $2 AND revoked IS NULL")
            .bind(account_id.as_str())
            .bind(patient.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}
