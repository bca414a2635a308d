//! What the subscription brings (messages, room events, control documents)
//! and what this node sends (its rooms' changes, batched per room).

use super::*;

/// Apply what the subscription brings: messages, room changes, moderation state.
pub(super) async fn dispatch(s: Arc<Shared>, mut pushes: mpsc::Receiver<redis::PushInfo>, shutdown: CancellationToken) {
    loop {
        let push = tokio::select! {
            push = pushes.recv() => match push { Some(p) => p, None => return },
            () = shutdown.cancelled() => return,
        };
        match push.kind {
            PushKind::Message | PushKind::SMessage => {
                let (Some(Value::BulkString(channel)), Some(Value::BulkString(payload))) = (push.data.first(), push.data.get(1)) else {
                    continue;
                };
                let (Ok(channel), Ok(payload)) = (std::str::from_utf8(channel), std::str::from_utf8(payload)) else { continue };
                if channel == CONTROL_CHANNEL {
                    match codec::decode_control(payload) {
                        Ok(Payload::Document(doc, text)) => {
                            if let Err(e) = s.node_handler.on_document(doc, Some(text), false) {
                                tracing::error!(?doc, error = %e, "a published shared document is not valid");
                            }
                        }
                        Ok(_) | Err(_) => tracing::error!("a control payload of an unknown kind"),
                    }
                } else if let Some(room) = Keys::room_of_channel(channel) {
                    on_room_payload(&s, &room, payload);
                }
            }
            PushKind::Subscribe | PushKind::SSubscribe => {
                // Also sent when the client resubscribes after a reconnect it
                // may not have reported: repair the room, to be sure.
                let room = push.data.first().and_then(|c| match c {
                    Value::BulkString(c) => std::str::from_utf8(c).ok().and_then(Keys::room_of_channel),
                    _ => None,
                });
                if let Some(room) = room {
                    if s.is_warm(&room) {
                        let s = s.clone();
                        tokio::spawn(async move {
                            if repair(&s, &room).await.is_err() {
                                s.lost.store(true, Ordering::Release);
                            }
                        });
                    }
                }
            }
            PushKind::Disconnection => {
                tracing::warn!("lost the Redis subscription; every room is repaired once it is back");
                Metrics::add(&s.metrics.redis_reconnects, 1);
                s.ready.store(false, Ordering::Release);
            }
            _ => {}
        }
    }
}

pub(super) fn on_room_payload(s: &Arc<Shared>, room: &RoomId, payload: &str) {
    match codec::decode_room(payload) {
        Ok(Payload::Message(Published { epoch, msg, account, at_ms })) => {
            if s.handler.needs_reload(room, epoch) {
                // A history this node does not hold: Redis lost the old one. Reload.
                let (s, room) = (s.clone(), room.clone());
                tokio::spawn(async move {
                    if reload(&s, &room).await.is_err() {
                        s.lost.store(true, Ordering::Release);
                    }
                });
                return;
            }
            if let Some((from, to)) = s.handler.on_message(room, epoch, Stored { msg, account, at: instant_of(at_ms) }) {
                spawn_fill(s.clone(), room.clone(), from, to);
            }
        }
        Ok(Payload::Event { node, event }) if node != *s.node || event.for_sender_too() => s.handler.on_event(room, &Arc::from(node.as_str()), event),
        Ok(_) => {}
        Err(e) => tracing::error!(room = %room, error = %e, "a room payload could not be read"),
    }
}

/// Carry this node's room changes to Redis, batched into pipelines.
pub(super) async fn outgoing(s: Arc<Shared>, mut link: mpsc::Receiver<Outgoing>, shutdown: CancellationToken) {
    let mut batch = Vec::with_capacity(256);
    loop {
        let n = tokio::select! {
            n = link.recv_many(&mut batch, 256) => n,
            () = shutdown.cancelled() => return,
        };
        if n == 0 {
            return;
        }
        // One pipeline per room: on a Redis Cluster a pipeline must stay on one slot.
        let mut pipes: HashMap<RoomId, redis::Pipeline> = HashMap::new();
        for out in batch.drain(..) {
            match out {
                Outgoing::Event(room, event) => add_event(&s, pipes.entry(room.clone()).or_default(), &room, event),
                Outgoing::Present(room, member, account) => {
                    let keys = Keys::of(&room);
                    s.set_present(pipes.entry(room).or_default(), &keys, &member, &account);
                }
                Outgoing::Idle(room) => {
                    tokio::spawn(deactivate(s.clone(), room));
                }
            }
        }
        let sends = pipes.into_values().map(|pipe| {
            let mut conn = s.publisher.clone();
            async move { bounded(pipe.exec_async(&mut conn)).await }
        });
        if futures_util::future::join_all(sends).await.iter().any(Result::is_err) {
            tracing::warn!("room changes not carried to Redis; presence is repaired by the next sync");
            s.lost.store(true, Ordering::Release);
        }
    }
}

pub(super) fn add_event(s: &Shared, pipe: &mut redis::Pipeline, room: &RoomId, event: Event) {
    let keys = Keys::of(room);
    match &event {
        Event::Joined { member, account } => s.set_present(pipe, &keys, member, account),
        Event::Left { member_id } => {
            pipe.cmd("HDEL").arg(&keys.members).arg(s.presence_field(member_id)).ignore();
        }
        Event::Settings(settings) => {
            pipe.cmd("SET").arg(&keys.settings).arg(serde_json::to_string(settings).expect("serializes")).ignore();
        }
        Event::Deleted { message_id, seq } => {
            pipe.cmd("EVAL").arg(DELETE).arg(1).arg(&keys.log).arg(seq).arg(seq).arg("i").arg(&message_id.0).ignore();
            pipe.cmd("DEL").arg(keys.reacted(message_id)).ignore();
            pipe.cmd("HDEL").arg(&keys.reactions).arg(&message_id.0).ignore();
        }
        Event::Forget { account } => {
            let account = serde_json::to_string(account).expect("serializes");
            pipe.cmd("EVAL").arg(DELETE).arg(1).arg(&keys.log).arg("-").arg("+").arg("a").arg(account).ignore();
        }
        Event::Frame { .. } | Event::Member { .. } | Event::Hands { .. } | Event::Remove { .. } => {}
        // Published by the reaction script, never queued here.
        Event::Reactions { .. } => return,
    }
    pipe.cmd(s.publisher.publish_command()).arg(&keys.channel).arg(codec::encode_event(&s.node, event)).ignore();
}
