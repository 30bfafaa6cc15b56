//! What the fuzz targets share: driving a real connection ([`Connection`], the state machine
//! the WebSocket driver runs) through a fuzz input's frames against an in-memory server
//! ([`connection`]), rendering every refusal a codec could give and every relay for every
//! dialect ([`respond`]), and the checks every rendered frame must pass.
//!
//! A target fails (libFuzzer reports a crash) on a panic anywhere in the server's code, and
//! on a broken invariant checked here:
//! - every frame a JSON dialect renders is UTF-8 and one JSON value, whatever the input;
//! - a signal relayed within its own dialect keeps the sender's bytes exactly;
//! - an error frame or event echoes at most a bounded part of what the client sent
//!   ([`MAX_ERROR_FRAME`]);
//! - a WebSocket close reason fits a close frame (123 bytes, RFC 6455 §5.5).

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use switchboard::command::{Command, CommandError, Session};
use switchboard::connection::{Connection, Read, Step};
use switchboard::dialect::nt::{Nt, Side};
use switchboard::dialect::octate::Octate;
use switchboard::dialect::rendezvous::Rendezvous;
use switchboard::dialect::ywebrtc::YWebrtc;
use switchboard::dialect::{Codec, Out, socketio, tags};
use switchboard::{AppState, Config, Shutdown};
use switchboard_core::{
    ConnId, DialectTag, Envelope, Event, PeerId, RoomId, Signal, SignalKind, Target, outbox,
};

/// The largest error frame (or Socket.io `error` event) any refusal may produce. Client
/// strings in error texts are cut to 64 characters, so a refusal is small whatever the
/// frame that caused it.
pub const MAX_ERROR_FRAME: usize = 1024;

/// The most bytes a WebSocket close reason may have (a control frame's 125 bytes less the
/// 2-byte code).
pub const MAX_CLOSE_REASON: usize = 123;

/// The embedded defaults (built once: a clap parse per input would dominate the run).
pub fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(Config::default)
}

/// At most `max` frames of a fuzz input: the bytes between NUL separators (a raw NUL can
/// never be part of a JSON text, so the split does not hide any JSON input).
pub fn frames(data: &[u8], max: usize) -> impl Iterator<Item = Bytes> + '_ {
    data.split(|b| *b == 0)
        .take(max)
        .map(Bytes::copy_from_slice)
}

/// Panics unless `bytes` is exactly one JSON value (a trailing newline allowed: the nt
/// dialect ends its frames with one).
#[track_caller]
pub fn assert_json(what: &str, bytes: &[u8]) {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => panic!(
            "{what}: not UTF-8 ({e}): {:?}",
            String::from_utf8_lossy(bytes)
        ),
    };
    // IgnoredAny: the syntax is checked, numbers of any size are fine (as for JSON.parse).
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(text) {
        panic!("{what}: not JSON ({e}): {text:?}");
    }
}

/// Checks what a codec wants written: each frame is JSON, a close reason fits its frame.
/// `error` bounds the size of the frames (for refusals).
#[track_caller]
pub fn check_out(what: &str, out: &Out, error: bool) {
    let check = |f: &Bytes| {
        assert_json(what, f);
        if error {
            assert!(
                f.len() <= MAX_ERROR_FRAME,
                "{what}: an error frame of {} bytes: {:?}",
                f.len(),
                String::from_utf8_lossy(&f[..200.min(f.len())])
            );
        }
    };
    match out {
        Out::None => {}
        Out::Frame(f) => check(f),
        Out::Frames(fs) => fs.iter().for_each(check),
        Out::Close {
            frame,
            code,
            reason,
        } => {
            if let Some(f) = frame {
                check(f);
            }
            assert!(
                reason.len() <= MAX_CLOSE_REASON,
                "{what}: close reason of {} bytes",
                reason.len()
            );
            assert!(
                (1000..=4999).contains(code) && ![1004, 1005, 1006, 1015].contains(code),
                "{what}: close code {code} may not be sent"
            );
        }
    }
}

/// The refusals executing `command` could produce that carry something from the frame
/// (ids, room names): each codec must render them bounded.
pub fn refusals_naming(command: &Command) -> Vec<CommandError> {
    let mut errors = Vec::new();
    let mut room = |r: &RoomId| {
        errors.push(CommandError::RoomNotFound(r.clone()));
        errors.push(CommandError::RoomExists(r.clone()));
        errors.push(CommandError::NotInRoom(Some(r.clone())));
    };
    match command {
        Command::Join(j) => {
            if let Some(r) = &j.room {
                room(r);
            }
            if let switchboard::command::PeerChoice::Named(p) = &j.peer {
                errors.push(CommandError::PeerIdTaken(p.clone()));
            }
        }
        Command::Leave(l) => {
            if let Some(r) = &l.room {
                room(r);
            }
        }
        Command::Relay(r) => {
            if let Some(r) = &r.room {
                room(r);
            }
            if let Target::Peer(p) = &r.target {
                errors.push(CommandError::PeerNotFound(p.clone()));
                errors.push(CommandError::Undelivered(vec![p.clone(); 3]));
            }
        }
        Command::Authenticate { user, room: r, .. } => {
            room(&RoomId::new(r));
            errors.push(CommandError::PeerIdTaken(PeerId::new(user)));
        }
        Command::Each(cs) => {
            for c in cs {
                errors.extend(refusals_naming(c));
            }
        }
        Command::Refuse(e) => errors.push(e.clone()),
        _ => {}
    }
    errors
}

