//! Attacks below the dialect, in every dialect: on the WebSocket framing, message size and
//! rate, and the HTTP upgrade.
//!
//! Socket.io's transport (socketioxide) ends the connection itself on a framing error, with
//! a close frame that carries no code (1005).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::auth::quiet_in_production;
use crate::cases::{Answer, Case, Expect, case, check, error};
use crate::conn::{
    ALL, Conn, Dialect, Dialect::*, endpoint, next_ip, probe_of, upgrade_with, uuid_like,
};
use crate::support::process::client_frame;
use crate::support::tcp_from;
use crate::{nt, octate, rendezvous, socketio, ywebrtc};

/// `body` relayed in `d`'s relaying message.
fn relaying(d: Dialect, body: &str) -> String {
    match d {
        Octate => octate::relaying(body),
        SocketIo => socketio::relaying(body),
        Rendezvous => rendezvous::relaying(body),
        Nt => nt::relaying(body),
        YWebrtc => ywebrtc::relaying(body),
    }
}

/// Frames that break the WebSocket protocol, each with the close code it gets.
fn broken_frames() -> Vec<(&'static str, Vec<u8>, u16)> {
    vec![
        (
            "a frame header announcing 2^63 bytes",
            {
                let mut f = vec![0x81, 0x80 | 127];
                f.extend_from_slice(&(1u64 << 63).to_be_bytes());
                f.extend_from_slice(&[0; 4]);
                f
            },
            1009,
        ),
        (
            "a text frame that is not UTF-8",
            client_frame(true, 1, &[0xff, 0xfe, 0x80]),
            1007,
        ),
        (
            "an unmasked client frame",
            vec![0x81, 0x02, b'h', b'i'],
            1002,
        ),
        ("a reserved opcode", client_frame(true, 3, b"x"), 1002),
        (
            "reserved bits set",
            {
                let mut f = client_frame(true, 1, b"{}");
                f[0] |= 0x70;
                f
            },
            1002,
        ),
        (
            "a continuation with no message",
            client_frame(true, 0, b"x"),
            1002,
        ),
        ("a fragmented ping", client_frame(false, 9, b"x"), 1002),
        (
            "a ping over 125 bytes",
            client_frame(true, 9, &[0; 200]),
            1002,
        ),
        (
            "a message over the hard cap",
            client_frame(true, 1, &vec![b' '; (1 << 20) + 1]),
            1009,
        ),
    ]
}

/// A close with `code`; Socket.io's transport closes with a close frame without a code.
fn closed(d: Dialect, code: u16) -> Expect {
    Expect::Close(if d == SocketIo { 1005 } else { code })
}

pub fn transport_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for d in ALL {
        let label = |n: &str| format!("{}: {n}", d.name());
        for (name, bytes, code) in broken_frames() {
            let l = label(name);
            cases.push(case(d, name, move |s| {
                let (bytes, l) = (bytes.clone(), l.clone());
                Box::pin(async move {
                    let mut c = Conn::open(&s.dev, d, "").await;
                    c.raw(&bytes).await;
                    let answer = Answer::closing(&mut c, Duration::from_secs(2)).await;
                    check(&l, &answer, &closed(d, code))
                })
            }));
        }
        // A message over MAX_FRAME_BYTES (64 KiB) but under the hard cap: refused with
        // `frame_too_large`, the connection kept. nt answers with its one error frame, which
        // has no code. Socket.io has no such limit: the signal is relayed, to nobody.
        let l = label("a message over MAX_FRAME_BYTES");
        cases.push(case(d, "a message over MAX_FRAME_BYTES", move |s| {
            let l = l.clone();
            Box::pin(async move {
                let mut c = Conn::open(&s.dev, d, "").await;
                c.text(&relaying(d, &format!("\"{}\"", "x".repeat(70_000))))
                    .await;
                let answer = Answer::of(&mut c, Duration::from_millis(300)).await;
                let expect = match d {
                    SocketIo => Expect::Silent,
                    Nt => error(""),
                    _ => error("frame_too_large"),
                };
                check(&l, &answer, &expect)
            })
        }));
        // A fragmented message that never ends: closed at MESSAGE_TIMEOUT (1 s here).
        let l = label("a fragmented message that never ends");
        cases.push(case(d, "a fragmented message that never ends", move |s| {
            let l = l.clone();
            Box::pin(async move {
                let mut c = Conn::open(&s.dev, d, "").await;
                c.frame(false, 1, b"{\"type\":").await;
                c.frame(true, 10, b"").await;
                c.frame(false, 0, b"\"ping\"").await;
                let answer = Answer::closing(&mut c, Duration::from_secs(3)).await;
                check(&l, &answer, &closed(d, 1008))
            })
        }));
        // A fragmented message that does end is handled as the whole message: the probe,
        // sent in three fragments, is answered.
        let l = label("a message in three fragments");
        cases.push(case(d, "a message in three fragments", move |s| {
            let l = l.clone();
            Box::pin(async move {
                let mut c = Conn::open(&s.dev, d, "").await;
                let b = probe_of(d).0.as_bytes();
                let (x, y) = (b.len() / 3, 2 * b.len() / 3);
                c.frame(false, 1, &b[..x]).await;
                c.frame(false, 0, &b[x..y]).await;
                c.frame(true, 0, &b[y..]).await;
                match c.probe_answer().await {
                    Some(before) if before.is_empty() => Ok(()),
                    other => Err(format!("{l}: the reassembled message got {other:?}")),
                }
            })
        }));
        // 1,000 pings: each answered or coalesced, the connection fine.
        let l = label("a flood of 1,000 pings");
        cases.push(case(d, "a flood of 1,000 pings", move |s| {
            let l = l.clone();
            Box::pin(async move {
                let mut c = Conn::open(&s.dev, d, "").await;
                let mut burst = Vec::new();
                for _ in 0..1_000 {
                    burst.extend(client_frame(true, 9, b"p"));
                }
                c.raw(&burst).await;
                if c.alive().await {
                    Ok(())
                } else {
                    Err(format!("{l}: not alive after the pings"))
                }
            })
        }));
        // permessage-deflate asked for: not granted (compression is off).
        let l = label("permessage-deflate requested");
        cases.push(case(d, "permessage-deflate requested", move |s| {
            let l = l.clone();
            Box::pin(async move {
                let (addr, path) = endpoint(&s.dev, d, &uuid_like(), "");
                let (status, head) = upgrade_with(
                    addr,
                    &path,
                    &["Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"],
                )
                .await;
                let granted = head
                    .to_ascii_lowercase()
                    .contains("sec-websocket-extensions");
                if status == 101 && !granted {
                    Ok(())
                } else {
                    Err(format!("{l}: {status} {head}"))
                }
            })
        }));
        // An upgrade request with 1 MiB of headers: 431, nothing buffered for long.
        let l = label("1 MiB of upgrade headers");
        cases.push(case(d, "1 MiB of upgrade headers", move |s| {
            let l = l.clone();
            Box::pin(async move {
                let (addr, path) = endpoint(&s.dev, d, &uuid_like(), "");
                let big = format!("X-Padding: {}", "p".repeat(1 << 20));
                let (status, _) = upgrade_with(addr, &path, &[&big]).await;
                if status == 431 {
                    Ok(())
                } else {
                    Err(format!("{l}: status {status}"))
                }
            })
        }));
        cases.push(slowloris_case(d));
        // A WebSocket that never takes its first step in production.
        let l = label("an upgraded connection that never speaks (production)");
        cases.push(case(
            d,
            "an upgraded connection that never speaks (production)",
            move |s| {
                let l = l.clone();
                Box::pin(async move {
                    let mut c = match quiet_in_production(&s.prod, d).await {
                        Ok(c) => c,
                        Err(status) => return Err(format!("{l}: upgrade {status}")),
                    };
                    let answer = Answer::closing(&mut c, Duration::from_secs(3)).await;
                    // Socket.io is told, then disconnected from the namespace and dropped.
                    let expect = match d {
                        SocketIo => Expect::EndAfter(&[
                            r#"42["error",{"message":"No room joined in time"}]"#,
                            "41",
                        ]),
                        _ => Expect::Close(1008),
                    };
                    check(&l, &answer, &expect)
                })
            },
        ));
        cases.push(flood_case(d));
    }
    cases
}

