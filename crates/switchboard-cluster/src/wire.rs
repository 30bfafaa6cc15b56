//! Key and channel names, and the encoding of what nodes publish to each other.
//!
//! Every message is one header line of JSON, a `\n`, and (for signals) the payload bytes
//! exactly as the sender's dialect produced them: headers are small and readable with
//! `redis-cli`, payloads are never re-encoded. Membership events are written by the Lua
//! scripts themselves (`cjson` for the strings), so state and notification stay atomic.

use std::borrow::Cow;
use std::io::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use switchboard_core::{DialectTag, MemberSummary, PeerId, RoomId, Signal, SignalKind};

/// Prefix of every key and channel.
pub const PREFIX: &str = "sb:";

/// Keys and channels of one room; `{room}` is the Redis Cluster hash tag, so all of them
/// (and the room's channel, for sharded pub/sub) live in one slot.
#[derive(Debug, Clone)]
pub struct RoomKeys {
    /// Hash: the room's metadata.
    pub meta: String,
    /// Hash: peer id → member record (JSON).
    pub members: String,
    /// Counter: the room's event sequence.
    pub seq: String,
    /// Hash: recipient → next mailbox sequence number.
    pub mbseq: String,
    /// The channel of the room's events.
    pub channel: String,
    tag: String,
}

impl RoomKeys {
    /// The keys of `room`.
    pub fn new(room: &RoomId) -> Self {
        let tag = format!("{PREFIX}{{{}}}", room.as_str());
        Self {
            meta: format!("{tag}:meta"),
            members: format!("{tag}:m"),
            seq: format!("{tag}:seq"),
            mbseq: format!("{tag}:mbseq"),
            channel: format!("{tag}:ev"),
            tag,
        }
    }

    /// The mailbox list of one recipient.
    pub fn mailbox(&self, to: &PeerId) -> String {
        format!("{}:mb:{}", self.tag, to.as_str())
    }

    /// The counter of the payload bytes every mailbox of the room holds.
    pub fn mailbox_bytes(&self) -> String {
        format!("{}:mbbytes", self.tag)
    }

    /// What every key of the room starts with (`sb:{room}:`), for scripts that name keys
    /// they find (other recipients' mailboxes).
    pub fn prefix(&self) -> String {
        format!("{}:", self.tag)
    }
}

/// The channel of a room's events (what [`RoomKeys::channel`] is, without the other keys).
pub fn room_channel(room: &RoomId) -> String {
    format!("{PREFIX}{{{}}}:ev", room.as_str())
}

/// The index of every room (sorted set, score = creation time).
pub const ROOMS: &str = "sb:rooms";
/// The set of node instances that have registered.
pub const NODES: &str = "sb:nodes";

/// The channel every node subscribes for revocations (`{"t":"v","r":"","p":user}`).
pub const REVOKE: &str = "sb:revoke";

/// A revocation of `user`'s access, for every node.
pub fn encode_revoke(inst: &str, user: &PeerId) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"t": "v", "o": inst, "r": "", "p": user.as_str()}))
        .expect("a revocation always serialises")
}

/// The lock one node holds while it prunes [`ROOMS`] (every 30 s).
pub const PRUNE_LOCK: &str = "sb:prune";

/// A node instance's lease key.
pub fn lease(inst: &str) -> String {
    format!("{PREFIX}lease:{inst}")
}

/// A node instance's set of the members it holds (`[room, peer, uid]` as JSON).
pub fn node_peers(inst: &str) -> String {
    format!("{PREFIX}node:{inst}:peers")
}

/// A node instance's inbox channel (targeted signals).
pub fn inbox(inst: &str) -> String {
    format!("{PREFIX}inbox:{inst}")
}

/// The lock a survivor takes to reap a dead instance.
pub fn reap_lock(inst: &str) -> String {
    format!("{PREFIX}reap:{inst}")
}

/// A rendezvous code's key (all codes in one slot, so the issuing script may search them).
pub fn code(n: u32) -> String {
    format!("{PREFIX}{{codes}}:{n:04}")
}

/// A member record as stored in the room's member hash and carried by join events.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    /// The membership's unique id: `<instance>/<connection>`.
    pub u: String,
    /// The node instance holding it.
    pub o: String,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    /// Whether it is the room's host.
    #[serde(default)]
    pub h: bool,
    /// Join time, Unix milliseconds.
    pub t: u64,
    /// Dialect tag.
    pub d: u8,
}

impl Record {
    /// The member as the core shows it.
    pub fn summary(&self, id: &PeerId) -> MemberSummary {
        MemberSummary {
            id: id.clone(),
            name: self.n.as_deref().map(Arc::from),
            is_host: self.h,
            joined_at_ms: self.t,
            last_heartbeat_ms: self.t,
            dialect: DialectTag(self.d),
        }
    }
}

