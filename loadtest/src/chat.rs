//! The engine behind `rooms`, `fanout`, `idle` and the `connect` storm:
//! open every connection of this shard (join its room), then let the senders
//! send on their timers while every connection counts what it receives, and
//! measure a fixed window. Connection `k` is in room `k / members`; the first
//! `senders` members of each room send. The `connect --churn` loop is
//! separate (`churn`), because its connections do not stay. With
//! `--crisis-per-s`, some sends carry a crisis phrase, and with `--staff-token`
//! shard 0 also runs one staff connection that times their alerts (`crisis`).
//!
//! Why ~590 lines: `run` (200 of them) is one measured window whose phases
//! (connect, warm up, measure, drain, report) share the plan, the counters
//! and the server's process; the member task and the churn loop beside it
//! are the two kinds of connection that window drives.

use crate::client::{self, Dialer};
use crate::crisis;
use crate::procfs;
use crate::report::{Report, Resources};
use crate::stats::{Counts, Stats};
use futures_util::StreamExt;
use kindred_protocol::{ClientMessage, RequestId, RoomId, ServerMessage};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// What to run, resolved from the command line.
#[derive(Debug, Clone)]
pub struct Plan {
    pub scenario: &'static str,
    pub label: String,
    pub room_prefix: String,
    pub rooms: usize,
    pub members: usize,
    /// Connections in all shards together (≤ rooms × members).
    pub connections: usize,
    /// Members per room that send (the first ones).
    pub senders: usize,
    /// Time between two sends of one sender.
    pub interval: Duration,
    pub text_bytes: usize,
    /// Connections `k` with `k % sample_every == 0` record latency.
    pub sample_every: usize,
    /// Parse every `message` frame fully (to measure what that costs the generator).
    pub full_parse: bool,
    /// This process's share: connections with `k % shard.1 == shard.0`.
    pub shard: (usize, usize),
    /// Handshakes in flight at once.
    pub concurrency: usize,
    pub setup_timeout: Duration,
    pub warmup: Duration,
    pub duration: Duration,
    pub server_pids: Vec<u32>,
    pub progress: bool,
    /// `connect`: latency is the session setup time (connect → `joined`), measured from the start.
    pub measure_setup: bool,
    /// Crisis messages per second from this process's senders, in the measured window.
    pub crisis_per_s: f64,
    /// Shard 0 opens a staff connection with this token and times every alert.
    pub staff_token: Option<String>,
}

impl Plan {
    pub fn room(&self, k: usize) -> RoomId {
        room_id(&self.room_prefix, k / self.members)
    }

    fn mine(&self) -> Vec<usize> {
        (0..self.connections).filter(|k| k % self.shard.1 == self.shard.0).collect()
    }

    /// Messages per second all senders of all shards offer together.
    fn offered_msgs_per_s(&self) -> f64 {
        if self.senders == 0 || self.interval.is_zero() {
            return 0.0;
        }
        let senders: usize = (0..self.connections).filter(|k| k % self.members < self.senders).count();
        senders as f64 / self.interval.as_secs_f64()
    }
}

pub fn room_id(prefix: &str, n: usize) -> RoomId {
    RoomId(format!("{prefix}-{n:04}"))
}