/// Slowloris on the dialect's own upgrade path: closed at REQUEST_HEADER_TIMEOUT.
fn slowloris_case(d: Dialect) -> Case {
    let name = "slowloris upgrade, a byte every 200 ms";
    let l = format!("{}: {name}", d.name());
    case(d, name, move |s| {
        let l = l.clone();
        Box::pin(async move {
            let (addr, path) = endpoint(&s.dev, d, &uuid_like(), "");
            let mut tcp = tcp_from(next_ip(), addr).await;
            let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n");
            let start = tokio::time::Instant::now();
            for b in req.bytes() {
                if tcp.write_all(&[b]).await.is_err() {
                    break;
                }
                let mut x = [0u8; 16];
                if let Ok(Ok(0) | Err(_)) =
                    tokio::time::timeout(Duration::from_millis(200), tcp.read(&mut x)).await
                {
                    break;
                }
                if start.elapsed() > Duration::from_secs(4) {
                    return Err(format!("{l}: still open after 4 s"));
                }
            }
            if start.elapsed() < Duration::from_secs(3) {
                Ok(())
            } else {
                Err(format!("{l}: {:?}", start.elapsed()))
            }
        })
    })
}

/// Too many messages: each past the burst refused with the dialect's `rate_limited` (nt:
/// its one error frame; Socket.io: `Too many messages; slow down`), and after 50 refusals
/// in a row closed with 1008 (Socket.io: disconnected).
fn flood_case(d: Dialect) -> Case {
    let name = "a message flood past MAX_MESSAGES_PER_SECOND";
    let l = format!("{}: {name}", d.name());
    case(d, name, move |s| {
        let l = l.clone();
        Box::pin(async move {
            let mut c = Conn::open(&s.dev, d, "").await;
            let (msg, refusal) = match d {
                Octate => (r#"{"type":"ping"}"#, "rate_limited"),
                YWebrtc => (r#"{"type":"ping"}"#, "rate_limited"),
                Rendezvous => (
                    r#"{"type":"signal","to":"ghost","data":{}}"#,
                    "rate_limited",
                ),
                Nt => (r#"{"type":"telemetry","event":"noise"}"#, ""),
                SocketIo => (
                    r#"42["leave-room","nowhere","me"]"#,
                    "Too many messages; slow down",
                ),
            };
            let mut burst = Vec::new();
            for _ in 0..400 {
                burst.extend(client_frame(true, 1, msg.as_bytes()));
            }
            c.raw(&burst).await;
            let seen = c.seen(Duration::from_secs(2)).await;
            let refused = seen.error_codes().iter().any(|c| c == refusal);
            let closed = match d {
                SocketIo => seen.ended,
                _ => seen.close.as_ref().is_some_and(|(code, _)| *code == 1008),
            };
            if refused && closed {
                Ok(())
            } else {
                Err(format!(
                    "{l}: refused {refused} closed {} close {:?}",
                    seen.ended, seen.close
                ))
            }
        })
    })
}
