//! Cluster mode: the [`MembershipService`] and [`CodeBook`] on Redis (`REDIS_URL`), so that
//! any number of nodes behind a plain load balancer serve the same rooms.
//!
//! # Design
//!
//! Each node is the truth for its own sockets; Redis is the truth for who is in which room.
//! A node keeps, for each room where it holds members, its local members in the in-memory
//! [`Registry`] (as on one node) and a *view* of the room's members held by other nodes.
//! Joins and leaves are Lua scripts ([`scripts`]) that check (capacity, peer-id
//! uniqueness, nt sides), write and announce in one step. Signals travel in one hop: to
//! the recipient's node inbox (targeted) or the room's channel (room-wide); a room with no
//! member elsewhere never touches Redis for a relay.
//!
//! Each process is an *instance* `<NODE_ID>#<random>`: a restarted node is a new instance.
//!
//! # Keys and channels (prefix `sb:`; `{room}` is the Redis Cluster hash tag)
//!
//! | Key / channel | Type | What |
//! |---|---|---|
//! | `sb:{room}:meta` | hash | `name`, `host`, `host_name`, `attrs` (JSON), `cap`, `grace` (ms, -1 default), `idle`, `created`, `act`, `paired`, `flowed`; expires after the empty grace once the room is empty |
//! | `sb:{room}:m` | hash | peer id → member record `{"u":uid,"o":instance,"n":name,"h":host,"t":joined ms,"d":dialect}`; `uid` = `<instance>/<connection>` |
//! | `sb:{room}:seq` | counter | the room's event sequence (every join and leave), kept a day |
//! | `sb:{room}:mbseq`, `sb:{room}:mb:<peer>` | hash, list | nt mailboxes: next sequence per recipient, items `"<seq>\n<payload>"`, bounded as on one node (256 items per recipient, `MAILBOX_MAX_BYTES` per room: `sb:{room}:mbbytes` counts them) |
//! | `sb:{room}:ev` | channel | the room's events, subscribed by every node holding members there (and for `LINGER` after its last one left) |
//! | `sb:inbox:<instance>` | channel | targeted signals for members of that instance |
//! | `sb:lease:<instance>` | string | the instance's lease (`CLUSTER_LEASE`, renewed every third of it) |
//! | `sb:nodes` | set | instances that have registered |
//! | `sb:node:<instance>:peers` | set | `[room, peer, uid]` of each member the instance holds (for reaping) |
//! | `sb:reap:<instance>` | string | the lock a survivor holds while reaping a dead instance |
//! | `sb:rooms` | sorted set | room ids by creation time (the listings' index; pruned every 30 s by one node holding `sb:prune`) |
//! | `sb:{codes}:NNNN` | string | a rendezvous code: `"<appID>\n<expires ms>"`, expiring with it |
//!
//! # Messages
//!
//! One JSON header line, `\n`, then the payload bytes as the sender's dialect produced them
//! (see [`wire`]): `{"t":"s","o":instance,"r":room,"f":from,"to"?:peer,"k":kind,"s"?:mailbox
//! seq,"d":dialect,"a":audience}` for a signal; `{"t":"j","o","r","q":seq,"p":peer,"m":record}`
//! for a join; `{"t":"l","o","r","q","p","u":uid}` for a leave; `{"t":"c","r"}` for a room
//! deleted; `{"t":"u","o","r","p":sender,"u":sender uid,"x":[peers]}` for a signal some
//! recipients' node could not deliver (to the sender's inbox). Kinds: `o` offer, `a` answer, `c` candidate, `p` presence, `u` cursor, `g`
//! generic, `b` publish, `m` mailbox, anything else a named kind.
//!
//! # Order and delivery
//!
//! Every node publishes on one connection, from one queue (one task batches what waits:
//! a run of messages for one channel goes out as one publish, in order) and reads every
//! channel on one subscriber connection; Redis delivers one subscriber's messages in publish
//! order, and a connection's commands enter the queue one at a time, so a sender's signals
//! reach each recipient in order across nodes. A relay does not wait for its publish (that
//! would cost every sender a Redis round trip per signal): a publish that fails, or reaches
//! fewer nodes than the view says hold recipients, is reported to the sender afterwards as
//! the same `Unavailable` error its dialect gives a refused relay, never a silent drop. A
//! sender whose signals wait unpublished past a bound waits for its own publish (see
//! [`Inner::publish_signal`]). A recipient that cannot take a signal from another node is
//! reported back to the sender's node (`u` messages), so the sender hears `undelivered` as on
//! one node. A join closes its room's *gate* ([`gate`]) from its script to its local seat, so
//! the room's remote events are applied either before the joiner is in (and reflected in its
//! `Joined`) or after (and delivered to it), while other rooms' events go on; membership
//! events carry the room sequence, and events already reflected in a snapshot are skipped.
//!
//! # Failures
//!
//! - A node whose lease lapses (killed) is reaped by a survivor: each of its members leaves
//!   (the rooms hear `peer-left`), and every node drops them from its views.
//! - Redis restarts (empty): every node resubscribes, re-registers its members (idempotent:
//!   a member already known is not announced again) and, a lease later, drops from its views
//!   the remote members nobody re-registered.
//! - A node cut off for longer than its lease closes its peers when Redis answers again and
//!   its lease is gone (`ClusterLost`, close 1001), or after `CLUSTER_FENCE_TIMEOUT` of
//!   silence; a node that learns one of its members was reaped closes that member.
//! - While Redis is unreachable: local rooms work, joins and cross-node signals are refused
//!   with errors, `/readyz` is 503.

pub mod codes;
mod gate;
mod link;
mod scripts;
pub mod wire;

use std::collections::HashMap;
use std::fmt::Display;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use switchboard_core::{
    CloseReason, CreateOptions, CreationGate, Delivery, DialectTag, Envelope, Event, FirstFlow,
    JoinError, JoinMode, JoinRequest, MemberSummary, MembershipService, Mirror, Op, PeerId,
    Registry, RegistryStats, RelayError, RoomId, RoomSnapshot, Seat, SeatKey, SeatOwner, Signal,
    SignalKind, SweepPolicy, SweepReport, Target, unix_millis,
};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use self::gate::RoomGate;
use self::scripts::Scripts;
use self::wire::{Record, RoomKeys};

/// How long one Redis request may take before it counts as failed.
const OP_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a room's channel stays subscribed after its last local member left.
const LINGER: Duration = Duration::from_secs(2);
/// Bytes of relayed signals that may wait for the publisher with nobody waiting on them
/// (see [`Inner::publish_signal`]); past it, a sender waits for its own publish.
const UNAWAITED_MAX: usize = 8 << 20;

/// What the cluster needs from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `REDIS_URL`.
    pub url: String,
    /// `NODE_ID`.
    pub node_id: String,
    /// `CLUSTER_LEASE`.
    pub lease: Duration,
    /// `CLUSTER_FENCE_TIMEOUT`.
    pub fence_timeout: Duration,
    /// `EMPTY_ROOM_GRACE`.
    pub empty_grace: Duration,
    /// `UNJOINED_ROOM_TTL`.
    pub unjoined_ttl: Duration,
    /// `MAX_ROOMS` (checked before a room is created: cluster-wide, best effort).
    pub max_rooms: usize,
    /// `MAX_PEERS_PER_ROOM` (atomic, in the join script).
    pub max_peers_per_room: usize,
    /// Token holders join secured rooms only (production; see `Limits::separate_secured`).
    pub separate_secured: bool,
}

/// The Redis membership service. Clone-cheap.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("instance", &self.inner.inst)
            .finish_non_exhaustive()
    }
}

/// A remote member in a view.
#[derive(Debug, Clone)]
struct Remote {
    summary: MemberSummary,
    uid: String,
    inst: Arc<str>,
    /// The inbox channel of `inst` (named once, not per signal).
    inbox: Arc<str>,
}

