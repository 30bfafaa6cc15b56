//! The attack suite (issue 15): what Switchboard withstands, one case per line, for each
//! dialect. Real server (in this process, on port 0), real sockets, loopback only, every
//! loop bounded. Each case asserts the one answer the server gives (this error, this close
//! code, or nothing at all, shown by the next request's answer being the next frame), and
//! after each case a pair of bystanders must still signal with a round trip no worse than a
//! generous bound over the one measured before the suite. The summary line counts the
//! cases per dialect.
//!
//! - `octate.rs`, `socketio.rs`, `rendezvous.rs`, `nt.rs`, `ywebrtc.rs`: each dialect's
//!   payload attacks (malformed, mistyped and oversized fields) with its answers, and how
//!   the dialect authenticates, creates rooms and is squatted.
//! - `transport.rs`: WebSocket framing, message size and rate, the HTTP upgrade.
//! - `auth.rs`: tokens and origins in production.
//! - `rooms.rs`: id squatting, crowds from one address, room budgets, CORS.
//! - `conn.rs`: one raw connection of any dialect; `cases.rs`: a case and its expectation.
//!
//! The cases that need a whole process measured (memory and descriptors under slow readers,
//! unfinished messages, idle crowds) are in `tests/exhaustion.rs`; the token and room-access
//! rules of the security model in `tests/security.rs`; both are listed in the summary here
//! as what they cover, not re-run.

#[path = "../support/mod.rs"]
mod support;

mod auth;
mod cases;
mod conn;
mod ids;
mod nt;
mod octate;
mod rendezvous;
mod rooms;
mod socketio;
mod transport;
mod ywebrtc;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;
use support::{Client, TestServer, test_config};
use switchboard::Config;
use switchboard::config::{List, Span};

/// The servers the suite attacks.
pub struct Servers {
    /// Development mode, short deadlines.
    pub dev: TestServer,
    /// Development mode, 20 connections per client address.
    pub limited: TestServer,
    /// Development mode, a 30 s `AUTH_TIMEOUT`: a crowd that never takes its first step
    /// stays connected while it is counted (on `dev` the first would be closed after 1 s,
    /// making room for more).
    pub crowd: TestServer,
    /// Production mode: tokens in every dialect, `CORS_ORIGINS` set.
    pub prod: TestServer,
}

fn dev_config() -> Config {
    Config {
        message_timeout: Span::secs(1),
        request_header_timeout: Span::secs(1),
        auth_timeout: Span::secs(1),
        http_requests_per_second: 0,
        ..test_config()
    }
}

fn prod_config() -> Config {
    Config {
        production: true,
        auth_secret: "a-production-secret-of-some-length".into(),
        admin_api_key: Some("admin-key".into()),
        cors_origins: List(vec!["http://app.example".into()]),
        auth_timeout: Span::secs(1),
        http_requests_per_second: 0,
        ..test_config()
    }
}

/// The bystanders' round trip: an offer from a to b and the answer back, median of `n`.
async fn round_trip(a: &mut Client, b: &mut Client, room: &str, n: usize) -> Duration {
    let mut times = Vec::new();
    for _ in 0..n {
        let t = tokio::time::Instant::now();
        a.send(json!({"type":"sdp-offer","roomId":room,"data":{"peer":"bob","offer":{"sdp":"o"}}}))
            .await;
        b.recv_type("sdp-offer").await;
        b.send(
            json!({"type":"sdp-answer","roomId":room,"data":{"peer":"alice","answer":{"sdp":"a"}}}),
        )
        .await;
        a.recv_type("sdp-answer").await;
        times.push(t.elapsed());
    }
    times.sort();
    times[n / 2]
}

/// Every case, in the order they run.
fn all_cases() -> Vec<cases::Case> {
    let mut cases = octate::payload_cases();
    cases.extend(socketio::payload_cases());
    cases.extend(rendezvous::payload_cases());
    cases.extend(nt::payload_cases());
    cases.extend(ywebrtc::payload_cases());
    cases.extend(transport::transport_cases());
    cases.extend(auth::auth_cases());
    cases.extend(rooms::squatting_cases());
    cases.extend(rooms::cors_cases());
    cases.extend(ids::id_cases());
    cases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_attack_suite() {
    let servers = Servers {
        dev: TestServer::with(dev_config()).await,
        limited: TestServer::with(Config {
            max_connections_per_ip: 20,
            ..dev_config()
        })
        .await,
        crowd: TestServer::with(Config {
            auth_timeout: Span::secs(30),
            ..dev_config()
        })
        .await,
        prod: TestServer::with(prod_config()).await,
    };
    // Bystanders on the dev server: Alice and Bob keep signaling through every case.
    let url = servers.dev.signaling_url();
    let mut a = Client::connect(&url).await;
    a.send(json!({"type":"auth","userId":"alice","roomId":"calm"}))
        .await;
    a.recv_type("auth").await;
    a.send(json!({"type":"create-room","roomId":"calm"})).await;
    a.recv_type("room-created").await;
    let mut b = Client::connect(&url).await;
    b.send(json!({"type":"auth","userId":"bob","roomId":"calm"}))
        .await;
    b.recv_type("auth").await;
    b.send(json!({"type":"join-room","roomId":"calm"})).await;
    b.recv_type("room-joined").await;
    a.recv_type("peer-joined").await;
    let baseline = round_trip(&mut a, &mut b, "calm", 21).await;
    let bound = (baseline * 5).max(baseline + Duration::from_millis(20));

    // ATTACKS_ONLY=<text>[|<text>…] runs the cases whose label contains one of them (while
    // working on them).
    let only = std::env::var("ATTACKS_ONLY").unwrap_or_default();
    let cases: Vec<_> = all_cases()
        .into_iter()
        .filter(|c| {
            let label = format!("{}: {}", c.dialect.name(), c.name);
            only.split('|').any(|o| label.contains(o))
        })
        .collect();
    let mut failures = Vec::new();
    let mut counts = BTreeMap::<&str, usize>::new();
    let mut worst = Duration::ZERO;
    for c in &cases {
        let r = tokio::time::timeout(Duration::from_secs(20), (c.run)(&servers)).await;
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(e),
            Err(_) => failures.push(format!("{}: {}: timed out", c.dialect.name(), c.name)),
        }
        *counts.entry(c.dialect.name()).or_default() += 1;
        let mut rt = round_trip(&mut a, &mut b, "calm", 3).await;
        if rt > bound {
            // Once more at once: a case that impairs the server still shows in five more
            // round trips, a scheduler hiccup on a loaded machine (two cores shared with the
            // build) does not.
            let again = round_trip(&mut a, &mut b, "calm", 5).await;
            if again > bound {
                failures.push(format!(
                    "{}: {}: bystander round trip {rt:?}, then {again:?} (baseline {baseline:?})",
                    c.dialect.name(),
                    c.name
                ));
            }
            rt = rt.min(again);
        }
        worst = worst.max(rt);
    }
    let per: Vec<String> = counts.iter().map(|(d, n)| format!("{d} {n}")).collect();
    println!(
        "attack suite: {} cases ({}), {} failed; bystander round trip {baseline:?} before, worst {worst:?} after a case",
        cases.len(),
        per.join(", "),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
