//! The escalation webhook: every new crisis alert is POSTed, signed with
//! HMAC-SHA256, to the operator's on-call endpoint, off the send path and
//! retried with backoff. It owns the HTTP client and the retry queue; what
//! an alert is and who raises it are the session's and the alert store's
//! (in a cluster only the node that stored a new alert calls [`Escalation::raise`],
//! which is what makes it once per alert).
//!
//! Why ~760 lines: half of it is tests against a real HTTP receiver.
//!
//! How a delivery goes: `raise` puts the payload on a bounded queue and
//! returns. One dispatcher task takes it off and spawns a delivery task per
//! alert, so a slow or hanging endpoint holds up only its own alert. Each
//! attempt has a timeout (`timeout_ms`); a non-2xx answer, a timeout or a
//! refused connection is counted in `alert_webhook_failures` and retried after
//! an exponential backoff with jitter, until `retry_for_s` have passed since
//! the alert was raised; a 2xx ends it. The body is serialized once and the
//! same bytes are signed and sent on every attempt.
//!
//! What is logged: the alert_id, the attempt count and why an attempt failed
//! (an HTTP status, "timeout", "connection failed"). Never the message text,
//! the secret, or the URL beyond its host.
//!
//! Shutdown: the sender has no shutdown of its own; it stops with the Tokio
//! runtime, and retries still pending then are lost. The alert itself is
//! stored durably by the alert store and shown to staff; the webhook is a
//! best-effort extra channel, not the record.

use crate::metrics::Metrics;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use rand::Rng;
use reqwest::Url;
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

/// Alerts waiting for the dispatcher; past this `raise` drops (and counts) them.
const QUEUE: usize = 1024;
/// Deliveries in progress at once (sending or waiting to retry); past this new alerts are dropped and counted.
const MAX_PENDING: usize = 4096;
/// HTTP requests in flight at once, so a flood of alerts cannot open unbounded connections.
const MAX_IN_FLIGHT: usize = 64;
/// The shortest retry window the protocol allows (v1.1 section 2: at least 10 minutes).
const MIN_RETRY_FOR_S: u64 = 600;
/// The shortest secret accepted, in bytes.
const MIN_SECRET_BYTES: usize = 16;

/// `[safety.escalation]` in the config file.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationConfig {
    /// Where alerts are POSTed. `https://`, or `http://` to a loopback address.
    pub webhook_url: String,
    /// The HMAC-SHA256 key for `X-Kindred-Signature` (at least 16 bytes).
    pub secret: String,
    /// Whether the message text goes into the webhook body. Default false.
    #[serde(default)]
    pub include_text: bool,
    /// Delay before the first retry, in milliseconds; it doubles with each
    /// further retry (less up to half of it as jitter). Default 1000.
    #[serde(default = "default_retry_initial_ms")]
    pub retry_initial_ms: u64,
    /// The longest delay between two attempts, in milliseconds. Default 60000.
    #[serde(default = "default_retry_max_ms")]
    pub retry_max_ms: u64,
    /// How long after the alert failed attempts are still retried, in seconds;
    /// at least 600 (the protocol's 10 minutes). Default 900.
    #[serde(default = "default_retry_for_s")]
    pub retry_for_s: u64,
    /// How long one attempt may take, connecting included, in milliseconds;
    /// a slower answer counts as failed. Default 5000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_retry_initial_ms() -> u64 {
    1000
}
fn default_retry_max_ms() -> u64 {
    60_000
}
fn default_retry_for_s() -> u64 {
    900
}
fn default_timeout_ms() -> u64 {
    5000
}

/// By hand, so that printing the config never shows the secret or the URL's
/// path and query (which may carry a token).
impl fmt::Debug for EscalationConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = Url::parse(&self.webhook_url).ok().and_then(|u| u.host_str().map(str::to_owned));
        f.debug_struct("EscalationConfig")
            .field("webhook_host", &host)
            .field("secret", &"<redacted>")
            .field("include_text", &self.include_text)
            .field("retry_initial_ms", &self.retry_initial_ms)
            .field("retry_max_ms", &self.retry_max_ms)
            .field("retry_for_s", &self.retry_for_s)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