/// What this node knows of a room's members elsewhere.
#[derive(Debug, Default)]
struct View {
    /// The last room sequence number reflected here.
    seq: u64,
    remote: Vec<Remote>,
}

impl View {
    fn find(&self, peer: &str) -> Option<&Remote> {
        self.remote.iter().find(|r| r.summary.id.as_str() == peer)
    }

    /// Distinct instances holding members, other than this one.
    fn instances(&self) -> usize {
        let mut seen: Vec<&str> = Vec::new();
        for r in &self.remote {
            if !seen.contains(&&*r.inst) {
                seen.push(&r.inst);
            }
        }
        seen.len()
    }
}

/// A member this node holds, as Redis knows it (for re-registration).
#[derive(Debug, Clone)]
struct Local {
    uid: String,
    record: String,
    create: CreateOptions,
    /// Its seat here (to tell it of signals another node could not deliver).
    key: SeatKey,
}

#[derive(Debug, Default)]
struct State {
    views: HashMap<RoomId, View>,
    locals: HashMap<RoomId, HashMap<PeerId, Local>>,
    /// Local members (and joins in progress) per room: the room's channel is subscribed
    /// while this is above zero.
    subs: HashMap<RoomId, usize>,
    /// Rooms whose last local member left, and since when: their channel stays subscribed
    /// for [`LINGER`], so that a peer that comes back (a reconnect, a page reload) does not
    /// cost two more round trips. Emptied whenever the subscriber connection is replaced.
    linger: HashMap<RoomId, std::time::Instant>,
}

/// What the link task is asked to do with the subscriber connection.
#[derive(Debug)]
enum LinkCmd {
    Subscribe(String, oneshot::Sender<bool>),
    /// A room's channel, unless the room is held again by then.
    Unsubscribe(RoomId),
}

/// A message to publish, batched by the publisher task with whatever else is waiting.
#[derive(Debug)]
struct Publish {
    channel: Arc<str>,
    msg: Vec<u8>,
    then: Then,
}

/// What the publisher does once a message is out.
#[derive(Debug)]
enum Then {
    /// Answers the task waiting on it: how many subscribers got it, or why it could not be
    /// published.
    Answer(oneshot::Sender<Result<usize, String>>),
    /// Nobody waits and nothing is checked (a notice to another node).
    Forget,
    /// Nobody waits (a relayed signal, already answered): when the publish fails or reaches
    /// fewer than `min` subscribers, the sender is told `unreached`
    /// ([`Registry::notify_undelivered`]). `bytes` is what it counts against
    /// [`UNAWAITED_MAX`].
    Check {
        sender: SeatKey,
        min: usize,
        unreached: Unreached,
        bytes: usize,
    },
}

/// Whether a publish reached `min` subscribers; if not, why, worded for the sender.
fn reached(
    published: &Result<usize, String>,
    min: usize,
    unreached: &Unreached,
) -> Result<(), String> {
    match published {
        Ok(n) if *n >= min => Ok(()),
        Ok(_) => Err(unreached.to_string()),
        Err(e) => Err(e.clone()),
    }
}

/// Whose node a signal did not reach (the error is worded only when it happens).
#[derive(Debug)]
enum Unreached {
    /// The node holding this peer.
    PeerNode(PeerId),
    /// A node holding members of the room.
    RoomNode,
}

impl Display for Unreached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::PeerNode(p) => write!(f, "the node holding {p} is unreachable"),
            Self::RoomNode => f.write_str("a node holding members of this room is unreachable"),
        }
    }
}

/// Writes that may wait (leaves), done in order by the writer task.
#[derive(Debug)]
enum Job {
    Leave {
        room: RoomId,
        peer: PeerId,
        uid: String,
    },
    Barrier(oneshot::Sender<()>),
}

pub(crate) struct Inner {
    settings: Settings,
    inst: Arc<str>,
    local: Registry,
    gate: Arc<dyn CreationGate>,
    client: redis::Client,
    conn: RwLock<Option<MultiplexedConnection>>,
    up: AtomicBool,
    state: Mutex<State>,
    /// Shared by the subscriber while it applies messages and by joins; taken exclusively
    /// while the views are rebuilt from Redis (a resync), which nothing may interleave with.
    apply: tokio::sync::RwLock<()>,
    /// The rooms with a join between its script and its local seat ([`gate`]); the
    /// subscriber holds this lock while it applies one message.
    gates: Mutex<gate::RoomGates>,
    /// What this instance's own signals start with ([`wire::own_signal_prefix`]).
    own_signal: Vec<u8>,
    link_tx: mpsc::UnboundedSender<LinkCmd>,
    writer_tx: mpsc::UnboundedSender<Job>,
    pub_tx: mpsc::UnboundedSender<Publish>,
    /// Bytes of [`Then::Check`] messages not yet published.
    unawaited: AtomicUsize,
    scripts: Scripts,
    stop: CancellationToken,
}

fn unavailable(e: impl Display) -> String {
    format!("cluster store unreachable: {e}")
}

