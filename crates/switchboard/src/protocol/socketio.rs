//! The Socket.io dialect (seed 003, the Vibe signaling server) over socketioxide: Engine.IO
//! v4 at `/socket.io/` (websocket and polling), on the HTTP port and on `SOCKETIO_PORT`,
//! plus the Vibe REST API on `SOCKETIO_PORT` ([`rest_router`]).
//!
//! Client events: `join-room`, `leave-room`, `offer`, `answer`, `ice-candidate`. Both the
//! seed's object payloads (`{roomId, userId}`) and the original's positional arguments
//! (`roomId, userId`) are accepted for `join-room` and `leave-room`. Server events:
//! `room-users` and `room-participants` `{participants, roomId}` (the joiner's view: every
//! member but itself), `user-joined {userId, roomId}`, `user-left {userId, roomId}`, the
//! relayed `offer`/`answer`/`ice-candidate` `{userId, targetUserId?, offer|answer|candidate}`
//! and `error {message}`.
//!
//! Every socket has a core outbox; a task per socket drains it and emits the events, so a
//! Socket.io peer shares rooms with the peers of every other dialect. Departures from the
//! original, on purpose: signals go to `targetId`/`targetUserId` when given; a socket must
//! have joined a room to signal in it; the relayed `userId` is the one the sender joined
//! with; a disconnect leaves every room (the others hear `user-left`) and a room left empty
//! by a Socket.io peer is removed; a missing or malformed payload gets `error`.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde::de::{Deserializer, SeqAccess, Visitor};
use serde_json::{Map, Value, json};
use socketioxide::extract::{SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::layer::SocketIoLayer;
use socketioxide::{SendError, SocketError, SocketIo};
use switchboard_core::{
    CloseReason, ConnId, CreateOptions, Envelope, Event, JoinError, JoinMode, JoinOptions,
    Membership, Outbound, OutboxReceiver, PeerHandle, PeerId, Received, RelayError,
    RoomClosedReason, RoomId, RoomSnapshot, SignalKind, Target, outbox,
};

use super::{signal_body, tags};
use crate::admission::ConnectionSlot;
use crate::client_ip::{self, ClientIp};
use crate::metrics::DialectLabel;
use crate::rate::{MessageLimit, Verdict};
use crate::state::AppState;
use tokio::sync::mpsc;

/// The dialect's name in metrics.
pub const NAME: &str = "socketio";
/// Rooms one socket may be in at once.
pub const MAX_ROOMS_PER_SOCKET: usize = 64;
/// Events received but not yet handled, per socket. The socket's task handles them in
/// microseconds; a client that gets this far ahead is flooding and is disconnected.
const INBOUND_CAPACITY: usize = 1024;
/// How soon a socket whose Engine.IO channel was full is tried again.
const EMIT_RETRY: Duration = Duration::from_millis(2);
/// The events this dialect handles.
const EVENTS: [&str; 5] = [
    "join-room",
    "leave-room",
    "offer",
    "answer",
    "ice-candidate",
];
/// The room attribute holding the ISO-8601 creation time of REST-created rooms.
const CREATED_AT: &str = "createdAt";

/// Every argument of an event, however many the client sent.
struct Args(Vec<Value>);

impl<'de> Deserialize<'de> for Args {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Args;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("event arguments")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Args, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = seq.next_element::<Value>()? {
                    v.push(x);
                }
                Ok(Args(v))
            }
        }
        // A tuple, so that socketioxide hands over every argument rather than the first.
        d.deserialize_tuple(usize::MAX, V)
    }
}

/// One socket's core side: its outbox handle and its room memberships.
struct Conn {
    handle: PeerHandle,
    rooms: Mutex<HashMap<RoomId, Membership>>,
}

