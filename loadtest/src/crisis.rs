//! Crisis alerts under load (`--crisis-per-s`, `--staff-token`): a few of the
//! senders' messages carry a crisis phrase, and one staff connection, joined
//! to no room, times how long each one takes to come back as an `alert`.
//!
//! - [`Schedule`] hands out crisis "credits" at the configured rate while the
//!   measured window is open; a sender whose tick finds one makes that message
//!   a crisis message (each sender at most once per run, because the server
//!   raises no second alert for a member with one open in the room).
//! - [`staff`] reads the staff connection: latency = receive time − the send
//!   stamp at the start of the alert's message text (the same clock as the
//!   ordinary end-to-end latency).
//! - Ordinary messages sent within [`AFTER_CRISIS`] of a crisis message are
//!   also timed on their own: set against the whole run's latency, they show
//!   whether storing an alert holds up the chat around it (within one run, so
//!   a busy machine's minute-to-minute swings affect both alike).
//! - [`scrape`] reads the server's own view from `/metrics`:
//!   `kindred_alerts_total` and the `kindred_alert_delivery_seconds` buckets.

use crate::client::{self, Ws};
use crate::report::{AlertReport, Bucket, ServerAlerts};
use crate::stats::{self, Percentiles};
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use kindred_protocol::ServerMessage;
use parking_lot::Mutex;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// Appended to a crisis message's stamped text; one of the server's English crisis terms.
pub const PHRASE: &str = " and honestly i want to die";

/// A crisis message: the usual stamped text (the `kl-` stamp stays first, so
/// both the room's receivers and the staff connection can read it) and [`PHRASE`].
pub fn crisis_text(nanos: u64, len: usize) -> String {
    let mut text = client::stamped_text(nanos, len);
    text.push_str(PHRASE);
    text
}

/// Ordinary messages sent this soon after a crisis message are timed apart (`after_crisis`).
pub const AFTER_CRISIS: Duration = Duration::from_millis(50);

/// Crisis credits: `per_s` a second from the moment the window opens (the
/// first one at once) until it closes.
#[derive(Debug, Default)]
pub struct Schedule {
    per_s: f64,
    /// Unix nanoseconds when the window opened; 0 while it has not.
    opened_at: AtomicU64,
    closed: AtomicBool,
    taken: AtomicU64,
}

impl Schedule {
    pub fn new(per_s: f64) -> Schedule {
        Schedule { per_s: if per_s.is_finite() { per_s.max(0.0) } else { 0.0 }, ..Schedule::default() }
    }

    pub fn enabled(&self) -> bool {
        self.per_s > 0.0
    }

    pub fn open(&self, now_nanos: u64) {
        self.opened_at.store(now_nanos.max(1), Relaxed);
    }

    pub fn opened_at(&self) -> u64 {
        self.opened_at.load(Relaxed)
    }

    pub fn close(&self) {
        self.closed.store(true, Relaxed);
    }

    /// Whether a message sent at `now_nanos` should be a crisis message; takes
    /// the credit if so. Credits due by `now`: ⌊elapsed × rate⌋ + 1.
    pub fn take(&self, now_nanos: u64) -> bool {
        let opened = self.opened_at.load(Relaxed);
        if self.per_s <= 0.0 || opened == 0 || now_nanos < opened || self.closed.load(Relaxed) {
            return false;
        }
        let due = ((now_nanos - opened) as f64 / 1e9 * self.per_s).floor() as u64 + 1;
        self.taken.fetch_update(Relaxed, Relaxed, |taken| (taken < due).then_some(taken + 1)).is_ok()
    }
}