/// The webhook body (protocol v1.1 section 2).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AlertPayload {
    /// Always `"crisis"`.
    pub kind: String,
    pub alert_id: String,
    pub room: String,
    pub room_name: String,
    pub language: String,
    pub at: String,
    pub facilitators_alerted: u32,
    /// Only with `include_text = true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// The checked configuration, in the units the sender uses.
struct Settings {
    url: Url,
    secret: Vec<u8>,
    include_text: bool,
    retry_initial: Duration,
    retry_max: Duration,
    retry_for: Duration,
    timeout: Duration,
}

impl Settings {
    fn check(config: &EscalationConfig) -> anyhow::Result<Settings> {
        use anyhow::bail;
        // The parse error names what is wrong, not the URL, which may hold a token.
        let url = Url::parse(&config.webhook_url).map_err(|e| anyhow::anyhow!("[safety.escalation] webhook_url is not a valid URL: {e}"))?;
        let Some(host) = url.host_str() else {
            bail!("[safety.escalation] webhook_url has no host");
        };
        // The URL parser has normalised the host: IPv6 in brackets, IPv4 in dotted form.
        let ip = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>();
        let loopback = host.eq_ignore_ascii_case("localhost") || ip.is_ok_and(|ip| ip.is_loopback());
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            "http" => bail!("[safety.escalation] webhook_url must be https:// (http:// is allowed only to a loopback address, not to {host})"),
            other => bail!("[safety.escalation] webhook_url must be https://, not {other}://"),
        }
        if config.secret.len() < MIN_SECRET_BYTES {
            bail!("[safety.escalation] secret must be at least {MIN_SECRET_BYTES} bytes long");
        }
        if config.retry_initial_ms == 0 {
            bail!("[safety.escalation] retry_initial_ms must be above 0");
        }
        if config.retry_max_ms < config.retry_initial_ms {
            bail!("[safety.escalation] retry_max_ms must be at least retry_initial_ms");
        }
        if config.retry_for_s < MIN_RETRY_FOR_S {
            bail!("[safety.escalation] retry_for_s must be at least {MIN_RETRY_FOR_S} (alerts are retried for at least 10 minutes)");
        }
        if config.timeout_ms == 0 || config.timeout_ms > 60_000 {
            bail!("[safety.escalation] timeout_ms must be between 1 and 60000");
        }
        Ok(Settings {
            url,
            secret: config.secret.as_bytes().to_vec(),
            include_text: config.include_text,
            retry_initial: Duration::from_millis(config.retry_initial_ms),
            retry_max: Duration::from_millis(config.retry_max_ms),
            retry_for: Duration::from_secs(config.retry_for_s),
            timeout: Duration::from_millis(config.timeout_ms),
        })
    }
}

/// The webhook sender (a no-op when no webhook is configured).
pub struct Escalation {
    include_text: bool,
    /// To the dispatcher; `None` when no webhook is configured.
    queue: Option<mpsc::Sender<Queued>>,
    /// One permit per delivery in progress.
    pending: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

/// An alert on its way to the dispatcher.
struct Queued {
    alert: AlertPayload,
    /// When it was raised: the retry window counts from here.
    raised: Instant,
}

/// What the delivery tasks share.
struct Sender {
    client: reqwest::Client,
    url: Url,
    secret: Vec<u8>,
    retry_initial: Duration,
    retry_max: Duration,
    retry_for: Duration,
    in_flight: Semaphore,
    pending: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

impl Escalation {
    /// Check the configuration and start the sender; fails for a bad URL or a short secret.
    /// With a webhook configured it must be called inside the Tokio runtime.
    pub fn new(config: Option<EscalationConfig>, metrics: Arc<Metrics>) -> anyhow::Result<Escalation> {
        match config {
            None => Ok(Escalation { include_text: false, queue: None, pending: Arc::new(Semaphore::new(MAX_PENDING)), metrics }),
            Some(config) => Escalation::start(Settings::check(&config)?, metrics),
        }
    }

