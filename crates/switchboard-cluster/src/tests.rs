//! The node's logic without Redis: a node built but never connected, messages handed to
//! its subscriber path as Redis would deliver them, its publisher queue read by the test.
//! Views and their sequence checks, the room gates, own signals, undelivered notices both
//! ways. (The same paths with real `redis-server` processes: `tests/cluster*.rs`.)

use super::*;
use switchboard_core::{
    ConnId, JoinOptions, Outbound, OutboxBounds, OutboxReceiver, PeerHandle, outbox,
};

const ME: &str = "n1#00000001";
const OTHER: &str = "n2#00000002";

struct NoGate;

impl CreationGate for NoGate {
    fn allow(&self, _: Option<std::net::IpAddr>) -> Result<(), JoinError> {
        Ok(())
    }
}

/// A node that never connects, and the queues its tasks would serve.
struct TestNode {
    inner: Arc<Inner>,
    queues: Queues,
    registry: Registry,
}

/// A local member and its outbox.
struct Member {
    seat: Seat,
    rx: OutboxReceiver,
}

impl Member {
    fn events(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        while let Some(item) = self.rx.try_recv() {
            match item {
                Outbound::Event(env) => out.push(env.event.clone()),
                other => panic!("expected an event, got {other:?}"),
            }
        }
        out
    }
}

fn node() -> TestNode {
    let registry = Registry::new(switchboard_core::Limits::default());
    let settings = Settings {
        url: "redis://127.0.0.1:1".into(),
        node_id: "n1".into(),
        lease: Duration::from_secs(3),
        fence_timeout: Duration::from_secs(30),
        empty_grace: Duration::from_secs(30),
        unjoined_ttl: Duration::from_secs(60),
        max_rooms: 0,
        max_peers_per_room: 0,
        separate_secured: false,
    };
    let (inner, queues) =
        Inner::new(settings, registry.clone(), Arc::new(NoGate)).expect("a valid URL");
    // A fixed instance id, so that the messages below can name it.
    let inner = Arc::new(Inner {
        inst: Arc::from(ME),
        own_signal: wire::own_signal_prefix(ME),
        ..Arc::into_inner(inner).expect("not shared yet")
    });
    TestNode {
        inner,
        queues,
        registry,
    }
}

impl TestNode {
    /// Seats `peer` in `room` here (as a join does once Redis said yes) and holds the room's
    /// view, as a node with members there does.
    fn seat(&self, room: &str, peer: &str, capacity: usize) -> Member {
        let (handle, rx): (PeerHandle, _) =
            outbox(ConnId::next(), DialectTag(1), OutboxBounds::items(capacity));
        let seat = self
            .registry
            .join_now(JoinRequest {
                room: room.into(),
                peer: peer.into(),
                handle: handle.clone(),
                opts: JoinOptions {
                    mode: JoinMode::CreateOrJoin,
                    ..JoinOptions::default()
                },
            })
            .expect("seated");
        let mut st = self.inner.lock();
        st.views.entry(room.into()).or_default();
        st.locals.entry(room.into()).or_default().insert(
            peer.into(),
            Local {
                uid: self.inner.uid(handle.conn()),
                record: String::new(),
                create: CreateOptions::default(),
                key: seat.key().clone(),
            },
        );
        drop(st);
        let mut m = Member { seat, rx };
        m.events(); // its own Joined
        m
    }

    fn receive(&self, msg: &str) {
        self.inner.receive(msg.as_bytes());
    }

    /// Everything the node queued for the publisher: (channel, message).
    fn published(&mut self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        while let Ok(p) = self.queues.publisher.try_recv() {
            out.push((
                p.channel.to_string(),
                String::from_utf8(p.msg).expect("UTF-8"),
            ));
        }
        out
    }
}

fn join_event(room: &str, seq: u64, peer: &str, uid: &str) -> String {
    format!(
        r#"{{"t":"j","o":"{OTHER}","r":"{room}","q":{seq},"p":"{peer}","m":{{"u":"{uid}","o":"{OTHER}","t":1,"d":1}}}}"#
    )
}

