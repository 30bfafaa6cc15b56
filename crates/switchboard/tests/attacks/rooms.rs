//! Room and id squatting, crowds from one address, and CORS preflights.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cases::{Case, case};
use crate::conn::{ALL, Conn, Dialect, Dialect::*, next_ip, uuid_like};
use crate::support::{PATIENCE, TestServer, tcp_from};
use crate::{nt, octate, rendezvous, socketio, ywebrtc};

/// A connection of `d` from `ip`, held open, if the server admits it; else the refusal:
/// the upgrade's status, or (Socket.io, admitted at the namespace connect) its
/// `connect_error` packet.
async fn admitted_from(s: &TestServer, d: Dialect, ip: IpAddr) -> Result<Conn, String> {
    if d == SocketIo {
        return socketio::admitted(s, ip).await;
    }
    let (status, c) = Conn::upgrade_from(ip, s, d, &uuid_like(), "").await;
    if status == 101 {
        Ok(c)
    } else {
        Err(status.to_string())
    }
}

/// How many of 70 new rooms `ip` creates in a burst, stopping at the first refusal.
async fn rooms_made(s: &TestServer, d: Dialect, ip: IpAddr) -> usize {
    if d == Nt {
        return nt::rooms_made(s, ip).await;
    }
    let mut made = 0;
    while made < 70 {
        let created = match d {
            Octate => octate::create_room(s, ip).await,
            SocketIo => socketio::create_room(s, ip).await,
            Rendezvous => rendezvous::create_room(s, ip).await,
            YWebrtc => ywebrtc::create_room(s, ip).await,
            Nt => unreachable!("counted above"),
        };
        if !created {
            break;
        }
        made += 1;
    }
    made
}

/// Whether a connection claiming an id another connection holds is refused while the
/// holder stays.
async fn squat(s: &TestServer, d: Dialect) -> bool {
    match d {
        Octate => octate::squat(s).await,
        SocketIo => socketio::squat(s).await,
        Rendezvous => rendezvous::squat(s).await,
        Nt => nt::squat(s).await,
        YWebrtc => unreachable!("y-webrtc has no peer ids"),
    }
}

pub fn squatting_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    // Connections from one address past MAX_CONNECTIONS_PER_IP (20 on this server):
    // the 21st refused with 429 (Socket.io: connect_error), while another address still
    // gets in.
    for d in ALL {
        let name = "connections from one address past the per-address limit";
        let l = format!("{}: {name}", d.name());
        let expected = match d {
            SocketIo => r#"44{"message":"Too many connections from this address"}"#,
            _ => "429",
        };
        cases.push(case(d, name, move |s| {
            let l = l.clone();
            Box::pin(async move {
                let ip = next_ip();
                let mut held = Vec::new();
                let mut refused = None;
                for i in 0..25 {
                    match admitted_from(&s.limited, d, ip).await {
                        Ok(c) => held.push(c),
                        Err(why) => {
                            refused = Some((i, why));
                            break;
                        }
                    }
                }
                let other = admitted_from(&s.limited, d, next_ip()).await.is_ok();
                match refused {
                    Some((20, why)) if why == expected && other => Ok(()),
                    _ => Err(format!(
                        "{l}: refused {refused:?}, another address admitted: {other}"
                    )),
                }
            })
        }));
    }
    cases.push(rendezvous::crowd_case());
    // Joining as another peer's id: refused, the holder unaffected.
    for d in [Octate, SocketIo, Rendezvous, Nt] {
        let l = format!("{}: joining as a peer id already held", d.name());
        cases.push(case(d, "joining as a peer id already held", move |s| {
            let l = l.clone();
            Box::pin(async move {
                if squat(&s.dev, d).await {
                    Ok(())
                } else {
                    Err(l)
                }
            })
        }));
    }
    // Rooms until the per-client creation budget (60 a minute, refilled one a second)
    // holds, in every dialect.
    for d in ALL {
        let name = "creating rooms past the per-client budget";
        let l = format!("{}: {name}", d.name());
        cases.push(case(d, name, move |s| {
            let l = l.clone();
            Box::pin(async move {
                let start = tokio::time::Instant::now();
                let made = rooms_made(&s.dev, d, next_ip()).await;
                // The bucket refills one room a second while the burst goes on.
                let refill = start.elapsed().as_secs() as usize + 1;
                if (60..=60 + refill).contains(&made) {
                    Ok(())
                } else {
                    Err(format!("{l}: {made} rooms made in {:?}", start.elapsed()))
                }
            })
        }));
    }
    // Guessing a room id: unknown rooms are not found, and nothing is created.
    cases.push(socketio::guessed_room_case());
    cases.push(octate::guessed_room_case());
    // A closed peer's id may be taken again (it is free), by the next peer.
    for d in [Octate, Rendezvous, YWebrtc] {
        let l = format!("{}: a departed peer's id is free again", d.name());
        cases.push(case(d, "a departed peer's id is free again", move |s| {
            let l = l.clone();
            Box::pin(async move {
                let mut a = Conn::open(&s.dev, d, "").await;
                a.alive().await;
                drop(a);
                tokio::time::sleep(Duration::from_millis(50)).await;
                let mut b = Conn::open(&s.dev, d, "").await;
                if b.alive().await { Ok(()) } else { Err(l) }
            })
        }));
    }
    cases
}

/// CORS preflights for every route: the configured origin gets the headers, another none.
pub fn cors_cases() -> Vec<Case> {
    let routes = [
        "/api/health",
        "/api/stats",
        "/api/info",
        "/api/auth/token",
        "/api/auth/validate",
        "/api/rooms",
        "/api/rooms/x",
        "/api/rooms/x/peers",
        "/api/ice-servers",
        "/metrics",
        "/rendezvous/code",
        "/rendezvous/redeem",
        "/healthz",
        "/readyz",
    ];
    let mut cases = Vec::new();
    for route in routes {
        cases.push(case(Octate, format!("CORS preflight {route}"), move |s| {
            Box::pin(cors_answers(s.prod.http, route))
        }));
    }
    for route in ["/api/rooms", "/health"] {
        let name = format!("CORS preflight {route} on SOCKETIO_PORT");
        cases.push(case(SocketIo, name, move |s| {
            Box::pin(cors_answers(s.prod.socketio, route))
        }));
    }
    cases
}

/// Whether `route` at `addr` allows the configured origin and not another.
async fn cors_answers(addr: SocketAddr, route: &'static str) -> Result<(), String> {
    let good = preflight(addr, route, "http://app.example").await;
    let bad = preflight(addr, route, "http://evil.example").await;
    let allowed = good
        .to_ascii_lowercase()
        .contains("access-control-allow-origin: http://app.example");
    let leaked = bad
        .to_ascii_lowercase()
        .contains("access-control-allow-origin");
    if allowed && !leaked {
        Ok(())
    } else {
        Err(format!("CORS {route}: good {good:?} bad {bad:?}"))
    }
}

/// The head of the answer to a preflight of `route` from `origin`.
async fn preflight(addr: SocketAddr, route: &str, origin: &str) -> String {
    let mut tcp = tcp_from(next_ip(), addr).await;
    let req = format!(
        "OPTIONS {route} HTTP/1.1\r\nHost: x\r\nOrigin: {origin}\r\nAccess-Control-Request-Method: POST\r\n\
         Access-Control-Request-Headers: authorization, content-type\r\nConnection: close\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, tcp.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    text.split("\r\n\r\n").next().unwrap_or("").to_owned()
}
