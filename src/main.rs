//! The `carespace` command line: parses arguments and calls into the library.

use std::path::PathBuf;

use anyhow::Context;
use carespace::access::Actor;
use carespace::config::Config;
use carespace::{AppState, import};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "carespace", version, about = "FHIR R4 patient-access server")]
struct Cli {
    /// TOML configuration file (CARESPACE_* environment variables override it).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Log one JSON object per line (same as CARESPACE_LOG_JSON=1).
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve {
        /// Load the demo data from fixtures/ when the store is empty.
        #[arg(long)]
        demo: bool,
    },
    /// Load FHIR Bundles and NDJSON files or folders of them.
    Import { paths: Vec<PathBuf> },
    /// Write a consistent copy of the SQLite database to a new file, while the server runs.
    Backup { file: PathBuf },
    /// Replace the SQLite database with a backup (stop the server first).
    Restore { file: PathBuf },
    /// Care-team accounts.
    #[command(subcommand)]
    Staff(StaffCommand),
    /// SMART apps and backend services.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Make realistic, deterministic records in volume (benchmarks): into the store, or as Bundles with --out.
    Generate {
        #[arg(long)]
        patients: usize,
        #[arg(long, default_value_t = 50)]
        labs_per_patient: usize,
        #[arg(long, default_value_t = 6)]
        docs_per_patient: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Write transaction Bundles (one file per patient) into this folder instead of the store.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Email a patient the "Complete Your Registration" invitation (again: the old link stops working).
    Invite { patient_id: String, email: String },
}

#[derive(Subcommand)]
enum ClientCommand {
    /// Register a client; prints one JSON object with `client_id` (and `client_secret` for --secret).
    Add {
        #[arg(long)]
        name: String,
        /// Where the app may receive authorization codes (exact match); repeat for several.
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// The app's EHR launch URL.
        #[arg(long)]
        launch_url: Option<String>,
        /// The scopes the client may ask for, space-separated (e.g. "launch/patient openid fhirUser patient/*.rs").
        #[arg(long)]
        scope: String,
        /// A browser or mobile app without a secret (PKCE only).
        #[arg(long, group = "auth")]
        public: bool,
        /// A confidential client with a generated secret (client_secret_basic).
        #[arg(long, group = "auth")]
        secret: bool,
        /// private_key_jwt with the public keys in this JWKS file.
        #[arg(long, group = "auth")]
        jwks: Option<PathBuf>,
        /// private_key_jwt with keys published at this URL.
        #[arg(long, group = "auth")]
        jwks_url: Option<String>,
    },
}

#[derive(Subcommand)]
enum StaffCommand {
    /// Add a staff member (and the Practitioner they are). The password is read from standard input when it
    /// is not a terminal; otherwise one is generated and printed once.
    Add {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut config = Config::load(cli.config.as_deref()).map_err(anyhow::Error::msg)?;
    config.log_json |= cli.log_json;
    init_logging(config.log_json);
    match cli.command.unwrap_or(Command::Serve { demo: false }) {
        Command::Serve { demo } => {
            config.demo |= demo;
            let listener = tokio::net::TcpListener::bind(&config.listen)
                .await
                .with_context(|| format!("cannot listen on {}", config.listen))?;
            let state = AppState::build(config.clone()).await?;
            if config.demo {
                if import::demo(&state.records).await? {
                    println!("Demo data loaded.");
                }
                print_demo_logins(&config, &state.accounts.demo(&import::demo_people()?).await?);
            }
            tracing::info!(url = %config.base_url, fhir = %config.fhir_base(), engine = state.store.engine(), "CareSpace is listening");
            carespace::serve(listener, state, shutdown_signal()).await?;
        }
        Command::Generate {
            patients,
            labs_per_patient,
            docs_per_patient,
            seed,
            out,
        } => {
            let plan = carespace::generate::Plan {
                patients,
                labs_per_patient,
                docs_per_patient,
                seed,
            };
            let started = std::time::Instant::now();
            let bar = indicatif::ProgressBar::new(patients as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} patients {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let progress = |done: usize, resources: usize| {
                let rate = resources as f64 / started.elapsed().as_secs_f64().max(1e-9);
                bar.set_position(done as u64);
                bar.set_message(format!("{resources} resources ({rate:.0}/s)"));
            };
            let written = match &out {
                Some(dir) => carespace::generate::into_folder(dir, &plan, progress)?,
                None => {
                    let state = AppState::build(config).await?;
                    let written = carespace::generate::into_store(&state.records, &plan, progress).await?;
                    state.store.analyze().await?;
                    written
                }
            };
            bar.finish();
            println!(
                "Generated {patients} patients, {written} resources in {:.1} s.",
                started.elapsed().as_secs_f64()
            );
        }
        Command::Import { paths } => {
            let state = AppState::build(config).await?;
            let files = import::collect(&paths)?;
            let summary = import::import(&state.records, &files, true).await;
            state.store.analyze().await?;
            println!("imported {} resources from {} files", summary.resources, summary.files);
            for (file, why) in &summary.failed {
                println!("FAILED {}: {why}", file.display());
            }
            if !summary.failed.is_empty() {
                anyhow::bail!("{} entries or files could not be imported", summary.failed.len());
            }
        }
        Command::Backup { file } => {
            let store = carespace::store::connect(&config.database_url()).await?;
            store.backup(&file).await?;
            println!("backed up to {}", file.display());
        }
        Command::Restore { file } => {
            carespace::store::restore(&config.database_url(), &file).await?;
            println!("restored from {}; start the server again", file.display());
        }
        Command::Staff(StaffCommand::Add { email, name }) => {
            let (password, generated) = staff_password()?;
            let state = AppState::build(config).await?;
            let account = state.accounts.add_staff(&email, &name, &password).await?;
            println!("added staff member {} ({})", account.email, account.person);
            if generated {
                println!("password (shown once): {password}");
            }
        }
        Command::Client(ClientCommand::Add {
            name,
            redirect_uris,
            launch_url,
            scope,
            public,
            secret,
            jwks,
            jwks_url,
        }) => {
            use carespace::oauth::{ClientAuth, NewClient};
            let auth = match (public, secret, jwks, jwks_url) {
                (true, ..) => ClientAuth::Public,
                (_, true, ..) => ClientAuth::Secret,
                (_, _, Some(file), _) => ClientAuth::Jwks(
                    std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?,
                ),
                (_, _, _, Some(url)) => ClientAuth::JwksUrl(url),
                _ => {
                    anyhow::bail!("say how the client authenticates: --public, --secret, --jwks FILE or --jwks-url URL")
                }
            };
            let state = AppState::build(config).await?;
            let (client, secret) = state
                .oauth
                .register(NewClient {
                    name,
                    redirect_uris,
                    launch_url,
                    scope,
                    auth,
                })
                .await?;
            let mut out = serde_json::json!({ "client_id": client.id, "scope": client.scope });
            if let Some(secret) = secret {
                out["client_secret"] = serde_json::json!(secret);
            }
            println!("{out}");
        }
        Command::Invite { patient_id, email } => {
            let state = AppState::build(config.clone()).await?;
            let account = state
                .accounts
                .invite(&Actor::system("cli"), &patient_id, &email, None)
                .await?;
            // Deliver now; a running server's sender would also pick it up within seconds.
            state.mailer.deliver_due().await?;
            match &config.smtp_url {
                Some(_) => println!("invitation emailed to {}", account.email),
                None => println!(
                    "invitation for {} written to {}",
                    account.email,
                    config.data_dir.join("outbox").display()
                ),
            }
        }
    }
    Ok(())
}

/// The new staff member's password: the first line of standard input when it is piped, else a generated one.
fn staff_password() -> anyhow::Result<(String, bool)> {
    use std::io::{BufRead as _, IsTerminal as _};
    if !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        let line = line.trim_end_matches(['\r', '\n']);
        if !line.is_empty() {
            return Ok((line.to_owned(), false));
        }
    }
    Ok((carespace::accounts::password::generate()?, true))
}

fn print_demo_logins(config: &Config, logins: &[carespace::accounts::demo::DemoLogin]) {
    use carespace::store::accounts::AccountKind;
    let password = carespace::accounts::demo::DEMO_PASSWORD;
    println!("Demo logins (password for all: {password}):");
    for l in logins {
        match (l.kind, l.registered) {
            (AccountKind::Staff, _) => println!("  care team  {}/staff/login  {}", config.base_url, l.email),
            (AccountKind::Patient, true) => println!(
                "  patient    {}/login  {}  date of birth {}  ({})",
                config.base_url,
                l.email,
                l.birth_date.as_deref().unwrap_or("?"),
                l.name
            ),
            (AccountKind::Proxy, _) => println!(
                "  family     {}/login  {}  date of birth {}  ({})",
                config.base_url,
                l.email,
                l.birth_date.as_deref().unwrap_or("?"),
                l.name
            ),
            (AccountKind::Patient, false) => println!(
                "  invited    {} ({}): the \"Complete Your Registration\" email is in {}",
                l.email,
                l.name,
                config.data_dir.join("outbox").display()
            ),
        }
    }
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,sqlx=warn".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutting down");
}