/// What the staff connection saw, and what the senders sent.
pub struct Alerts {
    pub schedule: Schedule,
    /// Crisis messages written by this process's senders.
    pub sent: AtomicU64,
    /// This run's alerts (by `alert_id`), each timed once.
    pub received: AtomicU64,
    /// Alerts for messages stamped before the window opened (open alerts the
    /// server replays after `welcome`, or another shard's early ones): not timed.
    pub before_window: AtomicU64,
    /// The same `alert_id` again (the server may send one twice around `welcome`).
    pub duplicates: AtomicU64,
    /// Alert frames without a readable stamp or alert id.
    pub unreadable: AtomicU64,
    /// The staff connection ended before the run did.
    pub staff_dropped: AtomicBool,
    /// The send stamp of this process's latest crisis message (0: none yet).
    pub last_crisis_at: AtomicU64,
    seen: Mutex<HashSet<String>>,
    latency: Mutex<Histogram<u64>>,
    /// Ordinary deliveries of messages sent within AFTER_CRISIS after a crisis message.
    after_crisis: Mutex<Histogram<u64>>,
}

impl Alerts {
    pub fn new(per_s: f64) -> Alerts {
        Alerts {
            schedule: Schedule::new(per_s),
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            before_window: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            unreadable: AtomicU64::new(0),
            staff_dropped: AtomicBool::new(false),
            last_crisis_at: AtomicU64::new(0),
            seen: Mutex::new(HashSet::new()),
            latency: Mutex::new(stats::histogram()),
            after_crisis: Mutex::new(stats::histogram()),
        }
    }

    /// Count and time one frame the staff connection received at `now_nanos`.
    pub fn on_frame(&self, text: &str, now_nanos: u64) {
        if client::tag(text) != Some("alert") {
            return;
        }
        let (Ok(ServerMessage::Alert { alert_id, .. }), Some(stamp)) = (serde_json::from_str::<ServerMessage>(text), client::stamp_of(text)) else {
            self.unreadable.fetch_add(1, Relaxed);
            return;
        };
        if !self.seen.lock().insert(alert_id.0) {
            self.duplicates.fetch_add(1, Relaxed);
            return;
        }
        if stamp < self.schedule.opened_at() {
            self.before_window.fetch_add(1, Relaxed);
            return;
        }
        self.received.fetch_add(1, Relaxed);
        let micros = now_nanos.saturating_sub(stamp) / 1000;
        // Clamped into the histogram's bounds, so recording cannot fail.
        let _ = self.latency.lock().record(micros.clamp(1, stats::MAX_MICROS));
    }

    /// Time a delivery of an ordinary message apart if it was sent in the
    /// AFTER_CRISIS after the latest crisis message (not the crisis message itself).
    pub fn after_crisis(&self, sent_at: u64, micros: u64) {
        let crisis_at = self.last_crisis_at.load(Relaxed);
        if crisis_at != 0 && sent_at > crisis_at && sent_at - crisis_at <= AFTER_CRISIS.as_nanos() as u64 {
            // Clamped into the histogram's bounds, so recording cannot fail.
            let _ = self.after_crisis.lock().record(micros.clamp(1, stats::MAX_MICROS));
        }
    }

    pub fn report(&self, staff_connection: bool, server: Option<ServerAlerts>) -> AlertReport {
        AlertReport {
            crisis_per_s: self.schedule.per_s,
            crisis_sent: self.sent.load(Relaxed),
            staff_connection,
            alerts_received: self.received.load(Relaxed),
            alerts_before_window: self.before_window.load(Relaxed),
            alerts_duplicate: self.duplicates.load(Relaxed),
            alerts_unreadable: self.unreadable.load(Relaxed),
            staff_dropped: self.staff_dropped.load(Relaxed),
            latency: Percentiles::of(&self.latency.lock()),
            after_crisis_ms: AFTER_CRISIS.as_millis() as u64,
            after_crisis_latency: Percentiles::of(&self.after_crisis.lock()),
            server,
        }
    }
}

/// The staff connection's loop: time every alert until `stop`.
pub async fn staff(mut ws: Ws, alerts: &Alerts, stop: CancellationToken) {
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => {
                client::close(ws).await;
                return;
            }
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => alerts.on_frame(&text, client::unix_nanos()),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    if !stop.is_cancelled() {
                        eprintln!("the staff connection ended early: alerts after this are not counted");
                        alerts.staff_dropped.store(true, Relaxed);
                    }
                    return;
                }
                Some(Ok(_)) => {}
            },
        }
    }
}

