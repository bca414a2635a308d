//! The admin HTTP API under `/api`, for admins with a bearer JWT: rooms
//! (create, update — a rules change bumps the version so members accept
//! again — and close), open reports, the audit log, and system notices.
//! Rooms made or changed here are saved in the data dir and outlive a restart.

use crate::App;
use crate::frame::encode;
use crate::hub::Audience;
use crate::moderation::AuditEntry;
use crate::rooms::{RoomDef, RoomSpec, RoomsFile, rfc3339};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use kindred_protocol::{ErrorCode, Notice, NoticeKind, Role, RoomId, ServerMessage};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub(crate) fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/api/rooms", get(list_rooms).post(create_room))
        .route("/api/rooms/{id}", get(get_room).patch(update_room).delete(close_room))
        .route("/api/rooms/{id}/notice", post(room_notice))
        .route("/api/reports", get(reports))
        .route("/api/audit", get(audit))
}

/// An API error: the same `{type: "error", code, message}` shape as the WebSocket.
pub(crate) struct ApiError(StatusCode, ErrorCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = encode(&ServerMessage::error(None, self.1, self.2));
        (self.0, [(header::CONTENT_TYPE, "application/json")], body.as_str().to_owned()).into_response()
    }
}

fn bad_request(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, msg.into())
}

fn not_found(id: &str) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, ErrorCode::NotFound, format!("There is no room called '{id}'."))
}

/// The admin's token `sub`, or why the request is refused.
fn admin(app: &App, headers: &HeaderMap) -> Result<String, ApiError> {
    let unauthorized = |m: &str| ApiError(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, m.into());
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| unauthorized("Send an admin token as 'Authorization: Bearer <token>'."))?;
    let identity = app.auth.verify(token.trim()).map_err(|e| unauthorized(&e.to_string()))?;
    // A member's session token is no admin credential at all: 401, like a forged one.
    if identity.role == Role::Member {
        return Err(unauthorized("This API takes an admin token, not a member's session token."));
    }
    if identity.role != Role::Admin || app.moderation.is_forgotten(&identity.account) {
        return Err(ApiError(StatusCode::FORBIDDEN, ErrorCode::Forbidden, "Only admins can use this API.".into()));
    }
    Ok(identity.account.0)
}

async fn record(app: &App, by: &str, action: &str, room: Option<&RoomId>, detail: Option<serde_json::Value>) {
    let entry = AuditEntry { at: rfc3339(Utc::now()), by: by.into(), action: action.into(), room: room.cloned(), target: None, reason: None, detail };
    if let Err(e) = app.moderation.audit(entry).await {
        tracing::error!(error = %e, action, "audit log write failed");
    }
}

const CLOSED_NOTE: &str = "This room has closed. Thank you for being here.";

/// Rooms made or changed through the API, and rooms closed through it: a
/// file in the data dir on one node, a shared document in a cluster
/// (`store::Document::Rooms`).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(crate) struct SavedRooms {
    #[serde(default)]
    pub rooms: Vec<RoomSpec>,
    #[serde(default)]
    pub closed: Vec<RoomId>,
}

impl SavedRooms {
    /// Apply the saved changes to the configured directory.
    pub(crate) fn apply(self, defs: &mut Vec<RoomDef>) -> anyhow::Result<()> {
        defs.retain(|d| !self.closed.contains(&d.id));
        for spec in self.rooms {
            let def = spec.into_def(&RoomsFile::builtin_rules())?;
            defs.retain(|d| d.id != def.id);
            defs.push(def);
        }
        Ok(())
    }

    /// Make `hub` hold the configured rooms (`base`) with these changes
    /// applied: rooms added, changed (only when they differ) and closed.
    /// Cluster nodes call it with every published rooms document.
    pub(crate) fn reconcile(self, hub: &crate::hub::Hub, base: &[RoomDef]) {
        let mut defs = base.to_vec();
        if let Err(e) = self.apply(&mut defs) {
            tracing::error!(error = %e, "the shared rooms document is not valid; rooms left as they are");
            return;
        }
        let wanted: std::collections::HashSet<RoomId> = defs.iter().map(|d| d.id.clone()).collect();
        let spec_text = |def: &RoomDef| serde_json::to_string(&def.spec()).expect("specs serialize");
        for def in defs {
            match hub.room(&def.id) {
                Some(room) if spec_text(&room.def()) != spec_text(&def) => room.set_def(def),
                Some(_) => {}
                None => {
                    hub.add_room(def);
                }
            }
        }
        for room in hub.rooms() {
            if !wanted.contains(&room.id()) {
                hub.remove_room(&room.id(), CLOSED_NOTE);
            }
        }
    }

