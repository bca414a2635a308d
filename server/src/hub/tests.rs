use super::*;
use kindred_protocol::{MessageId, Sender};

#[tokio::test]
async fn a_close_request_reaches_a_waiting_or_a_late_session_and_the_first_wins() {
    let control = Arc::new(Control::default());
    let waiting = tokio::spawn({
        let control = control.clone();
        async move { control.closed().await }
    });
    tokio::task::yield_now().await;
    let asker = std::thread::spawn({
        let control = control.clone();
        move || control.close(CloseCode::TooSlow)
    });
    asker.join().unwrap();
    let code = tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("the waiting session was woken").unwrap();
    assert_eq!(code, CloseCode::TooSlow);
    control.close(CloseCode::Banned);
    assert_eq!(control.closed().await, CloseCode::TooSlow, "the first request wins, and a late look sees it");
}

fn stored(seq: u64) -> Stored {
    stored_by(seq, "a_1")
}

/// Message `m{seq}` in grief, written by `account` (for other modules' tests too).
pub(crate) fn stored_by(seq: u64, account: &str) -> Stored {
    let msg = ChatMessage {
        room: RoomId::from("grief"),
        message_id: MessageId(format!("m{seq}")),
        seq,
        from: Sender { member_id: MemberId::from("m_1"), handle: "Ann".into(), role: Role::Member },
        text: format!("text {seq}"),
        ts: "2026-11-23T10:00:00.000Z".into(),
        reply_to: None,
        cw: None,
        staff: false,
        staff_seq: None,
        reactions: None,
    };
    Stored { msg, account: AccountId::from(account), at: Instant::now() }
}

/// A cluster room with one staff connection; returns the room and what the connection receives.
fn cluster_room() -> (Arc<Room>, crate::mailbox::Receiver) {
    let defs = crate::rooms::RoomsFile::builtin().into_defs().unwrap();
    let (link, _link_rx) = mpsc::channel(1024);
    let hub = Hub::new(defs, Arc::new(Limits::default()), Arc::default(), Replicator::cluster(link));
    let room = hub.room(&RoomId::from("grief")).unwrap();
    room.begin_load();
    assert_eq!(room.load("e1", 0, Vec::new()), None);
    let (tx, rx) = crate::mailbox::mailbox(64);
    room.join(staff_join(ConnId::next(), "staff", "Sam", tx), Vec::new).unwrap();
    (room, rx)
}

/// A facilitator's join (no rules to accept), as account `a_{id}` and member `m_{id}`.
fn staff_join(conn: ConnId, id: &str, handle: &str, tx: crate::mailbox::Sender) -> JoinRequest {
    JoinRequest {
        conn,
        account: AccountId::from(format!("a_{id}").as_str()),
        member_id: MemberId::from(format!("m_{id}").as_str()),
        handle: handle.into(),
        role: Role::Facilitator,
        accept_rules: None,
        since: None,
        outbox: Outbox { tx, control: Arc::default() },
        muted: None,
    }
}

fn seqs(rx: &mut crate::mailbox::Receiver) -> Vec<u64> {
    let mut out = Vec::new();
    while let Some(frame) = rx.try_recv() {
        if let Ok(ServerMessage::Message(m)) = serde_json::from_str(frame.as_str()) {
            out.push(m.seq);
        }
    }
    out
}

#[test]
fn a_gap_holds_later_messages_until_it_is_filled() {
    let (room, mut rx) = cluster_room();
    assert_eq!(room.deliver("e1", stored(1)), None);
    assert_eq!(room.deliver("e1", stored(1)), None, "a duplicate is dropped");
    assert_eq!(room.deliver("e1", stored(4)), Some((2, 3)), "a gap asks to be filled");
    assert_eq!(room.deliver("e1", stored(5)), Some((2, 4)));
    assert_eq!(seqs(&mut rx), [1], "nothing after the gap goes out before it is filled");
    // The fill finds 2 only (3 was deleted): delivery moves past 3, then 4 and 5 follow.
    assert_eq!(room.filled("e1", 3, vec![stored(2)]), None);
    assert_eq!(seqs(&mut rx), [2, 4, 5]);
    assert_eq!(room.position(), ("e1".to_owned(), 5));
}