/// What the socket's handlers hand to its task, in arrival order.
enum Inbound {
    /// An event and all its arguments.
    Event(&'static str, Vec<Value>),
    /// The socket disconnected: handle what came before, then stop.
    Disconnected,
}

impl Conn {
    fn rooms(&self) -> std::sync::MutexGuard<'_, HashMap<RoomId, Membership>> {
        self.rooms.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Leaves every room (the others hear `user-left`), removing rooms left empty.
    fn leave_all(&self) {
        let all: Vec<(RoomId, Membership)> = self.rooms().drain().collect();
        // Each dropped membership tells its room; a room goes when its last member leaves
        // (Socket.io rooms are created with a zero empty grace).
        drop(all);
    }
}

/// The Socket.io layer (Engine.IO v4 at `/socket.io/`) with its handlers.
pub fn layer(app: AppState) -> SocketIoLayer {
    let max_payload = (app.config.max_frame_bytes.get() as u64).max(64 << 10);
    let (layer, io) = SocketIo::builder()
        .max_payload(max_payload)
        .ping_interval(Duration::from_secs(25))
        .ping_timeout(Duration::from_secs(20))
        .build_layer();
    // Everything a socket needs is set up in a connect *middleware*: socketioxide awaits
    // middlewares before it sends the CONNECT packet, but spawns the connect handler after
    // sending it, so event handlers registered there can miss a client's first event (a
    // `join-room` emitted from its `connect` callback, the usual pattern). A refusal from
    // the middleware reaches the client as `connect_error {message}`.
    let setup = move |s: SocketRef| {
        let app = app.clone();
        async move { on_connect(&app, s) }
    };
    io.ns("/", (async || {}).with(setup));
    layer
}

/// The socket's outgoing events, in order. Engine.IO's own per-socket channel is small and
/// offers no way to wait for room, only `try_send`; when it is full the events wait here
/// and the task retries shortly, taking nothing more from the peer's outbox meanwhile. The
/// outbox then fills like any other dialect's, and a peer that stays behind is closed as a
/// slow consumer: a burst is delivered late rather than lost.
struct Emitter {
    s: SocketRef,
    pending: VecDeque<(Cow<'static, str>, Value)>,
    /// When the channel was first found full, while events wait.
    stalled_since: Option<tokio::time::Instant>,
}

impl Emitter {
    fn new(s: SocketRef) -> Self {
        Self {
            s,
            pending: VecDeque::new(),
            stalled_since: None,
        }
    }

    fn error(&mut self, message: &str) {
        self.push("error".into(), json!({ "message": message }));
    }

    /// Queues an event behind the waiting ones and sends what the channel takes.
    fn push(&mut self, event: Cow<'static, str>, data: Value) {
        self.pending.push_back((event, data));
        self.flush();
    }

    /// Sends waiting events until the channel is full.
    fn flush(&mut self) {
        while let Some((event, data)) = self.pending.front() {
            match self.s.emit(&**event, data) {
                Ok(()) => {}
                Err(SendError::Socket(SocketError::InternalChannelFull)) => {
                    self.stalled_since
                        .get_or_insert_with(tokio::time::Instant::now);
                    return;
                }
                Err(e) => {
                    // Only a socket that is already gone should get here; say so if not.
                    if self.s.connected() {
                        tracing::warn!(%event, error = %e, "socket.io emit to a connected socket failed");
                    }
                }
            }
            self.pending.pop_front();
        }
        self.stalled_since = None;
        if self.pending.capacity() > 16 {
            self.pending = VecDeque::new();
        }
    }

