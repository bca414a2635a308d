//! Keeping the node's connections alive: heartbeats, readiness, and the
//! repair of every warm room after a possible loss.

use super::*;

/// Keep both connections alive, say whether this node is ready, heartbeat
/// its presence, and repair every warm room after a possible loss.
pub(super) async fn health(s: Arc<Shared>, lost: Arc<AtomicBool>, shutdown: CancellationToken) {
    let mut control_subscribed = false;
    let ticks_per_round = (PRESENCE_AUDIT.as_millis() / TICK.as_millis()).max(1) as u64;
    let mut tick: u64 = 0;
    let mut beat = Heartbeat::default();
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            () = shutdown.cancelled() => break,
        }
        let started = Instant::now();
        let publisher_ok = bounded(redis::cmd("PING").exec_async(&mut s.publisher.clone())).await.is_ok();
        if publisher_ok {
            s.metrics.redis_rtt_us.store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        }
        let subscriber_ok = bounded(redis::cmd("PING").exec_async(&mut s.subscriber.clone())).await.is_ok();
        if subscriber_ok && !control_subscribed {
            control_subscribed = bounded(s.subscriber.subscribe(CONTROL_CHANNEL)).await.is_ok();
        }
        let up = publisher_ok && subscriber_ok && control_subscribed;
        if !up {
            if s.ready.swap(false, Ordering::AcqRel) {
                tracing::warn!("Redis is unavailable; this node refuses messages until it is back");
                Metrics::add(&s.metrics.redis_reconnects, 1);
            }
            continue;
        }
        let was_lost = lost.swap(false, Ordering::AcqRel) | s.lost.swap(false, Ordering::AcqRel);
        let repairing = !s.ready.load(Ordering::Acquire) || was_lost;
        // Every warm room's presence is audited once per PRESENCE_AUDIT, a
        // slice of them on each tick: one pass over thousands of rooms at once
        // was a burst of round trips that queued behind (and delayed) messages.
        tick = tick.wrapping_add(1);
        let share = if repairing { Share::All } else { Share::Slice(tick % ticks_per_round, ticks_per_round) };
        match recover(&s, repairing, share, &mut beat).await {
            Ok(()) => {
                if !s.ready.swap(true, Ordering::AcqRel) {
                    tracing::info!(node = %s.node, "Redis connected; this node is ready");
                }
            }
            Err(_) => {
                s.lost.store(true, Ordering::Release);
                s.ready.store(false, Ordering::Release);
            }
        }
    }
    // Leaving: take this node's members out of every room it holds now.
    let mut sends = Vec::new();
    for room in s.handler.room_ids() {
        let mut pipe = redis::pipe();
        for (member, _) in s.handler.local_members(&room) {
            add_event(&s, &mut pipe, &room, Event::Left { member_id: member.member_id.clone() });
        }
        let mut conn = s.publisher.clone();
        sends.push(async move { bounded(pipe.exec_async(&mut conn)).await });
    }
    let _ = futures_util::future::join_all(sends).await;
    let _ = bounded(redis::cmd("ZREM").arg(NODES_KEY).arg(&*s.node).exec_async(&mut s.publisher.clone())).await;
    s.left.cancel();
}

/// Which warm rooms a health tick syncs presence for.
#[derive(Clone, Copy)]
pub(super) enum Share {
    All,
    /// Slice `k` of `n`: rooms whose id hashes to `k` modulo `n`.
    Slice(u64, u64),
}

impl Share {
    pub(super) fn takes(self, room: &RoomId) -> bool {
        match self {
            Share::All => true,
            Share::Slice(k, n) => {
                use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
                BuildHasherDefault::<DefaultHasher>::default().hash_one(room.0.as_str()) % n == k
            }
        }
    }
}

/// Presence syncs run together (their round trips share the connection's writes and reads).
pub(super) const SYNCS_IN_FLIGHT: usize = 32;

/// What the health loop remembers between ticks about heartbeats.
#[derive(Default)]
pub(super) struct Heartbeat {
    /// When this node's own heartbeat last reached Redis.
    pub(super) last: Option<Instant>,
    /// The other nodes alive at the last tick.
    pub(super) peers: HashSet<String>,
    /// Room events dropped on a full queue, as counted at the last tick.
    pub(super) dropped: u64,
    /// This node's staff scopes as last written to Redis.
    pub(super) staff: Option<String>,
}