/// Run the plan to the end and report.
pub async fn run(plan: Plan, dialer: Dialer) -> anyhow::Result<Report> {
    let stats = Arc::new(Stats::new(plan.crisis_per_s));
    let mine = plan.mine();
    let started = Instant::now();
    let server_start = procfs::usage_of(&plan.server_pids);
    let own_start = procfs::own();
    if plan.measure_setup {
        stats.measuring.store(true, Relaxed);
    }

    let stop = CancellationToken::new();
    let alerts = &stats.alerts;
    let with_alerts = alerts.schedule.enabled() || plan.staff_token.is_some();
    // The staff connection: on before anyone sends, and not one of `mine`
    // (it joins no room, so it neither sends nor counts deliveries).
    let staff = match &plan.staff_token {
        Some(token) if plan.shard.0 == 0 => {
            let ws = dialer.staff_session(token).await.map_err(|e| anyhow::anyhow!("the staff connection (--staff-token) failed: {e}"))?;
            let (stats, stop) = (stats.clone(), stop.clone());
            Some(tokio::spawn(async move { crisis::staff(ws, &stats.alerts, stop).await }))
        }
        _ => None,
    };
    let gate = Arc::new(Semaphore::new(plan.concurrency.max(1)));
    let (go_tx, go_rx) = watch::channel(None::<tokio::time::Instant>);
    let plan = Arc::new(plan);
    let mut tasks = JoinSet::new();
    for &k in &mine {
        let (plan, dialer, stats, stop, gate, go) = (plan.clone(), dialer.clone(), stats.clone(), stop.clone(), gate.clone(), go_rx.clone());
        tasks.spawn(async move {
            let room = plan.room(k);
            let ws = {
                // The semaphore is never closed.
                let _permit = gate.acquire().await.expect("gate open");
                if stop.is_cancelled() {
                    return;
                }
                let t0 = Instant::now();
                match dialer.session(k, &room).await {
                    Ok(ws) => {
                        if plan.measure_setup {
                            stats.latency(k, t0.elapsed().as_micros() as u64);
                        }
                        stats.joined.fetch_add(1, Relaxed);
                        ws
                    }
                    Err(e) => {
                        if stats.setup_failed.fetch_add(1, Relaxed) < 3 {
                            eprintln!("connection {k}: {e}");
                        }
                        stats.error(&e.label());
                        return;
                    }
                }
            };
            member(k, room, ws, &plan, &stats, go, stop).await;
        });
    }

    // Setup: wait until every connection joined or failed.
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + Duration::from_secs(1), Duration::from_secs(1));
    loop {
        let joined = stats.joined.load(Relaxed);
        let failed = stats.setup_failed.load(Relaxed);
        if (joined + failed) as usize >= mine.len() || started.elapsed() >= plan.setup_timeout {
            break;
        }
        tokio::select! {
            _ = tick.tick() => {
                if plan.progress {
                    eprintln!(
                        "setup {:>4.0}s  joined {joined}/{}  failed {failed}  ({:.0} sessions/s)",
                        started.elapsed().as_secs_f64(),
                        mine.len(),
                        joined as f64 / started.elapsed().as_secs_f64()
                    );
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
    let setup_s = started.elapsed().as_secs_f64();
    let joined_at_setup = stats.joined.load(Relaxed);
    if plan.measure_setup {
        stats.measuring.store(false, Relaxed);
    }
    let setup_latency = stats.total_latency();
    let server_setup_end = procfs::usage_of(&plan.server_pids);
    let own_setup_end = procfs::own();

    // Go: senders start on their timers; after the warmup the window opens.
    // Nobody waits on the watch after all tasks end, so a failed send is harmless.
    let _ = go_tx.send(Some(tokio::time::Instant::now()));
    let mut progress = Progress::new(&plan, stats.clone());
    let warm_until = Instant::now() + plan.warmup;
    while Instant::now() < warm_until {
        tokio::time::sleep(Duration::from_secs(1).min(warm_until - Instant::now())).await;
        progress.line("warmup");
    }

    // The server's alert metrics, to report the window's share of them.
    let metrics_url = dialer.metrics_url();
    let scrape_metrics = with_alerts && plan.shard.0 == 0;
    let metrics_before = if scrape_metrics { scrape_or_warn(&metrics_url).await } else { None };
    let server_before = procfs::usage_of(&plan.server_pids);
    let own_before = procfs::own();
    let c0 = stats.snapshot();
    if !plan.measure_setup {
        stats.reset_latency();
        stats.measuring.store(true, Relaxed);
    }
    alerts.schedule.open(client::unix_nanos());
    let t0 = Instant::now();
    let until = t0 + plan.duration;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_secs(1).min(until - Instant::now())).await;
        progress.line("run");
    }
    stats.measuring.store(false, Relaxed);
    alerts.schedule.close();
    let window = t0.elapsed().as_secs_f64();
    let counts = stats.snapshot() - c0;
    let server_after = procfs::usage_of(&plan.server_pids);
    let own_after = procfs::own();
    let latency = if plan.measure_setup { setup_latency } else { stats.total_latency() };

    // Alerts for the window's last crisis messages may still be on their way:
    // wait for them (up to ALERT_GRACE), then read the server's metrics.
    let alert_report = if with_alerts {
        let grace_until = Instant::now() + ALERT_GRACE;
        while staff.as_ref().is_some_and(|t| !t.is_finished()) && alerts.received.load(Relaxed) < alerts.sent.load(Relaxed) && Instant::now() < grace_until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let server_alerts = match (metrics_before, if scrape_metrics { scrape_or_warn(&metrics_url).await } else { None }) {
            (Some(before), Some(after)) => Some(after.since(&before)),
            _ => None,
        };
        Some(alerts.report(staff.is_some(), server_alerts))
    } else {
        None
    };

    stop.cancel();
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(10), drain).await.is_err() {
        tasks.abort_all();
    }
    drop(go_tx);
    if let Some(staff) = staff {
        let _ = tokio::time::timeout(Duration::from_secs(3), staff).await;
    }

    // The servers serve every shard: their CPU and memory are divided by the
    // deliveries and connections of all shards, estimated from this one's share.
    let share = mine.len() as f64 / plan.connections.max(1) as f64;
    let all_shards = |n: u64| (n as f64 / share.max(1e-9)).round() as u64;
    // A connect storm is measured over the setup; everything else over the window.
    let server = match (server_start, server_setup_end, server_before, server_after) {
        (Some(start), Some(end), _, _) if plan.measure_setup => {
            Some(Resources::measure(&plan.server_pids, start, start, end, setup_s, 0, all_shards(joined_at_setup)))
        }
        (Some(start), _, Some(before), Some(after)) => {
            Some(Resources::measure(&plan.server_pids, start, before, after, window, all_shards(counts.deliveries), all_shards(joined_at_setup)))
        }
        _ => None,
    };
    let generator = if plan.measure_setup {
        Resources::measure(&[std::process::id()], own_start, own_start, own_setup_end, setup_s, 0, 0)
    } else {
        Resources::measure(&[std::process::id()], own_start, own_before, own_after, window, counts.deliveries, 0)
    };
    let offered_msgs = plan.offered_msgs_per_s();
    Ok(Report {
        senders_per_room: plan.senders,
        connections: mine.len(),
        joined: joined_at_setup,
        dropped: stats.dropped.load(Relaxed),
        setup_s,
        sessions_per_s: joined_at_setup as f64 / setup_s.max(1e-9),
        duration_s: window,
        offered_msgs_per_s: offered_msgs,
        offered_deliveries_per_s: offered_msgs * plan.members.min(plan.connections) as f64 * share,
        sent: counts.sent,
        acked: counts.acked,
        deliveries: counts.deliveries,
        msgs_per_s: counts.acked as f64 / window.max(1e-9),
        deliveries_per_s: counts.deliveries as f64 / window.max(1e-9),
        latency_kind: if plan.measure_setup { "session_setup" } else { "end_to_end" }.into(),
        latency,
        ack_latency: stats.total_ack_latency(),
        server,
        generator,
        alerts: alert_report,
        ..base_report(&plan, &dialer, &stats)
    })
}