/// The sender's node delivers its own message from Redis's reply. One
/// from another node that Redis ordered before it may still be on its
/// way: the own message waits for it, and its push is a duplicate.
#[test]
fn an_appended_message_waits_for_earlier_ones_and_its_push_is_dropped() {
    let (room, mut rx) = cluster_room();
    assert_eq!(room.deliver("e1", stored(1)), None);
    assert_eq!(room.deliver("e1", stored(3)), Some((2, 2)), "its node leaves the gap to the subscription");
    assert_eq!(seqs(&mut rx), [1], "not ahead of 2");
    assert_eq!(room.deliver("e1", stored(2)), None);
    assert_eq!(room.deliver("e1", stored(3)), None, "its push");
    assert_eq!(seqs(&mut rx), [2, 3]);
    assert_eq!(room.deliver("e1", stored(4)), None);
    assert_eq!(room.deliver("e1", stored(4)), None);
    assert_eq!(seqs(&mut rx), [4]);
}

fn remote(id: &str) -> RemoteMember {
    let member = Member {
        member_id: MemberId::from(id),
        handle: id.to_owned(),
        role: Role::Member,
        muted: false,
        muted_until: None,
        hand_raised: false,
        has_floor: false,
        first_time: false,
    };
    RemoteMember { node: Arc::from("b"), member, account: AccountId::from("a_x") }
}

/// Regression: removing a dead connection announced the departure with a
/// fan-out that removed the next dead connection, and so on: one level of
/// recursion per member. A 2,000-member room whose connections all closed
/// at once overflowed the stack and aborted the server.
#[test]
fn a_room_whose_connections_all_close_at_once_empties_without_recursing() {
    const MEMBERS: usize = 800;
    // A small stack: recursing once per member overflows it many times over.
    let worker = std::thread::Builder::new().stack_size(128 * 1024).spawn(|| {
        let mut defs = crate::rooms::RoomsFile::builtin().into_defs().unwrap();
        defs.iter_mut().for_each(|d| d.capacity = 10_000);
        let hub = Hub::new(defs, Arc::new(Limits::default()), Arc::default(), Replicator::local());
        let room = hub.room(&RoomId::from("grief")).unwrap();
        let mut mailboxes = Vec::new();
        for i in 0..MEMBERS {
            let (tx, rx) = crate::mailbox::mailbox(MEMBERS + 8);
            let conn = ConnId::next();
            room.join(staff_join(conn, &i.to_string(), &format!("Member {i}"), tx), Vec::new).unwrap();
            mailboxes.push((conn, rx));
        }
        let (first, _kept) = mailboxes.remove(0);
        drop(mailboxes);
        // The one live member leaves; its departure finds every other connection closed.
        assert!(room.leave(first));
        room.member_count()
    });
    assert_eq!(worker.unwrap().join().unwrap(), 0, "every closed connection was removed");
}

#[test]
fn a_presence_snapshot_older_than_an_event_does_not_undo_it() {
    let (room, _rx) = cluster_room();
    let node: Arc<str> = Arc::from("b");
    room.sync_remote_members(vec![remote("m_old")], Instant::now());
    assert!(room.member(&MemberId::from("m_old")).is_some());
    let read_at = Instant::now();
    // After the snapshot was read, one member joined and another left.
    room.apply_remote(&node, Event::Joined { member: remote("m_new").member, account: AccountId::from("a_new") });
    room.apply_remote(&node, Event::Left { member_id: MemberId::from("m_old") });
    // The stale snapshot lists the leaver and lacks the newcomer.
    room.sync_remote_members(vec![remote("m_old")], read_at);
    assert!(room.member(&MemberId::from("m_new")).is_some(), "a newer join was undone");
    assert!(room.member(&MemberId::from("m_old")).is_none(), "a newer leave was undone");
    // A snapshot read after the events is applied as it is.
    room.sync_remote_members(Vec::new(), Instant::now());
    assert!(room.member(&MemberId::from("m_new")).is_none());
}