/// Heartbeat; the members of nodes gone silent since the last tick leave
/// every room; presence for this tick's share of the warm rooms; with
/// `repairing`, also the moderation state and every warm room's history.
pub(super) async fn recover(s: &Arc<Shared>, repairing: bool, share: Share, beat: &mut Heartbeat) -> Result<(), BrokerError> {
    let mut conn = s.publisher.clone();
    let now = now_ms();
    let ttl_ms = s.presence_ttl.as_millis() as u64;
    let mut pipe = redis::pipe();
    pipe.cmd("ZADD").arg(NODES_KEY).arg(now).arg(&*s.node).ignore();
    pipe.cmd("ZREMRANGEBYSCORE").arg(NODES_KEY).arg("-inf").arg(now.saturating_sub(10 * ttl_ms)).ignore();
    pipe.cmd("ZRANGEBYSCORE").arg(NODES_KEY).arg(now.saturating_sub(ttl_ms)).arg("+inf");
    // This node's staff scopes: written when they change, and again after a
    // repair (Redis may have lost them); idle ticks write nothing.
    let scopes = serde_json::to_string(&s.node_handler.staff_scopes()).expect("scopes serialize");
    let write_scopes = repairing || beat.staff.as_deref() != Some(scopes.as_str());
    if write_scopes {
        pipe.cmd("HSET").arg(STAFF_KEY).arg(&*s.node).arg(&scopes).ignore();
    }
    pipe.cmd("HGETALL").arg(STAFF_KEY);
    let (alive, staff): (Vec<String>, HashMap<String, String>) = bounded(pipe.query_async(&mut conn)).await?;
    if write_scopes {
        beat.staff = Some(scopes);
    }
    // This node's own heartbeat lapsed (a stall, or Redis out of reach): other
    // nodes may have dropped its members. Every room announces them again.
    let lapsed = beat.last.replace(Instant::now()).is_some_and(|t| t.elapsed() > s.presence_ttl / 2);
    let alive: HashSet<String> = alive.into_iter().collect();
    let peers: HashSet<String> = alive.iter().filter(|n| **n != *s.node).cloned().collect();
    for gone in beat.peers.difference(&peers) {
        let dropped = s.handler.on_node_gone(gone);
        tracing::info!(dropped, "a node stopped heartbeating; its members left every room");
    }
    beat.peers = peers;
    follow_staff(s, &alive, staff).await?;
    *s.alive.lock() = Some(Arc::new(alive));
    if lapsed {
        tracing::warn!("this node's heartbeat lapsed; announcing its members again");
    }
    // A join or leave that never reached Redis: audit every room now, not in two minutes.
    let dropped = s.metrics.cluster_events_dropped.load(Ordering::Relaxed);
    let events_lost = std::mem::replace(&mut beat.dropped, dropped) != dropped;
    let share = if lapsed || events_lost { Share::All } else { share };
    if repairing {
        for doc in [Document::Moderation, Document::Rooms] {
            let text: Option<String> = bounded(redis::cmd("GET").arg(doc.key()).query_async(&mut conn)).await?;
            s.node_handler.on_document(doc, text.as_deref(), true).map_err(|e| {
                tracing::error!(?doc, error = %e, "a shared document in Redis is not valid");
                BrokerError::Unavailable
            })?;
        }
    }
    // The ids first: `is_warm` reads the map again, which must not happen while iterating it.
    let ids: Vec<RoomId> = s.warm.iter().map(|w| w.key().clone()).collect();
    let warm: Vec<RoomId> = ids.into_iter().filter(|id| share.takes(id) && s.is_warm(id) && s.handler.position(id).is_some()).collect();
    if repairing {
        for room in &warm {
            repair(s, room).await?;
        }
    }
    for rooms in warm.chunks(SYNCS_IN_FLIGHT) {
        let mut syncs = Vec::with_capacity(rooms.len());
        for room in rooms {
            syncs.push(presence_sync(s, room, lapsed));
        }
        for result in futures_util::future::join_all(syncs).await {
            result?;
        }
    }
    Ok(())
}