impl Cluster {
    /// Starts cluster mode: the link to Redis (connected in the background; `is_ready` is
    /// false until it is), the lease, the reaper and the writer.
    ///
    /// # Errors
    /// When `REDIS_URL` cannot be parsed.
    pub fn start(
        settings: Settings,
        local: Registry,
        gate: Arc<dyn CreationGate>,
    ) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(settings.url.as_str())?;
        let inst: Arc<str> = Arc::from(format!(
            "{}#{:08x}",
            settings.node_id,
            rand::random::<u32>()
        ));
        let (link_tx, link_rx) = mpsc::unbounded_channel();
        let (writer_tx, writer_rx) = mpsc::unbounded_channel();
        let (pub_tx, pub_rx) = mpsc::unbounded_channel();
        let own_signal = wire::own_signal_prefix(&inst);
        let inner = Arc::new(Inner {
            settings,
            inst,
            local,
            gate,
            client,
            conn: RwLock::new(None),
            up: AtomicBool::new(false),
            state: Mutex::new(State::default()),
            apply: tokio::sync::RwLock::new(()),
            gates: Mutex::new(gate::RoomGates::default()),
            own_signal,
            link_tx,
            writer_tx,
            pub_tx,
            unawaited: AtomicUsize::new(0),
            scripts: Scripts::default(),
            stop: CancellationToken::new(),
        });
        tokio::spawn(link::run(inner.clone(), link_rx));
        tokio::spawn(link::writer(inner.clone(), writer_rx));
        tokio::spawn(link::publisher(inner.clone(), pub_rx));
        tracing::info!(instance = %inner.inst, "cluster mode: connecting to Redis");
        Ok(Self { inner })
    }

    /// This process's instance id (`<NODE_ID>#<random>`).
    pub fn instance(&self) -> &str {
        &self.inner.inst
    }

    /// The rendezvous codes, kept in Redis.
    pub fn codes(&self) -> codes::RedisCodes {
        codes::RedisCodes::new(self.inner.clone())
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The room gates; held while a message is applied. Lock order: gates, then state.
    fn gates(&self) -> MutexGuard<'_, gate::RoomGates> {
        self.gates.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One publish from the subscriber connection: a message or a batch, applied in order,
    /// except a room's messages while a join to it is under way (deferred, see [`gate`]).
    /// This node's own room-wide signals come back to it and are skipped undecoded.
    fn receive(&self, publish: &[u8]) {
        if wire::is_own_signal(publish, &self.own_signal) {
            return;
        }
        let mut gates = self.gates();
        for msg in wire::split(publish) {
            let Ok((h, body)) = wire::decode(msg) else {
                tracing::warn!("cluster: unreadable message ignored");
                continue;
            };
            if !gates.defer(&h.r, msg) {
                self.apply_decoded(&h, body);
            }
        }
    }

    fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// The command connection, when Redis is reachable.
    fn conn(&self) -> Result<MultiplexedConnection, String> {
        if !self.is_up() {
            return Err(unavailable("not connected"));
        }
        self.conn
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| unavailable("not connected"))
    }

    fn uid(&self, conn: switchboard_core::ConnId) -> String {
        format!("{}/{}", self.inst, conn.get())
    }

    /// Publishes `msg` on `channel`; the number of subscribers that got it.
    async fn publish(&self, channel: Arc<str>, msg: Vec<u8>) -> Result<usize, String> {
        if !self.is_up() {
            return Err(unavailable("not connected"));
        }
        let (done, answer) = oneshot::channel();
        self.pub_tx
            .send(Publish {
                channel,
                msg,
                then: Then::Answer(done),
            })
            .map_err(|_| unavailable("stopped"))?;
        match tokio::time::timeout(OP_TIMEOUT * 2, answer).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(unavailable("stopped")),
            Err(_) => Err(unavailable("timeout")),
        }
    }

    /// Counts a join in progress (or a member) in `room`; subscribes the room's channel on
    /// the first. False when the subscription failed.
    async fn hold(&self, room: &RoomId) -> bool {
        let first = {
            let mut st = self.lock();
            let n = st.subs.entry(room.clone()).or_insert(0);
            *n += 1;
            if *n == 1 {
                st.views.insert(room.clone(), View::default());
                // Still subscribed from a member that left moments ago?
                st.linger.remove(room).is_none()
            } else {
                false
            }
        };
        if !first {
            return true;
        }
        let (tx, rx) = oneshot::channel();
        let _ = self
            .link_tx
            .send(LinkCmd::Subscribe(wire::room_channel(room), tx));
        let ok = matches!(tokio::time::timeout(OP_TIMEOUT, rx).await, Ok(Ok(true)));
        if !ok {
            self.unhold(room);
        }
        ok
    }

    /// The reverse of [`hold`](Self::hold); unsubscribes after the last.
    fn unhold(&self, room: &RoomId) {
        let mut st = self.lock();
        let Some(n) = st.subs.get_mut(room) else {
            return;
        };
        *n -= 1;
        if *n == 0 {
            st.subs.remove(room);
            st.views.remove(room);
            st.linger.insert(room.clone(), std::time::Instant::now());
        }
    }

    /// Unsubscribes the channels of rooms nobody here has held for [`LINGER`] (the upkeep
    /// task, every third of the lease).
    fn end_lingering(&self) {
        let mut st = self.lock();
        let now = std::time::Instant::now();
        let tx = &self.link_tx;
        st.linger.retain(|room, since| {
            let keep = now.duration_since(*since) < LINGER;
            if !keep {
                let _ = tx.send(LinkCmd::Unsubscribe(room.clone()));
            }
            keep
        });
    }

    /// Merges a room's members as Redis has them (after `seq`) into its view, telling this
    /// node's members of each difference. `remove` says whether members missing from Redis
    /// are gone (false right after a Redis restart, when their nodes may not have
    /// re-registered yet).
    fn merge(&self, room: &RoomId, seq: u64, members: &[(PeerId, Record)], remove: bool) {
        let mut announce = Vec::new();
        {
            let mut st = self.lock();
            let Some(view) = st.views.get_mut(room) else {
                return;
            };
            view.seq = view.seq.max(seq);
            if remove {
                view.remote.retain(|r| {
                    let keep = members
                        .iter()
                        .any(|(p, rec)| p == &r.summary.id && rec.u == r.uid);
                    if !keep {
                        announce.push(Event::PeerLeft {
                            room: room.clone(),
                            peer: r.summary.id.clone(),
                        });
                    }
                    keep
                });
            }
            for (peer, rec) in members.iter().filter(|(_, rec)| *rec.o != *self.inst) {
                match view.remote.iter_mut().find(|r| &r.summary.id == peer) {
                    Some(r) if r.uid == rec.u => {}
                    Some(r) => {
                        announce.push(Event::PeerLeft {
                            room: room.clone(),
                            peer: peer.clone(),
                        });
                        *r = remote_of(peer, rec);
                        announce.push(Event::PeerJoined {
                            room: room.clone(),
                            peer: r.summary.clone(),
                        });
                    }
                    None => {
                        let r = remote_of(peer, rec);
                        announce.push(Event::PeerJoined {
                            room: room.clone(),
                            peer: r.summary.clone(),
                        });
                        view.remote.push(r);
                    }
                }
            }
        }
        for e in announce {
            // A member that cannot take it is closed; its leave tells the others.
            let _ = self.local.deliver_local(room, None, &Envelope::new(e));
        }
    }

    /// Drops every member of `dead` instances from the views, telling this node's members.
    fn forget_instances(&self, dead: &[String]) {
        let mut gone = Vec::new();
        {
            let mut st = self.lock();
            for (room, view) in &mut st.views {
                view.remote.retain(|r| {
                    let keep = !dead.iter().any(|d| **d == *r.inst);
                    if !keep {
                        gone.push((room.clone(), r.summary.id.clone()));
                    }
                    keep
                });
            }
        }
        for (room, peer) in gone {
            tracing::info!(%room, %peer, "cluster: member of a dead node removed");
            let env = Envelope::new(Event::PeerLeft {
                room: room.clone(),
                peer,
            });
            let _ = self.local.deliver_local(&room, None, &env);
        }
    }

    /// Every instance the views name.
    fn view_instances(&self) -> Vec<String> {
        let st = self.lock();
        let mut out: Vec<String> = Vec::new();
        for r in st.views.values().flat_map(|v| v.remote.iter()) {
            if !out.iter().any(|o| **o == *r.inst) {
                out.push(r.inst.to_string());
            }
        }
        out
    }

    async fn join_async(self: &Arc<Self>, req: JoinRequest) -> Result<Seat, JoinError> {
        let room = req.room.clone();
        let peer = req.peer.clone();
        let uid = self.uid(req.handle.conn());
        // Leaves queued before this join go first (a quick reconnect under the same id).
        let (tx, rx) = oneshot::channel();
        let _ = self.writer_tx.send(Job::Barrier(tx));
        let _ = tokio::time::timeout(OP_TIMEOUT, rx).await;
        let rejoin = self
            .lock()
            .locals
            .get(&room)
            .and_then(|m| m.get(&peer))
            .is_some_and(|l| l.uid == uid);
        if !rejoin && !self.hold(&room).await {
            return Err(JoinError::Unavailable(unavailable("cannot subscribe")));
        }
        let result = self.join_held(req, &uid, rejoin).await;
        if result.is_err() && !rejoin {
            self.unhold(&room);
        }
        let key = result?;
        let owner: Arc<dyn SeatOwner> = self.clone();
        tracing::debug!(%room, %peer, "cluster: joined");
        Ok(Seat::new(owner, key))
    }

    async fn join_held(
        self: &Arc<Self>,
        req: JoinRequest,
        uid: &str,
        rejoin: bool,
    ) -> Result<SeatKey, JoinError> {
        let keys = RoomKeys::new(&req.room);
        let now = unix_millis();
        let mut create = req.opts.create.clone();
        create.host = Some(req.peer.clone());
        create.host_name.clone_from(&req.opts.name);
        // A room a token holder creates admits token holders only, as on one node.
        create.secured = req.opts.authenticated;
        let record = Record {
            u: uid.to_owned(),
            o: self.inst.to_string(),
            n: req.opts.name.as_deref().map(str::to_owned),
            h: false,
            t: now,
            d: req.handle.dialect().0,
        };
        let mode = match req.opts.mode {
            JoinMode::Existing => "e",
            JoinMode::Create => {
                self.may_create(create.creator).await?;
                "c"
            }
            JoinMode::CreateOrJoin => "q",
        };
        // Not while the views are being rebuilt; and the room's own events wait for the seat
        // (see [`gate`]), every other room's go on.
        let _resync = self.apply.read().await;
        let gate = RoomGate::close(self, &req.room);
        let mut answer = self
            .run_join(&req, &keys, &record, &create, mode, now)
            .await;
        if matches!(&answer, Err(JoinError::RoomNotFound(_))) && mode == "q" {
            self.may_create(create.creator).await?;
            answer = self.run_join(&req, &keys, &record, &create, "j", now).await;
        }
        let joined = answer?;
        let room = req.room.clone();
        let peer = req.peer.clone();
        self.merge(&room, joined.seq, &joined.members, true);
        let remote: Vec<MemberSummary> = self
            .lock()
            .views
            .get(&room)
            .map(|v| {
                v.remote
                    .iter()
                    .filter(|r| r.summary.id != peer)
                    .map(|r| r.summary.clone())
                    .collect()
            })
            .unwrap_or_default();
        let joined_room = joined.data.options();
        let mirror = Mirror {
            create: joined.mirror_options(),
            created: joined.created,
            remote,
        };
        let seat = self.local.join_mirrored(req, mirror);
        drop(gate);
        drop(_resync);
        let seat = match seat {
            Ok(s) => s,
            Err(e) => {
                if !rejoin {
                    let _ = self.writer_tx.send(Job::Leave {
                        room: room.clone(),
                        peer: peer.clone(),
                        uid: uid.to_owned(),
                    });
                }
                return Err(e);
            }
        };
        // The listings' index and the node's member set live in other slots, so they are not
        // in the script: both go out together, one round trip.
        let mut after = redis::pipe();
        if joined.created {
            after
                .cmd("ZADD")
                .arg(wire::ROOMS)
                .arg(now)
                .arg(room.as_str())
                .ignore();
        }
        if rejoin {
            // The member stays; its seat is the new one.
            if let Some(l) = self
                .lock()
                .locals
                .get_mut(&room)
                .and_then(|m| m.get_mut(&peer))
            {
                l.key = seat.key().clone();
            }
        } else {
            let record = serde_json::to_string(&record).unwrap_or_default();
            self.lock().locals.entry(room.clone()).or_default().insert(
                peer.clone(),
                Local {
                    uid: uid.to_owned(),
                    record,
                    key: seat.key().clone(),
                    // The room as Redis had it, to recreate it as it was after a restart.
                    create: CreateOptions {
                        creator: None,
                        ..joined_room.clone()
                    },
                },
            );
            let entry = serde_json::json!([room.as_str(), peer.as_str(), uid]).to_string();
            after
                .cmd("SADD")
                .arg(wire::node_peers(&self.inst))
                .arg(entry)
                .ignore();
        }
        if (joined.created || !rejoin)
            && let Ok(mut c) = self.conn()
        {
            let _ = tokio::time::timeout(OP_TIMEOUT, after.query_async::<()>(&mut c)).await;
        }
        Ok(seat.into_key())
    }

    /// The creation gate and the (best-effort) room limit, asked when a join or `POST
    /// /api/rooms` would create a room.
    async fn may_create(&self, creator: Option<std::net::IpAddr>) -> Result<(), JoinError> {
        let max = self.settings.max_rooms;
        if max != 0 {
            let mut c = self.conn().map_err(JoinError::Unavailable)?;
            let n: usize = tokio::time::timeout(
                OP_TIMEOUT,
                redis::cmd("ZCARD").arg(wire::ROOMS).query_async(&mut c),
            )
            .await
            .map_err(|_| JoinError::Unavailable(unavailable("timeout")))?
            .map_err(|e| JoinError::Unavailable(unavailable(e)))?;
            if n >= max {
                return Err(JoinError::TooManyRooms(max));
            }
        }
        self.gate.allow(creator)
    }

    async fn run_join(
        &self,
        req: &JoinRequest,
        keys: &RoomKeys,
        record: &Record,
        create: &CreateOptions,
        mode: &str,
        now: u64,
    ) -> Result<Joined, JoinError> {
        let mut c = self.conn().map_err(JoinError::Unavailable)?;
        let record_json = serde_json::to_string(record).unwrap_or_default();
        let mut inv = self.scripts.join.prepare_invoke();
        inv.key(&keys.meta).key(&keys.members).key(&keys.seq);
        inv.arg(req.peer.as_str())
            .arg(&record_json)
            .arg(mode)
            .arg(self.settings.max_peers_per_room)
            .arg(&record.u)
            .arg(&*self.inst)
            .arg(&keys.channel)
            .arg(json_str(req.room.as_str()))
            .arg(now);
        push_create_args(&mut inv, create);
        inv.arg(u8::from(req.opts.authenticated))
            .arg(u8::from(self.settings.separate_secured));
        let v: redis::Value = tokio::time::timeout(OP_TIMEOUT, inv.invoke_async(&mut c))
            .await
            .map_err(|_| JoinError::Unavailable(unavailable("timeout")))?
            .map_err(|e| JoinError::Unavailable(unavailable(e)))?;
        Joined::parse(v, &req.room, &req.peer)
    }

    fn relay_remote<'a>(
        self: &'a Arc<Self>,
        from: &SeatKey,
        target: Target,
        kind: SignalKind,
        payload: Bytes,
        origin: DialectTag,
    ) -> Op<'a, Result<Delivery, RelayError>> {
        let (remote_count, instances, dest) = {
            let st = self.lock();
            match st.views.get(&from.room) {
                Some(v) => match &target {
                    Target::Peer(p) => (
                        v.remote.len(),
                        0,
                        v.find(p.as_str()).map(|r| r.inbox.clone()),
                    ),
                    Target::Room => (v.remote.len(), v.instances(), None),
                },
                None => (0, 0, None),
            }
        };
        let audience_extra = u32::try_from(remote_count).unwrap_or(u32::MAX);
        match target {
            Target::Peer(p) => {
                let Some(inbox) = dest else {
                    return Op::ready(self.local.relay_with(
                        from,
                        Target::Peer(p),
                        kind,
                        payload,
                        origin,
                        audience_extra,
                    ));
                };
                if !self.local.is_live(from) {
                    return Op::ready(Err(RelayError::NotInRoom(from.room.clone())));
                }
                let audience =
                    u32::try_from(self.local_count(&from.room) + remote_count).unwrap_or(u32::MAX);
                let signal = Signal {
                    room: from.room.clone(),
                    from: from.peer.clone(),
                    to: Some(p.clone()),
                    kind,
                    payload,
                    origin,
                    audience,
                };
                let msg = wire::encode_signal(&self.inst, &signal);
                let unreached = Unreached::PeerNode(p);
                self.publish_signal(from, inbox, msg, 1, unreached, Ok(1))
            }
            Target::Room => {
                let local = self.local.relay_with(
                    from,
                    Target::Room,
                    kind.clone(),
                    payload.clone(),
                    origin,
                    audience_extra,
                );
                if remote_count == 0 || matches!(local, Err(RelayError::NotInRoom(_))) {
                    return Op::ready(local);
                }
                let audience =
                    u32::try_from(self.local_count(&from.room) + remote_count).unwrap_or(u32::MAX);
                let signal = Signal {
                    room: from.room.clone(),
                    from: from.peer.clone(),
                    to: None,
                    kind,
                    payload,
                    origin,
                    audience,
                };
                let msg = wire::encode_signal(&self.inst, &signal);
                let channel = Arc::from(wire::room_channel(&from.room));
                // Every node holding members, and this one (subscribed too).
                let local = local.map(|l| l.delivered + remote_count);
                self.publish_signal(
                    from,
                    channel,
                    msg,
                    instances + 1,
                    Unreached::RoomNode,
                    local,
                )
            }
        }
    }

    /// Publishes a relayed signal. `local` is the relay's outcome so far: how many
    /// recipients it counts (this node's and the remote ones), or this node's refusal.
    ///
    /// Normally nobody waits: the relay is answered at once and the publisher tells the
    /// sender later if the publish failed or reached fewer than `min` subscribers
    /// ([`Then::Check`]). So a sender's signals flow to other nodes as they flow on one node,
    /// one after another without a Redis round trip each (their order is the publisher
    /// queue's, which is the order they were relayed in). While more than
    /// [`UNAWAITED_MAX`] bytes wait unpublished, the sender waits for its own publish
    /// instead, which bounds what a fast sender can queue against a slow Redis.
    fn publish_signal(
        self: &Arc<Self>,
        from: &SeatKey,
        channel: Arc<str>,
        msg: Vec<u8>,
        min: usize,
        unreached: Unreached,
        local: Result<usize, RelayError>,
    ) -> Op<'_, Result<Delivery, RelayError>> {
        if !self.is_up() {
            return Op::ready(Err(RelayError::Unavailable(unavailable("not connected"))));
        }
        let bytes = msg.len();
        if self.unawaited.load(Ordering::Relaxed) + bytes <= UNAWAITED_MAX {
            self.unawaited.fetch_add(bytes, Ordering::Relaxed);
            let then = Then::Check {
                sender: from.clone(),
                min,
                unreached,
                bytes,
            };
            if self.pub_tx.send(Publish { channel, msg, then }).is_err() {
                self.unawaited.fetch_sub(bytes, Ordering::Relaxed);
                return Op::ready(Err(RelayError::Unavailable(unavailable("stopped"))));
            }
            return Op::ready(local.map(|delivered| Delivery { delivered }));
        }
        Op::pending(async move {
            let published = self.publish(channel, msg).await;
            reached(&published, min, &unreached)
                .map_err(RelayError::Unavailable)
                .and(local)
                .map(|delivered| Delivery { delivered })
        })
    }

    /// What the publisher does with a message's result.
    fn published(&self, then: Then, result: &Result<usize, String>) {
        match then {
            Then::Forget => {}
            Then::Answer(tx) => {
                let _ = tx.send(result.clone());
            }
            Then::Check {
                sender,
                min,
                unreached,
                bytes,
            } => {
                self.unawaited.fetch_sub(bytes, Ordering::Relaxed);
                if let Err(why) = reached(result, min, &unreached) {
                    self.local
                        .notify_undelivered(&sender, RelayError::Unavailable(why));
                }
            }
        }
    }

    /// A signal from another node: delivered to its local recipients when its sender is in
    /// this node's view of the room (ids taken from the view, not allocated per signal).
    /// Recipients that cannot take it (full outboxes: they are closed as slow consumers) are
    /// reported back to the sender's node, which tells the sender in its dialect, as one node
    /// does; a mailbox item for a recipient not here stays queued and is no error.
    fn on_signal(&self, h: &wire::Header<'_>, body: &[u8]) {
        let Some(f) = h.f.as_deref() else { return };
        let (room, from) = {
            let st = self.lock();
            let Some((room, view)) = st.views.get_key_value(h.r.as_ref()) else {
                return;
            };
            let Some(sender) = view.find(f) else { return };
            (room.clone(), sender.summary.id.clone())
        };
        let Some(signal) = wire::signal_of(h, room.clone(), from.clone(), body) else {
            return;
        };
        let mailbox = matches!(signal.kind, SignalKind::Mailbox(_));
        let to = signal.to.clone();
        let env = Envelope::new(Event::Signal(signal));
        let result = match to {
            Some(to) => self.local.deliver_to(&room, &to, &env),
            None => self
                .local
                .deliver_local(&room, Some(&from), &env)
                .map(|_| ()),
        };
        let failed = match result {
            Ok(()) => return,
            Err(RelayError::PeerNotFound(_)) if mailbox => return,
            Err(RelayError::PeerNotFound(p)) => vec![p],
            Err(RelayError::Undelivered(failed)) => failed,
            Err(_) => return,
        };
        self.tell_sender(&room, &from, &failed);
    }

    /// Publishes an undelivered notice to the node holding `sender` (see
    /// [`wire::encode_undelivered`]).
    fn tell_sender(&self, room: &RoomId, sender: &PeerId, failed: &[PeerId]) {
        let found = {
            let st = self.lock();
            st.views
                .get(room)
                .and_then(|v| v.find(sender.as_str()))
                .map(|r| (r.inbox.clone(), r.uid.clone()))
        };
        let Some((inbox, uid)) = found else { return };
        let msg = wire::encode_undelivered(&self.inst, room, sender, &uid, failed);
        let _ = self.pub_tx.send(Publish {
            channel: inbox,
            msg,
            then: Then::Forget,
        });
    }

    /// Another node could not deliver a signal one of our members sent: tell that member,
    /// if it is still the connection that sent it.
    fn on_undelivered(&self, room: &RoomId, h: &wire::Header<'_>) {
        let (Some(p), Some(uid), Some(failed)) = (&h.p, &h.u, &h.x) else {
            return;
        };
        let key = self
            .lock()
            .locals
            .get(room)
            .and_then(|m| m.get(p.as_ref()))
            .filter(|l| l.uid == *uid)
            .map(|l| l.key.clone());
        if let Some(key) = key {
            let failed = failed.iter().map(|f| PeerId::from(f.as_str())).collect();
            self.local
                .notify_undelivered(&key, RelayError::Undelivered(failed));
        }
    }

    fn local_count(&self, room: &RoomId) -> usize {
        self.local.member_count(room)
    }

    /// Applies one message that waited behind a join.
    fn apply_message(&self, msg: &[u8]) {
        match wire::decode(msg) {
            Ok((h, body)) => self.apply_decoded(&h, body),
            Err(_) => tracing::warn!("cluster: unreadable message ignored"),
        }
    }

    /// Applies one message from the subscriber connection (with the gates held).
    fn apply_decoded(&self, h: &wire::Header<'_>, body: &[u8]) {
        if h.t == "s" {
            if h.o != *self.inst {
                self.on_signal(h, body);
            }
            return;
        }
        let room = RoomId::from(h.r.as_ref());
        match h.t.as_ref() {
            "j" if h.o != *self.inst => {
                let (Some(p), Some(rec)) = (&h.p, &h.m) else {
                    return;
                };
                let peer = PeerId::from(p.as_ref());
                let event = {
                    let mut st = self.lock();
                    let Some(view) = st.views.get_mut(&room) else {
                        return;
                    };
                    if h.q <= view.seq {
                        return;
                    }
                    view.seq = h.q;
                    if view.find(peer.as_str()).is_some_and(|r| r.uid == rec.u) {
                        return;
                    }
                    view.remote.retain(|r| r.summary.id != peer);
                    let r = remote_of(&peer, rec);
                    let summary = r.summary.clone();
                    view.remote.push(r);
                    Event::PeerJoined {
                        room: room.clone(),
                        peer: summary,
                    }
                };
                // A member that cannot take it is closed; its leave tells the others.
                let _ = self.local.deliver_local(&room, None, &Envelope::new(event));
            }
            "l" => {
                let (Some(p), Some(uid)) = (&h.p, &h.u) else {
                    return;
                };
                let peer = PeerId::from(p.as_ref());
                if wire::owner_of(uid) == &*self.inst {
                    if h.o != *self.inst {
                        // One of ours was removed by another node (it thought us dead).
                        let ours = self
                            .lock()
                            .locals
                            .get(&room)
                            .and_then(|m| m.get(&peer))
                            .is_some_and(|l| l.uid == *uid);
                        if ours {
                            tracing::warn!(%room, %peer, "cluster: our member was reaped; closing it");
                            self.local
                                .close_member(&room, &peer, CloseReason::ClusterLost);
                        }
                    }
                    return;
                }
                let removed = {
                    let mut st = self.lock();
                    let Some(view) = st.views.get_mut(&room) else {
                        return;
                    };
                    if h.q <= view.seq {
                        return;
                    }
                    view.seq = h.q;
                    let before = view.remote.len();
                    view.remote
                        .retain(|r| !(r.summary.id == peer && r.uid == *uid));
                    before != view.remote.len()
                };
                if removed {
                    let env = Envelope::new(Event::PeerLeft {
                        room: room.clone(),
                        peer,
                    });
                    let _ = self.local.deliver_local(&room, None, &env);
                }
            }
            "u" => self.on_undelivered(&room, h),
            "c" => {
                if let Some(v) = self.lock().views.get_mut(&room) {
                    v.remote.clear();
                }
                self.local.delete_room_now(&room);
            }
            _ => {}
        }
    }
}

