//! The crisis pathway on a connection: a member's message that matched the
//! crisis terms becomes a stored alert (and an escalation webhook), and a
//! facilitator in scope resolves one. Delivery to the people on duty is
//! `alerts::OnDuty`'s; storage is the moderation store's.

use super::{Session, Step};
use crate::App;
use crate::alerts::{Resolution, StoredAlert};
use crate::escalation::AlertPayload;
use crate::metrics::Metrics;
use crate::rooms::{RoomDef, rfc3339};
use crate::texts::{f, t};
use chrono::Utc;
use kindred_protocol::{AlertId, ChatMessage, ErrorBody, ErrorCode, RequestId, RoomId, ServerMessage};
use std::sync::Arc;

/// The longest note a facilitator may leave when resolving an alert.
const MAX_NOTE_CHARS: usize = 500;

/// Store an alert for `msg` (unless its author has one open in the room)
/// and tell whoever is on duty; how many staff connections know of it.
/// Never fails the send: with the store out of reach, this node's staff are
/// still told at once, and the failure is logged.
pub(super) async fn raise_alert(app: Arc<App>, def: Arc<RoomDef>, msg: ChatMessage) -> u32 {
    let alerted = app.on_duty.count(&def.id);
    let alert = StoredAlert {
        alert_id: AlertId(format!("al_{:016x}", rand::random::<u64>())),
        room: def.id.clone(),
        at: rfc3339(Utc::now()),
        message: msg,
        facilitators_alerted: alerted,
        resolved: None,
    };
    match app.moderation.raise_alert(alert.clone()).await {
        Ok((open, true)) => {
            Metrics::add(&app.metrics.alerts, 1);
            app.escalation.raise(AlertPayload {
                kind: "crisis".into(),
                alert_id: open.alert_id.0.clone(),
                room: def.id.0.clone(),
                room_name: def.name.clone(),
                language: def.language.clone(),
                at: open.at.clone(),
                facilitators_alerted: open.facilitators_alerted,
                text: app.escalation.include_text().then(|| open.message.text.clone()),
            });
        }
        // Already open for this member here: the people on duty have it.
        Ok((_, false)) => {}
        Err(e) => {
            tracing::error!(error = %e, room = %def.id, "a crisis alert could not be stored; telling this node's staff only");
            Metrics::add(&app.metrics.alerts, 1);
            app.on_duty.deliver(&crate::alerts::AlertChanges { raised: vec![alert], resolved: Vec::new() });
        }
    }
    alerted
}

impl Session {
    pub(super) async fn resolve_alert(&mut self, id: Option<RequestId>, room: RoomId, alert_id: AlertId, note: Option<String>) -> Step {
        if !self.may_moderate(&room) {
            let body = ErrorBody::new(ErrorCode::Forbidden, t("alerts-forbidden"));
            return self.error(body.with_id(id)).await;
        }
        if let Err(step) = self.throttle_action(&id).await {
            return step;
        }
        if note.as_ref().is_some_and(|n| n.chars().count() > MAX_NOTE_CHARS) {
            let body = ErrorBody::new(ErrorCode::BadRequest, f("note-too-long", &[("max", &MAX_NOTE_CHARS)]));
            return self.error(body.with_id(id)).await;
        }
        let resolution = Resolution { by: self.handle.clone(), at: rfc3339(Utc::now()), node: self.app.on_duty.node().to_owned(), conn: self.conn.0 };
        match self.app.moderation.resolve_alert(&room, &alert_id, resolution).await {
            Ok(Some(_)) => {
                self.audit("resolve_alert", Some(&room), Some(alert_id.0.clone()), note, None).await;
                let by = self.handle.clone();
                self.reply(&ServerMessage::AlertResolved { id, room, alert_id, by }).await
            }
            Ok(None) => self.error(ErrorBody::new(ErrorCode::NotFound, t("no-open-alert")).with_id(id)).await,
            Err(e) => {
                tracing::warn!(error = %e, "an alert resolution was not saved");
                self.error(ErrorBody::new(e.code(), t("not-saved")).with_id(id)).await
            }
        }
    }
}
