//! Several nodes sharing rooms through a real `redis-server` (started here on
//! an ephemeral port, with append-only persistence, and killed to test
//! faults): one order everywhere, presence and moderation across nodes, a
//! killed node's members resuming on another, and no acknowledged message
//! lost when Redis itself dies.

use crate::common::redis_server::*;
use crate::common::*;
use futures_util::future::join_all;
use kindred_protocol::{ChatMessage, ClientMessage, ErrorCode, ModerationAction, Position, Role, RoomId, ServerMessage};
use kindred_server::config::Config;
use std::process::Command;
use std::time::{Duration, Instant};

const ROOM: &str = "grief";

/// Redis, two nodes, and Ann (on a) and Bo (on b) in the room.
async fn two_nodes() -> (Redis, TestServer, TestServer, TestClient, TestClient) {
    let redis = Redis::start();
    let a = node(&redis, "a").await;
    let b = node(&redis, "b").await;
    let (ann, _) = a.member_in(ROOM, Some("Ann")).await;
    let (bo, _) = b.member_in(ROOM, Some("Bo")).await;
    (redis, a, b, ann, bo)
}

/// Redis, a node in its own process (to be killed) with its data dir, and a survivor.
async fn doomed_and_survivor() -> (Redis, TempDir, NodeProcess, TestServer) {
    let redis = Redis::start();
    let data = TempDir::new();
    let doomed = NodeProcess::start(&redis, "doomed", &data);
    doomed.wait_ready().await;
    let survivor = node(&redis, "survivor").await;
    (redis, data, doomed, survivor)
}

/// Send without waiting; the reply is collected later.
async fn send_text(c: &mut TestClient, text: &str) {
    let mut frame = chat(ROOM, text);
    frame.set_id(Some(c.next_id()));
    c.send(&frame).await;
}

#[tokio::test]
async fn three_nodes_share_a_room_in_one_order() {
    let redis = Redis::start();
    let nodes = [node(&redis, "a").await, node(&redis, "b").await, node(&redis, "c").await];
    let (mut ann, _) = nodes[0].member_in(ROOM, Some("Ann")).await;
    let (mut bo, _) = nodes[1].member_in(ROOM, Some("Bo")).await;
    // Presence crosses nodes: the third member sees the other two in `joined`.
    let (mut cy, welcome) = nodes[2].member(Some("Cy")).await;
    let _ = welcome;
    let joined = cy.join(ROOM).await;
    let ServerMessage::Joined { members, .. } = &joined else { panic!() };
    let mut handles: Vec<&str> = members.iter().map(|m| m.handle.as_str()).collect();
    handles.sort();
    assert_eq!(handles, ["Ann", "Bo", "Cy"]);
    ann.expect("Cy's presence on node a", |m| matches!(m, ServerMessage::Presence { joined: Some(j), member_count: 3, .. } if j.handle == "Cy")).await;

    // Typing on one node reaches the others.
    cy.send(&ClientMessage::Typing { id: None, room: RoomId::from(ROOM) }).await;
    bo.expect("typing from node c", |m| matches!(m, ServerMessage::Typing { .. })).await;

    // Everyone sends at once; every node must deliver one and the same order.
    const EACH: usize = 25;
    let mut clients = [ann, bo, cy];
    join_all(clients.iter_mut().enumerate().map(|(i, c)| async move {
        for n in 0..EACH {
            send_text(c, &format!("node {i} message {n}")).await;
        }
    }))
    .await;
    let seen: Vec<Vec<ChatMessage>> = join_all(clients.iter_mut().map(|c| c.messages(3 * EACH))).await;
    assert_contiguous(&seen[0]);
    assert_eq!(seqs_and_ids(&seen[0]), seqs_and_ids(&seen[1]), "nodes a and b disagree on the order");
    assert_eq!(seqs_and_ids(&seen[0]), seqs_and_ids(&seen[2]), "nodes a and c disagree on the order");

    // A newcomer on any node gets that same history from Redis.
    let (mut late, _) = nodes[1].member(Some("Dee")).await;
    let joined = late.join(ROOM).await;
    let (_, history, _, seq, _) = joined_parts(&joined);
    assert_eq!(seq, seen[0].last().unwrap().seq);
    assert_eq!(seqs_and_ids(&history[history.len() - 50..]), seqs_and_ids(&seen[0][seen[0].len() - 50..]));
}

