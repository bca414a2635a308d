//! The `kindred` binary: parse the command line, set up logging, bind, run.

use clap::{Parser, Subcommand};
use kindred_protocol::{Role, RoomId};
use kindred_server::config::{Config, ServeArgs};
use kindred_server::{App, auth::Auth};
use std::time::Duration;

#[derive(Parser)]
#[command(name = "kindred", version, about = "Kindred: a chat server for online peer-support groups")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve(Box<ServeArgs>),
    /// Print a facilitator or admin token signed with this server's secret.
    Token(TokenArgs),
}

#[derive(clap::Args)]
struct TokenArgs {
    #[arg(long, value_enum)]
    role: StaffRole,
    /// The name shown to members.
    #[arg(long)]
    name: String,
    /// Rooms it may moderate, comma-separated; every room when absent.
    #[arg(long, value_delimiter = ',')]
    rooms: Option<Vec<String>>,
    /// How long the token stays valid, such as 30m, 8h or 7d.
    #[arg(long, default_value = "8h", value_parser = parse_ttl)]
    ttl: Duration,
    /// The data dir holding the server's secret (when KINDRED_JWT_SECRET is not set).
    #[arg(long, env = "KINDRED_DATA_DIR", default_value = "kindred-data")]
    data_dir: std::path::PathBuf,
    #[arg(long, env = "KINDRED_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum StaffRole {
    Facilitator,
    Admin,
}

fn parse_ttl(s: &str) -> Result<Duration, String> {
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = number.parse().map_err(|_| format!("{s:?} is not a duration like 30m, 8h or 7d"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" | "" => n * 3600,
        "d" => n * 86400,
        _ => return Err(format!("{s:?}: use s, m, h or d")),
    };
    Ok(Duration::from_secs(secs))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Token(args)) => token(args),
        Some(Command::Serve(args)) => serve(*args).await,
        None => serve(cli.serve).await,
    }
}

fn token(args: TokenArgs) -> anyhow::Result<()> {
    let secret = Auth::load_secret(args.jwt_secret.as_deref(), &args.data_dir)?;
    let defaults = Config::new(&args.data_dir);
    let auth = Auth::new(&secret, &defaults.jwt_issuer, &defaults.jwt_audience);
    let role = match args.role {
        StaffRole::Facilitator => Role::Facilitator,
        StaffRole::Admin => Role::Admin,
    };
    let rooms = args.rooms.map(|r| r.into_iter().map(RoomId).collect());
    println!("{}", auth.staff_token(role, &args.name, rooms, args.ttl));
    Ok(())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    init_tracing(args.log_json);
    let config = Config::from_args(&args)?;
    let listener = bind(args.listen)?;
    let app = App::new(config)?;
    let shutdown = app.shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: asking clients to reconnect");
        shutdown.cancel();
    });
    // Printed, not logged: scripts and tests read the chosen port from here.
    println!("kindred listening on http://{}", listener.local_addr()?);
    tracing::info!(rooms = app.config.rooms.len(), node = %app.config.node, "kindred started");
    kindred_server::run(listener, app).await
}

/// Bind with a deep accept backlog: tokio's default of 128 drops SYNs in a
/// reconnect storm (after a restart every client comes back at once), and
/// each drop costs that client a one-second retransmit.
fn bind(addr: std::net::SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    Ok(socket.listen(4096)?)
}

fn init_tracing(json: bool) {
    let filter = kindred_server::log_filter(&std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("installing a SIGTERM handler succeeds on Unix");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
