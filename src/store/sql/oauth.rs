//! SQL for the OAuth tables.

use super::SqlStore;
use super::db::{DbRow, query};
use crate::error::Result;
use crate::store::oauth::{ClientRow, CodeRow, ConnectedApp, LaunchRow, TokenRow};

const CLIENT_COLUMNS: &str = "id, name, kind, secret_hash, jwks, jwks_url, redirect_uris, launch_url, scope, created";
const CODE_COLUMNS: &str = "hash, client_id, account_id, patient, scope, redirect_uri, code_challenge, nonce, grant_id, created, expires, used";
const TOKEN_COLUMNS: &str = "hash, kind, client_id, account_id, patient, scope, grant_id, created, expires, revoked";

fn client(r: &DbRow) -> Result<ClientRow> {
    let uris: String = r.try_get(6)?;
    Ok(ClientRow {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        kind: r.try_get(2)?,
        secret_hash: r.try_get(3)?,
        jwks: r.try_get(4)?,
        jwks_url: r.try_get(5)?,
        redirect_uris: uris.split_whitespace().map(str::to_owned).collect(),
        launch_url: r.try_get(7)?,
        scope: r.try_get(8)?,
        created: r.try_get(9)?,
    })
}

fn code(r: &DbRow) -> Result<CodeRow> {
    Ok(CodeRow {
        hash: r.try_get(0)?,
        client_id: r.try_get(1)?,
        account_id: r.try_get(2)?,
        patient: r.try_get(3)?,
        scope: r.try_get(4)?,
        redirect_uri: r.try_get(5)?,
        code_challenge: r.try_get(6)?,
        nonce: r.try_get(7)?,
        grant_id: r.try_get(8)?,
        created: r.try_get(9)?,
        expires: r.try_get(10)?,
        used: r.try_get(11)?,
    })
}

fn token(r: &DbRow) -> Result<TokenRow> {
    Ok(TokenRow {
        hash: r.try_get(0)?,
        kind: r.try_get(1)?,
        client_id: r.try_get(2)?,
        account_id: r.try_get(3)?,
        patient: r.try_get(4)?,
        scope: r.try_get(5)?,
        grant_id: r.try_get(6)?,
        created: r.try_get(7)?,
        expires: r.try_get(8)?,
        revoked: r.try_get(9)?,
    })
}