    fn start(settings: Settings, metrics: Arc<Metrics>) -> anyhow::Result<Escalation> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| anyhow::anyhow!("the escalation webhook sender must be started inside the Tokio runtime"))?;
        let mut client = reqwest::Client::builder()
            .timeout(settings.timeout)
            // A redirect is answered as a failure: the signed alert goes to the configured host only.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("kindred/", env!("CARGO_PKG_VERSION")));
        let loopback = settings.url.scheme() == "http";
        if loopback {
            // A loopback receiver is on this machine; an HTTP(S)_PROXY from the environment must not catch it.
            client = client.no_proxy();
        }
        let client = client.build().map_err(|e| anyhow::anyhow!("cannot build the escalation webhook's HTTP client: {e}"))?;
        let pending = Arc::new(Semaphore::new(MAX_PENDING));
        let sender = Arc::new(Sender {
            client,
            url: settings.url,
            secret: settings.secret,
            retry_initial: settings.retry_initial,
            retry_max: settings.retry_max,
            retry_for: settings.retry_for,
            in_flight: Semaphore::new(MAX_IN_FLIGHT),
            pending: pending.clone(),
            metrics: metrics.clone(),
        });
        // Not the host: it may be an address, and logs hold none.
        tracing::info!("escalation webhook on");
        let (queue, rx) = mpsc::channel(QUEUE);
        runtime.spawn(dispatch(rx, sender));
        Ok(Escalation { include_text: settings.include_text, queue: Some(queue), pending, metrics })
    }

    /// Whether the message text belongs in the payload.
    pub fn include_text(&self) -> bool {
        self.include_text
    }

    /// Queue one alert for delivery; returns at once, never waits for the network.
    /// The text is removed here unless `include_text` is on, whatever the caller put in.
    pub fn raise(&self, mut alert: AlertPayload) {
        let Some(queue) = &self.queue else { return };
        if !self.include_text {
            alert.text = None;
        }
        let alert_id = alert.alert_id.clone();
        // Either way the alert itself is still stored and shown to staff.
        match queue.try_send(Queued { alert, raised: Instant::now() }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                Metrics::add(&self.metrics.alert_webhook_failures, 1);
                tracing::warn!(alert_id = %alert_id, "escalation webhook queue full; this alert is not sent");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                Metrics::add(&self.metrics.alert_webhook_failures, 1);
                tracing::warn!(alert_id = %alert_id, "escalation webhook sender stopped (runtime shutting down); this alert is not sent");
            }
        }
    }

    /// Deliveries in progress: being sent or waiting to be retried.
    pub fn pending(&self) -> usize {
        MAX_PENDING - self.pending.available_permits()
    }
}

/// Takes alerts off the queue and starts one delivery task each, so one slow
/// endpoint answer never holds up the next alert's first attempt.
async fn dispatch(mut rx: mpsc::Receiver<Queued>, sender: Arc<Sender>) {
    while let Some(queued) = rx.recv().await {
        let Ok(permit) = sender.pending.clone().try_acquire_owned() else {
            Metrics::add(&sender.metrics.alert_webhook_failures, 1);
            tracing::warn!(alert_id = %queued.alert.alert_id, "escalation webhook: too many alerts pending; this one is not sent");
            continue;
        };
        let sender = sender.clone();
        tokio::spawn(async move {
            sender.deliver(queued).await;
            drop(permit);
        });
    }
}

