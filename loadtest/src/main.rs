//! `kindred-loadtest`: a load generator for Kindred that speaks protocol v1
//! with the `kindred-protocol` types. Scenarios: `rooms` (many small rooms),
//! `fanout` (one big room), `connect` (connect storm, or churn), `idle`
//! (memory per connection); `config` writes a server config with load-test
//! rooms; `chart` draws results. See docs/benchmarks.md.
//!
//! Crate map: [`client`] (one member's connection and frames), [`chat`] (the
//! scenario engine), [`crisis`] (crisis messages and the staff connection that
//! times their alerts), [`stats`] (counters and latency histograms), [`procfs`]
//! (CPU and memory from /proc), [`report`] (JSON and Markdown), [`chart`] (SVG).

mod chart;
mod chat;
mod client;
mod crisis;
mod procfs;
mod report;
mod stats;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "kindred-loadtest", version, about = "Load generator and benchmark reports for Kindred")]
struct Cli {
    /// Runtime worker threads (default: one per core).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Many small rooms; every member sends every --interval.
    Rooms {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        crisis: Crisis,
        #[arg(long, default_value_t = 1500)]
        rooms: usize,
        #[arg(long, default_value_t = 10)]
        members: usize,
        /// Seconds between two messages of one member.
        #[arg(long, default_value = "10", value_parser = seconds)]
        interval: Duration,
    },
    /// Large rooms (one by default); --senders members of each send, together offering --rate deliveries/s.
    Fanout {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        crisis: Crisis,
        #[arg(long, default_value_t = 1)]
        rooms: usize,
        #[arg(long, default_value_t = 1000)]
        members: usize,
        #[arg(long, default_value_t = 50)]
        senders: usize,
        /// Target deliveries per second, all rooms together (messages/s × members).
        #[arg(long, default_value_t = 100_000.0)]
        rate: f64,
    },
    /// Connect storm: open --connections sessions (hello, welcome, join) as fast as
    /// --concurrency allows and report sessions/s; with --churn, workers connect,
    /// join and close again for --duration.
    Connect {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 5000)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        members: usize,
        /// Rooms to spread over (default: connections / members).
        #[arg(long)]
        rooms: Option<usize>,
        #[arg(long)]
        churn: bool,
    },
    /// N idle joined connections, to measure the server's memory per connection.
    Idle {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        members: usize,
    },
    /// Print a server config (TOML) with load-test rooms `<prefix>-0000` … and load-friendly limits.
    Config {
        #[arg(long, default_value_t = 2000)]
        rooms: usize,
        #[arg(long, default_value_t = 20)]
        capacity: u32,
        #[arg(long, default_value = "lt")]
        room_prefix: String,
        /// Messages of history kept per room (the server's default is 500).
        #[arg(long)]
        history: Option<usize>,
        /// Frames queued per connection before it is closed with 4408 (server default 512).
        #[arg(long)]
        mailbox: Option<usize>,
        /// The server's per-socket write buffer (default 16384); it may hold at most 8× this,
        /// so a `joined` reply listing ~800+ members needs more than the default.
        #[arg(long)]
        write_buffer_bytes: Option<usize>,
    },
    /// Read JSON results and write an SVG chart of deliveries/s and p99 latency against load.
    Chart {
        /// JSON result files.
        #[arg(required = true)]
        results: Vec<PathBuf>,
        #[arg(long, default_value = "chart.svg")]
        out: PathBuf,
        #[arg(long, default_value = "Kindred load test")]
        title: String,
    },
}

/// Options every scenario shares.
#[derive(Args, Clone)]
struct Common {
    /// Server WebSocket URL; repeat to spread connections over a cluster.
    #[arg(long = "url", default_value = "ws://127.0.0.1:8080/ws")]
    urls: Vec<String>,
    /// Length of the measured window, in seconds (s, ms and m suffixes work too).
    #[arg(long, default_value = "30", value_parser = seconds)]
    duration: Duration,
    /// Seconds of sending before the window opens.
    #[arg(long, default_value = "2", value_parser = seconds)]
    warmup: Duration,
    /// Give up waiting for connections to join after this long.
    #[arg(long, default_value = "180", value_parser = seconds)]
    setup_timeout: Duration,
    /// The longest one setup step (connect, upgrade, welcome, joined) may take.
    #[arg(long, default_value = "30", value_parser = seconds)]
    step_timeout: Duration,
    /// Handshakes in flight at once (for `connect --churn`: workers).
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Server process to watch (CPU, RSS); repeat for a cluster.
    #[arg(long = "server-pid")]
    server_pids: Vec<u32>,
    /// Write the JSON result here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// A name for this run in the report and chart.
    #[arg(long, default_value = "")]
    label: String,
    /// Run only every n-th connection, starting at i (`i/n`): split a run over several processes.
    #[arg(long, default_value = "0/1", value_parser = shard)]
    shard: (usize, usize),
    /// Bind connections to 127.0.0.1 … 127.0.0.N in turn (loopback servers only; 0: don't bind).
    #[arg(long, default_value_t = 32)]
    source_ips: u8,
    /// Room ids are `<prefix>-0000`, `<prefix>-0001`, … (see `config`).
    #[arg(long, default_value = "lt")]
    room_prefix: String,
    /// Approximate message text length, in bytes.
    #[arg(long, default_value_t = 64)]
    text_bytes: usize,
    /// Record latency on every n-th connection only (deliveries are counted on all).
    #[arg(long, default_value_t = 1)]
    sample_every: usize,
    /// Parse every received `message` fully with the protocol types (costs generator CPU).
    #[arg(long)]
    full_parse: bool,
    /// No progress line on stderr.
    #[arg(long)]
    quiet: bool,
}

