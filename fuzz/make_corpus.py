#!/usr/bin/env python3
"""Writes the seed corpus, fuzz/corpus/<target>/, from the real frames of the tests
(crates/switchboard/tests/*.rs, the codecs' unit tests), the Node test's Socket.io events
(tests-node/socketio.test.mjs) and docs/PROTOCOL.md's examples, in each target's input
format (see the target's doc comment). Run it from anywhere; it replaces the seeds it
writes and leaves other files alone. The tokens in the seeds expire in 2100."""

import base64
import hashlib
import hmac
import json
import os

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
NUL = b"\x00"
EXP_2100 = 4102444800
FUZZ_SECRET = b"fuzz-secret-0123456789"  # token target and the production HTTP server
DEV_SECRET = b"dev-secret-change-in-production"  # the development HTTP server


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwt(claims, secret, header=None):
    head = b64(json.dumps(header or {"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = b64(json.dumps(claims, separators=(",", ":")).encode())
    sig = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def j(v):
    return json.dumps(v, separators=(",", ":")).encode()


def write(target, seeds):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


def conn(flags, *frames):
    """A connection: the flags byte, then the frames between NULs."""
    return bytes([flags]) + NUL.join(f if isinstance(f, bytes) else j(f) for f in frames)


OFFER = {"type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1"}
CAND = {"candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ host", "sdpMid": "0"}

# --- OctateCode (tests/octate.rs, dialect/octate.rs tests, PROTOCOL.md) -------------------
write("octate", {
    "auth": conn(0, {"type": "auth", "userId": "alice", "roomId": "r1"}),
    "auth-token-top": conn(0, {"type": "auth", "userId": "u", "roomId": "r", "token": "t"}),
    "auth-token-data": conn(0, {"type": "auth", "data": {"userId": "u", "roomId": "r", "token": "t"}}),
    "create-room": conn(0, {"type": "auth", "userId": "alice", "roomId": "r1"},
                        {"type": "create-room", "roomId": "r1", "userId": "alice",
                         "data": {"roomName": "Room 1", "userName": "Alice", "fileId": "f1"}, "timestamp": 1}),
    "join-room": conn(0, {"type": "join-room", "roomId": "r1", "userId": "bob", "data": {"userName": "Bob"}}),
    "leave-room": conn(0, {"type": "leave-room", "roomId": "r1", "userId": "bob"}),
    "offer": conn(0, {"type": "sdp-offer", "roomId": "r1", "userId": "alice", "data": {"peer": "bob", "offer": OFFER}}),
    "answer-target": conn(0, {"type": "sdp-answer", "roomId": "r1", "userId": "bob", "targetUserId": "alice",
                              "data": {"answer": {"type": "answer", "sdp": "v=0"}}}),
    "candidate": conn(0, {"type": "ice-candidate", "roomId": "r1", "userId": "alice", "data": {"peer": "bob", "candidate": CAND}}),
    "presence": conn(0, {"type": "presence", "roomId": "r1", "userId": "alice", "data": {"i": 1}}),
    "cursor": conn(0, {"type": "cursor-update", "data": {"x": 1, "y": 2}}),
    "heartbeat": conn(0, {"type": "heartbeat", "roomId": "r1", "userId": "alice"}),
    "ping": conn(0, {"type": "ping"}),
    "unknown": conn(0, {"type": "teleport"}),
    "type-number": conn(0, {"type": 5}),
    "no-type": conn(0, b"{}"),
    "not-json": conn(0, b"nope"),
    "number": conn(0, b"42"),
    "binary": conn(1, {"type": "ping"}),
    "session": conn(0, {"type": "auth", "userId": "alice", "roomId": "r1"},
                    {"type": "create-room", "roomId": "r1", "userId": "alice"},
                    {"type": "sdp-offer", "roomId": "r1", "userId": "alice", "data": {"peer": "bob", "offer": {"sdp": "x"}}},
                    {"type": "leave-room", "roomId": "r1", "userId": "alice"}),
})

# --- rendezvous (tests/rendezvous.rs, dialect/rendezvous.rs tests, PROTOCOL.md) -----------
write("rendezvous", {
    "join": conn(0, {"type": "join", "peerId": "p"}),
    "join-generated": conn(0, {"type": "join"}),
    "join-bad-id": conn(0, {"type": "join", "peerId": 5}),
    "join-null-id": conn(0, {"type": "join", "peerId": None}),
    "signal-before-join": conn(0, {"type": "signal"}),
    "bad-json": conn(0, b"{"),
    "joined-signal": conn(0x40, {"type": "signal", "to": "q", "data": {"type": "offer", "sdp": "x"}}),
    "joined-signal-room": conn(0x40, {"type": "signal", "data": {"candidate": CAND}}),
    "joined-signal-null": conn(0x40, {"type": "signal"}),
    "joined-join": conn(0x40, {"type": "join"}),
    "joined-leave": conn(0x40, {"type": "leave"}),
    "joined-unknown": conn(0x40, {"type": "announce", "from": "peer-a"}),
    "joined-missing-type": conn(0x40, {"to": "q"}),
    "wrong-key": conn(0x80, {"type": "join"}),
    "session": conn(0, {"type": "join", "peerId": "a"},
                    {"type": "signal", "to": "b", "data": {"type": "answer", "sdp": "v=0"}},
                    {"type": "leave"}),
})

# --- nt (tests/nt.rs, dialect/nt.rs tests, PROTOCOL.md) ----------------------------------
write("nt", {
    "offer": conn(0, {"type": "offer", "sdp": OFFER}),
    "answer-upper": conn(0, {"type": "ANSWER", "sdp": "x"}),
    "ice": conn(0, {"type": "ice", "cand": CAND}),
    "sender-ready": conn(0, {"type": "sender_ready"}),
    "send": conn(0, {"type": "send", "to": "b", "payload": {"k": 1}}),
    "send-bad-to": conn(0, {"type": "send", "to": "C"}),
    "hello": conn(0, {"type": "hello", "deliveredUpTo": 3}),
    "hello-bare": conn(0, {"type": "hello", "side": "B"}),
    "telemetry-connected": conn(0, {"type": "telemetry", "event": "ice-connected", "mode": "direct"}),
    "telemetry-failed": conn(0, {"type": "telemetry", "event": "ice-failed", "reason": "timeout"}),
    "delivered": conn(0, {"type": "delivered"}),
    "signal": conn(0, {"type": "signal"}),
    "not-json": conn(0, b"not json"),
    "binary-side-b": conn(0x05, {"type": "offer", "sdp": "x"}),
    "unjoined": conn(0x02, {"type": "send", "to": "A", "payload": "x"}),
    "mailbox": conn(0, {"type": "send", "to": "B", "payload": {"n": 0}},
                    {"type": "send", "to": "b", "payload": [1, 2]},
                    {"type": "hello", "deliveredUpTo": 1}),
})

# --- y-webrtc (tests/ywebrtc.rs, dialect/ywebrtc.rs tests, PROTOCOL.md) -----------------
write("ywebrtc", {
    "subscribe": conn(0, {"type": "subscribe", "topics": ["doc-1", "doc-2"]}),
    "subscribe-mixed": conn(0, {"type": "subscribe", "topics": ["a", 1, "", None, "b"]}),
    "subscribe-not-array": conn(0, {"type": "subscribe", "topics": "doc-1"}),
    "subscribe-missing": conn(0, {"type": "subscribe"}),
    "subscribe-long": conn(0, {"type": "subscribe", "topics": ["t" * 257]}),
    "unsubscribe": conn(0, {"type": "unsubscribe", "topics": ["doc-1"]}),
    "publish": conn(0, {"type": "publish", "topic": "doc-1", "data": {"type": "signal", "to": "x", "signal": OFFER}}),
    "publish-number": conn(0, {"type": "publish", "topic": "t", "data": 1}),
    "publish-no-topic": conn(0, {"type": "publish", "data": 1}),
    "ping": conn(0, {"type": "ping"}),
    "unknown": conn(0, {"type": "dance"}),
    "no-type": conn(0, b"{}"),
    "not-json": conn(0, b"]"),
    "session": conn(0, {"type": "subscribe", "topics": ["t"]},
                    {"type": "publish", "topic": "t", "data": 2},
                    {"type": "unsubscribe", "topics": ["t"]}),
})

# --- Socket.io (tests-node/socketio.test.mjs's emits, PROTOCOL.md) ------------------------
def sio(*args, ack=None, ns=""):
    return ("2" + (ns + "," if ns else "") + ("" if ack is None else str(ack))).encode() + j(list(args))


write("socketio", {
    "join-positional": sio("join-room", "r", "alice"),
    "join-object": sio("join-room", {"roomId": "r", "userId": "bob"}),
    "join-missing-user": sio("join-room", {"roomId": "r"}),
    "join-none": sio("join-room"),
    "leave-positional": sio("leave-room", "nope", "alice"),
    "leave-object": sio("leave-room", {"roomId": "r"}),
    "leave-number": sio("leave-room", 7),
    "offer": sio("offer", {"roomId": "r", "offer": {"type": "offer", "sdp": "x"}}),
    "offer-target": sio("offer", {"roomId": "r", "userId": "a", "targetUserId": "b", "offer": OFFER}),
    "answer-targetid": sio("answer", {"roomId": "r", "targetId": "a", "answer": {"type": "answer", "sdp": "y"}}),
    "answer-no-body": sio("answer", {"roomId": "r"}),
    "candidate": sio("ice-candidate", {"roomId": "r", "targetUserId": "b", "candidate": CAND}),
    "with-ack": sio("offer", {"roomId": "r", "offer": {}}, ack=12),
    "namespace": sio("join-room", "r", "u", ns="/admin"),
    "unknown-event": sio("dance", 1),
    "binary-event": b'51-["offer",{"roomId":"r","offer":{"_placeholder":true,"num":0}}]',
    "connect": b"0",
})

# --- token (auth.rs tests, tests/octate.rs's expired/forged tokens) ------------------------
def tok(sel, *parts):
    return bytes([sel]) + NUL.join(p.encode() if isinstance(p, str) else p for p in parts)


claims = {"sub": "alice", "room": "r1", "iat": 1700000000, "exp": EXP_2100}
expired = {"sub": "alice", "room": "r1", "iat": 1, "exp": 2}
write("token", {
    "raw-valid": tok(0, jwt(claims, FUZZ_SECRET), "alice", "r1"),
    "raw-wrong-user": tok(0, jwt(claims, FUZZ_SECRET), "bob", "r1"),
    "raw-wrong-room": tok(0, jwt(claims, FUZZ_SECRET), "alice", "r2"),
    "raw-expired": tok(0, jwt(expired, FUZZ_SECRET), "alice", "r1"),
    "raw-other-key": tok(0, jwt(claims, b"another-secret"), "alice", "r1"),
    "raw-alg-none": tok(0, jwt(claims, FUZZ_SECRET, {"alg": "none", "typ": "JWT"}).rsplit(".", 1)[0] + ".", "alice", "r1"),
    "raw-hs384": tok(0, jwt(claims, FUZZ_SECRET, {"alg": "HS384"}), "alice", "r1"),
    "raw-garbage": tok(0, "not-a-jwt", "alice", "r1"),
    "built-right": tok(0x01, j({"alg": "HS256", "typ": "JWT"}), j(claims), "alice", "r1"),
    "built-empty-key": tok(0x03, j({"alg": "HS256"}), j(claims), "alice", "r1"),
    "built-other-key": tok(0x05, j({"alg": "HS256"}), j(claims), "alice", "r1"),
    "built-none": tok(0x07, j({"alg": "none"}), j(claims), "alice", "r1"),
    "built-bytes": tok(0x09, j({"alg": "RS256"}), j(claims), "alice", "r1", b"\x01\x02"),
    "built-padded": tok(0x11, j({"alg": "HS256"}), j(claims), "alice", "r1"),
    "built-standard": tok(0x21, j({"alg": "HS256"}), j(claims), "alice", "r1"),
    "built-no-sub": tok(0x01, j({"alg": "HS256"}), j({"room": "r1", "exp": EXP_2100}), "alice", "r1"),
    "built-string-exp": tok(0x01, j({"alg": "HS256"}), j({"sub": "a", "room": "r", "exp": "4102444800"}), "a", "r"),
    "built-nbf-aud": tok(0x01, j({"alg": "HS256", "kid": "k"}),
                         j({"sub": "a", "room": "r", "exp": EXP_2100, "nbf": EXP_2100, "aud": "x"}), "a", "r"),
})

# --- HTTP bodies (tests/http.rs, api.rs, PROTOCOL.md) ------------------------------------
def http(route, body, prod=False, admin=False, ct=0):
    sel = route | (ct << 3) | (0x20 if prod else 0) | (0x40 if admin else 0)
    return bytes([sel]) + (body if isinstance(body, bytes) else j(body))


dev_token = jwt(claims, DEV_SECRET)
prod_token = jwt(claims, FUZZ_SECRET)
write("http_bodies", {
    "token-issue": http(0, {"userId": "alice", "roomId": "r1"}),
    "token-issue-missing": http(0, {"userId": "alice"}),
    "token-issue-prod-admin": http(0, {"userId": "alice", "roomId": "r1"}, prod=True, admin=True),
    "token-issue-prod": http(0, {"userId": "alice", "roomId": "r1"}, prod=True),
    "token-issue-text": http(0, {"userId": "alice", "roomId": "r1"}, ct=2),
    "validate": http(1, {"token": dev_token, "userId": "alice", "roomId": "r1"}),
    "validate-token-only": http(1, {"token": dev_token}),
    "validate-wrong-room": http(1, {"token": dev_token, "roomId": "r2"}),
    "validate-prod": http(1, {"token": prod_token, "userId": "alice", "roomId": "r1"}, prod=True),
    "validate-garbage": http(1, {"token": "garbage"}),
    "validate-missing": http(1, {}),
    "room-camel": http(2, {"roomId": "r1", "roomName": "Room 1", "hostId": "alice", "hostName": "Alice", "fileId": "f1"}),
    "room-snake": http(2, {"room_id": "r2", "room_name": "Room 2", "host_id": "bob"}),
    "room-prod-admin": http(2, {"roomId": "r3"}, prod=True, admin=True, ct=1),
    "room-missing": http(2, {"roomName": "x"}),
    "room-bad-json": http(2, b"{\"roomId\":"),
    "room-wrong-type": http(2, {"roomId": 5}),
    "redeem": http(3, {"code": "1234"}),
    "redeem-long": http(3, {"code": "12345678"}),
    "redeem-letters": http(3, {"code": "abcd"}),
    "room-path": http(4, b"no-such-room"),
    "room-path-odd": http(4, "r/ü %".encode()),
})

# --- configuration (config/mod.rs tests, README's table) -----------------------------------
def args(*a):
    return NUL.join(x.encode() for x in a)


write("config", {
    "empty": b"",
    "ports": args("--port", "3100", "--signaling-port=3101", "--socketio-port", "4100"),
    "durations": args("--room-ttl=10m", "--heartbeat", "20s", "--ping-interval=25000", "--token-ttl=1h 30m"),
    "sizes": args("--max-frame-bytes=64k", "--ws-read-buffer", "512", "--ws-write-buffer=8K"),
    "proxies": args("--trusted-proxies=10.0.0.0/8, 127.0.0.1 ,::1"),
    "production": args("--production", "--admin-api-key=k", "--auth-secret=0123456789abcdefgh"),
    "node-env": args("--node-env=prod", "--admin-api-key", "k", "--auth-secret", "0123456789abcdefgh"),
    "metrics-route": args("--metrics-route=/prom/metrics"),
    "metrics-reserved": args("--metrics-route", "/api/x"),
    "cors": args("--cors-origins=https://a.example/,https://b.example"),
    "turn": args("--stun-urls=stun:stun.example:19302", "--turn-urls=turn:t.example:3478?transport=udp",
                 "--turn-secret=s", "--turn-ttl=1h"),
    "turn-bad": args("--turn-urls=http://x", "--turn-ttl=0"),
    "log": args("--log-format=plain", "--log-level=debug"),
    "demo": args("--demo=off", "--demo-yjs-url=/yjs.mjs"),
    "limits": args("--max-rooms=0", "--max-peers-per-room=2", "--max-connections-per-ip=10",
                   "--outbox-capacity=1", "--memory-warning-threshold=300", "--memory-critical-threshold=200"),
    "bad-values": args("--room-ttl=soon", "--max-frame-bytes=-3", "--port=70000"),
    "unknown-flag": args("--teleport"),
    "help": args("--help"),
    "values": args("10800000", "250ms", "1g", "99999999999999999999g", "a,,b", "::ffff:127.0.0.1/128"),
})

# --- the config target's dictionary (fuzz/config.dict) -------------------------------------
# Every flag of Config (its fields, as clap spells them) and the value forms the settings
# take. The config campaign runs without comparison tracing (FUZZING.md); this stands in.
import re  # noqa: E402

src = open(os.path.join(os.path.dirname(ROOT), "..", "crates", "switchboard", "src", "config", "mod.rs")).read()
body = src[src.index("pub struct Config {"):src.index("/// `NODE_ENV`.")]
fields = re.findall(r"^\s+pub (\w+):", body, re.M)
words = []
for f in fields:
    flag = "--" + f.replace("_", "-")
    words += [flag, flag + "="]
words += ["=", "0", "1", "65535", "70000", "-1", "18446744073709551615", "18446744073709551616",
          "ms", "s", "m", "h", "d", "y", "w", "us", "ns", "years", "months", "1h 30m", "250ms",
          "k", "K", "g", "G", ",", "/", ":", "::", "::1", "127.0.0.1", "10.0.0.0/8", "/128", "/33",
          "::ffff:", "production", "prod", "development", "dev", "test", "auto", "text", "plain",
          "json", "on", "off", "true", "false", "yes", "no", "stun:", "stuns:", "turn:", "turns:",
          "http://", "https://", "/metrics", "/api", "/api/", "/socket.io", "/demo", "/sdk",
          "/healthz", "//", ".", "_", "--help", "--version", "-h", "-V", "--", "info", "debug", "trace"]
with open(os.path.join(os.path.dirname(ROOT), "config.dict"), "w") as f:
    f.write("# libFuzzer dictionary for the config target, written by fuzz/make_corpus.py.\n")
    for w in words:
        f.write('"' + w.replace("\\", "\\\\").replace('"', '\\"') + '"\n')
    f.write('"\\x00"\n')