fn remote_of(peer: &PeerId, rec: &Record) -> Remote {
    Remote {
        summary: rec.summary(peer),
        uid: rec.u.clone(),
        inst: Arc::from(rec.o.as_str()),
        inbox: Arc::from(wire::inbox(&rec.o)),
    }
}

/// A string as a JSON string literal (for the scripts, which splice it into events).
fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

fn ms(d: Option<Duration>) -> i64 {
    d.map_or(-1, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn push_create_args(inv: &mut redis::ScriptInvocation<'_>, c: &CreateOptions) {
    let attrs: Vec<[&str; 2]> = c.attributes.iter().map(|(k, v)| [&**k, &**v]).collect();
    inv.arg(c.name.as_deref().unwrap_or(""))
        .arg(c.host.as_ref().map_or("", PeerId::as_str))
        .arg(c.host_name.as_deref().unwrap_or(""))
        .arg(serde_json::to_string(&attrs).unwrap_or_else(|_| "[]".into()))
        .arg(c.capacity.unwrap_or(0))
        .arg(ms(c.empty_grace))
        .arg(ms(c.inactivity_timeout))
        .arg(u8::from(c.secured));
}

/// A room's metadata and members as a script or `HGETALL` returns them.
#[derive(Debug, Default)]
struct RoomData {
    meta: HashMap<String, String>,
    members: Vec<(PeerId, Record)>,
}

impl RoomData {
    fn from_pairs(meta: &[String], members: &[String]) -> Self {
        let meta = meta
            .chunks_exact(2)
            .map(|kv| (kv[0].clone(), kv[1].clone()))
            .collect();
        let mut members: Vec<(PeerId, Record)> = members
            .chunks_exact(2)
            .filter_map(|kv| {
                Some((
                    PeerId::from(kv[0].as_str()),
                    serde_json::from_str(&kv[1]).ok()?,
                ))
            })
            .collect();
        members.sort_by_key(|(_, r)| r.t);
        Self { meta, members }
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.meta
            .get(k)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    fn num(&self, k: &str) -> Option<i64> {
        self.get(k)?.parse().ok()
    }

    fn options(&self) -> CreateOptions {
        let dur = |k| {
            self.num(k)
                .filter(|n| *n >= 0)
                .map(|n| Duration::from_millis(n.unsigned_abs()))
        };
        let attrs: Vec<[String; 2]> = self
            .get("attrs")
            .and_then(|a| serde_json::from_str(a).ok())
            .unwrap_or_default();
        CreateOptions {
            name: self.get("name").map(Arc::from),
            host: self.get("host").map(PeerId::from),
            host_name: self.get("host_name").map(Arc::from),
            attributes: attrs
                .into_iter()
                .map(|[k, v]| (Arc::from(k), Arc::from(v)))
                .collect(),
            capacity: self
                .num("cap")
                .filter(|c| *c > 0)
                .and_then(|c| usize::try_from(c).ok()),
            empty_grace: dur("grace"),
            inactivity_timeout: dur("idle"),
            creator: None,
            secured: self.get("sec") == Some("1"),
        }
    }

    fn snapshot(&self, id: &RoomId) -> Option<RoomSnapshot> {
        if self.meta.is_empty() && self.members.is_empty() {
            return None;
        }
        let o = self.options();
        let created = self
            .num("created")
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0);
        let act = self
            .num("act")
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(created);
        let host = o.host.clone();
        Some(RoomSnapshot {
            id: id.clone(),
            name: o.name.unwrap_or_else(|| Arc::from(id.as_str())),
            host: host.clone(),
            host_name: o.host_name,
            attributes: o.attributes,
            created_at_ms: created,
            last_activity_ms: act,
            capacity: o.capacity,
            secured: o.secured,
            members: self
                .members
                .iter()
                .map(|(p, r)| {
                    let mut s = r.summary(p);
                    s.is_host = host.as_ref() == Some(p);
                    s
                })
                .collect(),
        })
    }
}

/// A join script's answer.
#[derive(Debug)]
struct Joined {
    created: bool,
    seq: u64,
    data: RoomData,
    members: Vec<(PeerId, Record)>,
}

impl Joined {
    fn parse(v: redis::Value, room: &RoomId, peer: &PeerId) -> Result<Self, JoinError> {
        let items: Vec<redis::Value> = redis::FromRedisValue::from_redis_value(v)
            .map_err(|e| JoinError::Unavailable(unavailable(e)))?;
        let text = |v: &redis::Value| -> String {
            redis::FromRedisValue::from_redis_value_ref(v).unwrap_or_default()
        };
        let num = |v: &redis::Value| -> i64 {
            redis::FromRedisValue::from_redis_value_ref(v).unwrap_or_default()
        };
        let head = items.first().map(text).unwrap_or_default();
        if head == "err" {
            let code = items.get(1).map(text).unwrap_or_default();
            let n = items.get(2).map(num).unwrap_or_default();
            return Err(match code.as_str() {
                "not_found" | "would_create" => JoinError::RoomNotFound(room.clone()),
                "exists" => JoinError::RoomExists(room.clone()),
                "taken" => JoinError::PeerIdTaken {
                    room: room.clone(),
                    peer: peer.clone(),
                },
                "full" => JoinError::RoomFull {
                    room: room.clone(),
                    capacity: usize::try_from(n).unwrap_or(0),
                },
                "token_required" => JoinError::TokenRequired(room.clone()),
                "not_secured" => JoinError::RoomNotSecured(room.clone()),
                other => JoinError::Unavailable(format!("join script: {other}")),
            });
        }
        let created = items.get(1).map(num).unwrap_or_default() == 1;
        let seq = u64::try_from(items.get(2).map(num).unwrap_or_default()).unwrap_or(0);
        let rest: Vec<String> = items.iter().skip(3).map(text).collect();
        let split = rest.iter().position(|s| s == "|").unwrap_or(rest.len());
        let data = RoomData::from_pairs(&rest[..split], rest.get(split + 1..).unwrap_or_default());
        let members = data.members.clone();
        Ok(Self {
            created,
            seq,
            data,
            members,
        })
    }

    /// This node's copy of the room: as Redis describes it, removed with its last local
    /// member (Redis keeps the room through its grace).
    fn mirror_options(&self) -> CreateOptions {
        CreateOptions {
            empty_grace: Some(Duration::ZERO),
            ..self.data.options()
        }
    }
}

impl SeatOwner for Inner {
    fn release(&self, key: &SeatKey) {
        self.local.release(key);
        if self.local.has_member(&key.room, &key.peer) {
            // A re-join retired this seat; the member stays under the new one.
            return;
        }
        let removed = {
            let mut st = self.lock();
            let Some(m) = st.locals.get_mut(&key.room) else {
                return;
            };
            let uid = self.uid(key.conn);
            let removed = m.get(&key.peer).is_some_and(|l| l.uid == uid);
            if removed {
                m.remove(&key.peer);
                if m.is_empty() {
                    st.locals.remove(&key.room);
                }
            }
            removed.then_some(uid)
        };
        if let Some(uid) = removed {
            let _ = self.writer_tx.send(Job::Leave {
                room: key.room.clone(),
                peer: key.peer.clone(),
                uid,
            });
            self.unhold(&key.room);
        }
    }

    fn is_live(&self, key: &SeatKey) -> bool {
        self.local.is_live(key)
    }
}

impl MembershipService for Cluster {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn is_ready(&self) -> bool {
        self.inner.is_up()
    }

    fn join(&self, request: JoinRequest) -> Op<'_, Result<Seat, JoinError>> {
        Op::pending(self.inner.join_async(request))
    }

    fn relay(
        &self,
        from: &Seat,
        target: Target,
        kind: SignalKind,
        payload: Bytes,
        origin: DialectTag,
    ) -> Op<'_, Result<Delivery, RelayError>> {
        self.inner
            .relay_remote(from.key(), target, kind, payload, origin)
    }

    fn touch(&self, seat: &Seat) {
        self.inner.local.touch_now(seat.key());
    }

    fn mailbox_push(
        &self,
        from: &Seat,
        to: PeerId,
        payload: Bytes,
        origin: DialectTag,
    ) -> Op<'_, Result<Delivery, RelayError>> {
        let key = from.key().clone();
        let inner = &self.inner;
        Op::pending(async move {
            if !inner.local.is_live(&key) {
                return Err(RelayError::NotInRoom(key.room.clone()));
            }
            let keys = RoomKeys::new(&key.room);
            let limits = inner.local.limits();
            let mut c = inner.conn().map_err(RelayError::Unavailable)?;
            let seq: u64 = tokio::time::timeout(
                OP_TIMEOUT,
                inner
                    .scripts
                    .mailbox_push
                    .key(&keys.mbseq)
                    .key(keys.mailbox(&to))
                    .key(keys.mailbox_bytes())
                    .arg(to.as_str())
                    .arg(payload.as_ref())
                    .arg(limits.mailbox_items)
                    .arg(limits.mailbox_bytes)
                    .arg(keys.prefix())
                    .invoke_async(&mut c),
            )
            .await
            .map_err(|_| RelayError::Unavailable(unavailable("timeout")))?
            .map_err(|e| RelayError::Unavailable(unavailable(e)))?;
            let remote = inner
                .lock()
                .views
                .get(&key.room)
                .and_then(|v| v.find(to.as_str()).map(|r| r.inbox.clone()));
            let signal = Signal {
                room: key.room.clone(),
                from: key.peer.clone(),
                to: Some(to.clone()),
                kind: SignalKind::Mailbox(seq),
                payload,
                origin,
                audience: 2,
            };
            if let Some(inbox) = remote {
                let msg = wire::encode_signal(&inner.inst, &signal);
                return match inner.publish(inbox, msg).await {
                    Ok(0) => Err(RelayError::Unavailable(
                        "the recipient's node is unreachable (the item stays queued)".into(),
                    )),
                    Ok(_) => Ok(Delivery { delivered: 1 }),
                    Err(e) => Err(RelayError::Unavailable(e)),
                };
            }
            let env = Envelope::new(Event::Signal(signal));
            match inner.local.deliver_to(&key.room, &to, &env) {
                Ok(()) => Ok(Delivery { delivered: 1 }),
                // Gone meanwhile: the item stays queued for its next hello.
                Err(RelayError::PeerNotFound(_)) => Ok(Delivery { delivered: 0 }),
                Err(e) => Err(e),
            }
        })
    }

    fn mailbox_replay(
        &self,
        seat: &Seat,
        from_seq: u64,
    ) -> Op<'_, Result<Vec<(u64, Bytes)>, RelayError>> {
        let key = seat.key().clone();
        let inner = &self.inner;
        Op::pending(async move {
            if !inner.local.is_live(&key) {
                return Err(RelayError::NotInRoom(key.room.clone()));
            }
            let keys = RoomKeys::new(&key.room);
            let mut c = inner.conn().map_err(RelayError::Unavailable)?;
            let items: Vec<Vec<u8>> = tokio::time::timeout(
                OP_TIMEOUT,
                inner
                    .scripts
                    .mailbox_replay
                    .key(keys.mailbox(&key.peer))
                    .key(keys.mailbox_bytes())
                    .arg(from_seq)
                    .invoke_async(&mut c),
            )
            .await
            .map_err(|_| RelayError::Unavailable(unavailable("timeout")))?
            .map_err(|e| RelayError::Unavailable(unavailable(e)))?;
            Ok(items
                .into_iter()
                .filter_map(|item| {
                    let i = item.iter().position(|&b| b == b'\n')?;
                    let seq = std::str::from_utf8(&item[..i]).ok()?.parse().ok()?;
                    Some((seq, Bytes::copy_from_slice(&item[i + 1..])))
                })
                .collect())
        })
    }

    fn first_flow(&self, seat: &Seat) -> Op<'_, Option<FirstFlow>> {
        let key = seat.key().clone();
        let inner = &self.inner;
        Op::pending(async move {
            if !inner.local.is_live(&key) {
                return None;
            }
            let keys = RoomKeys::new(&key.room);
            let mut c = inner.conn().ok()?;
            let now = unix_millis();
            let v: Vec<i64> = tokio::time::timeout(
                OP_TIMEOUT,
                inner
                    .scripts
                    .first_flow
                    .key(&keys.meta)
                    .arg(now)
                    .invoke_async(&mut c),
            )
            .await
            .ok()?
            .ok()?;
            match v.as_slice() {
                [1, paired] => Some(FirstFlow::First {
                    paired_for: u64::try_from(*paired)
                        .ok()
                        .map(|p| Duration::from_millis(now.saturating_sub(p))),
                }),
                [0] => Some(FirstFlow::Again),
                _ => None,
            }
        })
    }

    fn create_room(
        &self,
        id: RoomId,
        opts: CreateOptions,
    ) -> Op<'_, Result<RoomSnapshot, JoinError>> {
        let inner = &self.inner;
        Op::pending(async move {
            let keys = RoomKeys::new(&id);
            let exists = inner.room_data(&id).await?.snapshot(&id).is_some();
            if exists {
                return Err(JoinError::RoomExists(id));
            }
            inner.may_create(opts.creator).await?;
            let mut c = inner.conn().map_err(JoinError::Unavailable)?;
            let now = unix_millis();
            let mut inv = inner.scripts.create.prepare_invoke();
            inv.key(&keys.meta).key(&keys.members);
            push_create_args(&mut inv, &opts);
            inv.arg(now).arg(
                u64::try_from(inner.settings.unjoined_ttl.as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1),
            );
            let made: i64 = tokio::time::timeout(OP_TIMEOUT, inv.invoke_async(&mut c))
                .await
                .map_err(|_| JoinError::Unavailable(unavailable("timeout")))?
                .map_err(|e| JoinError::Unavailable(unavailable(e)))?;
            if made == 0 {
                return Err(JoinError::RoomExists(id));
            }
            let _: redis::RedisResult<()> = redis::cmd("ZADD")
                .arg(wire::ROOMS)
                .arg(now)
                .arg(id.as_str())
                .query_async(&mut c)
                .await;
            inner
                .room_data(&id)
                .await?
                .snapshot(&id)
                .ok_or(JoinError::RoomNotFound(id))
        })
    }

    fn delete_room(&self, id: RoomId) -> Op<'_, Result<bool, JoinError>> {
        let inner = &self.inner;
        Op::pending(async move {
            let keys = RoomKeys::new(&id);
            let mut c = inner.conn().map_err(JoinError::Unavailable)?;
            let existed: i64 = tokio::time::timeout(
                OP_TIMEOUT,
                inner
                    .scripts
                    .delete
                    .key(&keys.meta)
                    .key(&keys.members)
                    .key(&keys.mbseq)
                    .arg(&keys.channel)
                    .arg(json_str(id.as_str()))
                    .invoke_async(&mut c),
            )
            .await
            .map_err(|_| JoinError::Unavailable(unavailable("timeout")))?
            .map_err(|e| JoinError::Unavailable(unavailable(e)))?;
            let _: redis::RedisResult<()> = redis::cmd("ZREM")
                .arg(wire::ROOMS)
                .arg(id.as_str())
                .query_async(&mut c)
                .await;
            // This node's members go now (others hear the room's `c` event).
            let local = inner.local.delete_room_now(&id);
            Ok(existed == 1 || local)
        })
    }

    fn room(&self, id: RoomId) -> Op<'_, Result<Option<RoomSnapshot>, JoinError>> {
        let inner = &self.inner;
        Op::pending(async move { Ok(inner.room_data(&id).await?.snapshot(&id)) })
    }

    fn rooms(&self) -> Op<'_, Result<Vec<RoomSnapshot>, JoinError>> {
        Op::pending(self.inner.all_rooms())
    }

    fn stats(&self) -> Op<'_, Result<RegistryStats, JoinError>> {
        Op::pending(self.inner.counts())
    }

    fn local_stats(&self, pick: &dyn Fn(DialectTag) -> bool) -> RegistryStats {
        self.inner.local.local_stats(pick)
    }

    fn sweep(&self, policy: SweepPolicy) -> SweepReport {
        // Rooms in Redis expire by themselves; this node's copies are swept as on one node
        // (an idle room's local members are closed, and leave).
        self.inner.local.sweep(policy)
    }

    fn shutdown(&self) -> Op<'_, ()> {
        Op::pending(link::shutdown(self.inner.clone()))
    }
}