/// A message header, as every node reads it. Strings borrow from the message (a signal's
/// header is read for every signal a node receives).
#[derive(Debug, Deserialize)]
pub struct Header<'a> {
    /// `s` signal, `j` joined, `l` left, `c` room closed.
    #[serde(borrow)]
    pub t: Cow<'a, str>,
    /// The publishing instance.
    #[serde(borrow, default)]
    pub o: Cow<'a, str>,
    /// The room.
    #[serde(borrow)]
    pub r: Cow<'a, str>,
    /// The room's event sequence number (membership events).
    #[serde(default)]
    pub q: u64,
    /// The peer a membership event is about.
    #[serde(borrow, default)]
    pub p: Option<Cow<'a, str>>,
    /// A join event's record.
    #[serde(default)]
    pub m: Option<Record>,
    /// A leave event's membership id.
    #[serde(borrow, default)]
    pub u: Option<Cow<'a, str>>,
    /// A signal's sender.
    #[serde(borrow, default)]
    pub f: Option<Cow<'a, str>>,
    /// A signal's named recipient.
    #[serde(borrow, default)]
    pub to: Option<Cow<'a, str>>,
    /// A signal's kind (see [`kind_code`]).
    #[serde(borrow, default)]
    pub k: Option<Cow<'a, str>>,
    /// A mailbox signal's sequence number.
    #[serde(default)]
    pub s: Option<u64>,
    /// A signal's origin dialect.
    #[serde(default)]
    pub d: u8,
    /// A signal's audience.
    #[serde(default)]
    pub a: u32,
    /// An undelivered notice's recipients that could not take the signal.
    #[serde(default)]
    pub x: Option<Vec<String>>,
}

#[derive(Serialize)]
struct SignalHeader<'a> {
    t: &'static str,
    o: &'a str,
    r: &'a str,
    f: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<&'a str>,
    k: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    s: Option<u64>,
    d: u8,
    a: u32,
}

/// A signal kind's code on the wire.
pub fn kind_code(kind: &SignalKind) -> (&str, Option<u64>) {
    match kind {
        SignalKind::Offer => ("o", None),
        SignalKind::Answer => ("a", None),
        SignalKind::Candidate => ("c", None),
        SignalKind::Presence => ("p", None),
        SignalKind::Cursor => ("u", None),
        SignalKind::Generic => ("g", None),
        SignalKind::Publish => ("b", None),
        SignalKind::Mailbox(n) => ("m", Some(*n)),
        SignalKind::Other(name) => (name, None),
    }
}

fn kind_from(code: &str, seq: Option<u64>) -> SignalKind {
    match code {
        "o" => SignalKind::Offer,
        "a" => SignalKind::Answer,
        "c" => SignalKind::Candidate,
        "p" => SignalKind::Presence,
        "u" => SignalKind::Cursor,
        "g" => SignalKind::Generic,
        "b" => SignalKind::Publish,
        "m" => SignalKind::Mailbox(seq.unwrap_or(0)),
        other => SignalKind::Other(Arc::from(other)),
    }
}

/// Encodes a signal from instance `inst`.
pub fn encode_signal(inst: &str, s: &Signal) -> Vec<u8> {
    let (k, seq) = kind_code(&s.kind);
    let header = SignalHeader {
        t: "s",
        o: inst,
        r: s.room.as_str(),
        f: s.from.as_str(),
        to: s.to.as_ref().map(PeerId::as_str),
        k,
        s: seq,
        d: s.origin.0,
        a: s.audience,
    };
    let mut out = Vec::with_capacity(96 + inst.len() + s.room.as_str().len() + s.payload.len());
    serde_json::to_writer(&mut out, &header).expect("a header always serialises");
    out.push(b'\n');
    out.extend_from_slice(&s.payload);
    out
}

/// A notice to a signal's sender (on its node's inbox): its signal reached the node holding
/// the recipients, but `failed` could not take it (their outboxes were full). `sender` and
/// `uid` name the sending membership, so that a sender who has since left and come back
/// is not told about another connection's signal.
pub fn encode_undelivered(
    inst: &str,
    room: &RoomId,
    sender: &PeerId,
    uid: &str,
    failed: &[PeerId],
) -> Vec<u8> {
    #[derive(Serialize)]
    struct Notice<'a> {
        t: &'static str,
        o: &'a str,
        r: &'a str,
        p: &'a str,
        u: &'a str,
        x: Vec<&'a str>,
    }
    let notice = Notice {
        t: "u",
        o: inst,
        r: room.as_str(),
        p: sender.as_str(),
        u: uid,
        x: failed.iter().map(PeerId::as_str).collect(),
    };
    serde_json::to_vec(&notice).expect("a notice always serialises")
}