#[tokio::test]
async fn moderation_on_one_node_is_enforced_on_another() {
    let redis = Redis::start();
    let a = node(&redis, "a").await;
    let b = node(&redis, "b").await;
    let c = node(&redis, "c").await;
    let mut sam = a.staff(Role::Facilitator, None, ROOM).await;
    let (mut mo, welcome) = b.member(Some("Mo")).await;
    mo.join(ROOM).await;
    let mo_token = token_of(&welcome);
    let (mut watcher, _) = c.member_in(ROOM, Some("Wren")).await;
    let mo_id = match sam.expect("Mo's presence", |m| matches!(m, ServerMessage::Presence { joined: Some(j), .. } if j.handle == "Mo")).await {
        ServerMessage::Presence { joined: Some(j), .. } => j.member_id,
        _ => unreachable!(),
    };

    // Delete on node a: gone on node c, and from the history node b serves.
    let (kept_id, _) = mo.say(ROOM, "a message that stays").await;
    let (message_id, _) = mo.say(ROOM, "a message to delete").await;
    // (Node a can delete only what it has received: wait for that one, not just the first.)
    sam.expect("the message to delete on node a", |m| matches!(m, ServerMessage::Message(msg) if msg.message_id.0 == message_id)).await;
    let reply = sam.moderate(ROOM, ModerationAction::DeleteMessage { message_id: kindred_protocol::MessageId(message_id.clone()), reason: None }).await;
    assert!(matches!(reply, ServerMessage::Moderated { .. }), "{reply:?}");
    watcher.expect("message_deleted on node c", |m| matches!(m, ServerMessage::MessageDeleted { message_id: id, .. } if id.0 == message_id)).await;
    // (Once Mo has seen it too, node b has applied the delete.)
    mo.expect("message_deleted on node b", |m| matches!(m, ServerMessage::MessageDeleted { message_id: id, .. } if id.0 == message_id)).await;
    let (mut fresh, _) = b.member(Some("Fay")).await;
    let joined = fresh.join(ROOM).await;
    assert!(joined_parts(&joined).1.iter().all(|m| m.message_id.0 != message_id), "deleted message still in history");
    // A node with nobody in the room yet loads its history from Redis: the message is gone there too.
    let cold = node(&redis, "d").await;
    let (mut newcomer, _) = cold.member(Some("Gus")).await;
    let history = joined_parts(&newcomer.join(ROOM).await).1.to_vec();
    assert!(history.iter().any(|m| m.message_id.0 == kept_id), "the room's history is loaded from Redis");
    assert!(history.iter().all(|m| m.message_id.0 != message_id), "deleted message still in the stored history");

    // Slow mode set on node a holds on node b.
    assert!(matches!(sam.moderate(ROOM, ModerationAction::SlowMode { seconds: 30 }).await, ServerMessage::Moderated { .. }));
    mo.expect("room_update with slow mode on node b", |m| matches!(m, ServerMessage::RoomUpdate { info, .. } if info.slow_mode_s == 30)).await;
    mo.say(ROOM, "first one is fine").await;
    mo.refused(chat(ROOM, "second one is too soon"), ErrorCode::SlowMode).await;
    assert!(matches!(sam.moderate(ROOM, ModerationAction::SlowMode { seconds: 0 }).await, ServerMessage::Moderated { .. }));
    mo.expect("slow mode off", |m| matches!(m, ServerMessage::RoomUpdate { info, .. } if info.slow_mode_s == 0)).await;

    // Mute on node a: node b refuses the member's sends.
    let reply = sam.moderate(ROOM, ModerationAction::Mute { member_id: mo_id.clone(), duration_s: None, reason: None }).await;
    assert!(matches!(reply, ServerMessage::Moderated { .. }), "{reply:?}");
    mo.expect("member_update muted", |m| matches!(m, ServerMessage::MemberUpdate { member, .. } if member.muted)).await;
    mo.refused(chat(ROOM, "can I still talk?"), ErrorCode::Muted).await;

    // Ban on node a: the member on node b is removed, and no node lets it back in.
    let reply = sam.moderate(ROOM, ModerationAction::Ban { member_id: mo_id.clone(), duration_s: None, reason: Some("harm".into()), service: false }).await;
    assert!(matches!(reply, ServerMessage::Moderated { .. }), "{reply:?}");
    mo.expect("removed on node b", |m| matches!(m, ServerMessage::Removed { .. })).await;
    watcher.expect("Mo leaves, seen on node c", |m| matches!(m, ServerMessage::Presence { left: Some(l), .. } if *l == mo_id)).await;
    for _ in 0..2 {
        let id = mo.next_id();
        mo.send(&ClientMessage::Join { id: Some(id), room: RoomId::from(ROOM), accept_rules: Some(1), since: None }).await;
        mo.expect_error(ErrorCode::Banned).await;
    }
    let mut elsewhere = c.client().await;
    elsewhere.hello(Some(&mo_token), None).await;
    let id = elsewhere.next_id();
    elsewhere.send(&ClientMessage::Join { id: Some(id), room: RoomId::from(ROOM), accept_rules: Some(1), since: None }).await;
    elsewhere.expect_error(ErrorCode::Banned).await;
}

/// A `kindred serve --redis` process; killed (SIGKILL) on drop.
struct NodeProcess(crate::process::Process);

impl NodeProcess {
    fn start(redis: &Redis, name: &str, data: &TempDir) -> NodeProcess {
        let url = redis.url();
        let args = ["--node", name, "--presence-ttl-s", "3", "--messages-per-10s", "10000", "--redis", &url, "--data-dir", data.0.to_str().unwrap()];
        NodeProcess(crate::process::Process::spawn(&args, &[("KINDRED_JWT_SECRET", SECRET)]))
    }

    fn url(&self) -> &str {
        &self.0.url
    }