impl Sender {
    /// Send one alert until it is answered with a 2xx or the retry window has passed.
    async fn deliver(&self, queued: Queued) {
        let alert_id = queued.alert.alert_id.clone();
        let body = match serde_json::to_vec(&queued.alert) {
            Ok(body) => Bytes::from(body),
            Err(_) => {
                // Not expected: the payload is strings and a number.
                Metrics::add(&self.metrics.alert_webhook_failures, 1);
                tracing::error!(alert_id = %alert_id, "escalation webhook: the alert cannot be encoded");
                return;
            }
        };
        let signature = sign(&self.secret, &body);
        let deadline = queued.raised + self.retry_for;
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let failure = {
                let _slot = self.in_flight.acquire().await.ok();
                self.attempt(body.clone(), signature.clone()).await
            };
            let Some(reason) = failure else {
                if attempt > 1 {
                    tracing::info!(alert_id = %alert_id, attempt, "escalation webhook delivered after retries");
                }
                return;
            };
            Metrics::add(&self.metrics.alert_webhook_failures, 1);
            if Instant::now() >= deadline {
                tracing::error!(alert_id = %alert_id, attempts = attempt, "escalation webhook: giving up on this alert");
                return;
            }
            tracing::warn!(alert_id = %alert_id, attempt, reason = %reason, "escalation webhook attempt failed; will retry");
            tokio::time::sleep(backoff(self.retry_initial, self.retry_max, attempt)).await;
        }
    }

    /// One POST; `None` for a 2xx, else why it failed (with nothing from the URL in it).
    async fn attempt(&self, body: Bytes, signature: HeaderValue) -> Option<String> {
        let sent = self
            .client
            .post(self.url.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header("x-kindred-signature", signature)
            .body(body)
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => None,
            Ok(response) => Some(format!("HTTP {}", response.status().as_u16())),
            Err(e) if e.is_timeout() => Some("timeout".into()),
            Err(e) if e.is_connect() => Some("connection failed".into()),
            Err(_) => Some("request failed".into()),
        }
    }
}

/// `sha256=<lowercase hex HMAC-SHA256(secret, body)>`.
fn sign(secret: &[u8], body: &[u8]) -> HeaderValue {
    // HMAC accepts a key of any length, so this never fails.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    let mut value = String::with_capacity(7 + 64);
    value.push_str("sha256=");
    for byte in mac.finalize().into_bytes() {
        use std::fmt::Write;
        let _ = write!(value, "{byte:02x}");
    }
    // Only ASCII letters, digits and '=' are in it, all valid in a header value.
    HeaderValue::from_str(&value).expect("hex and '=' make a valid header value")
}

/// The wait after failed attempt number `attempt` (1 for the first):
/// `initial` doubled per further failure, capped at `max`, less up to half as jitter
/// so that many alerts failing together do not retry in step.
fn backoff(initial: Duration, max: Duration, attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1).min(31);
    let full = initial.saturating_mul(1u32 << doublings).min(max);
    full.mul_f64(rand::rng().random_range(0.5..=1.0))
}

#[cfg(test)]
mod tests {
    //! Against a real HTTP receiver on 127.0.0.1 (axum); nothing is mocked.

    use super::*;
    use axum::Router;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use parking_lot::Mutex;
    use std::collections::VecDeque;
    use std::net::SocketAddr;
    use std::sync::atomic::Ordering;
    use tokio::net::TcpListener;

    const SECRET: &str = "0123456789abcdef-test-secret";
    /// Every wait for something to happen gives up after this.
    const PATIENCE: Duration = Duration::from_secs(10);

    /// How the receiver answers one request.
    #[derive(Clone, Copy)]
    enum Reply {
        Status(u16),
        /// Answers only after a minute: longer than any timeout here.
        Hang,
    }

    /// One request as it arrived.
    #[derive(Clone)]
    struct Seen {
        headers: HeaderMap,
        body: Bytes,
        /// The status answered, or `None` while it hangs.
        answered: Option<u16>,
        at: Instant,
    }

