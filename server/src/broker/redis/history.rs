//! A room's history in its Redis stream: loading it when a room warms up,
//! filling a gap in what the subscription brought, and repairing after a
//! possible loss.

use super::*;
use kindred_protocol::MessageId;

/// One history entry: id `seq-n`, fields m (message JSON), a (account JSON), t (ms).
pub(super) fn parse_entry(id: &str, fields: &HashMap<String, String>) -> Option<Stored> {
    let seq: u64 = id.split('-').next()?.parse().ok()?;
    let mut msg: ChatMessage = serde_json::from_str(fields.get("m")?).ok()?;
    msg.seq = seq;
    let account: AccountId = serde_json::from_str(fields.get("a")?).ok()?;
    let at = instant_of(fields.get("t")?.parse().ok()?);
    Some(Stored { msg, account, at })
}

pub(super) type Entries = Vec<(String, HashMap<String, String>)>;

pub(super) fn parse_entries(rows: Entries) -> Vec<Stored> {
    rows.iter().filter_map(|(id, f)| parse_entry(id, f)).collect()
}

/// Read a room's history, position and settings in one transaction and install them.
pub(super) async fn load(s: &Arc<Shared>, room: &RoomId) -> Result<(), BrokerError> {
    let keys = Keys::of(room);
    let mut pipe = redis::pipe();
    pipe.atomic()
        .cmd("HSETNX")
        .arg(&keys.meta)
        .arg("epoch")
        .arg(crate::hub::new_epoch())
        .ignore()
        .cmd("HSETNX")
        .arg(&keys.meta)
        .arg("seq")
        .arg(0)
        .ignore()
        .cmd("HMGET")
        .arg(&keys.meta)
        .arg("epoch")
        .arg("seq")
        .cmd("XREVRANGE")
        .arg(&keys.log)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(s.limits.history_max_messages.max(1))
        .cmd("GET")
        .arg(&keys.settings)
        .cmd("HGETALL")
        .arg(&keys.reactions);
    let ((epoch, seq), mut rows, settings, reactions): ((String, u64), Entries, Option<String>, HashMap<String, String>) =
        bounded(pipe.query_async(&mut s.publisher.clone())).await?;
    rows.reverse();
    if let Some(settings) = settings.and_then(|j| serde_json::from_str(&j).ok()) {
        s.handler.on_settings(room, settings);
    }
    let gap = s.handler.on_history(room, &epoch, seq, parse_entries(rows));
    s.handler.on_counts(room, reactions.into_iter().filter_map(|(id, counts)| Some((MessageId(id), serde_json::from_str(&counts).ok()?))).collect());
    if let Some((from, to)) = gap {
        spawn_fill(s.clone(), room.clone(), from, to);
    }
    Ok(())
}

pub(super) fn spawn_fill(s: Arc<Shared>, room: RoomId, from: u64, to: u64) {
    tokio::spawn(async move {
        if let Err(e) = fill(&s, &room, from, to).await {
            tracing::warn!(room = %room, error = %e, "gap fill failed; the next repair retries");
            s.lost.store(true, Ordering::Release);
        }
    });
}

/// Deliver `from..=to` from the stored history (and anything after it that was missed).
pub(super) async fn fill(s: &Arc<Shared>, room: &RoomId, mut from: u64, mut to: u64) -> Result<(), BrokerError> {
    let keys = Keys::of(room);
    loop {
        Metrics::add(&s.metrics.redis_gap_fills, 1);
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("HGET").arg(&keys.meta).arg("epoch").cmd("XRANGE").arg(&keys.log).arg(from).arg(to);
        let (epoch, rows): (Option<String>, Entries) = bounded(pipe.query_async(&mut s.publisher.clone())).await?;
        let Some((mine, _)) = s.handler.position(room) else { return Ok(()) };
        if epoch.as_deref() != Some(mine.as_str()) {
            // The history this node holds is gone from Redis: start over.
            return reload(s, room).await;
        }
        match s.handler.on_filled(room, &mine, to, parse_entries(rows)) {
            Some((f, t)) => (from, to) = (f, t),
            None => return Ok(()),
        }
    }
}

/// Load a room's history again from scratch (arrivals meanwhile wait).
pub(super) async fn reload(s: &Arc<Shared>, room: &RoomId) -> Result<(), BrokerError> {
    s.handler.on_loading(room);
    load(s, room).await
}

/// After a possible loss: deliver whatever was stored after this node's position.
pub(super) async fn repair(s: &Arc<Shared>, room: &RoomId) -> Result<(), BrokerError> {
    let keys = Keys::of(room);
    let mut pipe = redis::pipe();
    pipe.atomic().cmd("HMGET").arg(&keys.meta).arg("epoch").arg("seq");
    let ((epoch, seq),): ((Option<String>, Option<u64>),) = bounded(pipe.query_async(&mut s.publisher.clone())).await?;
    let Some((mine, at)) = s.handler.position(room) else { return Ok(()) };
    match (epoch, seq) {
        (Some(epoch), Some(seq)) if epoch == mine => {
            if seq > at {
                fill(s, room, at + 1, seq).await?;
            }
            Ok(())
        }
        _ => reload(s, room).await,
    }
}
