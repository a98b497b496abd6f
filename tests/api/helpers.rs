//! `spawn_app`: a server on 127.0.0.1:0 with its own data folder and database, and a client for it.

use carespace::AppState;

use crate::smtp::SmtpSink;
use crate::web::Web;
use carespace::config::Config;
use serde_json::Value;
use sqlx::Executor;

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    /// The database the server uses, for running the `carespace` command line against it.
    pub database_url: String,
    pub dir: tempfile::TempDir,
    /// The running app's rooms, for driving the access gate with actors the HTTP doors do not make yet.
    pub state: AppState,
    /// `http://127.0.0.1:port`: the portal.
    pub origin: String,
    /// The SMTP server the app sends its email to.
    pub smtp: SmtpSink,
    /// A backend service's access token with every system scope; `client` sends it.
    pub token: String,
}

/// Registers a backend service allowed every system scope (`carespace client add --secret`, on the database
/// at `database_url`) and gets it an access token over HTTP (client_credentials with client_secret_basic), as
/// an EHR integration would.
pub async fn system_token(origin: &str, dir: &std::path::Path, database_url: &str) -> String {
    let (dir, database_url) = (dir.to_path_buf(), database_url.to_owned());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_carespace"))
            .args([
                "client",
                "add",
                "--name",
                "test backend",
                "--secret",
                "--scope",
                "system/*.cruds",
            ])
            .env("CARESPACE_DATA_DIR", &dir)
            .env("CARESPACE_DATABASE_URL", &database_url)
            .env("RUST_LOG", "warn")
            .output()
            .expect("run carespace client add")
    })
    .await
    .expect("client add");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let registered: Value = serde_json::from_slice(&out.stdout).expect("client add prints JSON");
    let answer: Value = reqwest::Client::new()
        .post(format!("{origin}/oauth/token"))
        .basic_auth(
            registered["client_id"].as_str().expect("client_id"),
            registered["client_secret"].as_str(),
        )
        .form(&[("grant_type", "client_credentials"), ("scope", "system/*.cruds")])
        .send()
        .await
        .expect("token request")
        .json()
        .await
        .expect("token JSON");
    answer["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access token: {answer}"))
        .to_owned()
}

/// A FHIR client that sends `token` and asks for FHIR JSON (a Binary is otherwise served in its own type).
pub fn fhir_client(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::ACCEPT,
        reqwest::header::HeaderValue::from_static("application/fhir+json"),
    );
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).expect("token header"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("client")
}

/// GETs `url` and reads the answer as JSON (whatever its status).
pub async fn get_json(client: &reqwest::Client, url: impl reqwest::IntoUrl) -> Value {
    client.get(url).send().await.expect("GET").json().await.expect("JSON")
}

/// Tells the person running the tests, even when the test passes: the harness captures `eprintln!` but not
/// writes to the stderr handle itself.
pub fn say(message: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "NOTE: {message}");
}

/// The engines to run a test on: SQLite always, PostgreSQL when its URL is given.
pub fn engines() -> Vec<&'static str> {
    if std::env::var("CARESPACE_TEST_POSTGRES_URL").is_ok_and(|u| !u.is_empty()) {
        vec!["sqlite", "postgres"]
    } else {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| say("PostgreSQL tests skipped: CARESPACE_TEST_POSTGRES_URL is not set"));
        vec!["sqlite"]
    }
}

/// A fresh, empty database for `engine`: a SQLite file in `dir`, or a new PostgreSQL database.
pub async fn new_database(engine: &str, dir: &std::path::Path) -> String {
    if engine != "postgres" {
        return format!("sqlite://{}", dir.join("carespace.db").display());
    }
    let admin = std::env::var("CARESPACE_TEST_POSTGRES_URL").expect("postgres url");
    let pid = std::process::id();
    let name = format!("carespace_test_{pid}_{}", uuid::Uuid::new_v4().simple());
    let pool = sqlx::PgPool::connect(&admin).await.expect("connect to PostgreSQL");
    // Databases left by earlier test runs (their process is gone) are dropped, so runs do not pile up.
    let existing: Vec<(String,)> =
        sqlx::query_as("SELECT datname FROM pg_database WHERE datname LIKE 'carespace\\_test\\_%'")
            .fetch_all(&pool)
            .await
            .expect("list test databases");
    for (old,) in existing {
        let owner = old
            .trim_start_matches("carespace_test_")
            .split('_')
            .next()
            .and_then(|p| p.parse::<u32>().ok());
        if owner.is_some_and(|p| p != pid && !std::path::Path::new(&format!("/proc/{p}")).exists()) {
            let _ = pool
                .execute(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {old} WITH (FORCE)"
                )))
                .await;
        }
    }
    pool.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .expect("create database");
    let (prefix, _) = admin.rsplit_once('/').expect("database URL with a path");
    format!("{prefix}/{name}")
}

/// An app that sends its email to a test SMTP server ([`TestApp::smtp`]).
pub async fn spawn_app(engine: &str) -> TestApp {
    spawn(engine, true).await
}

