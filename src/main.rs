//! The `carespace` command line: parses arguments and calls into the library.

use std::path::PathBuf;

use anyhow::Context;
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
            // Until SMART bearer tokens guard the FHIR API (issue 4) it has no authentication: refuse to expose it.
            let addr: std::net::SocketAddr = config
                .listen
                .parse()
                .with_context(|| format!("CARESPACE_LISTEN '{}' is not ip:port", config.listen))?;
            if !addr.ip().is_loopback() {
                anyhow::bail!(
                    "refusing to listen on {addr}: the FHIR API has no authentication yet, so CareSpace listens on loopback only"
                );
            }
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {}", config.listen))?;
            let state = AppState::build(config.clone()).await?;
            if config.demo {
                let patients = import::demo(&state.records).await?;
                if !patients.is_empty() {
                    println!(
                        "Demo data loaded. Demo patients (their records at {}/Patient/<id>/$everything):",
                        config.fhir_base()
                    );
                    for (id, name) in &patients {
                        println!("  {id}: {name}");
                    }
                }
            }
            tracing::info!(url = %config.base_url, fhir = %config.fhir_base(), engine = state.store.engine(), "CareSpace is listening");
            carespace::serve(listener, state, shutdown_signal()).await?;
        }
        Command::Import { paths } => {
            let state = AppState::build(config).await?;
            let files = import::collect(&paths)?;
            let summary = import::import(&state.records, &files, true).await;
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
    }
    Ok(())
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