    async fn wait_ready(&self) {
        let addr: std::net::SocketAddr = self.0.addr().parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        while !crate::session::http_get(addr, "/readyz").await.starts_with("HTTP/1.1 200") {
            assert!(Instant::now() < deadline, "node process never became ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn kill(&mut self) {
        let _ = self.0.child.kill();
        let _ = self.0.child.wait();
    }

    /// SIGSTOP (`stop`) or SIGCONT: a node stalled as a whole, its sockets kept open.
    fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([signal, &self.0.child.id().to_string()]).status().expect("kill runs");
        assert!(status.success(), "kill {signal} failed");
    }
}

/// A heartbeat must lapse before a node's members are seen leaving or coming back.
const HEARTBEAT_LAPSE: Duration = Duration::from_secs(15);

/// How many HSET calls Redis has served (`INFO commandstats`).
fn hset_calls(cli: &mut RedisCli) -> u64 {
    let info = cli.cmd(&["INFO", "commandstats"]);
    info.lines().find_map(|l| l.strip_prefix("cmdstat_hset:calls=")).and_then(|rest| rest.split(',').next()).map_or(0, |n| n.parse().unwrap())
}

/// Presence is carried by join and leave events; the periodic audit reads the
/// shared list and writes only what it lacks. Before, every node rewrote each
/// of its members' entries every third of the TTL: at 45,000 connections that
/// was a tenth of the nodes' CPU and doubled the message p99.
#[tokio::test]
async fn idle_members_cost_no_presence_writes() {
    let (redis, a, _b, _ann, mut bo) = two_nodes().await;
    let (_cy, cy_id) = a.member_in(ROOM, Some("Cy")).await;
    bo.expect("Cy, joined on node a, seen on node b", |m| matches!(m, ServerMessage::Presence { joined: Some(j), .. } if j.member_id == cy_id)).await;
    let mut cli = RedisCli::connect(&redis);
    // Each join writes its member's entry once (node b's may land after Cy's event).
    eventually("the three joins were never written", Duration::from_secs(5), || hset_calls(&mut cli) >= 3).await;
    let before = hset_calls(&mut cli);
    // Four times the old sync period (a third of the 3 s TTL).
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(hset_calls(&mut cli), before, "idle members' presence was written again");
    let (mut newcomer, _) = a.member(Some("Nia")).await;
    let ServerMessage::Joined { members, .. } = newcomer.join(ROOM).await else { panic!() };
    assert_eq!(members.len(), 4, "{members:?}");
}

/// A join whose event never reached Redis (the node's queue to Redis was
/// full, which is counted) is repaired on the next health tick, not at the
/// next two-minute audit.
#[tokio::test]
async fn presence_lost_on_the_way_to_redis_is_repaired_at_once() {
    let (redis, a, _b, _ann, _bo) = two_nodes().await;
    let key = format!("kindred:{{{ROOM}}}:members");
    let mut cli = RedisCli::connect(&redis);
    let a_fields = |cli: &mut RedisCli| -> Vec<String> { cli.cmd(&["HKEYS", &key]).lines().filter(|l| l.starts_with("a-")).map(str::to_owned).collect() };
    let deadline = Instant::now() + Duration::from_secs(5);
    let ann = loop {
        if let [field] = a_fields(&mut cli).as_slice() {
            break field.clone();
        }
        assert!(Instant::now() < deadline, "Ann's presence entry never reached Redis");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // As if Ann's join had been dropped on its way: no entry, one drop counted.
    cli.cmd(&["HDEL", &key, &ann]);
    a.app.metrics.cluster_events_dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    eventually("Ann's entry was not written back", Duration::from_secs(5), || a_fields(&mut cli) == [ann.clone()]).await;
}

/// A node that stalls past the TTL looks dead: its members leave the room on
/// the other nodes. When it runs again it announces them, and they come back.
#[tokio::test]
async fn a_stalled_nodes_members_leave_and_come_back_with_it() {
    let redis = Redis::start();
    let data = TempDir::new();
    let stalled = NodeProcess::start(&redis, "stalled", &data);
    stalled.wait_ready().await;
    let survivor = node(&redis, "survivor").await;
    let mut pat = TestClient::connect(stalled.url()).await;
    pat.hello(None, Some("Pat")).await;
    let pat_id = pat.join_returning_id(ROOM).await;
    let (mut sol, _) = survivor.member_in(ROOM, Some("Sol")).await;

    stalled.signal("-STOP");
    sol.expect_within("Pat leaving while the node is stalled", HEARTBEAT_LAPSE, |m| matches!(m, ServerMessage::Presence { left: Some(l), .. } if *l == pat_id))
        .await;
    stalled.signal("-CONT");
    sol.expect_within(
        "Pat coming back with the node",
        HEARTBEAT_LAPSE,
        |m| matches!(m, ServerMessage::Presence { joined: Some(j), .. } if j.member_id == pat_id),
    )
    .await;
    let (mut newcomer, _) = survivor.member(Some("Nia")).await;
    let ServerMessage::Joined { members, .. } = newcomer.join(ROOM).await else { panic!() };
    assert!(members.iter().any(|m| m.member_id == pat_id), "Pat is listed again: {members:?}");
    // Pat's connection lived through the stall and still talks to the room.
    pat.say(ROOM, "still here").await;
    sol.expect("Pat's message after the stall", |m| matches!(m, ServerMessage::Message(msg) if msg.text == "still here")).await;
}

#[tokio::test]
async fn a_killed_nodes_members_resume_on_another_without_a_gap() {
    let (_redis, _data, mut doomed, survivor) = doomed_and_survivor().await;

    // Rae is on the node that will die; Sol and Tam are on the survivor.
    let mut rae = TestClient::connect(doomed.url()).await;
    let welcome = rae.hello(None, Some("Rae")).await;
    let rae_token = token_of(&welcome);
    let joined = rae.join(ROOM).await;
    let rae_id = joined_parts(&joined).0.member_id.clone();
    let mut passer = TestClient::connect(doomed.url()).await;
    passer.hello(None, Some("Pat")).await;
    let pat_id = passer.join_returning_id(ROOM).await;
    let (mut sol, _) = survivor.member_in(ROOM, Some("Sol")).await;

    for n in 0..5 {
        rae.say(ROOM, &format!("before {n}")).await;
    }
    // (`say` skips frames while it waits for `sent`: read what Sol saw.)
    let before = sol.messages(5).await;
    let last_seen = before.last().unwrap().seq;
    let epoch = joined_parts(&joined).2.to_owned();

    doomed.kill();
    // The room goes on while Rae is away.
    for n in 0..5 {
        sol.say(ROOM, &format!("while away {n}")).await;
    }

    // Rae reconnects to the survivor and resumes from what it last saw.
    let mut back = survivor.client().await;
    back.hello(Some(&rae_token), None).await;
    let resumed = back.join_since(ROOM, Some(Position { epoch, seq: last_seen })).await;
    let (me, history, _, seq, recovered) = joined_parts(&resumed);
    assert!(recovered, "the resume should be recovered");
    assert_eq!(me.member_id, rae_id, "same member after moving nodes");
    assert_eq!(history.last().map_or(last_seen, |m| m.seq), seq, "the history ends at the position `joined` reports");
    // Sol's `sent` means stored in Redis; the survivor may learn of the last
    // ones over pub/sub just after Rae's join: they then follow it live.
    let mut missed = history.to_vec();
    missed.extend(back.messages(5usize.saturating_sub(missed.len())).await);
    let texts: Vec<&str> = missed.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, (0..5).map(|n| format!("while away {n}")).collect::<Vec<_>>(), "exactly the missed messages");
    assert_eq!(missed[0].seq, last_seen + 1);
    assert_contiguous(&missed);

    // Pat, who did not come back, disappears from the room once the dead node's heartbeat lapses.
    sol.expect_within(
        "Pat leaving after the dead node's heartbeat lapsed",
        HEARTBEAT_LAPSE,
        |m| matches!(m, ServerMessage::Presence { left: Some(l), .. } if *l == pat_id),
    )
    .await;
    let (mut newcomer, _) = survivor.member(Some("Nia")).await;
    let ServerMessage::Joined { members, .. } = newcomer.join(ROOM).await else { panic!() };
    assert!(members.iter().all(|m| m.member_id != pat_id), "a dead node's member is still listed");
    assert!(members.iter().any(|m| m.member_id == rae_id), "Rae, resumed on the survivor, is listed");
}

#[tokio::test]
async fn redis_killed_and_restarted_loses_no_acknowledged_message() {
    let (mut redis, a, b, mut ann, mut bo) = two_nodes().await;

    let mut acked = Vec::new();
    for n in 0..10 {
        acked.push(ann.say(ROOM, &format!("before {n}")).await);
    }
    // (Read now: the waits below skip other frames.)
    let mut got = bo.messages(acked.len()).await;
    redis.kill();

    // Nodes keep their sessions, say they are not ready, and never ack a send.
    wait_ready(&a, false).await;
    let readyz = crate::session::http_get(a.addr, "/readyz").await;
    assert!(readyz.starts_with("HTTP/1.1 503"), "{readyz}");
    let e = ann.refused(chat(ROOM, "during the outage"), ErrorCode::Unavailable).await;
    assert!(e.retry_after_ms.is_some(), "unavailable is retryable");
    ann.assert_alive().await;
    bo.assert_alive().await;

    redis.restart();
    wait_ready(&a, true).await;
    wait_ready(&b, true).await;
    for n in 0..10 {
        acked.push(ann.say(ROOM, &format!("after {n}")).await);
    }

    // Bo, on the other node, got every acknowledged message once, in order.
    got.extend(bo.messages(acked.len() - got.len()).await);
    let got: Vec<(String, u64)> = got.iter().map(|m| (m.message_id.0.clone(), m.seq)).collect();
    assert_eq!(got, acked);
    // And Redis still holds them: a newcomer on node b sees all twenty.
    let (mut late, _) = b.member(Some("Lee")).await;
    let joined = late.join(ROOM).await;
    let history: Vec<(String, u64)> = joined_parts(&joined).1.iter().map(|m| (m.message_id.0.clone(), m.seq)).collect();
    assert_eq!(history, acked);
}

/// Send until `sent`, retrying while the node answers `unavailable` (as a client does).
async fn say_retrying(c: &mut TestClient, text: &str) -> (String, u64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match c.request(chat(ROOM, text)).await {
            ServerMessage::Sent { message_id, seq, .. } => return (message_id.0, seq),
            ServerMessage::Error(e) if e.code == ErrorCode::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(e.retry_after_ms.unwrap_or(100).min(200))).await;
            }
            other => panic!("send failed: {other:?}"),
        }
    }
}