/// An app with no mail server: email goes to `<data>/outbox/` as `.eml` files, as in the default set-up.
pub async fn spawn_app_with_outbox_folder(engine: &str) -> TestApp {
    spawn(engine, false).await
}

async fn spawn(engine: &str, use_smtp: bool) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let smtp = SmtpSink::start().await;
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        base_url: format!("http://{addr}"),
        smtp_url: use_smtp.then(|| smtp.url.clone()),
        ..Config::default()
    };
    config.database_url = new_database(engine, dir.path()).await;
    let database_url = config.database_url();
    let state = AppState::build(config).await.expect("build app");
    tokio::spawn(carespace::serve(listener, state.clone(), std::future::pending()));
    let token = system_token(&format!("http://{addr}"), dir.path(), &database_url).await;
    TestApp {
        base: format!("http://{addr}/fhir"),
        client: fhir_client(&token),
        token,
        database_url,
        dir,
        state,
        origin: format!("http://{addr}"),
        smtp,
    }
}

impl TestApp {
    /// Runs the `carespace` binary on this app's database; returns (success, stdout + stderr).
    pub async fn command(&self, args: &[&str]) -> (bool, String) {
        self.command_with_input(args, "").await
    }

    /// Runs the `carespace` binary with `input` on its standard input, off the test's thread: the server runs
    /// on that thread and must keep serving (and finish its writes) while the command runs.
    pub async fn command_with_input(&self, args: &[&str], input: &str) -> (bool, String) {
        let env: Vec<(String, String)> = [
            ("CARESPACE_DATA_DIR", self.dir.path().to_string_lossy().into_owned()),
            ("CARESPACE_DATABASE_URL", self.database_url.clone()),
            ("CARESPACE_BASE_URL", self.origin.clone()),
            ("CARESPACE_SMTP_URL", self.smtp.url.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let input = input.to_owned();
        let out = tokio::task::spawn_blocking(move || {
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_carespace(&env, &args, &input)
        })
        .await
        .expect("the command ran");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .client
            .get(format!("{}/{path}", self.base))
            .send()
            .await
            .expect("GET");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// A request to `path` under the FHIR base (`""`: the base itself) with a FHIR JSON body type.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let url = if path.is_empty() {
            self.base.clone()
        } else {
            format!("{}/{path}", self.base)
        };
        self.client
            .request(method, url)
            .header("content-type", "application/fhir+json")
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Value,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let r = self
            .request(method, path)
            .body(body.to_string())
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        (status, headers, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, reqwest::header::HeaderMap, Value) {
        self.send(reqwest::Method::POST, path, body).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> (u16, reqwest::header::HeaderMap, Value) {
        self.send(reqwest::Method::PUT, path, body).await
    }

    /// A browser with no cookies yet, pointed at the portal.
    pub fn web(&self) -> Web {
        Web::new(&self.origin)
    }

    /// Creates and returns the new id.
    pub async fn create(&self, body: Value) -> String {
        let rtype = body["resourceType"].as_str().expect("resourceType").to_owned();
        let (status, _, created) = self.post(&rtype, &body).await;
        assert_eq!(status, 201, "{created}");
        created["id"].as_str().expect("id").to_owned()
    }
}

/// The ids of a searchset's match entries.
pub fn ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter(|e| e["search"]["mode"] == "match")
                .map(|e| e["resource"]["id"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The interop data folder, or `None` (with the reason printed) when it is absent.
pub fn interop_dir() -> Option<std::path::PathBuf> {
    match std::env::var("CARESPACE_INTEROP_DIR") {
        Ok(dir) if std::path::Path::new(&dir).is_dir() => Some(dir.into()),
        _ => {
            say("interop tests skipped: CARESPACE_INTEROP_DIR does not name the shared interop folder");
            None
        }
    }
}

/// A `carespace serve` process, killed when dropped: a failing test leaves no server behind.
pub struct Server(std::process::Child);

impl Server {
    /// SIGKILL, then wait until the process is gone.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `carespace serve` as its own process on `port` (logging warnings only); `env` adds or overrides
/// settings.
pub fn start_server(dir: &std::path::Path, database_url: &str, port: u16, env: &[(&str, &str)]) -> Server {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_carespace"))
        .arg("serve")
        .env("CARESPACE_DATA_DIR", dir)
        .env("CARESPACE_DATABASE_URL", database_url)
        .env("CARESPACE_LISTEN", format!("127.0.0.1:{port}"))
        .env("CARESPACE_BASE_URL", format!("http://127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start carespace");
    Server(child)
}

/// Waits until the server on `port` answers `/readyz`.
pub async fn wait_ready(client: &reqwest::Client, port: u16) {
    for _ in 0..200 {
        if client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("server on port {port} did not become ready");
}

/// A client that sends a backend service's token and gives up on a dead server after 10 s.
pub fn authorized(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Runs the `carespace` command line with `env` and `input` on its standard input.
pub fn run_carespace(env: &[(&str, &str)], args: &[&str], input: &str) -> std::process::Output {
    use std::io::Write as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_carespace"))
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_BACKTRACE", "0")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run carespace");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("carespace output")
}
