//! Registry scenarios: joins, relays, leaves and sweeps as adapters drive them.

use std::time::Duration;

use bytes::Bytes;
use switchboard_core::*;

const D: DialectTag = DialectTag(1);

struct TestPeer {
    handle: PeerHandle,
    rx: OutboxReceiver,
}

fn peer(capacity: usize) -> TestPeer {
    let (handle, rx) = outbox(ConnId::next(), D, OutboxBounds::items(capacity));
    TestPeer { handle, rx }
}

impl TestPeer {
    fn next(&mut self) -> Event {
        match self.rx.try_recv().expect("an event is queued") {
            Outbound::Event(env) => env.event.clone(),
            other => panic!("unexpected {other:?}"),
        }
    }
    fn is_empty(&mut self) -> bool {
        self.rx.try_recv().is_none()
    }
}

fn join_with(
    reg: &Registry,
    room: RoomId,
    peer: PeerId,
    handle: PeerHandle,
    opts: JoinOptions,
) -> Result<Seat, JoinError> {
    reg.join_now(JoinRequest {
        room,
        peer,
        handle,
        opts,
    })
}

fn join(
    reg: &Registry,
    room: &str,
    id: &str,
    p: &TestPeer,
    mode: JoinMode,
) -> Result<Seat, JoinError> {
    join_with(
        reg,
        room.into(),
        id.into(),
        p.handle.clone(),
        JoinOptions {
            mode,
            ..Default::default()
        },
    )
}

fn policy() -> SweepPolicy {
    SweepPolicy {
        empty_grace: Duration::from_secs(30),
        unjoined_ttl: Duration::from_secs(60),
        inactivity_timeout: Duration::from_secs(3600),
        force_empty: false,
    }
}

#[test]
fn joiner_gets_the_member_list_and_others_get_peer_joined() {
    let reg = Registry::new(Limits::default());
    let mut a = peer(8);
    let mut b = peer(8);
    let _ma = join(&reg, "r", "alice", &a, JoinMode::Create).unwrap();
    match a.next() {
        Event::Joined { room, me, created } => {
            assert!(created);
            assert_eq!(me.as_str(), "alice");
            assert_eq!(room.members.len(), 1);
            assert!(room.members[0].is_host);
        }
        other => panic!("{other:?}"),
    }
    let _mb = join(&reg, "r", "bob", &b, JoinMode::Existing).unwrap();
    match b.next() {
        Event::Joined { room, created, .. } => {
            assert!(!created);
            let ids: Vec<_> = room
                .members
                .iter()
                .map(|m| m.id.as_str().to_owned())
                .collect();
            assert_eq!(ids, ["alice", "bob"]);
        }
        other => panic!("{other:?}"),
    }
    match a.next() {
        Event::PeerJoined { peer, .. } => assert_eq!(peer.id.as_str(), "bob"),
        other => panic!("{other:?}"),
    }
    assert!(b.is_empty(), "the joiner does not hear about itself");
    assert_eq!(reg.stats_now(), RegistryStats { rooms: 1, peers: 2 });
}

#[test]
fn join_errors_are_typed() {
    let reg = Registry::new(Limits {
        max_peers_per_room: 2,
        max_rooms: 1,
        ..Limits::default()
    });
    let (a, b, c, d) = (peer(8), peer(8), peer(8), peer(8));
    assert!(matches!(
        join(&reg, "r", "a", &a, JoinMode::Existing),
        Err(JoinError::RoomNotFound(_))
    ));
    let _ma = join(&reg, "r", "a", &a, JoinMode::Create).unwrap();
    assert!(matches!(
        join(&reg, "r", "x", &b, JoinMode::Create),
        Err(JoinError::RoomExists(_))
    ));
    assert!(matches!(
        join(&reg, "r", "a", &b, JoinMode::Existing),
        Err(JoinError::PeerIdTaken { .. })
    ));
    let _mb = join(&reg, "r", "b", &b, JoinMode::Existing).unwrap();
    assert!(matches!(
        join(&reg, "r", "c", &c, JoinMode::Existing),
        Err(JoinError::RoomFull { capacity: 2, .. })
    ));
    assert!(matches!(
        join(&reg, "other", "d", &d, JoinMode::CreateOrJoin),
        Err(JoinError::TooManyRooms(1))
    ));
}