/// How long after the window the staff connection may still wait for alerts
/// of crisis messages sent in it (the sanity bound for one is 10 s).
const ALERT_GRACE: Duration = Duration::from_secs(10);

async fn scrape_or_warn(url: &str) -> Option<crate::report::ServerAlerts> {
    match crisis::scrape(url).await {
        Ok(m) => Some(m),
        Err(e) => {
            eprintln!("not reporting the server's alert metrics: {e:#}");
            None
        }
    }
}

/// The fields every scenario's report fills the same way.
fn base_report(plan: &Plan, dialer: &Dialer, stats: &Stats) -> Report {
    Report {
        scenario: plan.scenario.into(),
        label: plan.label.clone(),
        servers: dialer.servers(),
        shard: format!("{}/{}", plan.shard.0, plan.shard.1),
        rooms: plan.rooms,
        members_per_room: plan.members,
        setup_failed: stats.setup_failed.load(Relaxed),
        errors: stats.errors(),
        close_codes: stats.closes(),
        ..Report::default()
    }
}

/// One joined connection: count everything it receives; send on its timer if it is a sender.
async fn member(
    k: usize,
    room: RoomId,
    mut ws: client::Ws,
    plan: &Plan,
    stats: &Stats,
    mut go: watch::Receiver<Option<tokio::time::Instant>>,
    stop: CancellationToken,
) {
    let sender = k % plan.members < plan.senders && !plan.interval.is_zero();
    // The server raises no second alert for a member with one open in the room.
    let mut crisis_sent = false;
    let sampled = k % plan.sample_every.max(1) == 0;
    let mut ticker: Option<tokio::time::Interval> = None;
    let mut next_id: i64 = 100;
    // Sampled senders time each `send` to its `sent`: (request id, send time).
    let mut asked: VecDeque<(i64, u64)> = VecDeque::new();
    let mut go_open = sender;
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => {
                client::close(ws).await;
                return;
            }
            changed = go.changed(), if go_open && ticker.is_none() => {
                match (changed, *go.borrow_and_update()) {
                    (Ok(()), Some(at)) => {
                        // Spread the senders evenly over one interval (a fixed hash, not random).
                        let phase = plan.interval.mul_f64(((k as u64).wrapping_mul(2_654_435_761) % 10_007) as f64 / 10_007.0);
                        let mut t = tokio::time::interval_at(at + phase, plan.interval);
                        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                        ticker = Some(t);
                    }
                    (Ok(()), None) => {}
                    (Err(_), _) => go_open = false,
                }
            }
            _ = async { ticker.as_mut().expect("guarded by is_some").tick().await }, if ticker.is_some() => {
                next_id += 1;
                let now = client::unix_nanos();
                let crisis = !crisis_sent && stats.alerts.schedule.take(now);
                let msg = ClientMessage::Send {
                    id: Some(RequestId::Int(next_id)),
                    room: room.clone(),
                    text: if crisis { crisis::crisis_text(now, plan.text_bytes) } else { client::stamped_text(now, plan.text_bytes) },
                    reply_to: None,
                    cw: None,
                    staff: false,
                };
                if client::send(&mut ws, &msg).await.is_err() {
                    stats.dropped.fetch_add(1, Relaxed);
                    stats.close(1006);
                    return;
                }
                stats.sent.fetch_add(1, Relaxed);
                if sampled {
                    asked.push_back((next_id, now));
                }
                if crisis {
                    crisis_sent = true;
                    stats.alerts.sent.fetch_add(1, Relaxed);
                    stats.alerts.last_crisis_at.store(now, Relaxed);
                }
            }
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    if sampled && client::tag(&text) == Some("sent") {
                        on_sent(k, &text, &mut asked, stats);
                    }
                    on_text(k, &text, sampled, plan.full_parse, stats)
                }
                Some(Ok(Message::Close(frame))) => {
                    stats.dropped.fetch_add(1, Relaxed);
                    stats.close(frame.map_or(1005, |f| f.code.into()));
                    return;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    if !stop.is_cancelled() {
                        stats.dropped.fetch_add(1, Relaxed);
                        stats.close(1006);
                    }
                    return;
                }
            },
        }
    }
}