impl Inner {
    async fn room_data(&self, id: &RoomId) -> Result<RoomData, JoinError> {
        let keys = RoomKeys::new(id);
        let mut c = self.conn().map_err(JoinError::Unavailable)?;
        let (meta, members): (Vec<String>, Vec<String>) = tokio::time::timeout(
            OP_TIMEOUT,
            redis::pipe()
                .cmd("HGETALL")
                .arg(&keys.meta)
                .cmd("HGETALL")
                .arg(&keys.members)
                .query_async(&mut c),
        )
        .await
        .map_err(|_| JoinError::Unavailable(unavailable("timeout")))?
        .map_err(|e| JoinError::Unavailable(unavailable(e)))?;
        Ok(RoomData::from_pairs(&meta, &members))
    }

    /// Rooms and members cluster-wide: the index, and one `EXISTS`/`HLEN` pair per room
    /// (cheaper than the listing, for `/api/health`).
    async fn counts(&self) -> Result<RegistryStats, JoinError> {
        let mut c = self.conn().map_err(JoinError::Unavailable)?;
        let timeout = || JoinError::Unavailable(unavailable("timeout"));
        let ids: Vec<String> = tokio::time::timeout(
            OP_TIMEOUT,
            redis::cmd("ZRANGE")
                .arg(wire::ROOMS)
                .arg(0)
                .arg(-1)
                .query_async(&mut c),
        )
        .await
        .map_err(|_| timeout())?
        .map_err(|e| JoinError::Unavailable(unavailable(e)))?;
        let mut out = RegistryStats::default();
        for chunk in ids.chunks(512) {
            let mut pipe = redis::pipe();
            for id in chunk {
                let k = RoomKeys::new(&RoomId::from(id.as_str()));
                pipe.cmd("EXISTS").arg(&k.meta).cmd("HLEN").arg(&k.members);
            }
            let v: Vec<usize> = tokio::time::timeout(OP_TIMEOUT, pipe.query_async(&mut c))
                .await
                .map_err(|_| timeout())?
                .map_err(|e| JoinError::Unavailable(unavailable(e)))?;
            for pair in v.chunks_exact(2) {
                if pair[0] + pair[1] > 0 {
                    out.rooms += 1;
                    out.peers += pair[1];
                }
            }
        }
        Ok(out)
    }