/// A gate that refuses creation, and counts how often it was asked.
struct Closed(std::sync::atomic::AtomicUsize);

impl CreationGate for Closed {
    fn allow(&self, creator: Option<std::net::IpAddr>) -> Result<(), JoinError> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match creator {
            Some(_) => Err(JoinError::CreationRateLimited),
            None => Err(JoinError::NotAdmitting),
        }
    }
}

#[test]
fn the_creation_gate_decides_new_rooms_only() {
    let open = Registry::new(Limits::default());
    let gate = std::sync::Arc::new(Closed(Default::default()));
    let reg = Registry::with_gate(Limits::default(), gate.clone());
    let (a, b) = (peer(8), peer(8));
    assert!(matches!(
        join(&reg, "new", "a", &a, JoinMode::CreateOrJoin),
        Err(JoinError::NotAdmitting)
    ));
    let from = CreateOptions {
        creator: Some("127.0.0.2".parse().unwrap()),
        ..Default::default()
    };
    assert!(matches!(
        reg.create_room_now("api".into(), from),
        Err(JoinError::CreationRateLimited)
    ));
    assert_eq!(gate.0.load(std::sync::atomic::Ordering::Relaxed), 2);
    // Joining a room that exists never asks the gate.
    let _ma = join(&open, "r", "a", &a, JoinMode::Create).unwrap();
    drop(open);
    assert!(reg.room_now(&"r".into()).is_none());
    assert!(matches!(
        join(&reg, "r", "b", &b, JoinMode::Existing),
        Err(JoinError::RoomNotFound(_))
    ));
    assert_eq!(gate.0.load(std::sync::atomic::Ordering::Relaxed), 2);
}

#[test]
fn a_full_server_does_not_spend_the_gate() {
    let gate = std::sync::Arc::new(Closed(Default::default()));
    let reg = Registry::with_gate(
        Limits {
            max_rooms: 0,
            ..Limits::default()
        },
        gate.clone(),
    );
    let a = peer(8);
    let _ = join(&reg, "x", "a", &a, JoinMode::CreateOrJoin);
    assert_eq!(gate.0.load(std::sync::atomic::Ordering::Relaxed), 1);
    let full = Registry::with_gate(
        Limits {
            max_rooms: 1,
            ..Limits::default()
        },
        gate.clone(),
    );
    full.create_room_now("only".into(), CreateOptions::default())
        .unwrap_err();
    assert_eq!(gate.0.load(std::sync::atomic::Ordering::Relaxed), 2);
}

#[test]
fn a_room_capacity_tighter_than_the_server_wins() {
    let reg = Registry::new(Limits::default());
    let (a, b, c) = (peer(8), peer(8), peer(8));
    let opts = |mode| JoinOptions {
        mode,
        create: CreateOptions {
            capacity: Some(2),
            ..Default::default()
        },
        ..Default::default()
    };
    let _ma = join_with(
        &reg,
        "r".into(),
        "a".into(),
        a.handle.clone(),
        opts(JoinMode::CreateOrJoin),
    )
    .unwrap();
    let _mb = join_with(
        &reg,
        "r".into(),
        "b".into(),
        b.handle.clone(),
        opts(JoinMode::CreateOrJoin),
    )
    .unwrap();
    let err = join_with(
        &reg,
        "r".into(),
        "c".into(),
        c.handle.clone(),
        opts(JoinMode::CreateOrJoin),
    )
    .unwrap_err();
    assert!(matches!(err, JoinError::RoomFull { capacity: 2, .. }));
}