/// The sender's node delivers a message as soon as Redis has stored it, not
/// when it comes back over the subscription: the sender's `sent` and its own
/// copy go out in one write (they took two), and the push that follows is
/// dropped as a duplicate. Members on the other node get it once, in order.
#[tokio::test]
async fn on_a_cluster_node_a_senders_reply_and_its_copy_share_one_write() {
    const N: u64 = 5;
    let (_redis, a, _b, mut ann, mut bo) = two_nodes().await;
    // Bo's join is the last write Ann's node owes her before the count starts.
    ann.expect("Bo's presence on node a", |m| matches!(m, ServerMessage::Presence { joined: Some(j), .. } if j.handle == "Bo")).await;
    let before = crate::coalescing::metric(&a, "kindred_socket_writes_total").await;
    for i in 0..N {
        ann.say(ROOM, &format!("message {i}")).await;
        // (`say` returns at `sent`; the copy follows it.)
        assert_eq!(ann.messages(1).await[0].text, format!("message {i}"));
    }
    let got = bo.messages(N as usize).await;
    assert_contiguous(&got);
    let texts: Vec<String> = got.iter().map(|m| m.text.clone()).collect();
    assert_eq!(texts, (0..N).map(|i| format!("message {i}")).collect::<Vec<_>>());
    for c in [&mut ann, &mut bo] {
        while let Some(m) = c.try_recv(Duration::from_millis(300)).await {
            assert!(!matches!(m, ServerMessage::Message(_)), "a message came twice: {m:?}");
        }
    }
    assert_eq!(crate::coalescing::metric(&a, "kindred_socket_writes_total").await - before, N, "one write per message");
}

/// A staff-channel message takes no `seq` of its own, so a node knows it has
/// shown one by finding it in the room's history. In a room that keeps no
/// history, the message's own push after its local delivery must not show
/// it again.
#[tokio::test]
async fn a_staff_message_in_a_room_without_history_comes_once() {
    let redis = Redis::start();
    let no_history = |c: &mut Config| c.rooms.iter_mut().find(|r| r.id.as_str() == ROOM).unwrap().history_minutes = Some(0);
    let a = node_with(redis.url(), false, "a", Duration::from_secs(3), no_history).await;
    let mut sam = a.staff(Role::Facilitator, None, ROOM).await;
    let text = "check in on Bo".to_owned();
    sam.send(&ClientMessage::Send { id: Some(1.into()), room: RoomId::from(ROOM), text, reply_to: None, cw: None, staff: true }).await;
    let mut copies = 0;
    while let Some(m) = sam.try_recv(Duration::from_millis(500)).await {
        copies += usize::from(matches!(m, ServerMessage::Message(msg) if msg.staff));
    }
    assert_eq!(copies, 1);
}

/// Redis trims a room's stream only roughly to `history_max_messages`; a
/// node loading the room still shows only the newest that many.
#[tokio::test]
async fn a_cold_node_shows_only_the_newest_history_max_messages() {
    let redis = Redis::start();
    let three = |c: &mut Config| c.limits.history_max_messages = 3;
    let a = node_with(redis.url(), false, "a", Duration::from_secs(3), three).await;
    let b = node_with(redis.url(), false, "b", Duration::from_secs(3), three).await;
    let (mut ann, _) = a.member_in(ROOM, Some("Ann")).await;
    for i in 0..6 {
        ann.say(ROOM, &format!("message {i}")).await;
    }
    let log = format!("kindred:{{{ROOM}}}:log");
    assert_eq!(RedisCli::connect(&redis).cmd(&["XLEN", &log]), ":6\r\n", "all six still in one stream node");
    let (mut bo, _) = b.member(Some("Bo")).await;
    let joined = bo.join(ROOM).await;
    let texts: Vec<&str> = joined_parts(&joined).1.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["message 3", "message 4", "message 5"]);
}

/// Each append drops the history entries past retention from the front of
/// the room's stream, several at once when a quiet room wakes up, and stops
/// at the first fresh one.
#[tokio::test]
async fn history_past_retention_leaves_redis_with_the_next_message() {
    let redis = Redis::start();
    let a = node(&redis, "a").await;
    let (mut ann, _) = a.member_in(ROOM, Some("Ann")).await;
    ann.say(ROOM, "first").await;
    // Replace the stream by three entries stamped long ago (1970), the
    // first message's among them, ahead of the next message's id `2-0`.
    let log = format!("kindred:{{{ROOM}}}:log");
    let mut cli = RedisCli::connect(&redis);
    cli.cmd(&["DEL", &log]);
    for id in ["0-1", "0-2", "1-0"] {
        cli.cmd(&["XADD", &log, id, "m", "{}", "a", "\"x\"", "i", id, "t", "1000"]);
    }
    assert_eq!(cli.cmd(&["XLEN", &log]), ":3\r\n");
    ann.say(ROOM, "second").await;
    assert_eq!(cli.cmd(&["XLEN", &log]), ":1\r\n", "only the new message is left");
    assert!(cli.cmd(&["XRANGE", &log, "-", "+"]).contains("second"));
}