/// What a signal this instance published starts with: `{"t":"s","o":<instance>,`. A node
/// is subscribed to the channels of its own rooms, so its room-wide signals come back to
/// it; [`is_own_signal`] recognises them without decoding.
pub fn own_signal_prefix(inst: &str) -> Vec<u8> {
    let mut p = br#"{"t":"s","o":"#.to_vec();
    serde_json::to_writer(&mut p, inst).expect("a string always serialises");
    p.push(b',');
    p
}

/// Whether a publish is this instance's own signals (`prefix` from [`own_signal_prefix`]).
/// A batch is one publisher's, so its first message tells.
pub fn is_own_signal(publish: &[u8], prefix: &[u8]) -> bool {
    let first = match publish.strip_prefix(b"#") {
        None => publish,
        Some(rest) => {
            // `#<count>\n<length>\n<first message>`
            let mut lines = rest.splitn(3, |&b| b == b'\n');
            match (lines.next(), lines.next(), lines.next()) {
                (Some(_), Some(_), Some(first)) => first,
                _ => return false,
            }
        }
    };
    first.starts_with(prefix)
}

/// Several messages for one channel in one publish: `#<count>\n`, then each message as
/// `<length>\n<bytes>`. (A single message starts with its JSON header's `{`.)
pub fn encode_batch(msgs: &[Vec<u8>]) -> Vec<u8> {
    let len: usize = msgs.iter().map(|m| m.len() + 8).sum();
    let mut out = Vec::with_capacity(len + 8);
    let _ = writeln!(out, "#{}", msgs.len());
    for m in msgs {
        let _ = writeln!(out, "{}", m.len());
        out.extend_from_slice(m);
    }
    out
}

/// The messages one publish carried, in order (one, or a batch's); a malformed batch
/// yields what could be read before the fault.
pub fn split(msg: &[u8]) -> Vec<&[u8]> {
    let Some(rest) = msg.strip_prefix(b"#") else {
        return vec![msg];
    };
    let line = |b: &[u8]| -> Option<(usize, usize)> {
        let i = b.iter().position(|&c| c == b'\n')?;
        Some((std::str::from_utf8(&b[..i]).ok()?.parse().ok()?, i + 1))
    };
    let Some((count, skip)) = line(rest) else {
        return Vec::new();
    };
    let mut at = &rest[skip..];
    let mut out = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let Some((len, skip)) = line(at) else { break };
        let Some(m) = at.get(skip..skip + len) else {
            break;
        };
        out.push(m);
        at = &at[skip + len..];
    }
    out
}

/// Splits a message into its header and payload (borrowed from `msg`).
///
/// # Errors
/// When the header is not one of ours.
pub fn decode(msg: &[u8]) -> Result<(Header<'_>, &[u8]), serde_json::Error> {
    let (head, body) = match msg.iter().position(|&b| b == b'\n') {
        Some(i) => (&msg[..i], &msg[i + 1..]),
        None => (msg, &[][..]),
    };
    Ok((serde_json::from_slice(head)?, body))
}

/// The signal a header and payload describe; `room` and `from` are the receiving node's
/// own ids for `h.r` and `h.f` (see [`Header`]), so that a signal costs no id allocation.
pub fn signal_of(h: &Header<'_>, room: RoomId, from: PeerId, payload: &[u8]) -> Option<Signal> {
    Some(Signal {
        room,
        from,
        to: h.to.as_deref().map(PeerId::from),
        kind: kind_from(h.k.as_deref()?, h.s),
        payload: Bytes::copy_from_slice(payload),
        origin: DialectTag(h.d),
        audience: h.a,
    })
}