    #[derive(Clone, Default)]
    struct Receiver {
        seen: Arc<Mutex<Vec<Seen>>>,
        /// Answers for the next requests, in order; then 200.
        script: Arc<Mutex<VecDeque<Reply>>>,
    }

    impl Receiver {
        async fn start(script: &[Reply]) -> (Receiver, SocketAddr) {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the receiver");
            let addr = listener.local_addr().expect("receiver address");
            let receiver = Receiver::default();
            receiver.serve(listener, script);
            (receiver, addr)
        }

        fn serve(&self, listener: TcpListener, script: &[Reply]) {
            self.script.lock().extend(script.iter().copied());
            let app = Router::new().fallback(record).with_state(self.clone());
            tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
        }

        /// Waits (bounded) until `n` requests have been answered 200; returns all requests seen.
        async fn delivered(&self, n: usize) -> Vec<Seen> {
            wait_until("the webhook to be delivered", || self.seen.lock().iter().filter(|s| s.answered == Some(200)).count() >= n).await;
            self.seen.lock().clone()
        }
    }

    async fn record(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
        let reply = receiver.script.lock().pop_front().unwrap_or(Reply::Status(200));
        let answered = match reply {
            Reply::Status(code) => Some(code),
            Reply::Hang => None,
        };
        receiver.seen.lock().push(Seen { headers, body, answered, at: Instant::now() });
        match reply {
            Reply::Status(code) => StatusCode::from_u16(code).expect("a valid status in the script"),
            Reply::Hang => {
                tokio::time::sleep(Duration::from_secs(60)).await;
                StatusCode::OK
            }
        }
    }

    /// Polls `done` until it holds; panics after `PATIENCE`.
    async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn config(url: String) -> EscalationConfig {
        EscalationConfig {
            webhook_url: url,
            secret: SECRET.into(),
            include_text: false,
            retry_initial_ms: 20,
            retry_max_ms: 200,
            retry_for_s: 900,
            timeout_ms: 5000,
        }
    }

    fn url(addr: SocketAddr) -> String {
        format!("http://{addr}/hooks/kindred?token=abc")
    }

    fn alert(id: &str) -> AlertPayload {
        AlertPayload {
            kind: "crisis".into(),
            alert_id: id.into(),
            room: "r1".into(),
            room_name: "Evening group".into(),
            language: "en".into(),
            at: "2025-01-02T03:04:05Z".into(),
            facilitators_alerted: 2,
            text: Some("i want to end it all".into()),
        }
    }

    fn failures(metrics: &Metrics) -> u64 {
        metrics.alert_webhook_failures.load(Ordering::Relaxed)
    }