#[tokio::test]
async fn messages_published_while_a_subscription_was_down_are_delivered_from_history() {
    // Node b's subscriber is cut and kept from reconnecting (maxclients)
    // while node a sends; nothing is sent afterwards, so only the repair
    // after the reconnect can bring those messages to node b.
    let (redis, _a, b, mut ann, mut bo) = two_nodes().await;
    // Bo is also in a second room, so node b's subscriber is the one with three channels.
    bo.join("anxiety").await;
    let mut acked = vec![ann.say(ROOM, "before").await];
    let mut got = bo.messages(1).await;

    let mut cli = RedisCli::connect(&redis);
    let clients = cli.cmd(&["CLIENT", "LIST", "TYPE", "pubsub"]);
    let subscriber = clients.lines().find(|l| l.contains(" sub=3 ")).unwrap_or_else(|| panic!("node b's subscriber in {clients}"));
    let id = subscriber.split_whitespace().find_map(|f| f.strip_prefix("id=")).unwrap().to_owned();
    let connected = cli.cmd(&["CLIENT", "LIST"]).lines().filter(|l| l.contains("id=")).count();
    assert!(cli.cmd(&["CONFIG", "SET", "maxclients", &(connected - 1).to_string()]).starts_with("+OK"));
    assert!(cli.cmd(&["CLIENT", "KILL", "ID", &id]).starts_with(":1"));
    wait_ready(&b, false).await;

    for n in 0..3 {
        acked.push(ann.say(ROOM, &format!("while node b is deaf {n}")).await);
    }
    assert!(bo.try_recv(Duration::from_millis(300)).await.is_none_or(|m| !matches!(m, ServerMessage::Message(_))));
    assert!(cli.cmd(&["CONFIG", "SET", "maxclients", "10000"]).starts_with("+OK"));
    wait_ready(&b, true).await;

    got.extend(bo.messages(3).await);
    let got: Vec<(String, u64)> = got.iter().map(|m| (m.message_id.0.clone(), m.seq)).collect();
    assert_eq!(got, acked);
}

#[tokio::test]
async fn reports_alerts_and_service_bans_cross_nodes() {
    let redis = Redis::start();
    let a = node(&redis, "a").await;
    let b = node(&redis, "b").await;
    let mut sam = a.staff(Role::Facilitator, None, ROOM).await;
    let (mut mo, mo_id) = b.member_in(ROOM, Some("Mo")).await;
    let (mut wren, _) = b.member_in(ROOM, Some("Wren")).await;

    // A crisis message on node b: the facilitator on node a gets the alert.
    let (crisis_id, _) = mo.say(ROOM, "honestly I just want to die, I can't do this anymore").await;
    sam.expect("crisis alert on node a", |m| matches!(m, ServerMessage::Alert { message, .. } if message.message_id.0 == crisis_id)).await;

    // A report filed on node b reaches the facilitator on node a, and one
    // who arrives later on node b sees it open.
    let (reported, _) = mo.say(ROOM, "something hurtful").await;
    wren.expect("the message", |m| matches!(m, ServerMessage::Message(msg) if msg.message_id.0 == reported)).await;
    let id = wren.next_id();
    wren.send(&ClientMessage::Report {
        id: Some(id),
        room: RoomId::from(ROOM),
        message_id: kindred_protocol::MessageId(reported.clone()),
        reason: "unkind".into(),
    })
    .await;
    wren.expect("reported", |m| matches!(m, ServerMessage::Reported { .. })).await;
    sam.expect("report_filed on node a", |m| matches!(m, ServerMessage::ReportFiled { report, .. } if report.message.message_id.0 == reported)).await;
    let mut later = b.client().await;
    later.hello(Some(&b.app.auth.staff_token(Role::Facilitator, "Kit", None, Duration::from_secs(600))), None).await;
    later.join(ROOM).await;
    later.expect("the open report on node b", |m| matches!(m, ServerMessage::ReportFiled { report, .. } if report.message.message_id.0 == reported)).await;

    // An admin's service ban on node a closes the member's connection on node b (4403).
    let mut admin = a.staff(Role::Admin, None, ROOM).await;
    let reply = admin.moderate(ROOM, ModerationAction::Ban { member_id: mo_id, duration_s: None, reason: None, service: true }).await;
    assert!(matches!(reply, ServerMessage::Moderated { .. }), "{reply:?}");
    assert_eq!(mo.closed(Duration::from_secs(5)).await, Closed::Code(4403));
}

/// A burst of moderation changes made on one node all land: the node makes
/// its compare-and-sets one at a time, so its own changes never use up each
/// other's retries.
#[tokio::test]
async fn a_burst_of_reports_on_one_node_all_land() {
    const ROOMS: [&str; 5] = ["grief", "anxiety", "depression", "pet-loss", "recovery"];
    const EACH: usize = 14;
    let redis = Redis::start();
    let a = node_with(redis.url(), false, "a", Duration::from_secs(3), |c| c.limits.max_connections_per_ip = 200).await;
    let mut reports = Vec::new();
    for room in ROOMS {
        let (mut author, _) = a.member_in(room, None).await;
        let (said, _) = author.say(room, "something hurtful").await;
        for _ in 0..EACH {
            let (reporter, _) = a.member_in(room, None).await;
            let report =
                ClientMessage::Report { id: None, room: RoomId::from(room), message_id: kindred_protocol::MessageId(said.clone()), reason: String::new() };
            reports.push((reporter, report));
        }
    }
    let replies = join_all(reports.iter_mut().map(|(c, report)| c.request(report.clone()))).await;
    for reply in &replies {
        assert!(matches!(reply, ServerMessage::Reported { .. }), "{reply:?}");
    }
    assert_eq!(a.app.moderation.open_reports(None).len(), ROOMS.len() * EACH, "every report is kept");
}