    async fn all_rooms(&self) -> Result<Vec<RoomSnapshot>, JoinError> {
        let mut c = self.conn().map_err(JoinError::Unavailable)?;
        let ids: Vec<String> = tokio::time::timeout(
            OP_TIMEOUT,
            redis::cmd("ZRANGE")
                .arg(wire::ROOMS)
                .arg(0)
                .arg(-1)
                .query_async(&mut c),
        )
        .await
        .map_err(|_| JoinError::Unavailable(unavailable("timeout")))?
        .map_err(|e| JoinError::Unavailable(unavailable(e)))?;
        let mut out = Vec::with_capacity(ids.len());
        let mut gone = Vec::new();
        for chunk in ids.chunks(256) {
            let mut pipe = redis::pipe();
            for id in chunk {
                let k = RoomKeys::new(&RoomId::from(id.as_str()));
                pipe.cmd("HGETALL")
                    .arg(&k.meta)
                    .cmd("HGETALL")
                    .arg(&k.members);
            }
            let v: Vec<Vec<String>> = tokio::time::timeout(OP_TIMEOUT, pipe.query_async(&mut c))
                .await
                .map_err(|_| JoinError::Unavailable(unavailable("timeout")))?
                .map_err(|e| JoinError::Unavailable(unavailable(e)))?;
            for (id, pair) in chunk.iter().zip(v.chunks_exact(2)) {
                let id = RoomId::from(id.as_str());
                match RoomData::from_pairs(&pair[0], &pair[1]).snapshot(&id) {
                    Some(s) => out.push(s),
                    None => gone.push(id),
                }
            }
        }
        if !gone.is_empty() {
            let mut cmd = redis::cmd("ZREM");
            cmd.arg(wire::ROOMS);
            for id in &gone {
                cmd.arg(id.as_str());
            }
            let _: redis::RedisResult<()> = cmd.query_async(&mut c).await;
        }
        out.sort_by(|a, b| (a.created_at_ms, a.id.as_str()).cmp(&(b.created_at_ms, b.id.as_str())));
        Ok(out)
    }
}