/// The instance a membership id belongs to.
pub fn owner_of(uid: &str) -> &str {
    uid.rsplit_once('/').map_or(uid, |(inst, _)| inst)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signal_from(room: &str, from: &str) -> Signal {
        Signal {
            room: room.into(),
            from: from.into(),
            to: None,
            kind: SignalKind::Candidate,
            payload: Bytes::from_static(b"{}"),
            origin: DialectTag(1),
            audience: 3,
        }
    }

    #[test]
    fn a_node_recognises_its_own_signals_alone_or_batched_and_nobody_else_s() {
        let mine = own_signal_prefix("n1#0000abcd");
        let own = encode_signal("n1#0000abcd", &signal_from("r", "alice"));
        let other = encode_signal("n1#0000abce", &signal_from("r", "alice"));
        // An instance whose name starts like ours is not us.
        let longer = encode_signal("n1#0000abcd2", &signal_from("r", "alice"));
        assert!(is_own_signal(&own, &mine));
        assert!(!is_own_signal(&other, &mine));
        assert!(!is_own_signal(&longer, &mine));
        assert!(is_own_signal(&encode_batch(&[own.clone(), own]), &mine));
        assert!(!is_own_signal(
            &encode_batch(&[other.clone(), other]),
            &mine
        ));
        // Membership events from our own scripts are not signals: they are applied.
        let join = br#"{"t":"j","o":"n1#0000abcd","r":"r","q":1}"#;
        assert!(!is_own_signal(join, &mine));
        assert!(!is_own_signal(b"#2\n", &mine));
    }

    #[test]
    fn an_undelivered_notice_names_the_sender_its_membership_and_who_missed_it() {
        let msg = encode_undelivered(
            "n2#1",
            &"room".into(),
            &"alice".into(),
            "n1#9/42",
            &["bob".into(), "carol".into()],
        );
        let (h, body) = decode(&msg).unwrap();
        assert_eq!((&*h.t, &*h.o, &*h.r), ("u", "n2#1", "room"));
        assert_eq!(h.p.as_deref(), Some("alice"));
        assert_eq!(h.u.as_deref(), Some("n1#9/42"));
        assert_eq!(h.x, Some(vec!["bob".to_owned(), "carol".to_owned()]));
        assert!(body.is_empty());
    }

    #[test]
    fn a_signal_round_trips_with_its_payload_untouched() {
        for kind in [
            SignalKind::Offer,
            SignalKind::Candidate,
            SignalKind::Mailbox(7),
            SignalKind::Other(Arc::from("custom")),
        ] {
            let s = Signal {
                room: "r{1}\n".into(),
                from: "a\"b".into(),
                to: Some("c".into()),
                kind: kind.clone(),
                payload: Bytes::from_static(b"{\"sdp\":\"v=0\\r\\n\"}\n\xff"),
                origin: DialectTag(3),
                audience: 4,
            };
            let wire = encode_signal("node-1#ab", &s);
            let (h, body) = decode(&wire).unwrap();
            assert_eq!(h.t, "s");
            assert_eq!(h.o, "node-1#ab");
            assert_eq!(h.r.as_ref(), s.room.as_str());
            assert_eq!(h.f.as_deref(), Some(s.from.as_str()));
            let back = signal_of(&h, s.room.clone(), s.from.clone(), body).unwrap();
            assert_eq!(back.room, s.room);
            assert_eq!(back.from, s.from);
            assert_eq!(back.to, s.to);
            assert_eq!(back.kind, kind);
            assert_eq!(back.payload, s.payload);
            assert_eq!((back.origin, back.audience), (s.origin, 4));
        }
    }

    #[test]
    fn a_batch_carries_its_messages_in_order() {
        let msgs = vec![
            b"{\"t\":\"s\"}\nab\ncd".to_vec(),
            Vec::new(),
            b"#x".to_vec(),
        ];
        let batch = encode_batch(&msgs);
        let back: Vec<Vec<u8>> = split(&batch).into_iter().map(<[u8]>::to_vec).collect();
        assert_eq!(back, msgs);
        assert_eq!(split(b"{\"t\":\"c\"}"), vec![&b"{\"t\":\"c\"}"[..]]);
        // Truncated: what is whole is kept.
        assert_eq!(split(&batch[..batch.len() - 1]).len(), 2);
        assert!(split(b"#nonsense").is_empty());
    }

    #[test]
    fn room_keys_share_one_hash_tag() {
        let k = RoomKeys::new(&"room-1".into());
        for key in [&k.meta, &k.members, &k.seq, &k.mbseq, &k.channel] {
            assert!(key.starts_with("sb:{room-1}:"), "{key}");
        }
        assert_eq!(k.mailbox(&"A".into()), "sb:{room-1}:mb:A");
        assert_eq!(k.mailbox_bytes(), "sb:{room-1}:mbbytes");
        assert_eq!(k.prefix(), "sb:{room-1}:");
        assert_eq!(format!("{}mbseq", k.prefix()), k.mbseq);
        assert_eq!(code(7), "sb:{codes}:0007");
        assert_eq!(room_channel(&"room-1".into()), k.channel);
        assert_eq!(owner_of("n1#abc/42"), "n1#abc");
    }

    #[test]
    fn a_join_event_as_the_script_writes_it_decodes() {
        let wire = br#"{"t":"j","o":"n2#x","r":"room","q":5,"p":"bob","m":{"u":"n2#x/9","o":"n2#x","n":"Bob","h":false,"t":17,"d":1}}"#;
        let (h, body) = decode(wire).unwrap();
        assert!(body.is_empty());
        assert_eq!((h.t.as_ref(), h.q, h.p.as_deref()), ("j", 5, Some("bob")));
        let m = h.m.unwrap();
        assert_eq!(m.summary(&"bob".into()).name.as_deref(), Some("Bob"));
        assert_eq!(m.o, "n2#x");
    }
}