    fn is_stalled(&self) -> bool {
        self.stalled_since.is_some()
    }
}

/// Admits a socket and wires it to the core, or says why not.
///
/// socketioxide spawns every `async` event handler as its own task, so two events of one
/// socket would race on the multi-threaded runtime (a candidate could overtake the offer it
/// belongs to). The handlers registered here therefore do their work *synchronously*, in
/// the closure that socketioxide calls in arrival order, before it spawns the (empty)
/// future: they only push the event into the socket's queue. One task per socket ([`run`])
/// takes events from that queue strictly in order, and also drains the socket's outbox.
fn on_connect(app: &AppState, s: SocketRef) -> Result<(), &'static str> {
    let parts = s.req_parts();
    let client = client_ip::from_parts(&parts.extensions);
    let slot = crate::admission::admit_connection(app, &parts.headers, client.0)
        .map_err(crate::admission::Refusal::message)?;
    let (handle, rx) = outbox(ConnId::next(), tags::SOCKETIO, app.config.outbox_capacity);
    let conn = Arc::new(Conn {
        handle,
        rooms: Mutex::new(HashMap::new()),
    });
    let (tx, inbound) = mpsc::channel(INBOUND_CAPACITY);
    for event in EVENTS {
        let (tx, app) = (tx.clone(), app.clone());
        s.on(event, move |s: SocketRef, args: TryData<Args>| {
            let args = args.0.map(|a| a.0).unwrap_or_default();
            if tx.try_send(Inbound::Event(event, args)).is_err() {
                app.metrics.limit("inbound_queue");
                let _ = s.disconnect();
            }
            std::future::ready(())
        });
    }
    {
        let conn = Arc::clone(&conn);
        s.on_disconnect(move || {
            if tx.try_send(Inbound::Disconnected).is_err() {
                // The queue is full or gone: stop the task through the outbox instead.
                conn.handle.close(CloseReason::Shutdown);
            }
            std::future::ready(())
        });
    }
    let tracker = app.shutdown.tracker().clone();
    tokio::spawn(tracker.track_future(run(app.clone(), conn, s, inbound, rx, slot)));
    Ok(())
}

fn on_event(
    app: &AppState,
    conn: &Conn,
    out: &mut Emitter,
    rate: &mut MessageLimit,
    event: &'static str,
    args: &[Value],
) {
    match rate.check() {
        Verdict::Allow => {}
        Verdict::Refuse => {
            app.metrics.limit("rate");
            app.metrics.error("rate_limited");
            out.error("Too many messages; slow down");
            return;
        }
        Verdict::Close => {
            app.metrics.limit("rate");
            conn.leave_all();
            let _ = out.s.clone().disconnect();
            return;
        }
    }
    app.metrics.message(NAME, event);
    let result = match event {
        "join-room" => join(app, conn, args),
        "leave-room" => {
            leave(conn, args);
            Ok(())
        }
        "offer" => relay(app, conn, args, SignalKind::Offer),
        "answer" => relay(app, conn, args, SignalKind::Answer),
        _ => relay(app, conn, args, SignalKind::Candidate),
    };
    if let Err((code, message)) = result {
        app.metrics.error(code);
        out.error(&message);
    }
}

/// What a payload says, in either form.
#[derive(Default)]
struct Fields {
    room: Option<String>,
    user: Option<String>,
    target: Option<String>,
    object: Option<Map<String, Value>>,
}

fn string(v: Option<&Value>) -> Option<String> {
    match v {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// Reads `{roomId, userId, targetId|targetUserId, …}` or positional `(roomId, userId)`.
fn fields(args: &[Value]) -> Option<Fields> {
    match args.first()? {
        Value::Object(o) => Some(Fields {
            room: string(o.get("roomId")),
            user: string(o.get("userId")),
            target: string(o.get("targetId")).or_else(|| string(o.get("targetUserId"))),
            object: Some(o.clone()),
        }),
        Value::String(room) => Some(Fields {
            room: Some(room.clone()).filter(|r| !r.is_empty()),
            user: string(args.get(1)),
            ..Fields::default()
        }),
        _ => None,
    }
}

type Refusal = (&'static str, String);

fn join(app: &AppState, conn: &Conn, args: &[Value]) -> Result<(), Refusal> {
    let f = fields(args).ok_or(("bad_payload", "join-room needs {roomId, userId}".to_owned()))?;
    let (Some(room), Some(user)) = (f.room, f.user) else {
        return Err((
            "missing_fields",
            "join-room needs roomId and userId".to_owned(),
        ));
    };
    let room = RoomId::new(&room);
    let user = PeerId::new(&user);
    let mut rooms = conn.rooms();
    if let Some(old) = rooms.get(&room)
        && old.peer() != &user
    {
        // The socket joins again under another name: the old name leaves.
        rooms.remove(&room);
    }
    if !rooms.contains_key(&room) && rooms.len() >= MAX_ROOMS_PER_SOCKET {
        app.metrics.limit("rooms_per_socket");
        return Err((
            "too_many_rooms",
            format!("A socket may be in at most {MAX_ROOMS_PER_SOCKET} rooms"),
        ));
    }
    let opts = JoinOptions {
        mode: JoinMode::Existing,
        ..JoinOptions::default()
    };
    match app
        .registry
        .join(room.clone(), user, conn.handle.clone(), opts)
    {
        Ok(m) => {
            rooms.insert(room, m);
            Ok(())
        }
        Err(e) => Err(match e {
            JoinError::RoomNotFound(_) => ("room_not_found", "Room not found".to_owned()),
            JoinError::RoomFull { capacity, .. } => {
                app.metrics.limit("room_full");
                ("room_full", format!("Room is full ({capacity} peers)"))
            }
            JoinError::PeerIdTaken { peer, .. } => (
                "duplicate_peer",
                format!("User {peer} is already in this room on another connection"),
            ),
            other => ("join_failed", other.to_string()),
        }),
    }
}

fn leave(conn: &Conn, args: &[Value]) {
    // Unknown rooms, rooms this socket is not in and unreadable payloads are ignored, as in
    // the original. Only the socket's own membership is removed, whatever `userId` says.
    let Some(room) = fields(args).and_then(|f| f.room) else {
        return;
    };
    let room = RoomId::new(&room);
    // Dropping the membership tells the room; the room itself goes when its last member
    // leaves (it was created with a zero empty grace).
    drop(conn.rooms().remove(&room));
}

fn relay(app: &AppState, conn: &Conn, args: &[Value], kind: SignalKind) -> Result<(), Refusal> {
    let key = super::body_key(&kind).expect("offer, answer and candidate have body keys");
    let usage = || {
        (
            "bad_payload",
            format!("Expected {{roomId, targetUserId?, {key}}}"),
        )
    };
    let f = fields(args).ok_or_else(usage)?;
    let Some(body) = f.object.as_ref().and_then(|o| o.get(key)) else {
        return Err(usage());
    };
    let payload = serde_json::to_vec(body).map_err(|_| usage())?;
    let mut rooms = conn.rooms();
    let room = match f.room {
        Some(r) => RoomId::new(&r),
        None if rooms.len() == 1 => rooms.keys().next().expect("one room").clone(),
        None => return Err(("missing_fields", "Missing roomId".to_owned())),
    };
    let Some(m) = rooms.get(&room) else {
        return Err((
            "not_in_room",
            format!("Not in room {}: join-room first", truncate(room.as_str())),
        ));
    };
    let target = f
        .target
        .map_or(Target::Room, |t| Target::Peer(PeerId::new(&t)));
    match app
        .registry
        .relay(m, target, kind, payload.into(), tags::SOCKETIO)
    {
        Ok(_) | Err(RelayError::Undelivered(_)) => Ok(()),
        Err(RelayError::NotInRoom(r)) => {
            rooms.remove(&room);
            Err((
                "not_in_room",
                format!("Not in room {}", truncate(r.as_str())),
            ))
        }
        Err(RelayError::PeerNotFound(p)) => Err((
            "peer_not_found",
            format!("User {} not found in room", truncate(p.as_str())),
        )),
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// One socket's task: handles its events in arrival order and emits what arrives in its
/// outbox, until the socket or the server goes.
async fn run(
    app: AppState,
    conn: Arc<Conn>,
    s: SocketRef,
    mut inbound: mpsc::Receiver<Inbound>,
    mut rx: OutboxReceiver,
    slot: ConnectionSlot,
) {
    let _slot = slot;
    let label = DialectLabel { dialect: NAME };
    app.metrics.connections.get_or_create(&label).inc();
    let active = app.metrics.connections_active.get_or_create(&label).clone();
    active.inc();
    let mut rate = MessageLimit::new(app.config.max_messages_per_second);
    let mut out = Emitter::new(s.clone());
    let shutdown = app.shutdown.token().cancelled();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => {
                conn.handle.close(CloseReason::Shutdown);
                break;
            }
            msg = inbound.recv() => match msg {
                Some(Inbound::Event(event, args)) => on_event(&app, &conn, &mut out, &mut rate, event, &args),
                Some(Inbound::Disconnected) | None => break,
            },
            received = rx.recv(), if !out.is_stalled() => match received {
                Received::Item(Outbound::Event(env)) => render(&app, &conn, &mut out, &env),
                Received::Item(Outbound::Frame(_)) => {}
                Received::Closed(_) => break,
            },
            () = tokio::time::sleep(EMIT_RETRY), if out.is_stalled() => {
                out.flush();
                let too_long = out.stalled_since.is_some_and(|t| t.elapsed() > crate::transport::ws::WRITE_TIMEOUT);
                if too_long {
                    conn.handle.close(CloseReason::SlowConsumer);
                }
                // The outbox filled up behind the stalled channel (or the timeout above).
                if conn.handle.is_closing() {
                    break;
                }
            }
        }
    }
    conn.leave_all();
    if s.connected() {
        let reason = conn.handle.close_reason().unwrap_or(CloseReason::Shutdown);
        if reason == CloseReason::SlowConsumer {
            app.metrics.slow_consumers.inc();
        } else {
            let _ = s.emit("error", &json!({ "message": reason.as_str() }));
        }
        // `disconnect` needs room in the socket's channel; a stuck client gets a few tries,
        // then Engine.IO's ping timeout closes it.
        for _ in 0..20 {
            match s.clone().disconnect() {
                Err(SocketError::InternalChannelFull) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                _ => break,
            }
        }
    }
    active.dec();
}

fn event_name(kind: &SignalKind) -> Cow<'static, str> {
    Cow::Borrowed(match kind {
        SignalKind::Offer => "offer",
        SignalKind::Answer => "answer",
        SignalKind::Candidate => "ice-candidate",
        SignalKind::Presence => "presence",
        SignalKind::Cursor => "cursor-update",
        SignalKind::Generic => "signal",
        SignalKind::Publish => "publish",
        SignalKind::Other(name) => return Cow::Owned(name.to_string()),
    })
}

/// Emits a core event as socket.io events.
fn render(app: &AppState, conn: &Conn, out: &mut Emitter, env: &Envelope) {
    match &env.event {
        Event::Joined { room, me, .. } => {
            let participants: Vec<&str> = room
                .members
                .iter()
                .filter(|m| &m.id != me)
                .map(|m| m.id.as_str())
                .collect();
            let data = json!({ "participants": participants, "roomId": room.id.as_str() });
            // The seed's name and the original server's name, both.
            out.push("room-users".into(), data.clone());
            out.push("room-participants".into(), data);
        }
        Event::PeerJoined { room, peer } => {
            out.push(
                "user-joined".into(),
                json!({ "userId": peer.id.as_str(), "roomId": room.as_str() }),
            );
        }
        Event::PeerLeft { room, peer } => {
            out.push(
                "user-left".into(),
                json!({ "userId": peer.as_str(), "roomId": room.as_str() }),
            );
        }
        Event::Signal(sig) => {
            app.metrics
                .relay_latency
                .observe(env.queued_at.elapsed().as_secs_f64());
            let body: Value = serde_json::from_slice(&signal_body(sig)).unwrap_or(Value::Null);
            let mut data = Map::new();
            data.insert("userId".into(), Value::String(sig.from.as_str().into()));
            if let Some(to) = &sig.to {
                data.insert("targetUserId".into(), Value::String(to.as_str().into()));
            }
            data.insert("roomId".into(), Value::String(sig.room.as_str().into()));
            data.insert(super::body_key(&sig.kind).unwrap_or("data").into(), body);
            out.push(event_name(&sig.kind), Value::Object(data));
        }
        Event::RoomClosed { room, reason } => {
            conn.rooms().remove(room);
            let why = match reason {
                RoomClosedReason::Inactive => "Room closed for inactivity",
                RoomClosedReason::Deleted => "Room deleted",
            };
            out.push(
                "error".into(),
                json!({ "message": why, "roomId": room.as_str() }),
            );
        }
    }
}

// ---- REST (seed 003 shapes), on SOCKETIO_PORT ----

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for Unix milliseconds.
pub fn iso8601(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// A room in seed 003's shape. When `names` is false the participants are withheld:
/// `participants` is empty and `participantCount` says how many there are.
fn room_json(r: &RoomSnapshot, names: bool) -> Value {
    let created = r
        .attributes
        .iter()
        .find(|(k, _)| &**k == CREATED_AT)
        .map_or_else(|| iso8601(r.created_at_ms), |(_, v)| v.to_string());
    if names {
        let participants: Vec<&str> = r.members.iter().map(|m| m.id.as_str()).collect();
        json!({ "id": r.id.as_str(), "participants": participants, "createdAt": created })
    } else {
        json!({
            "id": r.id.as_str(),
            "participants": [],
            "participantCount": r.members.len(),
            "createdAt": created,
        })
    }
}

async fn health() -> Json<Value> {
    Json(json!({ "status": "ok", "timestamp": iso8601(switchboard_core::unix_millis()) }))
}

/// `GET /api/rooms`: every room (but y-webrtc topics) with its participants. It names
/// participants, so in production it needs the admin key, as on `PORT`.
async fn list_rooms(State(app): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(e) = crate::http::require_admin(&app, &headers) {
        return e.into_response();
    }
    let rooms: Vec<Value> = app
        .registry
        .rooms()
        .iter()
        .filter(|r| !r.id.as_str().starts_with(super::ywebrtc::ROOM_PREFIX))
        .map(|r| room_json(r, true))
        .collect();
    Json(json!({ "rooms": rooms })).into_response()
}

/// `POST /api/rooms`: a fresh room with an unguessable id. Open to anyone (Vibe clients
/// create rooms themselves), within the client's room creation budget.
async fn create_room(State(app): State<AppState>, client: ClientIp) -> Response {
    let id = uuid::Uuid::new_v4().to_string();
    let now = switchboard_core::unix_millis();
    let opts = CreateOptions {
        attributes: vec![(Arc::from(CREATED_AT), Arc::from(iso8601(now).as_str()))],
        // Waits for its first member up to UNJOINED_ROOM_TTL, and goes the moment its last
        // member leaves, as Vibe's did.
        empty_grace: Some(std::time::Duration::ZERO),
        creator: Some(client.0),
        ..CreateOptions::default()
    };
    match app.registry.create_room(RoomId::new(&id), opts) {
        Ok(_) => Json(json!({ "roomId": id })).into_response(),
        Err(e) => crate::http::creation_error(&app, &e).into_response(),
    }
}

/// `GET /api/rooms/{id}`: anyone who knows a room's id (an unguessable UUID when it came
/// from `POST /api/rooms`) may see that it exists; in production only the admin key also
/// shows who is in it.
async fn get_room(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let participants = crate::http::require_admin(&app, &headers).is_ok();
    match app.registry.room(&RoomId::new(&id)) {
        Some(r) => Json(room_json(&r, participants)).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "Room not found"})),
        )
            .into_response(),
    }
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"error": "Not found"}))).into_response()
}

/// The Vibe REST API: `GET /health`, `GET|POST /api/rooms`, `GET /api/rooms/{roomId}`.
pub fn rest_router() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/api/rooms", get(list_rooms).post(create_room))
        .route("/api/rooms/{room_id}", get(get_room))
        .fallback(not_found)
}

#[cfg(test)]
mod tests {
    use super::iso8601;

    #[test]
    fn iso_dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
