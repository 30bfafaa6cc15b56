//! The Socket.io event path: the input is one Socket.io packet as a client sends it inside
//! an Engine.IO message (`2["offer",{…}]`, `2/ns,5["join-room","r","u"]`, …). It is parsed
//! by socketioxide's own parser, the event's arguments are deserialised into the
//! transport's `Args` as its handlers do (`TryData<Args>`, a failure being no arguments),
//! and the Socket.io codec decodes them. Refusals are rendered as `error` events (bounded);
//! relays are rendered for every dialect.
#![no_main]

use libfuzzer_sys::fuzz_target;
use socketioxide_core::Str;
use socketioxide_core::packet::PacketData;
use socketioxide_core::parser::{Parse, ParseConfig, ParserState};
use socketioxide_parser_common::CommonParser;
use switchboard::dialect::{socketio, tags};
use switchboard::transport::socketio::Args;
use switchboard_fuzz::{MAX_ERROR_FRAME, assert_json, refusals_naming, render_everywhere};

fuzz_target!(|data: &[u8]| {
    // Engine.IO text messages are UTF-8 (its WebSocket frames and polling bodies are).
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parser = CommonParser;
    let Ok(packet) = parser.decode_str(
        &ParseConfig::default(),
        &ParserState::default(),
        Str::from(text.to_owned()),
    ) else {
        return;
    };
    let PacketData::Event(mut value, _ack) = packet.inner else {
        return;
    };
    let Ok(name) = parser.read_event(&value) else {
        return;
    };
    // socketioxide calls the handlers registered for these events only.
    let Some(&event) = socketio::EVENTS.iter().find(|e| **e == name) else {
        return;
    };
    let args = parser
        .decode_value::<Args>(&mut value, true)
        .map(|a| a.0)
        .unwrap_or_default();
    let error_event = |e| {
        let (name, body) = socketio::encode_error(e);
        assert_eq!(name, "error");
        let bytes = serde_json::to_vec(&body).expect("a Value serialises");
        assert_json("socketio error", &bytes);
        assert!(
            bytes.len() <= MAX_ERROR_FRAME,
            "socketio: an error event of {} bytes",
            bytes.len()
        );
    };
    match socketio::decode(event, &args) {
        Err(e) => error_event(&e),
        Ok(command) => {
            refusals_naming(&command).iter().for_each(error_event);
            assert_eq!(
                socketio::encode_reply(&switchboard::command::Reply::None),
                None
            );
            if let switchboard::command::Command::Relay(r) = &command {
                assert_json("socketio relay payload", &r.payload);
                render_everywhere(tags::SOCKETIO, r);
            }
        }
    }
});