#[test]
fn targeted_relay_reaches_only_the_target_and_broadcast_skips_the_sender() {
    let reg = Registry::new(Limits::default());
    let (mut a, mut b, mut c) = (peer(8), peer(8), peer(8));
    let ma = join(&reg, "r", "a", &a, JoinMode::CreateOrJoin).unwrap();
    let _mb = join(&reg, "r", "b", &b, JoinMode::CreateOrJoin).unwrap();
    let _mc = join(&reg, "r", "c", &c, JoinMode::CreateOrJoin).unwrap();
    while !a.is_empty() {}
    while !b.is_empty() {}
    while !c.is_empty() {}

    let d = reg
        .relay_now(
            ma.key(),
            Target::Peer("b".into()),
            SignalKind::Offer,
            Bytes::from_static(b"{}"),
            D,
        )
        .unwrap();
    assert_eq!(d.delivered, 1);
    match b.next() {
        Event::Signal(s) => {
            assert_eq!(s.from.as_str(), "a");
            assert_eq!(s.to.as_ref().map(PeerId::as_str), Some("b"));
            assert_eq!(s.payload, "{}");
        }
        other => panic!("{other:?}"),
    }
    assert!(c.is_empty() && a.is_empty());

    let d = reg
        .relay_now(
            ma.key(),
            Target::Room,
            SignalKind::Candidate,
            Bytes::new(),
            D,
        )
        .unwrap();
    assert_eq!(d.delivered, 2);
    assert!(matches!(b.next(), Event::Signal(_)));
    assert!(matches!(c.next(), Event::Signal(_)));
    assert!(a.is_empty(), "never echoed to the sender");

    let err = reg
        .relay_now(
            ma.key(),
            Target::Peer("nobody".into()),
            SignalKind::Offer,
            Bytes::new(),
            D,
        )
        .unwrap_err();
    assert_eq!(err, RelayError::PeerNotFound("nobody".into()));
}

#[test]
fn a_slow_peer_is_closed_and_the_sender_told() {
    let reg = Registry::new(Limits::default());
    let (a, b) = (peer(8), peer(2));
    let ma = join(&reg, "r", "a", &a, JoinMode::CreateOrJoin).unwrap();
    let _mb = join(&reg, "r", "b", &b, JoinMode::CreateOrJoin).unwrap();
    // b's outbox holds Joined plus one more; it never reads.
    reg.relay_now(
        ma.key(),
        Target::Peer("b".into()),
        SignalKind::Offer,
        Bytes::new(),
        D,
    )
    .unwrap();
    let err = reg
        .relay_now(
            ma.key(),
            Target::Peer("b".into()),
            SignalKind::Offer,
            Bytes::new(),
            D,
        )
        .unwrap_err();
    assert_eq!(err, RelayError::Undelivered(vec!["b".into()]));
    assert_eq!(b.handle.close_reason(), Some(CloseReason::SlowConsumer));
    assert!(!a.handle.is_closing());
}

#[test]
fn dropping_a_membership_tells_the_room_once() {
    let reg = Registry::new(Limits::default());
    let (mut a, b) = (peer(8), peer(8));
    let _ma = join(&reg, "r", "a", &a, JoinMode::CreateOrJoin).unwrap();
    let mb = join(&reg, "r", "b", &b, JoinMode::CreateOrJoin).unwrap();
    let _ = a.next();
    let _ = a.next();
    drop(mb);
    match a.next() {
        Event::PeerLeft { peer, .. } => assert_eq!(peer.as_str(), "b"),
        other => panic!("{other:?}"),
    }
    assert!(a.is_empty());
    assert_eq!(reg.stats_now().peers, 1);
}

#[test]
fn a_late_undelivered_notice_reaches_the_sender_s_seat_and_no_successor() {
    let reg = Registry::new(Limits::default());
    let (mut a, b) = (peer(8), peer(1));
    let seat = join(&reg, "r", "a", &a, JoinMode::CreateOrJoin).unwrap();
    let _ = a.next();
    let key = seat.key().clone();
    let lost = RelayError::Unavailable("the node holding z is unreachable".into());
    assert!(Backplane::new(reg.clone()).notify_undelivered(&key, lost.clone()));
    match a.rx.try_recv() {
        Some(Outbound::Undelivered(e)) => assert_eq!(*e, lost),
        other => panic!("{other:?}"),
    }
    // A full outbox closes its peer, as any delivery would.
    let bseat = join(&reg, "r", "b", &b, JoinMode::CreateOrJoin).unwrap();
    assert!(!Backplane::new(reg.clone()).notify_undelivered(bseat.key(), lost.clone()));
    assert_eq!(b.handle.close_reason(), Some(CloseReason::SlowConsumer));
    // The seat is gone (left, or the room re-created): nobody is told.
    drop(seat);
    assert!(!Backplane::new(reg.clone()).notify_undelivered(&key, lost.clone()));
    let _again = join(&reg, "r", "a", &a, JoinMode::CreateOrJoin).unwrap();
    assert!(!Backplane::new(reg.clone()).notify_undelivered(&key, lost));
}