/// Time a `sent` against its `send` (answers come in request order; a
/// request refused with an `error` is dropped from the queue by the next `sent`).
fn on_sent(k: usize, text: &str, asked: &mut VecDeque<(i64, u64)>, stats: &Stats) {
    let Some(id) = client::int_id(text) else { return };
    while let Some(&(first, at)) = asked.front() {
        if first > id {
            return;
        }
        asked.pop_front();
        if first == id {
            stats.ack_latency(k, client::unix_nanos().saturating_sub(at) / 1000);
            return;
        }
    }
}

/// Count one frame, parsing only what the count needs.
fn on_text(k: usize, text: &str, sampled: bool, full_parse: bool, stats: &Stats) {
    match client::tag(text) {
        Some("message") => {
            stats.deliveries.fetch_add(1, Relaxed);
            if full_parse {
                if let Ok(ServerMessage::Message(m)) = serde_json::from_str::<ServerMessage>(text) {
                    std::hint::black_box(m);
                } else {
                    stats.error("unparsable_message");
                }
            }
            if sampled {
                if let Some(sent_at) = client::stamp_of(text) {
                    let micros = client::unix_nanos().saturating_sub(sent_at) / 1000;
                    stats.latency(k, micros);
                    if stats.measuring.load(Relaxed) {
                        stats.alerts.after_crisis(sent_at, micros);
                    }
                }
            }
        }
        Some("sent") => {
            stats.acked.fetch_add(1, Relaxed);
        }
        Some("presence") | Some("typing") => {
            stats.other_frames.fetch_add(1, Relaxed);
        }
        _ => match serde_json::from_str::<ServerMessage>(text) {
            Ok(ServerMessage::Error(e)) => stats.error(e.code.as_str()),
            Ok(ServerMessage::Message(_)) => {
                stats.deliveries.fetch_add(1, Relaxed);
            }
            Ok(_) => {
                stats.other_frames.fetch_add(1, Relaxed);
            }
            Err(_) => stats.error("unparsable_frame"),
        },
    }
}

/// The live line on stderr, once a second.
pub struct Progress {
    stats: Arc<Stats>,
    pids: Vec<u32>,
    enabled: bool,
    last: Instant,
    last_counts: Counts,
    last_server: Option<procfs::Usage>,
    started: Instant,
}