/// A relayed signal as the registry builds it for a decoded relay from dialect `origin`.
pub fn signal(origin: DialectTag, relay: &switchboard::command::Relay) -> Arc<Envelope> {
    Envelope::new(Event::Signal(Signal {
        room: relay
            .room
            .clone()
            .unwrap_or_else(|| RoomId::new("y-webrtc/room")),
        from: PeerId::new("sender"),
        to: match &relay.target {
            Target::Peer(p) => Some(p.clone()),
            Target::Room => None,
        },
        kind: relay.kind.clone(),
        payload: relay.payload.clone(),
        origin,
        audience: 2,
    }))
}

/// Renders a signal decoded from dialect `origin` for a recipient of every dialect, as a
/// room shared by all dialects would: each frame must be JSON, and the sender's own dialect
/// must get the payload byte for byte.
pub fn render_everywhere(origin: DialectTag, relay: &switchboard::command::Relay) {
    let env = signal(origin, relay);
    let Event::Signal(s) = &env.event else {
        unreachable!()
    };
    // OctateCode.
    let out = Octate::new().encode_event(&env);
    check_out("octate render", &out, false);
    if origin == tags::OCTATE {
        let Out::Frame(f) = &out else {
            panic!("octate renders a signal as one frame: {out:?}")
        };
        // Byte for byte: the frame's `data` is the payload as sent.
        #[derive(serde::Deserialize)]
        struct Data<'a> {
            #[serde(borrow)]
            data: &'a serde_json::value::RawValue,
        }
        let d: Data<'_> = serde_json::from_slice(f).expect("an octate frame has data");
        assert_eq!(
            d.data.get().as_bytes(),
            &s.payload[..],
            "octate → octate changed data"
        );
    }
    // Rendezvous.
    let mut r = Rendezvous::new(config(), "room", None);
    let out = r.encode_event(&env);
    check_out("rendezvous render", &out, false);
    // nt: shows offers, answers and candidates of other dialects, its own frames verbatim.
    let out = Nt::new(&uuid::Uuid::nil(), Side::B).encode_event(&env);
    check_out("nt render", &out, false);
    if origin == tags::NT && !matches!(s.kind, SignalKind::Mailbox(_)) {
        assert_eq!(
            out,
            Out::Frame(s.payload.clone()),
            "nt → nt changed the frame"
        );
    }
    // y-webrtc: renders signals in topic rooms only.
    let out = YWebrtc::default().encode_event(&env);
    check_out("ywebrtc render", &out, false);
    // Socket.io: events with one JSON argument.
    let mut emits = Vec::new();
    socketio::encode_event(&env, &mut emits);
    for (name, value) in &emits {
        assert!(!name.is_empty(), "socketio: an event without a name");
        let bytes = serde_json::to_vec(value).expect("a Value serialises");
        assert_json("socketio render", &bytes);
    }
}

/// What a codec renders for one decoded frame beyond what the server actually answers
/// ([`connection`] covers that): each refusal the command layer could give naming what the
/// frame carried, bounded; a relay rendered for every dialect.
pub fn respond<C: Codec>(codec: &mut C, command: &Result<Command, CommandError>) {
    match command {
        Err(e) => check_out(&format!("{} error", C::NAME), &codec.encode_error(e), true),
        Ok(c) => {
            for e in refusals_naming(c) {
                check_out(
                    &format!("{} refusal", C::NAME),
                    &codec.encode_error(&e),
                    true,
                );
            }
            if let Command::Relay(r) = c {
                render_everywhere(C::TAG, r);
            }
        }
    }
}

/// The in-memory server the fuzzed connections run on (no per-connection or per-address
/// limits: every input gets as far as its frames take it), and a runtime to finish what a
/// command leaves pending.
fn server() -> &'static (AppState, tokio::runtime::Runtime) {
    static SERVER: OnceLock<(AppState, tokio::runtime::Runtime)> = OnceLock::new();
    SERVER.get_or_init(|| {
        let config = Config::parse_without_env([
            "switchboard",
            "--max-messages-per-second",
            "0",
            "--room-creations-per-minute",
            "0",
        ])
        .expect("a valid configuration");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime");
        let app = runtime.block_on(async { AppState::new(config, Shutdown::new()) });
        (app, runtime)
    })
}

/// Runs `frames` (bytes, binary) through a real connection of `codec`'s dialect on the
/// in-memory server, as the WebSocket driver would: the command layer applies each (real
/// rooms, real replies and refusals), and every frame the connection would write is checked
/// ([`check_out`]). The connection leaves its rooms at the end.
pub fn connection<C: Codec>(codec: C, frames: impl IntoIterator<Item = (Bytes, bool)>) {
    let (app, runtime) = server();
    let (handle, rx) = outbox(ConnId::next(), C::TAG, app.outbox_bounds());
    let session = Session::new(handle, std::net::Ipv4Addr::LOCALHOST.into(), false, None);
    let mut c = Connection::new(app.clone(), codec, session, rx);
    let what = format!("{} connection", C::NAME);
    let mut step = runtime.block_on(c.open());
    drain(&mut c, &what);
    for (data, binary) in frames {
        if step != Step::Continue {
            break;
        }
        step = match c.message(&data, binary) {
            Read::Done(s) => s,
            Read::Apply {
                command,
                label,
                len,
            } => {
                let result = runtime.block_on(c.apply(command).outcome());
                c.applied(label, len, &result)
            }
        };
        drain(&mut c, &what);
    }
    if let Step::Close(code, reason) = step {
        check_out(&what, &Out::close(None, code, reason), false);
    }
    for f in c.leave() {
        assert_json(&what, &f);
    }
}

/// Renders and checks what the connection's outbox holds.
fn drain<C: Codec>(c: &mut Connection<C>, what: &str) {
    while let Some(item) = c.next_outbound() {
        let out = c.render(item);
        check_out(what, &out, false);
    }
}