#[tokio::test]
async fn rooms_made_through_the_api_on_one_node_open_on_every_node() {
    let redis = Redis::start();
    let a = node(&redis, "a").await;
    let b = node(&redis, "b").await;
    let admin = a.app.auth.staff_token(Role::Admin, "Alex Admin", None, Duration::from_secs(600));
    let (status, body) = crate::admin_api::request(&a, "POST", "/api/rooms", Some(&admin), Some(crate::admin_api::NEW_ROOM)).await;
    assert_eq!(status, 201, "{body}");
    // Node b learns of it and members can join it there.
    eventually("node b never saw the new room", Duration::from_secs(5), || b.app.hub.room(&RoomId::from("widowed-young")).is_some()).await;
    let (mut m, _) = b.member(Some("Ivy")).await;
    m.join("widowed-young").await;
    // Closed through node b: the member on node b is told, and node a drops it too.
    let (status, body) = crate::admin_api::request(&b, "DELETE", "/api/rooms/widowed-young", Some(&admin), None).await;
    assert_eq!(status, 204, "{body}");
    m.expect("removed: closed", |msg| matches!(msg, ServerMessage::Removed { reason: kindred_protocol::RemovedReason::Closed, .. })).await;
    eventually("node a still lists the closed room", Duration::from_secs(5), || a.app.hub.room(&RoomId::from("widowed-young")).is_none()).await;
    // A node started later gets the shared directory from Redis.
    let c = node(&redis, "c").await;
    assert!(c.app.hub.room(&RoomId::from("widowed-young")).is_none());
}

#[tokio::test]
async fn a_node_shutting_down_takes_its_members_out_at_once() {
    // A long presence TTL: only the graceful path can make them leave in time.
    let redis = Redis::start();
    let going = node_on(redis.url(), false, "going", Duration::from_secs(600)).await;
    let staying = node(&redis, "staying").await;
    let (_leaver, _) = going.member_in(ROOM, Some("Lou")).await;
    let (mut watcher, _) = staying.member_in(ROOM, Some("Wes")).await;
    going.shutdown().await;
    watcher.expect("Lou leaves when its node shuts down", |m| matches!(m, ServerMessage::Presence { left: Some(_), member_count: 1, .. })).await;
}

