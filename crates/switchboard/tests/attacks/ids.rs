//! Ids past 256 bytes, in every dialect that lets a client choose one (issue 22): a user,
//! peer or room id is repeated in every frame about its holder, so a 64,000-character user
//! id and 4 KB of tiny signals once made the server send a room-mate 9.6 MB. Each is now
//! refused with the dialect's error before it names anyone. (nt's ids are a UUID and a
//! side; y-webrtc's topics keep their own 256-byte cap.)

use std::time::Duration;

use crate::cases::{Answer, Case, Expect, case, check, error, frame_cases};
use crate::conn::Dialect::{Octate, Rendezvous, SocketIo, YWebrtc};
use crate::conn::{Conn, uuid_like};

/// An id one kilobyte long (the bound is 256 bytes).
fn kilobyte_id() -> String {
    "i".repeat(1_000)
}

pub fn id_cases() -> Vec<Case> {
    let long = kilobyte_id();
    let mut cases = frame_cases(
        Octate,
        vec![
            (
                "auth as a 1,000-byte userId",
                format!(r#"{{"type":"auth","userId":"{long}","roomId":"r"}}"#),
                error("id_too_long"),
            ),
            (
                "auth for a 1,000-byte roomId",
                format!(r#"{{"type":"auth","userId":"me","roomId":"{long}"}}"#),
                error("id_too_long"),
            ),
            (
                "create a 1,000-byte roomId",
                format!(r#"{{"type":"create-room","roomId":"{long}"}}"#),
                error("id_too_long"),
            ),
        ],
    );
    // A rendezvous connection joins once: this one has not yet. Its peer ids were bounded
    // (128 characters) before the other dialects', and a wrong one closes the connection.
    cases.push(case(Rendezvous, "join as a 1,000-byte peerId", |s| {
        Box::pin(async move {
            let (status, mut c) = Conn::upgrade(&s.dev, Rendezvous, &uuid_like(), "").await;
            assert_eq!(status, 101);
            c.text(&format!(r#"{{"type":"join","peerId":"{}"}}"#, kilobyte_id()))
                .await;
            let answer = Answer::of(&mut c, Duration::from_millis(300)).await;
            check(
                "rendezvous: join as a 1,000-byte peerId",
                &answer,
                &Expect::CloseAfter(
                    &[
                        r#"{"type":"error","code":"invalid_peer_id","message":"peerId must be a string of 1 to 128 characters"}"#,
                    ],
                    1008,
                ),
            )
        })
    }));
    cases.extend(frame_cases(
        SocketIo,
        vec![
            (
                "join-room as a 1,000-byte userId",
                format!(r#"42["join-room","r","{long}"]"#),
                // Socket.io's userId is the peer id every room-mate sees.
                error("peerId is longer than 256 bytes"),
            ),
            (
                "join-room of a 1,000-byte roomId",
                format!(r#"42["join-room","{long}","me"]"#),
                error("roomId is longer than 256 bytes"),
            ),
        ],
    ));
    cases.extend(frame_cases(
        YWebrtc,
        vec![(
            "subscribe to a 1,000-byte topic",
            format!(r#"{{"type":"subscribe","topics":["{long}"]}}"#),
            error("topic_too_long"),
        )],
    ));
    cases
}