#[test]
fn a_rejoin_on_the_same_connection_retires_the_old_guard() {
    let reg = Registry::new(Limits::default());
    let a = peer(8);
    let first = join(&reg, "r", "a", &a, JoinMode::CreateOrJoin).unwrap();
    let second = join(&reg, "r", "a", &a, JoinMode::CreateOrJoin).unwrap();
    drop(first);
    assert!(second.is_live());
    assert_eq!(reg.stats_now().peers, 1);
    drop(second);
    assert_eq!(reg.stats_now().peers, 0);
}

#[test]
fn a_stale_guard_never_touches_a_successor_room() {
    let reg = Registry::new(Limits::default());
    let (mut a, b) = (peer(8), peer(8));
    let old = join(&reg, "r", "a", &a, JoinMode::CreateOrJoin).unwrap();
    assert!(reg.delete_room_now(&"r".into()));
    let _ = a.next();
    assert!(matches!(
        a.next(),
        Event::RoomClosed {
            reason: RoomClosedReason::Deleted,
            ..
        }
    ));
    assert!(!old.is_live());
    let _new = join(&reg, "r", "a", &b, JoinMode::CreateOrJoin).unwrap();
    drop(old);
    assert_eq!(reg.stats_now(), RegistryStats { rooms: 1, peers: 1 });
}

#[tokio::test(start_paused = true)]
async fn empty_rooms_go_after_their_grace_and_idle_rooms_are_closed() {
    let reg = Registry::new(Limits::default());
    let mut a = peer(8);
    let b = peer(8);
    reg.create_room_now("api".into(), CreateOptions::default())
        .unwrap();
    let mb = join(&reg, "left", "b", &b, JoinMode::CreateOrJoin).unwrap();
    drop(mb);
    let _ma = join(&reg, "busy", "a", &a, JoinMode::CreateOrJoin).unwrap();
    let _ = a.next();
    let immediate = join_with(
        &reg,
        "gone".into(),
        "b".into(),
        b.handle.clone(),
        JoinOptions {
            mode: JoinMode::CreateOrJoin,
            create: CreateOptions {
                empty_grace: Some(Duration::ZERO),
                ..Default::default()
            },
            ..Default::default()
        },
    );
    drop(immediate);
    assert!(
        reg.room_now(&"gone".into()).is_none(),
        "zero grace removes at once"
    );

    assert_eq!(reg.sweep(policy()), SweepReport::default());
    tokio::time::advance(Duration::from_secs(31)).await;
    // "left" emptied 31 s ago; "api" was never joined and waits up to 60 s for a member.
    assert_eq!(
        reg.sweep(policy()),
        SweepReport {
            empty_removed: 1,
            idle_closed: 0
        }
    );
    assert!(reg.room_now(&"busy".into()).is_some());
    assert!(reg.room_now(&"api".into()).is_some());
    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(
        reg.sweep(policy()),
        SweepReport {
            empty_removed: 1,
            idle_closed: 0
        },
        "an unjoined room goes after unjoined_ttl"
    );
    assert!(reg.room_now(&"api".into()).is_none());

    tokio::time::advance(Duration::from_secs(3600)).await;
    assert_eq!(
        reg.sweep(policy()),
        SweepReport {
            empty_removed: 0,
            idle_closed: 1
        }
    );
    assert!(matches!(
        a.next(),
        Event::RoomClosed {
            reason: RoomClosedReason::Inactive,
            ..
        }
    ));
    assert_eq!(reg.stats_now(), RegistryStats { rooms: 0, peers: 0 });
}

#[tokio::test(start_paused = true)]
async fn a_room_created_empty_then_joined_follows_the_empty_grace() {
    let reg = Registry::new(Limits::default());
    let a = peer(8);
    reg.create_room_now("api".into(), CreateOptions::default())
        .unwrap();
    tokio::time::advance(Duration::from_secs(50)).await;
    let m = join(&reg, "api", "a", &a, JoinMode::Existing).unwrap();
    drop(m);
    tokio::time::advance(Duration::from_secs(20)).await;
    // 70 s since creation, but it was joined: the 30 s empty grace counts from the leave.
    assert_eq!(reg.sweep(policy()), SweepReport::default());
    tokio::time::advance(Duration::from_secs(11)).await;
    assert_eq!(reg.sweep(policy()).empty_removed, 1);
}

// --- entry points for a cluster backend ------------------------------------------------------