/// Crisis alerts under load (`rooms`, `fanout`).
#[derive(Args, Clone)]
struct Crisis {
    /// Crisis messages per second, all shards together, in the measured window: a sender's
    /// ordinary message gets a crisis phrase appended, each sender at most once per run.
    #[arg(long, default_value_t = 0.0)]
    crisis_per_s: f64,
    /// A facilitator's or admin's token (`kindred token`): shard 0 opens one more connection
    /// with it to the first --url, joins no room, and times every `alert` it is sent.
    #[arg(long)]
    staff_token: Option<String>,
}

impl Crisis {
    fn apply(self, plan: &mut chat::Plan) -> anyhow::Result<()> {
        anyhow::ensure!(self.crisis_per_s >= 0.0 && self.crisis_per_s.is_finite(), "--crisis-per-s must be 0 or more");
        // Each shard sends its share, so the total is what was asked for.
        plan.crisis_per_s = self.crisis_per_s / plan.shard.1 as f64;
        plan.staff_token = self.staff_token;
        Ok(())
    }
}

fn seconds(s: &str) -> Result<Duration, String> {
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num.parse().map_err(|_| format!("{s:?} is not a duration like 30, 1.5s, 500ms or 2m"))?;
    if !(v >= 0.0 && v.is_finite()) {
        return Err(format!("{s:?}: a duration must be positive"));
    }
    Ok(Duration::from_secs_f64(v * scale))
}

fn shard(s: &str) -> Result<(usize, usize), String> {
    let (i, n) = s.split_once('/').ok_or("use i/n, such as 0/2")?;
    let (i, n): (usize, usize) = (i.parse().map_err(|_| "i is not a number")?, n.parse().map_err(|_| "n is not a number")?);
    if n == 0 || i >= n {
        return Err("need 0 ≤ i < n".into());
    }
    Ok((i, n))
}