/// GET the server's `/metrics` (`http://host:port/metrics`, plain HTTP/1.0)
/// and read the alert metrics from it.
pub async fn scrape(url: &str) -> anyhow::Result<ServerAlerts> {
    let rest = url.strip_prefix("http://").ok_or_else(|| anyhow::anyhow!("{url}: not http://"))?;
    let (hostport, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let request = async {
        let mut stream = tokio::net::TcpStream::connect(hostport).await?;
        // HTTP/1.0: the body is not chunked and ends when the server closes.
        stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {hostport}\r\n\r\n").as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(5), request).await.map_err(|_| anyhow::anyhow!("{url}: timed out"))??;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n").ok_or_else(|| anyhow::anyhow!("{url}: no HTTP response"))?;
    anyhow::ensure!(head.starts_with("HTTP/1.") && head.split_whitespace().nth(1) == Some("200"), "{url}: {}", head.lines().next().unwrap_or(""));
    parse_metrics(body).ok_or_else(|| anyhow::anyhow!("{url}: no kindred_alerts_total (a server without crisis alerts?)"))
}

/// The alert counter and delivery histogram from a Prometheus text exposition.
pub fn parse_metrics(text: &str) -> Option<ServerAlerts> {
    const HIST: &str = "kindred_alert_delivery_seconds";
    let mut out = ServerAlerts::default();
    let mut found = false;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else { continue };
        let value: f64 = match value.parse() {
            Ok(v) => v,
            Err(_) => continue,
        };
        if name == "kindred_alerts_total" {
            out.alerts_total = value as u64;
            found = true;
        } else if let Some(labels) = name.strip_prefix(HIST).and_then(|n| n.strip_prefix("_bucket{le=\"")) {
            let le = labels.trim_end_matches("\"}").to_owned();
            out.buckets.push(Bucket { le, count: value as u64 });
        } else if name == format!("{HIST}_count") {
            out.delivery_count = value as u64;
        } else if name == format!("{HIST}_sum") {
            out.delivery_sum_s = value;
        }
    }
    found.then(|| out.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kindred_protocol::{AlertId, AlertKind, ChatMessage, Role, Sender};

    const S: u64 = 1_000_000_000;

    #[test]
    fn credits_come_at_the_rate_only_while_the_window_is_open() {
        let s = Schedule::new(2.0);
        assert!(!s.take(5 * S), "not before the window opens");
        s.open(10 * S);
        assert!(!s.take(9 * S), "not for a tick from before the window");
        assert!(s.take(10 * S), "the first credit at once");
        assert!(!s.take(10 * S + S / 4));
        assert!(s.take(10 * S + S / 2));
        // A second later two more are due, whoever asks.
        assert!(s.take(11 * S + S / 2));
        assert!(s.take(11 * S + S / 2));
        assert!(!s.take(11 * S + S / 2));
        s.close();
        assert!(!s.take(20 * S), "none after the window closes");
        assert!(!Schedule::new(0.0).take(1), "off by default");
    }

    #[test]
    fn a_crisis_text_keeps_its_stamp_first_and_the_alert_is_timed_from_it() {
        let sent_at = client::unix_nanos();
        let text = crisis_text(sent_at, 64);
        assert!(text.starts_with(client::STAMP) && text.ends_with(PHRASE), "{text}");
        let message = ChatMessage {
            room: "lt-0001".into(),
            message_id: "m1".into(),
            seq: 7,
            from: Sender { member_id: "mem".into(), handle: "Quiet Heron 42".into(), role: Role::Member },
            text,
            ts: "2026-11-25T10:00:00.000Z".into(),
            reply_to: None,
            cw: None,
            staff: false,
            staff_seq: None,
            reactions: None,
        };
        assert_eq!(client::stamp_of(&serde_json::to_string(&ServerMessage::Message(message.clone())).unwrap()), Some(sent_at));
        let alert = |id: &str| {
            serde_json::to_string(&ServerMessage::Alert {
                room: "lt-0001".into(),
                kind: AlertKind::Crisis,
                message: message.clone(),
                alert_id: AlertId(id.into()),
                at: "2026-11-25T10:00:00.001Z".into(),
                facilitators_alerted: 1,
            })
            .unwrap()
        };
        let alerts = Alerts::new(1.0);
        alerts.schedule.open(sent_at);
        alerts.on_frame(&alert("al_1"), sent_at + 3_000_000);
        alerts.on_frame(&alert("al_1"), sent_at + 4_000_000);
        alerts.on_frame(r#"{"type":"notice","text":"kl-aaaaaaaaaaaaaaaa"}"#, sent_at);
        alerts.schedule.open(sent_at + 1);
        alerts.on_frame(&alert("al_2"), sent_at + 5_000_000);
        let r = alerts.report(true, None);
        assert_eq!((r.alerts_received, r.alerts_duplicate, r.alerts_before_window), (1, 1, 1));
        assert_eq!(r.after_crisis_latency.samples, 0);
        assert!((r.latency.p50_ms - 3.0).abs() < 0.01 && (r.latency.max_ms - 3.0).abs() < 0.01, "{:?}", r.latency);
    }

    #[test]
    fn ordinary_messages_just_after_a_crisis_message_are_timed_apart() {
        let alerts = Alerts::new(1.0);
        let ms = 1_000_000;
        alerts.after_crisis(100 * ms, 1000);
        alerts.last_crisis_at.store(100 * ms, Relaxed);
        alerts.after_crisis(100 * ms, 2000); // the crisis message itself
        alerts.after_crisis(99 * ms, 3000); // sent before it
        alerts.after_crisis(120 * ms, 4000);
        alerts.after_crisis(150 * ms, 5000);
        alerts.after_crisis(151 * ms, 6000); // too late
        let after = alerts.report(false, None).after_crisis_latency;
        assert_eq!(after.samples, 2);
        assert!((after.max_ms - 5.0).abs() < 0.01, "{after:?}");
    }

    #[test]
    fn the_servers_alert_metrics_are_read_and_the_p99_bucket_found() {
        let text = "\
# HELP kindred_alerts_total Crisis alerts raised.
# TYPE kindred_alerts_total counter
kindred_alerts_total 100
kindred_alert_delivery_seconds_bucket{le=\"0.001\"} 90
kindred_alert_delivery_seconds_bucket{le=\"0.005\"} 98
kindred_alert_delivery_seconds_bucket{le=\"0.01\"} 99
kindred_alert_delivery_seconds_bucket{le=\"0.025\"} 100
kindred_alert_delivery_seconds_bucket{le=\"+Inf\"} 100
kindred_alert_delivery_seconds_sum 0.250000
kindred_alert_delivery_seconds_count 100
kindred_errors_total{code=\"forbidden\"} 0
";
        let m = parse_metrics(text).unwrap();
        assert_eq!((m.alerts_total, m.delivery_count, m.buckets.len()), (100, 100, 5));
        assert_eq!(m.delivery_p99_le.as_deref(), Some("0.01"));
        assert!((m.delivery_mean_ms.unwrap() - 2.5).abs() < 1e-9);

        // The same server 50 alerts earlier: the run's own share.
        let before = parse_metrics(
            &text.replace(" 100\n", " 50\n").replace(" 99\n", " 49\n").replace(" 98\n", " 48\n").replace(" 90\n", " 45\n").replace("0.250000", "0.100000"),
        )
        .unwrap();
        let run = m.since(&before);
        assert_eq!((run.alerts_total, run.delivery_count), (50, 50));
        assert_eq!(run.buckets[0].count, 45);
        assert_eq!(run.delivery_p99_le.as_deref(), Some("0.005"));
        assert!((run.delivery_mean_ms.unwrap() - 3.0).abs() < 1e-9);

        assert!(parse_metrics("kindred_deliveries_total 5\n").is_none());
    }
}