fn summary(id: &str, joined_at_ms: u64) -> MemberSummary {
    MemberSummary {
        id: id.into(),
        name: None,
        is_host: false,
        joined_at_ms,
        last_heartbeat_ms: joined_at_ms,
        dialect: DialectTag(2),
    }
}

#[test]
fn a_mirrored_join_lists_remote_members_in_join_order_and_skips_the_gate() {
    struct Never;
    impl CreationGate for Never {
        fn allow(&self, _: Option<std::net::IpAddr>) -> Result<(), JoinError> {
            Err(JoinError::NotAdmitting)
        }
    }
    let limits = Limits {
        max_rooms: 1,
        ..Limits::default()
    };
    let reg = Registry::with_gate(limits, std::sync::Arc::new(Never));
    let mut a = peer(8);
    let mirror = |remote| Mirror {
        create: CreateOptions {
            empty_grace: Some(Duration::ZERO),
            ..CreateOptions::default()
        },
        created: false,
        remote,
    };
    // The backend decided the room exists: neither the gate nor the room limit is asked.
    let seat = Backplane::new(reg.clone())
        .join_mirrored(
            JoinRequest {
                room: "r".into(),
                peer: "a".into(),
                handle: a.handle.clone(),
                opts: JoinOptions::default(),
            },
            mirror(vec![summary("x", 1), summary("y", u64::MAX)]),
        )
        .unwrap();
    let Event::Joined { room, created, .. } = a.next() else {
        panic!("Joined first")
    };
    assert!(!created);
    let ids: Vec<_> = room.members.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["x", "a", "y"], "ordered by join time across nodes");
    // A second mirrored room is not refused by MAX_ROOMS either.
    let b = peer(8);
    let _s2 = Backplane::new(reg.clone())
        .join_mirrored(
            JoinRequest {
                room: "r2".into(),
                peer: "b".into(),
                handle: b.handle.clone(),
                opts: JoinOptions::default(),
            },
            mirror(Vec::new()),
        )
        .unwrap();
    // A mirror made with a zero grace disappears with its last local member.
    let key = seat.into_key();
    assert!(Backplane::new(reg.clone()).is_live(&key));
    assert!(Backplane::new(reg.clone()).release(&key), "released once");
    assert!(!Backplane::new(reg.clone()).release(&key), "and only once");
    assert!(reg.room_now(&"r".into()).is_none());
}

#[test]
fn relay_with_counts_remote_members_in_the_audience_and_reports_unknown_targets() {
    let reg = Registry::new(Limits::default());
    let (a, mut b) = (peer(8), peer(8));
    let sa = join(&reg, "r", "a", &a, JoinMode::CreateOrJoin).unwrap();
    let _sb = join(&reg, "r", "b", &b, JoinMode::Existing).unwrap();
    let _ = b.next(); // Joined
    let d = Backplane::new(reg.clone())
        .relay_with(
            sa.key(),
            Target::Room,
            SignalKind::Publish,
            Bytes::from_static(b"{}"),
            D,
            3,
        )
        .unwrap();
    assert_eq!(d.delivered, 1);
    let Event::Signal(s) = b.next() else {
        panic!("a signal")
    };
    assert_eq!(s.audience, 5, "two here and three elsewhere");
    let e = Backplane::new(reg.clone())
        .relay_with(
            sa.key(),
            Target::Peer("elsewhere".into()),
            SignalKind::Offer,
            Bytes::new(),
            D,
            3,
        )
        .unwrap_err();
    assert_eq!(e, RelayError::PeerNotFound("elsewhere".into()));
}

#[test]
fn close_all_asks_every_member_to_close() {
    let reg = Registry::new(Limits::default());
    let (a, b) = (peer(8), peer(8));
    let _sa = join(&reg, "r1", "a", &a, JoinMode::CreateOrJoin).unwrap();
    let _sb = join(&reg, "r2", "b", &b, JoinMode::CreateOrJoin).unwrap();
    assert!(Backplane::new(reg.clone()).has_member(&"r1".into(), &"a".into()));
    assert_eq!(
        Backplane::new(reg.clone()).close_all(CloseReason::ClusterLost),
        2
    );
    assert_eq!(a.handle.close_reason(), Some(CloseReason::ClusterLost));
    assert_eq!(b.handle.close_reason(), Some(CloseReason::ClusterLost));
}