    fn hex_decode(hex: &str) -> Vec<u8> {
        assert_eq!(hex.len() % 2, 0, "hex of even length");
        assert!(hex.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)), "lowercase hex: {hex}");
        (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex digit")).collect()
    }

    /// The signature header verifies against the raw body, computed here independently.
    fn assert_signed(seen: &Seen) {
        let header = seen.headers.get("x-kindred-signature").expect("X-Kindred-Signature").to_str().expect("ascii");
        let hex = header.strip_prefix("sha256=").expect("sha256= prefix");
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key length");
        mac.update(&seen.body);
        mac.verify_slice(&hex_decode(hex)).expect("the signature verifies against the raw body");
    }

    #[tokio::test]
    async fn delivers_a_signed_payload_within_a_second_without_the_text() {
        let (receiver, addr) = Receiver::start(&[]).await;
        let metrics = Arc::new(Metrics::default());
        let escalation = Escalation::new(Some(config(url(addr))), metrics.clone()).expect("valid config");
        assert!(!escalation.include_text());
        let raised = Instant::now();
        escalation.raise(alert("a1"));
        let seen = receiver.delivered(1).await;
        assert_eq!(seen.len(), 1);
        let got = &seen[0];
        assert!(got.at - raised < Duration::from_secs(1), "arrived after {:?}", got.at - raised);
        assert_eq!(got.headers.get("content-type").expect("Content-Type"), "application/json");
        assert_signed(got);
        let body: serde_json::Value = serde_json::from_slice(&got.body).expect("JSON body");
        assert_eq!(
            body,
            serde_json::json!({
                "kind": "crisis",
                "alert_id": "a1",
                "room": "r1",
                "room_name": "Evening group",
                "language": "en",
                "at": "2025-01-02T03:04:05Z",
                "facilitators_alerted": 2,
            })
        );
        assert!(!String::from_utf8_lossy(&got.body).contains("end it all"), "no text in the body");
        assert_eq!(failures(&metrics), 0);
    }

    #[tokio::test]
    async fn include_text_sends_the_text() {
        let (receiver, addr) = Receiver::start(&[]).await;
        let escalation = Escalation::new(Some(EscalationConfig { include_text: true, ..config(url(addr)) }), Arc::default()).expect("valid config");
        assert!(escalation.include_text());
        escalation.raise(alert("a2"));
        let seen = receiver.delivered(1).await;
        assert_signed(&seen[0]);
        let body: serde_json::Value = serde_json::from_slice(&seen[0].body).expect("JSON body");
        assert_eq!(body["text"], "i want to end it all");
        assert_eq!(body["alert_id"], "a2");
        assert_eq!(body.as_object().expect("an object").len(), 8);
    }

    #[tokio::test]
    async fn server_errors_are_retried_until_delivered() {
        let (receiver, addr) = Receiver::start(&[Reply::Status(500), Reply::Status(500)]).await;
        let metrics = Arc::new(Metrics::default());
        let escalation = Escalation::new(Some(config(url(addr))), metrics.clone()).expect("valid config");
        escalation.raise(alert("a3"));
        let seen = receiver.delivered(1).await;
        assert_eq!(seen.iter().map(|s| s.answered).collect::<Vec<_>>(), [Some(500), Some(500), Some(200)]);
        // Every attempt carries the same bytes and the same valid signature.
        for s in &seen {
            assert_eq!(s.body, seen[0].body);
            assert_eq!(s.headers.get("x-kindred-signature"), seen[0].headers.get("x-kindred-signature"));
            assert_signed(s);
        }
        assert_eq!(failures(&metrics), 2);
        wait_until("the delivery to finish", || escalation.pending() == 0).await;
    }

    #[tokio::test]
    async fn a_timed_out_attempt_is_retried_until_delivered() {
        let (receiver, addr) = Receiver::start(&[Reply::Hang, Reply::Status(500)]).await;
        let metrics = Arc::new(Metrics::default());
        let escalation = Escalation::new(Some(EscalationConfig { timeout_ms: 200, ..config(url(addr)) }), metrics.clone()).expect("valid config");
        escalation.raise(alert("a4"));
        let seen = receiver.delivered(1).await;
        assert_eq!(seen.iter().map(|s| s.answered).collect::<Vec<_>>(), [None, Some(500), Some(200)]);
        // The hanging attempt was given (about) its 200 ms before it counted as failed.
        assert!(seen[1].at - seen[0].at >= Duration::from_millis(150), "retried after {:?}", seen[1].at - seen[0].at);
        assert_eq!(failures(&metrics), 2);
    }

    #[tokio::test]
    async fn a_receiver_that_is_down_at_first_still_gets_the_alert() {
        // Take a free port, then leave nothing listening on it.
        let addr = TcpListener::bind("127.0.0.1:0").await.expect("bind").local_addr().expect("address");
        let metrics = Arc::new(Metrics::default());
        let escalation = Escalation::new(Some(config(url(addr))), metrics.clone()).expect("valid config");
        escalation.raise(alert("a5"));
        wait_until("a refused attempt", || failures(&metrics) >= 1).await;
        let receiver = Receiver::default();
        receiver.serve(TcpListener::bind(addr).await.expect("rebind the same port"), &[]);
        let seen = receiver.delivered(1).await;
        assert_signed(&seen[0]);
        let body: serde_json::Value = serde_json::from_slice(&seen[0].body).expect("JSON body");
        assert_eq!(body["alert_id"], "a5");
        assert!(failures(&metrics) >= 1);
    }

    #[tokio::test]
    async fn a_hanging_alert_does_not_delay_the_next_one() {
        // The first request hangs for a minute (within the 5 s timeout); the second alert must not wait for it.
        let (receiver, addr) = Receiver::start(&[Reply::Hang]).await;
        let escalation = Escalation::new(Some(config(url(addr))), Arc::default()).expect("valid config");
        escalation.raise(alert("slow"));
        wait_until("the first request", || !receiver.seen.lock().is_empty()).await;
        let raised = Instant::now();
        escalation.raise(alert("next"));
        let seen = receiver.delivered(1).await;
        let next = seen.iter().find(|s| s.answered == Some(200)).expect("the second alert");
        assert!(String::from_utf8_lossy(&next.body).contains("\"next\""));
        assert!(next.at - raised < Duration::from_secs(1), "the second alert took {:?}", next.at - raised);
    }

    #[tokio::test]
    async fn raise_returns_at_once_while_the_endpoint_hangs() {
        let (receiver, addr) = Receiver::start(&[Reply::Hang; 20]).await;
        let escalation = Escalation::new(Some(config(url(addr))), Arc::default()).expect("valid config");
        escalation.raise(alert("first"));
        wait_until("the endpoint to be hanging", || !receiver.seen.lock().is_empty()).await;
        for i in 0..10 {
            let started = std::time::Instant::now();
            escalation.raise(alert(&format!("more-{i}")));
            let took = started.elapsed();
            assert!(took < Duration::from_millis(50), "raise took {took:?}");
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_the_overflow() {
        // On this single-threaded runtime the dispatcher cannot run until the test yields,
        // so the queue holds exactly QUEUE alerts.
        let metrics = Arc::new(Metrics::default());
        let escalation = Escalation::new(Some(config("http://127.0.0.1:9/".into())), metrics.clone()).expect("valid config");
        for i in 0..QUEUE + 3 {
            escalation.raise(alert(&format!("q{i}")));
        }
        assert_eq!(failures(&metrics), 3);
    }

    #[tokio::test]
    async fn gives_up_after_the_retry_window() {
        let (receiver, addr) = Receiver::start(&[Reply::Status(503); 1000]).await;
        let metrics = Arc::new(Metrics::default());
        // The window is shortened below the configurable minimum through the internal settings.
        let mut settings = Settings::check(&config(url(addr))).expect("valid config");
        settings.retry_for = Duration::from_millis(300);
        let escalation = Escalation::start(settings, metrics.clone()).expect("started");
        let raised = Instant::now();
        escalation.raise(alert("a6"));
        wait_until("the first attempt", || escalation.pending() == 1).await;
        wait_until("the sender to give up", || escalation.pending() == 0).await;
        assert!(raised.elapsed() >= Duration::from_millis(300), "kept trying for the whole window");
        let attempts = receiver.seen.lock().len();
        assert!(attempts >= 2, "retried before giving up ({attempts} attempts)");
        assert_eq!(failures(&metrics), attempts as u64);
    }

    #[tokio::test]
    async fn no_config_is_a_no_op() {
        let metrics = Arc::new(Metrics::default());
        let escalation = Escalation::new(None, metrics.clone()).expect("no webhook is fine");
        assert!(!escalation.include_text());
        escalation.raise(alert("a7"));
        assert_eq!(escalation.pending(), 0);
        assert_eq!(failures(&metrics), 0);
    }

    #[tokio::test]
    async fn config_validation() {
        let check = |config: EscalationConfig| Escalation::new(Some(config), Arc::default()).err().map(|e| e.to_string());
        let refused = |url: &str| check(config(url.into())).unwrap_or_else(|| panic!("{url} should be refused"));
        let err = refused("http://oncall.example.org/kindred?token=hunter2");
        assert!(err.contains("https"), "{err}");
        assert!(!err.contains("hunter2"), "no query string in errors: {err}");
        refused("http://10.0.0.1/kindred");
        refused("http://localhost.example.org/kindred");
        refused("ftp://127.0.0.1/kindred");
        refused("not a url");
        refused("https://");
        refused("");
        let err =
            check(EscalationConfig { secret: "fifteen bytes!!".into(), ..config("https://oncall.example.org/".into()) }).expect("a 15-byte secret is refused");
        assert!(err.contains("16 bytes"), "{err}");
        assert!(!err.contains("fifteen"), "the secret is not echoed: {err}");
        assert!(check(EscalationConfig { retry_for_s: 599, ..config("https://oncall.example.org/".into()) }).is_some());
        assert!(check(EscalationConfig { timeout_ms: 0, ..config("https://oncall.example.org/".into()) }).is_some());
        assert!(check(EscalationConfig { retry_initial_ms: 0, ..config("https://oncall.example.org/".into()) }).is_some());
        assert!(check(EscalationConfig { retry_max_ms: 10, ..config("https://oncall.example.org/".into()) }).is_some());
        for ok in [
            "http://127.0.0.1/kindred",
            "http://127.0.0.1:8080/kindred?token=x",
            "http://127.5.6.7/",
            "http://localhost:9000/",
            "http://[::1]:9000/",
            "https://oncall.example.org/kindred",
        ] {
            assert_eq!(check(config(ok.into())), None, "{ok} should be accepted");
        }
        let exact16 = EscalationConfig { secret: "sixteen bytes!!!".into(), ..config("https://oncall.example.org/".into()) };
        assert_eq!(check(exact16), None);
    }

    #[test]
    fn a_webhook_needs_the_runtime() {
        let err = Escalation::new(Some(config("https://oncall.example.org/".into())), Arc::default()).err().expect("no runtime here");
        assert!(err.to_string().contains("Tokio runtime"), "{err}");
    }

    #[test]
    fn config_reads_with_defaults_and_refuses_unknown_fields() {
        let config: EscalationConfig = toml::from_str("webhook_url = \"https://oncall.example.org/kindred\"\nsecret = \"0123456789abcdef\"\n").expect("parses");
        assert!(!config.include_text);
        assert_eq!((config.retry_initial_ms, config.retry_max_ms, config.retry_for_s, config.timeout_ms), (1000, 60_000, 900, 5000));
        assert!(toml::from_str::<EscalationConfig>("webhook_url = \"https://x.org/\"\nsecret = \"0123456789abcdef\"\nretries = 3\n").is_err());
    }

    #[test]
    fn debug_hides_the_secret_and_the_query() {
        let shown = format!("{:?}", config("https://oncall.example.org/hook?token=hunter2".into()));
        assert!(shown.contains("oncall.example.org"), "{shown}");
        assert!(!shown.contains(SECRET) && !shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let (initial, max) = (Duration::from_secs(1), Duration::from_secs(60));
        for (attempt, full) in [(1, 1), (2, 2), (3, 4), (6, 32), (7, 60), (40, 60), (u32::MAX, 60)] {
            for _ in 0..50 {
                let wait = backoff(initial, max, attempt);
                let full = Duration::from_secs(full);
                assert!(wait >= full / 2 && wait <= full, "attempt {attempt}: {wait:?} not within [{:?}, {full:?}]", full / 2);
            }
        }
    }

    #[test]
    fn signature_is_lowercase_hex_hmac() {
        // RFC 4231 test case 2.
        let value = sign(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(value, "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }
}