impl Progress {
    pub fn new(plan: &Plan, stats: Arc<Stats>) -> Progress {
        Progress {
            last_counts: stats.snapshot(),
            stats,
            pids: plan.server_pids.clone(),
            enabled: plan.progress,
            last: Instant::now(),
            last_server: procfs::usage_of(&plan.server_pids),
            started: Instant::now(),
        }
    }

    pub fn line(&mut self, phase: &str) {
        let now = Instant::now();
        let dt = now.duration_since(self.last).as_secs_f64().max(1e-6);
        let counts = self.stats.snapshot();
        let d = counts - self.last_counts;
        let lat = self.stats.take_interval_latency();
        let server = procfs::usage_of(&self.pids);
        let cpu = match (self.last_server, server) {
            (Some(a), Some(b)) => format!("  server cpu {:.0}% rss {} MiB", (b.cpu_s - a.cpu_s) / dt * 100.0, b.rss_kib / 1024),
            _ => String::new(),
        };
        if self.enabled {
            eprintln!(
                "{phase} {:>4.0}s  deliveries/s {:>9.0}  msgs/s {:>7.0}  p50 {:>7.2} ms  p99 {:>7.2} ms  joined {}  dropped {}  errors {}{cpu}",
                now.duration_since(self.started).as_secs_f64(),
                d.deliveries as f64 / dt,
                d.acked as f64 / dt,
                lat.p50_ms,
                lat.p99_ms,
                counts.joined,
                self.stats.dropped.load(Relaxed),
                self.stats.error_total(),
            );
        }
        self.last = now;
        self.last_counts = counts;
        self.last_server = server;
    }
}

/// `connect --churn`: `concurrency` workers each connect, `hello`, join and
/// close again, over and over, for the duration.
pub async fn churn(plan: Plan, dialer: Dialer) -> anyhow::Result<Report> {
    let stats = Arc::new(Stats::default());
    let server_before = procfs::usage_of(&plan.server_pids);
    let own_before = procfs::own();
    stats.measuring.store(true, Relaxed);
    let t0 = Instant::now();
    let until = t0 + plan.duration;
    let plan = Arc::new(plan);
    let mut tasks = JoinSet::new();
    let workers = plan.concurrency.max(1);
    for w in 0..workers {
        let (plan, dialer, stats) = (plan.clone(), dialer.clone(), stats.clone());
        tasks.spawn(async move {
            let mut k = w * plan.shard.1 + plan.shard.0;
            while Instant::now() < until {
                let room = room_id(&plan.room_prefix, (k / plan.members) % plan.rooms);
                let t = Instant::now();
                match dialer.session(k, &room).await {
                    Ok(ws) => {
                        stats.latency(k, t.elapsed().as_micros() as u64);
                        stats.joined.fetch_add(1, Relaxed);
                        client::close(ws).await;
                    }
                    Err(e) => {
                        stats.setup_failed.fetch_add(1, Relaxed);
                        stats.error(&e.label());
                        // Don't spin on a refusing server.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                k += workers * plan.shard.1;
            }
        });
    }
    let mut progress = Progress::new(&plan, stats.clone());
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_secs(1).min(until - Instant::now())).await;
        if plan.progress {
            let joined = stats.joined.load(Relaxed);
            eprintln!(
                "churn {:>4.0}s  sessions {joined}  ({:.0}/s)  failed {}  p99 setup {:.2} ms",
                t0.elapsed().as_secs_f64(),
                joined as f64 / t0.elapsed().as_secs_f64(),
                stats.setup_failed.load(Relaxed),
                stats.take_interval_latency().p99_ms,
            );
        } else {
            progress.line("churn");
        }
    }
    let window = t0.elapsed().as_secs_f64();
    let server_after = procfs::usage_of(&plan.server_pids);
    let own_after = procfs::own();
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(10), drain).await.is_err() {
        tasks.abort_all();
    }
    stats.measuring.store(false, Relaxed);
    let joined = stats.joined.load(Relaxed);
    let server = match (server_before, server_after) {
        (Some(before), Some(after)) => Some(Resources::measure(&plan.server_pids, before, before, after, window, 0, 0)),
        _ => None,
    };
    Ok(Report {
        connections: workers,
        joined,
        setup_s: window,
        sessions_per_s: joined as f64 / window,
        duration_s: window,
        latency_kind: "session_setup".into(),
        latency: stats.total_latency(),
        server,
        generator: Resources::measure(&[std::process::id()], own_before, own_before, own_after, window, 0, 0),
        ..base_report(&plan, &dialer, &stats)
    })
}