    /// Store a change; in a cluster every node applies it when it hears the new version.
    async fn change(app: &App, f: impl Fn(&mut SavedRooms)) -> Result<(), ApiError> {
        app.saved_rooms.update(f).await.map_err(|e| {
            let status = match e.code() {
                ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            ApiError(status, e.code(), e.to_string())
        })?;
        Ok(())
    }
}

async fn list_rooms(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response, ApiError> {
    admin(&app, &headers)?;
    let specs: Vec<RoomSpec> = app.hub.rooms().iter().map(|r| r.def().spec()).collect();
    Ok(Json(serde_json::json!({ "rooms": app.hub.summaries(), "specs": specs })).into_response())
}

async fn get_room(State(app): State<Arc<App>>, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, ApiError> {
    admin(&app, &headers)?;
    let room = app.hub.room(&RoomId(id.clone())).ok_or_else(|| not_found(&id))?;
    Ok(Json(serde_json::json!({ "room": room.summary(), "spec": room.def().spec() })).into_response())
}

async fn create_room(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Result<Json<RoomSpec>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let by = admin(&app, &headers)?;
    let Json(spec) = body.map_err(|e| bad_request(e.body_text()))?;
    let def = spec.clone().into_def(&RoomsFile::builtin_rules()).map_err(|e| bad_request(format!("{e:#}")))?;
    let id = def.id.clone();
    let spec = def.spec();
    if !app.hub.add_room(def) {
        return Err(ApiError(StatusCode::CONFLICT, ErrorCode::BadRequest, format!("A room called '{id}' already exists.")));
    }
    SavedRooms::change(&app, |saved| {
        saved.closed.retain(|c| c != &id);
        saved.rooms.retain(|r| r.id != id.0);
        saved.rooms.push(spec.clone());
    })
    .await?;
    record(&app, &by, "create_room", Some(&id), None).await;
    let summary = app.hub.room(&id).map(|r| r.summary());
    Ok((StatusCode::CREATED, Json(serde_json::json!({ "room": summary }))).into_response())
}

/// Fields of a room an admin may change; absent fields stay as they are.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RoomPatch {
    name: Option<String>,
    topic: Option<String>,
    description: Option<String>,
    tags: Option<Vec<String>>,
    language: Option<String>,
    capacity: Option<u32>,
    /// New ground rules: the version goes up and members accept them again.
    rules: Option<String>,
    history_minutes: Option<u32>,
    requires_facilitator: Option<bool>,
    /// A new schedule; `null` makes the room always open.
    #[serde(default, with = "double_option")]
    schedule: Option<Option<crate::rooms::schedule::ScheduleSpec>>,
}

mod double_option {
    use serde::{Deserialize, Deserializer};
    pub(super) fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

async fn update_room(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<RoomPatch>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let by = admin(&app, &headers)?;
    let Json(patch) = body.map_err(|e| bad_request(e.body_text()))?;
    let room = app.hub.room(&RoomId(id.clone())).ok_or_else(|| not_found(&id))?;
    let mut spec = room.def().spec();
    let rules_changed = patch.rules.as_ref().is_some_and(|r| Some(r) != spec.rules.as_ref());
    macro_rules! set {
        ($($field:ident),*) => { $(if let Some(v) = patch.$field { spec.$field = v; })* };
    }
    set!(name, topic, description, tags, language, capacity, requires_facilitator);
    if let Some(h) = patch.history_minutes {
        spec.history_minutes = Some(h);
    }
    if let Some(schedule) = patch.schedule {
        spec.schedule = schedule;
    }
    if rules_changed {
        spec.rules = patch.rules;
        spec.rules_version += 1;
    }
    let def = spec.into_def(&RoomsFile::builtin_rules()).map_err(|e| bad_request(format!("{e:#}")))?;
    let spec = def.spec();
    room.set_def(def);
    SavedRooms::change(&app, |saved| {
        saved.rooms.retain(|r| r.id != id);
        saved.rooms.push(spec.clone());
    })
    .await?;
    record(&app, &by, "update_room", Some(&room.id()), Some(serde_json::json!({ "rules_version": spec.rules_version }))).await;
    Ok(Json(serde_json::json!({ "room": room.summary() })).into_response())
}

async fn close_room(State(app): State<Arc<App>>, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, ApiError> {
    let by = admin(&app, &headers)?;
    let room_id = RoomId(id.clone());
    if !app.hub.remove_room(&room_id, CLOSED_NOTE) {
        return Err(not_found(&id));
    }
    SavedRooms::change(&app, |saved| {
        saved.rooms.retain(|r| r.id != id);
        if !saved.closed.contains(&room_id) {
            saved.closed.push(room_id.clone());
        }
    })
    .await?;
    record(&app, &by, "close_room", Some(&room_id), None).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
struct NoticeBody {
    text: String,
}

async fn room_notice(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<NoticeBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let by = admin(&app, &headers)?;
    let Json(body) = body.map_err(|e| bad_request(e.body_text()))?;
    let text = body.text.trim().to_owned();
    if text.is_empty() || text.chars().count() > 1000 {
        return Err(bad_request("A notice needs 1 to 1000 characters."));
    }
    let room = app.hub.room(&RoomId(id.clone())).ok_or_else(|| not_found(&id))?;
    let notice = ServerMessage::Notice(Notice { room: Some(room.id()), kind: NoticeKind::System, text, resources: None, facilitators_alerted: None });
    room.broadcast(&encode(&notice), Audience::All);
    record(&app, &by, "notice", Some(&room.id()), None).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn reports(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response, ApiError> {
    admin(&app, &headers)?;
    let reports: Vec<serde_json::Value> =
        app.moderation.open_reports(None).into_iter().map(|(room, report)| serde_json::json!({ "room": room, "report": report })).collect();
    Ok(Json(serde_json::json!({ "reports": reports })).into_response())
}

#[derive(Deserialize)]
struct AuditQuery {
    limit: Option<usize>,
}

async fn audit(State(app): State<Arc<App>>, headers: HeaderMap, Query(q): Query<AuditQuery>) -> Result<Response, ApiError> {
    admin(&app, &headers)?;
    let entries =
        app.moderation.audit_log(q.limit.unwrap_or(100).min(10_000)).await.map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.code(), e.to_string()))?;
    Ok(Json(serde_json::json!({ "entries": entries })).into_response())
}