impl Common {
    fn plan(&self, scenario: &'static str, rooms: usize, members: usize, connections: usize) -> chat::Plan {
        chat::Plan {
            scenario,
            label: self.label.clone(),
            room_prefix: self.room_prefix.clone(),
            rooms,
            members: members.max(1),
            connections,
            senders: 0,
            interval: Duration::ZERO,
            text_bytes: self.text_bytes,
            sample_every: self.sample_every,
            full_parse: self.full_parse,
            shard: self.shard,
            concurrency: self.concurrency,
            setup_timeout: self.setup_timeout,
            warmup: self.warmup,
            duration: self.duration,
            server_pids: self.server_pids.clone(),
            progress: !self.quiet,
            measure_setup: false,
            crisis_per_s: 0.0,
            staff_token: None,
        }
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let command_line = redacted_command_line(std::env::args());
    let (common, plan, churn) = match cli.command {
        Command::Config { rooms, capacity, room_prefix, history, mailbox, write_buffer_bytes } => {
            let limits = [("history_max_messages", history), ("mailbox_frames", mailbox), ("write_buffer_bytes", write_buffer_bytes)];
            print!("{}", config_toml(rooms, capacity, &room_prefix, &limits));
            return Ok(());
        }
        Command::Chart { results, out, title } => {
            let mut reports = Vec::new();
            for path in &results {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                reports.push(serde_json::from_str::<report::Report>(&text).with_context(|| format!("parsing {}", path.display()))?);
            }
            std::fs::write(&out, chart::svg(&reports, &title)).with_context(|| format!("writing {}", out.display()))?;
            eprintln!("wrote {} ({} results)", out.display(), reports.len());
            return Ok(());
        }
        Command::Rooms { common, crisis, rooms, members, interval } => {
            let mut plan = common.plan("rooms", rooms, members, rooms * members);
            plan.senders = members;
            plan.interval = interval;
            crisis.apply(&mut plan)?;
            (common, plan, false)
        }
        Command::Fanout { common, crisis, rooms, members, senders, rate } => {
            let mut plan = common.plan("fanout", rooms, members, rooms * members);
            plan.senders = senders.min(members);
            let msgs_per_s = rate / members.max(1) as f64;
            let all_senders = (rooms * plan.senders) as f64;
            anyhow::ensure!(msgs_per_s > 0.0 && all_senders > 0.0, "--rate and --senders must be positive");
            plan.interval = Duration::from_secs_f64(all_senders / msgs_per_s);
            crisis.apply(&mut plan)?;
            (common, plan, false)
        }
        Command::Connect { common, connections, members, rooms, churn } => {
            let rooms = rooms.unwrap_or(connections.div_ceil(members.max(1))).max(1);
            let mut plan = common.plan("connect", rooms, members, connections);
            plan.measure_setup = true;
            if churn {
                plan.scenario = "connect-churn";
            }
            (common, plan, churn)
        }
        Command::Idle { common, connections, members } => {
            let plan = common.plan("idle", connections.div_ceil(members.max(1)), members, connections);
            (common, plan, false)
        }
    };

    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = cli.threads {
        runtime.worker_threads(n);
    }
    let runtime = runtime.enable_all().build()?;
    let started_unix_s = client::unix_nanos() / 1_000_000_000;
    let mut report = runtime.block_on(async {
        let dialer = client::Dialer::new(&common.urls, common.source_ips, common.step_timeout).await?;
        if churn { chat::churn(plan, dialer).await } else { chat::run(plan, dialer).await }
    })?;
    // Connections still closing must not hold the process open.
    runtime.shutdown_timeout(Duration::from_secs(1));
    report.command = command_line;
    report.started_unix_s = started_unix_s;
    if let Some(out) = &common.out {
        std::fs::write(out, serde_json::to_string_pretty(&report)?).with_context(|| format!("writing {}", out.display()))?;
    }
    print!("{}", report.markdown());
    Ok(())
}

/// The command line for the report, without the staff token's value (a
/// bearer credential has no place in a results file).
fn redacted_command_line(args: impl IntoIterator<Item = String>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut hide_next = false;
    for arg in args {
        if std::mem::take(&mut hide_next) {
            out.push("<token>".into());
        } else if arg == "--staff-token" {
            hide_next = true;
            out.push(arg);
        } else if arg.starts_with("--staff-token=") {
            out.push("--staff-token=<token>".into());
        } else {
            out.push(arg);
        }
    }
    out.join(" ")
}

/// A config file for `kindred serve --config`: load-test rooms of `capacity`,
/// and limits that let one machine's worth of load through.
fn config_toml(rooms: usize, capacity: u32, prefix: &str, limits: &[(&str, Option<usize>)]) -> String {
    let mut s = String::from(
        "# Written by `kindred-loadtest config`: rooms for load tests.\n\
         default_rules = \"Load test room: be kind.\"\n\n\
         [limits]\n\
         messages_per_10s = 1000000\n\
         flood_close_after = 1000000\n\
         max_connections_per_ip = 100000\n",
    );
    for (key, value) in limits {
        if let Some(v) = value {
            s.push_str(&format!("{key} = {v}\n"));
        }
    }
    for n in 0..rooms {
        let id = chat::room_id(prefix, n);
        s.push_str(&format!("\n[[rooms]]\nid = \"{id}\"\nname = \"Load test {n}\"\ntopic = \"load\"\ncapacity = {capacity}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_shards_parse() {
        assert_eq!(seconds("30").unwrap(), Duration::from_secs(30));
        assert_eq!(seconds("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(seconds("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(seconds("-1").is_err());
        assert_eq!(shard("1/3").unwrap(), (1, 3));
        assert!(shard("3/3").is_err());
    }

    #[test]
    fn the_staff_token_stays_out_of_the_report() {
        let args = ["kl", "rooms", "--staff-token", "eyJ.secret", "--crisis-per-s", "1", "--staff-token=eyJ.again"];
        assert_eq!(redacted_command_line(args.map(String::from)), "kl rooms --staff-token <token> --crisis-per-s 1 --staff-token=<token>");
    }

    #[test]
    fn the_config_names_the_rooms_the_scenarios_join() {
        let toml = config_toml(3, 2000, "lt", &[("history_max_messages", Some(100)), ("mailbox_frames", None)]);
        assert!(toml.contains("id = \"lt-0002\""));
        assert!(toml.contains("history_max_messages = 100"));
        assert_eq!(chat::room_id("lt", 2).as_str(), "lt-0002");
    }
}