#[test]
fn a_silent_nodes_members_go_and_the_others_stay() {
    let (room, _rx) = cluster_room();
    let other = RemoteMember { node: Arc::from("c"), ..remote("m_c") };
    room.sync_remote_members(vec![remote("m_b1"), remote("m_b2"), other], Instant::now());
    assert_eq!(room.forget_node("b"), 2);
    assert!(room.member(&MemberId::from("m_b1")).is_none());
    assert!(room.member(&MemberId::from("m_c")).is_some(), "a member of a live node was dropped");
    assert_eq!(room.forget_node("b"), 0);
}

#[test]
fn arrivals_during_a_load_wait_for_it() {
    let (room, mut rx) = cluster_room();
    room.begin_load();
    assert_eq!(room.deliver("e1", stored(3)), None);
    assert_eq!(room.deliver("e1", stored(2)), None);
    assert!(seqs(&mut rx).is_empty());
    // The load brought history up to 2: 2 is a duplicate, 3 goes out.
    assert_eq!(room.load("e1", 2, vec![stored(1), stored(2)]), None);
    assert_eq!(seqs(&mut rx), [3]);
}

#[test]
fn a_pinned_message_older_than_the_retention_is_unpinned() {
    let (room, mut rx) = cluster_room();
    let def = room.def();
    let mut pinned = stored(1).msg;
    pinned.ts = rfc3339(Utc::now() - chrono::Duration::minutes(i64::from(room.limits.history_minutes) + 1));
    room.update(|s| *s.pinned = Some(Box::new(pinned.clone())));
    while rx.try_recv().is_some() {}
    let mut state = room.state.lock();
    room.prune(&def, &mut state);
    assert!(state.pinned.is_none(), "past the retention: unpinned");
    drop(state);
    let frame = rx.try_recv().expect("a room_update");
    assert!(matches!(serde_json::from_str(frame.as_str()), Ok(ServerMessage::RoomUpdate { info, .. }) if info.pinned.is_none()));

    // A recent one stays, whatever the count.
    pinned.ts = rfc3339(Utc::now());
    room.update(|s| *s.pinned = Some(Box::new(pinned)));
    let mut state = room.state.lock();
    room.prune(&def, &mut state);
    assert!(state.pinned.is_some());
}

#[test]
fn reactions_count_once_per_member_and_kind_and_go_with_their_message() {
    let (room, mut rx) = cluster_room();
    room.deliver("e1", stored(1));
    let id = MessageId::from("m1");
    let react = |member: &str, kind: &'static str, on: bool| Reaction { message_id: id.clone(), member_id: MemberId::from(member), kind, on };
    let counts = |rx: &mut crate::mailbox::Receiver| {
        let mut last = None;
        while let Some(frame) = rx.try_recv() {
            if let Ok(ServerMessage::Reactions { counts, .. }) = serde_json::from_str(frame.as_str()) {
                last = Some(counts);
            }
        }
        last
    };
    assert!(room.react(&react("m_a", "hug", true)));
    assert!(room.react(&react("m_b", "hug", true)));
    assert!(room.react(&react("m_a", "hug", true)), "again: no change");
    assert!(room.react(&react("m_a", "same", true)));
    assert_eq!(counts(&mut rx), Some([("hug".to_owned(), 2), ("same".to_owned(), 1)].into()));
    assert!(room.react(&react("m_a", "same", false)));
    assert_eq!(counts(&mut rx), Some([("hug".to_owned(), 2)].into()));
    assert_eq!(room.find_message(&id).and_then(|m| m.reactions), Some([("hug".to_owned(), 2)].into()));
    assert!(room.delete_message(&id));
    assert!(!room.react(&react("m_c", "hug", true)), "gone with the message");
    assert!(room.state.lock().reactions.is_empty());
}
