-- SMART apps and backend services registered with `carespace client add`. `kind`: public, secret (client_secret
-- kept as its SHA-256) or jwks (private_key_jwt with the keys in `jwks` or at `jwks_url`).
CREATE TABLE oauth_clients (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    secret_hash TEXT,
    jwks TEXT,
    jwks_url TEXT,
    redirect_uris TEXT NOT NULL,
    launch_url TEXT,
    scope TEXT NOT NULL,
    created INTEGER NOT NULL
);

-- Authorization codes (single use, by SHA-256), with the PKCE challenge and what the user consented to.
CREATE TABLE oauth_codes (
    hash TEXT PRIMARY KEY,
    client_id TEXT NOT NULL REFERENCES oauth_clients (id),
    account_id TEXT NOT NULL,
    patient TEXT,
    scope TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    nonce TEXT,
    grant_id TEXT NOT NULL,
    created INTEGER NOT NULL,
    expires INTEGER NOT NULL,
    used INTEGER
);

-- Access and refresh tokens (by SHA-256). `grant_id` ties every token of one authorization together, so a
-- replayed code or a revocation can end them all.
CREATE TABLE oauth_tokens (
    hash TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    client_id TEXT NOT NULL REFERENCES oauth_clients (id),
    account_id TEXT,
    patient TEXT,
    scope TEXT NOT NULL,
    grant_id TEXT NOT NULL,
    created INTEGER NOT NULL,
    expires INTEGER NOT NULL,
    revoked INTEGER
);
CREATE INDEX oauth_tokens_grant ON oauth_tokens (grant_id);
CREATE INDEX oauth_tokens_account ON oauth_tokens (account_id);

-- Client assertion ids seen until they expire (a replayed jti is refused).
CREATE TABLE oauth_jti (
    client_id TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires INTEGER NOT NULL,
    PRIMARY KEY (client_id, jti)
);