/// The node id when `NODE_ID` is unset: the host name and a random suffix.
pub fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| {
            h.trim()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
                .take(48)
                .collect::<String>()
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into());
    format!("{host}-{:04x}", rand::random::<u16>())
}

/// The membership service and code book the configuration asks for: in memory (the
/// registry itself), or on Redis when `REDIS_URL` is set.
pub fn backends(
    config: &crate::config::Config,
    node_id: &str,
    registry: &Registry,
    gate: Arc<dyn CreationGate>,
) -> (
    Arc<dyn MembershipService>,
    Arc<dyn switchboard_core::CodeBook>,
) {
    let Some(url) = &config.redis_url else {
        return (
            Arc::new(registry.clone()),
            Arc::new(switchboard_core::LocalCodes::default()),
        );
    };
    let settings = Settings {
        url: url.clone(),
        node_id: node_id.to_owned(),
        lease: config.cluster_lease.get(),
        fence_timeout: config.cluster_fence_timeout.get(),
        empty_grace: config.empty_room_grace.get(),
        unjoined_ttl: config.unjoined_room_ttl.get(),
        max_rooms: config.max_rooms,
        max_peers_per_room: config.max_peers_per_room,
        separate_secured: config.limits().separate_secured,
    };
    // The URL was checked with the configuration; a client that still cannot be built is a
    // programming error worth stopping for.
    let cluster = Cluster::start(settings, registry.clone(), gate)
        .expect("REDIS_URL was validated with the configuration");
    let codes = Arc::new(cluster.codes());
    (Arc::new(cluster), codes)
}