impl SqlStore {
    pub(super) async fn save_client_row(&self, c: &ClientRow) -> Result<()> {
        query(
            "INSERT INTO oauth_clients (id, name, kind, secret_hash, jwks, jwks_url, redirect_uris, launch_url, scope, created) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(c.id.as_str())
        .bind(c.name.as_str())
        .bind(c.kind.as_str())
        .bind(c.secret_hash.as_deref())
        .bind(c.jwks.as_deref())
        .bind(c.jwks_url.as_deref())
        .bind(c.redirect_uris.join(" "))
        .bind(c.launch_url.as_deref())
        .bind(c.scope.as_str())
        .bind(c.created)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    pub(super) async fn client_row(&self, id: &str) -> Result<Option<ClientRow>> {
        query(&format!("SELECT {CLIENT_COLUMNS} FROM oauth_clients WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.read)
            .await?
            .as_ref()
            .map(client)
            .transpose()
    }

    pub(super) async fn save_code_row(&self, c: &CodeRow) -> Result<()> {
        query(
            "INSERT INTO oauth_codes (hash, client_id, account_id, patient, scope, redirect_uri, code_challenge, nonce, \
             grant_id, created, expires) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(c.hash.as_str())
        .bind(c.client_id.as_str())
        .bind(c.account_id.as_str())
        .bind(c.patient.as_deref())
        .bind(c.scope.as_str())
        .bind(c.redirect_uri.as_str())
        .bind(c.code_challenge.as_str())
        .bind(c.nonce.as_deref())
        .bind(c.grant_id.as_str())
        .bind(c.created)
        .bind(c.expires)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Marks the code used and returns it as it was before (so `used` tells a replay).
    pub(super) async fn take_code_row(&self, hash: &str, now: i64) -> Result<Option<CodeRow>> {
        let mut tx = self.write.begin(self.begin).await?;
        let row = query(&format!("SELECT {CODE_COLUMNS} FROM oauth_codes WHERE hash = $1"))
            .bind(hash)
            .fetch_optional(&mut tx)
            .await?
            .as_ref()
            .map(code)
            .transpose()?;
        if row.as_ref().is_some_and(|c| c.used.is_none()) {
            query("UPDATE oauth_codes SET used = $2 WHERE hash = $1")
                .bind(hash)
                .bind(now)
                .execute(&mut tx)
                .await?;
        }
        tx.commit().await?;
        Ok(row)
    }

    pub(super) async fn save_tokens_rows(&self, tokens: &[TokenRow]) -> Result<()> {
        let mut tx = self.write.begin(self.begin).await?;
        for t in tokens {
            query(
                "INSERT INTO oauth_tokens (hash, kind, client_id, account_id, patient, scope, grant_id, created, expires) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(t.hash.as_str())
            .bind(t.kind.as_str())
            .bind(t.client_id.as_str())
            .bind(t.account_id.as_deref())
            .bind(t.patient.as_deref())
            .bind(t.scope.as_str())
            .bind(t.grant_id.as_str())
            .bind(t.created)
            .bind(t.expires)
            .execute(&mut tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn token_row_by_hash(&self, hash: &str) -> Result<Option<TokenRow>> {
        query(&format!("SELECT {TOKEN_COLUMNS} FROM oauth_tokens WHERE hash = $1"))
            .bind(hash)
            .fetch_optional(&self.read)
            .await?
            .as_ref()
            .map(token)
            .transpose()
    }

    /// Revokes one token, or with `whole_grant` every token of its grant; returns how many changed.
    pub(super) async fn revoke_rows(&self, hash: &str, whole_grant: bool, now: i64) -> Result<u64> {
        let sql = if whole_grant {
            "UPDATE oauth_tokens SET revoked = $2 WHERE revoked IS NULL AND grant_id IN \
             (SELECT grant_id FROM oauth_tokens WHERE hash = $1)"
        } else {
            "UPDATE oauth_tokens SET revoked = $2 WHERE revoked IS NULL AND hash = $1"
        };
        Ok(query(sql)
            .bind(hash)
            .bind(now)
            .execute(&self.write)
            .await?
            .rows_affected())
    }

    pub(super) async fn revoke_grant_rows(&self, grant_id: &str, now: i64) -> Result<()> {
        query("UPDATE oauth_tokens SET revoked = $2 WHERE revoked IS NULL AND grant_id = $1")
            .bind(grant_id)
            .bind(now)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Records a client assertion's `jti`; `false` when it was seen before (a replay).
    pub(super) async fn first_jti_row(&self, client_id: &str, jti: &str, expires: i64, now: i64) -> Result<bool> {
        let mut tx = self.write.begin(self.begin).await?;
        query("DELETE FROM oauth_jti WHERE expires < $1")
            .bind(now)
            .execute(&mut tx)
            .await?;
        let inserted = query(
            "INSERT INTO oauth_jti (client_id, jti, expires) VALUES ($1, $2, $3) ON CONFLICT (client_id, jti) DO NOTHING",
        )
        .bind(client_id)
        .bind(jti)
        .bind(expires)
        .execute(&mut tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(inserted == 1)
    }

    pub(super) async fn connected_app_rows(&self, account_id: &str, now: i64) -> Result<Vec<ConnectedApp>> {
        let rows = query(
            "SELECT t.client_id, c.name, t.scope, t.created FROM oauth_tokens t JOIN oauth_clients c ON c.id = t.client_id \
             WHERE t.account_id = $1 AND t.revoked IS NULL AND t.expires > $2 ORDER BY t.client_id, t.created",
        )
        .bind(account_id)
        .bind(now)
        .fetch_all(&self.read)
        .await?;
        let mut apps: Vec<ConnectedApp> = Vec::new();
        for r in rows {
            let (client_id, name, scope, created): (String, String, String, i64) =
                (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?);
            match apps.last_mut() {
                Some(last) if last.client_id == client_id => last.scope = scope,
                _ => apps.push(ConnectedApp {
                    client_id,
                    name,
                    scope,
                    since: created,
                }),
            }
        }
        Ok(apps)
    }

    pub(super) async fn revoke_app_rows(&self, account_id: &str, client_id: &str, now: i64) -> Result<()> {
        query("UPDATE oauth_tokens SET revoked = $3 WHERE account_id = $1 AND client_id = $2 AND revoked IS NULL")
            .bind(account_id)
            .bind(client_id)
            .bind(now)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    pub(super) async fn launchable_client_rows(&self) -> Result<Vec<ClientRow>> {
        query(&format!(
            "SELECT {CLIENT_COLUMNS} FROM oauth_clients WHERE launch_url IS NOT NULL ORDER BY name"
        ))
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(client)
        .collect()
    }

    pub(super) async fn save_launch_row(&self, l: &LaunchRow) -> Result<()> {
        query(
            "INSERT INTO oauth_launches (hash, client_id, account_id, patient, created, expires) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(l.hash.as_str())
        .bind(l.client_id.as_str())
        .bind(l.account_id.as_str())
        .bind(l.patient.as_str())
        .bind(l.created)
        .bind(l.expires)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    pub(super) async fn launch_row(&self, hash: &str) -> Result<Option<LaunchRow>> {
        let row =
            query("SELECT hash, client_id, account_id, patient, created, expires FROM oauth_launches WHERE hash = $1")
                .bind(hash)
                .fetch_optional(&self.read)
                .await?;
        row.map(|r| {
            Ok(LaunchRow {
                hash: r.try_get(0)?,
                client_id: r.try_get(1)?,
                account_id: r.try_get(2)?,
                patient: r.try_get(3)?,
                created: r.try_get(4)?,
                expires: r.try_get(5)?,
            })
        })
        .transpose()
    }
}