#[tokio::test]
async fn a_stalled_redis_never_gets_a_false_sent_and_recovers() {
    let (redis, a, b, mut ann, mut bo) = two_nodes().await;
    let mut acked = vec![ann.say(ROOM, "before the stall").await];
    let mut got = bo.messages(1).await;

    // SIGSTOP: Redis accepts connections' bytes but answers nothing.
    let pid = redis.pid().to_string();
    assert!(Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    let e = ann.refused(chat(ROOM, "while Redis is stalled"), ErrorCode::Unavailable).await;
    assert!(e.retry_after_ms.is_some());
    wait_ready(&a, false).await;
    ann.assert_alive().await;
    assert!(Command::new("kill").args(["-CONT", &pid]).status().unwrap().success());

    wait_ready(&a, true).await;
    wait_ready(&b, true).await;
    acked.push(say_retrying(&mut ann, "after the stall").await);
    // Whatever the stalled script did, Bo sees each acknowledged message once, in order.
    loop {
        got.extend(bo.messages(1).await);
        if got.last().is_some_and(|m| m.message_id.0 == acked[1].0) {
            break;
        }
    }
    let got: Vec<(String, u64)> = got.iter().map(|m| (m.message_id.0.clone(), m.seq)).collect();
    assert_eq!(got.first(), acked.first());
    assert_eq!(got.last(), acked.last());
    assert!(got.windows(2).all(|w| w[1].1 == w[0].1 + 1), "a gap or duplicate: {got:?}");
}

#[tokio::test]
async fn nodes_share_rooms_through_a_redis_cluster_with_sharded_pubsub() {
    let cluster = RedisCluster::start();
    let mut nodes = Vec::new();
    for name in ["a", "b", "c"] {
        nodes.push(node_on(cluster.urls(), true, name, Duration::from_secs(3)).await);
    }
    let mut sam = nodes[0].staff(Role::Facilitator, None, ROOM).await;
    let (mut ann, _) = nodes[1].member_in(ROOM, Some("Ann")).await;
    let (mut bo, bo_id) = nodes[2].member_in(ROOM, Some("Bo")).await;

    // Concurrent senders on two nodes: one order on all three.
    join_all([&mut ann, &mut bo].into_iter().enumerate().map(|(i, c)| async move {
        for n in 0..20 {
            send_text(c, &format!("sender {i} message {n}")).await;
        }
    }))
    .await;
    let seen: Vec<Vec<ChatMessage>> = join_all([&mut sam, &mut ann, &mut bo].into_iter().map(|c| c.messages(40))).await;
    assert_contiguous(&seen[0]);
    assert_eq!(seqs_and_ids(&seen[0]), seqs_and_ids(&seen[1]));
    assert_eq!(seqs_and_ids(&seen[0]), seqs_and_ids(&seen[2]));

    // The room's channel is a shard channel, not a classic one.
    let shard_channels: String = cluster.nodes.iter().map(|n| RedisCli::connect(n).cmd(&["PUBSUB", "SHARDCHANNELS"])).collect();
    assert!(shard_channels.contains("kindred:{grief}:ch"), "{shard_channels}");

    // Moderation state (its own slot) reaches every node: a mute on node a holds on node c.
    let reply = sam.moderate(ROOM, ModerationAction::Mute { member_id: bo_id, duration_s: None, reason: None }).await;
    assert!(matches!(reply, ServerMessage::Moderated { .. }), "{reply:?}");
    bo.expect("muted", |m| matches!(m, ServerMessage::MemberUpdate { member, .. } if member.muted)).await;
    bo.refused(chat(ROOM, "am I muted?"), ErrorCode::Muted).await;

    // History comes from the cluster for a newcomer.
    let (mut late, _) = nodes[1].member(Some("Cy")).await;
    let joined = late.join(ROOM).await;
    assert_eq!(seqs_and_ids(joined_parts(&joined).1), seqs_and_ids(&seen[0]));
}

#[tokio::test]
async fn when_redis_loses_the_history_clients_are_told_and_resume_unrecovered() {
    let redis = Redis::start();
    let a = node(&redis, "a").await;
    let b = node(&redis, "b").await;
    let (mut ann, _) = a.member_in(ROOM, Some("Ann")).await;
    let (mut bo, bo_token) = b.member(Some("Bo")).await;
    let bo_token = token_of(&bo_token);
    let joined = bo.join(ROOM).await;
    let (old_epoch, bo_id) = (joined_parts(&joined).2.to_owned(), joined_parts(&joined).0.member_id.clone());
    ann.say(ROOM, "before the flush").await;
    let last = bo.messages(1).await.remove(0).seq;
    // Two moderation changes: the shared moderation document is at version 2 on every node.
    let mut sam = a.staff(Role::Facilitator, None, ROOM).await;
    for action in [
        ModerationAction::Mute { member_id: bo_id.clone(), duration_s: None, reason: None },
        ModerationAction::Unmute { member_id: bo_id.clone(), reason: None },
    ] {
        assert!(matches!(sam.moderate(ROOM, action).await, ServerMessage::Moderated { .. }));
    }

    assert!(RedisCli::connect(&redis).cmd(&["FLUSHALL"]).starts_with("+OK"));
    // The next message starts a new history; every node learns it and asks its clients to resume.
    let (after_id, _) = say_retrying(&mut ann, "after the flush").await;
    assert_eq!(bo.closed(Duration::from_secs(5)).await, Closed::Code(1012));

    let mut back = b.client().await;
    back.hello(Some(&bo_token), None).await;
    let resumed = back.join_since(ROOM, Some(Position { epoch: old_epoch.clone(), seq: last })).await;
    let (_, history, epoch, _, recovered) = joined_parts(&resumed);
    assert!(!recovered, "the old history is gone: the resume must say so");
    assert_ne!(epoch, old_epoch);
    assert!(history.iter().any(|m| m.message_id.0 == after_id), "the new history is served");

    // Moderation made after the loss starts a new document at version 1; nodes must take it.
    let mut sam = a.staff(Role::Facilitator, None, ROOM).await;
    eventually("node a never saw Bo come back", Duration::from_secs(5), || a.app.hub.room(&RoomId::from(ROOM)).unwrap().member(&bo_id).is_some()).await;
    let reply = sam.moderate(ROOM, ModerationAction::Mute { member_id: bo_id, duration_s: None, reason: None }).await;
    assert!(matches!(reply, ServerMessage::Moderated { .. }), "{reply:?}");
    back.expect("muted", |m| matches!(m, ServerMessage::MemberUpdate { member, .. } if member.muted)).await;
    back.refused(chat(ROOM, "am I muted after the flush?"), ErrorCode::Muted).await;
}

async fn wait_on_duty(server: &TestServer, room: &str, n: u32) {
    let room = RoomId::from(room);
    eventually(&format!("node never counted {n} on duty for {room}"), Duration::from_secs(10), || server.app.on_duty.count(&room) == n).await;
}

#[tokio::test]
async fn a_crisis_on_one_node_reaches_staff_on_another_who_joined_no_room_and_is_resolved_for_all() {
    let redis = Redis::start();
    let a = node(&redis, "a").await;
    let b = node(&redis, "b").await;
    let mut sam = b.on_duty(Role::Facilitator, "Sam", Some(vec![ROOM])).await;
    let mut ana = a.on_duty(Role::Admin, "Ana", None).await;
    let mut out_of_scope = b.on_duty(Role::Facilitator, "Kai", Some(vec!["anxiety"])).await;
    // Node a counts Sam (on node b) once the health tick has carried b's scopes.
    wait_on_duty(&a, ROOM, 2).await;

    let (mut mo, _) = a.member_in(ROOM, Some("Mo")).await;
    let (crisis_id, _) = mo.say(ROOM, "I keep thinking about how to end my life").await;
    let notice = mo.expect("crisis notice", |m| matches!(m, ServerMessage::Notice(n) if n.kind == kindred_protocol::NoticeKind::CrisisResources)).await;
    assert!(matches!(notice, ServerMessage::Notice(n) if n.facilitators_alerted == Some(2)), "both people on duty, on both nodes, were counted");
    let got = sam.expect("alert on node b", |m| matches!(m, ServerMessage::Alert { .. })).await;
    let ServerMessage::Alert { alert_id, message, facilitators_alerted, .. } = got else { unreachable!() };
    assert_eq!((message.message_id.0.as_str(), facilitators_alerted), (crisis_id.as_str(), 2));
    ana.expect("alert on node a", |m| matches!(m, ServerMessage::Alert { alert_id: id, .. } if *id == alert_id)).await;
    assert!(out_of_scope.try_recv(Duration::from_millis(400)).await.is_none_or(|m| !matches!(m, ServerMessage::Alert { .. })));

    // Resolved on node b: Ana on node a hears who did it; Sam gets the reply only.
    sam.send(&ClientMessage::ResolveAlert { id: Some(1.into()), room: RoomId::from(ROOM), alert_id: alert_id.clone(), note: None }).await;
    sam.expect("reply", |m| matches!(m, ServerMessage::AlertResolved { id: Some(_), by, .. } if by == "Sam")).await;
    ana.expect("event on node a", |m| matches!(m, ServerMessage::AlertResolved { id: None, alert_id: id, by, .. } if *id == alert_id && by == "Sam")).await;
    assert!(sam.try_recv(Duration::from_millis(400)).await.is_none_or(|m| !matches!(m, ServerMessage::AlertResolved { .. })));
    // Resolving again on node a finds nothing open.
    ana.send(&ClientMessage::ResolveAlert { id: Some(2.into()), room: RoomId::from(ROOM), alert_id, note: None }).await;
    ana.expect_error(ErrorCode::NotFound).await;
}

#[tokio::test]
async fn open_alerts_outlive_the_node_that_raised_them_and_reach_staff_on_a_new_one() {
    let redis = Redis::start();
    let a = node(&redis, "a").await;
    let (mut mo, _) = a.member_in(ROOM, Some("Mo")).await;
    mo.say(ROOM, "quiero morir, no puedo más").await;
    let notice = mo.expect("crisis notice", |m| matches!(m, ServerMessage::Notice(n) if n.kind == kindred_protocol::NoticeKind::CrisisResources)).await;
    assert!(matches!(notice, ServerMessage::Notice(n) if n.facilitators_alerted == Some(0)), "nobody on duty anywhere");
    drop(mo);
    a.shutdown().await;
    let b = node(&redis, "b").await;
    let mut sam = b.on_duty(Role::Facilitator, "Sam", Some(vec![ROOM])).await;
    let got = sam.expect("the open alert after welcome", |m| matches!(m, ServerMessage::Alert { .. })).await;
    assert!(matches!(got, ServerMessage::Alert { message, facilitators_alerted: 0, .. } if message.text.starts_with("quiero morir")));
}

#[tokio::test]
async fn in_a_cluster_exactly_one_node_posts_each_alert() {
    let (url, got) = crate::webhook::receiver().await;
    let redis = Redis::start();
    let hook = |c: &mut Config| c.safety.escalation = Some(crate::webhook::escalation(&url, false));
    let a = node_with(redis.url(), false, "a", Duration::from_secs(3), hook).await;
    let b = node_with(redis.url(), false, "b", Duration::from_secs(3), hook).await;
    let (mut mo, _) = a.member_in(ROOM, Some("Mo")).await;
    let (mut bo, _) = b.member_in(ROOM, Some("Bo")).await;
    mo.say(ROOM, "I want to end my life").await;
    bo.say(ROOM, "some days I want to die too").await;
    crate::webhook::wait_for_posts(&got, 2).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let posts = got.lock().unwrap().clone();
    let mut ids: Vec<String> =
        posts.iter().map(|(_, _, body)| serde_json::from_slice::<serde_json::Value>(body).unwrap()["alert_id"].as_str().unwrap().to_owned()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!((posts.len(), ids.len()), (2, 2), "one POST per alert, whichever node raised it");
}

#[tokio::test]
async fn staff_notes_get_a_staff_seq_from_redis_and_come_back_on_resume_on_another_node() {
    let redis = Redis::start();
    let a = node(&redis, "a").await;
    let b = node(&redis, "b").await;
    let mut sam = a.staff(Role::Facilitator, None, ROOM).await;
    let (mut mo, _) = a.member_in(ROOM, Some("Mo")).await;
    let (_, seq) = mo.say(ROOM, "hi all").await;
    sam.expect("Mo's message", |m| matches!(m, ServerMessage::Message(msg) if msg.seq == seq)).await;
    let joined = sam.join(ROOM).await;
    let epoch = joined_parts(&joined).2.to_owned();
    drop(sam);
    let mut ana = b.staff(Role::Admin, None, ROOM).await;
    ana.send(&ClientMessage::Send { id: Some(1.into()), room: RoomId::from(ROOM), text: "keep an eye on Mo".into(), reply_to: None, cw: None, staff: true })
        .await;
    let note = ana.expect("staff copy", |m| matches!(m, ServerMessage::Message(msg) if msg.staff)).await;
    let ServerMessage::Message(note) = note else { unreachable!() };
    assert_eq!((note.seq, note.staff_seq), (seq, Some(1)));
    // Sam comes back on node b, resuming from Mo's message: the note is there.
    let token = b.app.auth.staff_token(Role::Facilitator, "Sam Rivers", None, Duration::from_secs(600));
    let mut back = b.client().await;
    back.hello(Some(&token), None).await;
    let joined = back.join_since(ROOM, Some(Position { epoch, seq })).await;
    let (_, history, _, _, recovered) = joined_parts(&joined);
    assert!(recovered);
    assert!(history.iter().any(|m| m.message_id == note.message_id && m.staff_seq == Some(1)), "{history:?}");
}

#[tokio::test]
async fn out_of_scope_a_facilitator_is_a_member_on_the_other_node_too() {
    let redis = Redis::start();
    let a = node(&redis, "a").await;
    let b = node(&redis, "b").await;
    let (mut mo, _) = a.member_in(ROOM, Some("Mo")).await;
    // Kai may moderate anxiety only, and joins grief on node b.
    let token = b.app.auth.staff_token(Role::Facilitator, "Kai", Some(vec![RoomId::from("anxiety")]), Duration::from_secs(600));
    let mut kai = b.client().await;
    kai.hello(Some(&token), None).await;
    let joined = kai.join(ROOM).await;
    assert_eq!(joined_parts(&joined).0.role, Role::Member);
    let seen = mo.expect("Kai's presence on node a", |m| matches!(m, ServerMessage::Presence { joined: Some(j), .. } if j.handle == "Kai")).await;
    assert!(matches!(seen, ServerMessage::Presence { joined: Some(j), .. } if j.role == Role::Member), "no Facilitator badge on node a either");
    // A staff note from an in-scope facilitator on node a does not reach Kai on node b.
    let mut sam = a.staff(Role::Facilitator, Some(vec![ROOM]), ROOM).await;
    sam.send(&ClientMessage::Send { id: Some(1.into()), room: RoomId::from(ROOM), text: "staff only".into(), reply_to: None, cw: None, staff: true }).await;
    sam.expect("staff copy", |m| matches!(m, ServerMessage::Message(msg) if msg.staff)).await;
    mo.say(ROOM, "after the note").await;
    // Everything Kai gets up to Mo's later message: no staff note among it.
    loop {
        match kai.recv().await {
            ServerMessage::Message(msg) if msg.staff => panic!("a staff note reached an out-of-scope facilitator"),
            ServerMessage::Message(msg) if msg.text == "after the note" => break,
            _ => {}
        }
    }
}

/// The Rust client library fails over: its node is SIGKILLed, it reconnects
/// to the next address it was given, and every message acked on the other
/// node, before and after, reaches it once and in order, resumed from Redis.
#[tokio::test]
async fn the_rust_client_fails_over_to_another_node_and_misses_nothing() {
    use crate::clients::{join, next, quick};
    use kindred_protocol::connection::{Client, Event, Options};
    let (_redis, _data, mut doomed, survivor) = doomed_and_survivor().await;
    let options = Options { failover: vec![survivor.url()], ..quick() };
    let (reader, mut events) = Client::connect(doomed.url(), options).await.expect("connects to the first node");
    join(&reader).await;
    let (mut sol, _) = survivor.member_in(ROOM, Some("Sol")).await;
    let mut acked = Vec::new();
    for n in 0..5 {
        acked.push(sol.say(ROOM, &format!("before {n}")).await.0);
    }
    let mut seen = Vec::new();
    if let Event::Frame(ServerMessage::Message(m)) = next(&mut events, "a first message").await {
        seen.push(m.message_id.0);
    }
    doomed.kill();
    for n in 0..5 {
        acked.push(sol.say(ROOM, &format!("after {n}")).await.0);
    }
    let mut recovered = None;
    while seen.len() < acked.len() || recovered.is_none() {
        match next(&mut events, "the rest, on the other node").await {
            Event::Frame(ServerMessage::Message(m)) => seen.push(m.message_id.0),
            Event::Reconnected { rooms } => recovered = Some(rooms.iter().all(|r| r.recovered)),
            _ => {}
        }
    }
    assert_eq!(seen, acked, "every acked message once, in order");
    assert_eq!(recovered, Some(true), "history in Redis: the resume is complete");
}