fn leave_event(room: &str, seq: u64, peer: &str, uid: &str) -> String {
    format!(r#"{{"t":"l","o":"{OTHER}","r":"{room}","q":{seq},"p":"{peer}","u":"{uid}"}}"#)
}

fn signal_from(inst: &str, room: &str, from: &str, to: Option<&str>, body: &str) -> String {
    let to = to.map(|t| format!(r#","to":"{t}""#)).unwrap_or_default();
    format!(r#"{{"t":"s","o":"{inst}","r":"{room}","f":"{from}"{to},"k":"c","d":1,"a":2}}"#)
        + "\n"
        + body
}

fn joined(e: &Event) -> Option<&str> {
    match e {
        Event::PeerJoined { peer, .. } => Some(peer.id.as_str()),
        _ => None,
    }
}

fn left(e: &Event) -> Option<&str> {
    match e {
        Event::PeerLeft { peer, .. } => Some(peer.as_str()),
        _ => None,
    }
}

#[tokio::test]
async fn a_remote_join_is_announced_once_and_an_event_already_reflected_is_skipped() {
    let n = node();
    let mut alice = n.seat("r", "alice", 16);
    n.receive(&join_event("r", 1, "bob", "n2/1"));
    let events = alice.events();
    assert_eq!(
        events.iter().filter_map(joined).collect::<Vec<_>>(),
        ["bob"]
    );
    // The same event again, and an older one naming someone else: nothing.
    n.receive(&join_event("r", 1, "bob", "n2/1"));
    n.receive(&join_event("r", 1, "carol", "n2/2"));
    assert!(alice.events().is_empty());
    // A join for a room this node holds nothing of: ignored.
    n.receive(&join_event("elsewhere", 5, "dave", "n2/3"));
    assert!(alice.events().is_empty());
}

#[tokio::test]
async fn a_remote_leave_removes_only_the_membership_it_names() {
    let n = node();
    let mut alice = n.seat("r", "alice", 16);
    n.receive(&join_event("r", 1, "bob", "n2/1"));
    alice.events();
    // bob's earlier connection leaving (another uid): bob stays.
    n.receive(&leave_event("r", 2, "bob", "n2/0"));
    assert!(alice.events().is_empty());
    n.receive(&leave_event("r", 3, "bob", "n2/1"));
    assert_eq!(
        alice.events().iter().filter_map(left).collect::<Vec<_>>(),
        ["bob"]
    );
    assert!(n.inner.lock().views["r"].remote.is_empty());
}

#[tokio::test]
async fn a_join_under_way_holds_back_its_own_room_only_and_then_applies_in_order() {
    let n = node();
    let mut alice = n.seat("r", "alice", 16);
    let mut erin = n.seat("s", "erin", 16);
    let gate = RoomGate::close(&n.inner, &"r".into());
    n.receive(&join_event("r", 1, "bob", "n2/1"));
    n.receive(&join_event("s", 1, "frank", "n2/2"));
    n.receive(&leave_event("r", 2, "bob", "n2/1"));
    assert!(alice.events().is_empty(), "r waits for its join");
    assert_eq!(
        erin.events().iter().filter_map(joined).collect::<Vec<_>>(),
        ["frank"],
        "s goes on"
    );
    drop(gate);
    let events = alice.events();
    assert_eq!(
        events.iter().filter_map(joined).collect::<Vec<_>>(),
        ["bob"]
    );
    assert_eq!(events.iter().filter_map(left).collect::<Vec<_>>(), ["bob"]);
    assert!(
        matches!(events[0], Event::PeerJoined { .. }),
        "joined before left"
    );
}

#[tokio::test]
async fn this_node_s_own_signals_coming_back_are_not_delivered_again() {
    let n = node();
    let mut alice = n.seat("r", "alice", 16);
    n.receive(&join_event("r", 1, "bob", "n2/1"));
    alice.events();
    n.receive(&signal_from(ME, "r", "bob", None, "{}"));
    assert!(alice.events().is_empty());
    n.receive(&signal_from(OTHER, "r", "bob", None, "{}"));
    assert_eq!(alice.events().len(), 1);
}

#[tokio::test]
async fn a_signal_a_full_outbox_cannot_take_is_reported_to_the_sender_s_node() {
    let mut n = node();
    let mut alice = n.seat("r", "alice", 1);
    n.receive(&join_event("r", 1, "bob", "n2/7"));
    alice.events();
    n.receive(&signal_from(OTHER, "r", "bob", Some("alice"), r#"{"n":1}"#));
    assert!(n.published().is_empty(), "the first one fits");
    n.receive(&signal_from(OTHER, "r", "bob", Some("alice"), r#"{"n":2}"#));
    let published = n.published();
    assert_eq!(published.len(), 1, "{published:?}");
    let (channel, msg) = &published[0];
    assert_eq!(channel, &wire::inbox(OTHER));
    let (h, _) = wire::decode(msg.as_bytes()).unwrap();
    assert_eq!(h.t, "u");
    assert_eq!(
        (h.p.as_deref(), h.u.as_deref()),
        (Some("bob"), Some("n2/7"))
    );
    assert_eq!(h.x, Some(vec!["alice".to_owned()]));
}

#[tokio::test]
async fn an_undelivered_notice_reaches_the_sender_only_while_it_is_the_same_connection() {
    let n = node();
    let mut alice = n.seat("r", "alice", 16);
    let uid = n.inner.lock().locals["r"]["alice"].uid.clone();
    let notice = |uid: &str| {
        format!(r#"{{"t":"u","o":"{OTHER}","r":"r","p":"alice","u":"{uid}","x":["bob"]}}"#)
    };
    n.receive(&notice("n1#00000001/999999"));
    assert!(alice.rx.try_recv().is_none(), "another connection's signal");
    n.receive(&notice(&uid));
    match alice.rx.try_recv() {
        Some(Outbound::Undelivered(e)) => {
            assert_eq!(*e, RelayError::Undelivered(vec!["bob".into()]));
        }
        other => panic!("expected the notice, got {other:?}"),
    }
    drop(alice.seat);
}
