//! Authentication: the one function that checks every token a client presents
//! ([`check_token`]), whichever way it comes — an OctateCode `auth` message's
//! `data.token`, a WebSocket URL's `?token=`, the Socket.io handshake's `auth.token`, or
//! `POST /api/auth/validate` — and the `auth` command
//! ([`Command::Authenticate`](super::Command::Authenticate)).
//!
//! Each entry point renders a [`TokenRefusal`] in its own form (an error frame, an HTTP
//! status, a `connect_error`); what is accepted is decided here alone.

use std::net::IpAddr;

use serde_json::Value;
use switchboard_core::{PeerId, RoomId};

use super::{CommandError, Context, Identity, Reply, Session};
use crate::auth::{Authenticator, Claims, TokenError};

/// A token as a connection presents it, and what it must match.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenCheck<'a> {
    /// The token, if one was presented.
    pub token: Option<&'a str>,
    /// Whether one must be (`REQUIRE_TOKEN` names the connection's dialect).
    pub required: bool,
    /// The user the connection says it is; `None` takes the token's.
    pub user: Option<&'a str>,
    /// The room the connection is for; `None` takes the token's.
    pub room: Option<&'a str>,
}

/// Why a connection's token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    /// None was presented, and one is required.
    #[error("a token is required")]
    Missing,
    /// The token was refused: forged, expired, throttled, or for another user or room.
    #[error(transparent)]
    Refused(#[from] TokenError),
}

impl From<TokenRefusal> for CommandError {
    fn from(e: TokenRefusal) -> Self {
        match e {
            TokenRefusal::Missing => Self::MissingToken,
            TokenRefusal::Refused(e) => Self::Token(e),
        }
    }
}

/// Checks the token a client at `client` presents: `Ok(None)` when it presents none and
/// need not, `Ok(Some(claims))` for a valid token that names the user and room asked for.
/// A connection holds the claims as its [`Identity`] (`Identity::from`), bound to the
/// token's room.
///
/// # Errors
/// [`TokenRefusal::Missing`] without a required token; [`TokenRefusal::Refused`] with why
/// the verifier refused it (the failed-guess throttle included), or
/// [`TokenError::UserMismatch`] / [`TokenError::RoomMismatch`] for a token of another user
/// or room.
pub fn check_token(
    tokens: &Authenticator,
    client: IpAddr,
    check: TokenCheck<'_>,
) -> Result<Option<Claims>, TokenRefusal> {
    let Some(token) = check.token else {
        return if check.required {
            Err(TokenRefusal::Missing)
        } else {
            Ok(None)
        };
    };
    let claims = tokens.verify(client, token)?;
    if check.user.is_some_and(|u| u != claims.sub) {
        return Err(TokenError::UserMismatch.into());
    }
    if check.room.is_some_and(|r| r != claims.room) {
        return Err(TokenError::RoomMismatch(claims.room).into());
    }
    Ok(Some(claims))
}

impl From<Claims> for Identity {
    /// The token's user, bound to the token's room.
    fn from(claims: Claims) -> Self {
        Self {
            user: PeerId::from(claims.sub),
            room: RoomId::from(claims.room),
            token_bound: true,
        }
    }
}

impl Session {
    /// `auth`: becomes `user` for `room`, with a token when one is given (or required).
    /// Re-authenticating replaces the identity and leaves every room joined under the old
    /// one.
    pub(super) fn authenticate(
        &mut self,
        cx: &Context,
        user: String,
        room: String,
        token: Option<&str>,
    ) -> Result<Reply, CommandError> {
        if user.is_empty() || room.is_empty() {
            return Err(CommandError::MissingFields("Missing userId or roomId"));
        }
        super::check_id("userId", &user)?;
        super::check_id("roomId", &room)?;
        let check = TokenCheck {
            token: token.filter(|t| !t.is_empty()),
            required: self.token_required,
            user: Some(&user),
            room: Some(&room),
        };
        let token_bound = check_token(&cx.tokens, self.client, check)?.is_some();
        self.seats.clear();
        let user = PeerId::from(user);
        let room = RoomId::from(room);
        self.identity = Some(Identity {
            user: user.clone(),
            room: room.clone(),
            token_bound,
        });
        let ice_servers = Value::Array(cx.ice.for_user(Some(user.as_str())));
        Ok(Reply::Authenticated {
            user,
            room,
            ice_servers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Command;
    use crate::command::testing::{CLIENT, Fixture, auth};

    fn authenticate(user: &str, room: &str, token: Option<String>) -> Command {
        Command::Authenticate {
            user: user.into(),
            room: room.into(),
            token,
        }
    }

    /// Scenario, token required, user, room, token, and whether the identity is
    /// token-bound (or the refusal's code).
    type Row<'a> = (
        &'a str,
        bool,
        &'a str,
        &'a str,
        Option<&'a str>,
        Result<bool, &'a str>,
    );

    /// `auth` in every case: whether a token is required, which one is given, and what the
    /// connection gets.
    #[tokio::test]
    async fn auth_accepts_a_matching_token_or_none_when_none_is_required() {
        let f = Fixture::new();
        let good = f.cx.tokens.issue("alice", "r1").token;
        let bob = f.cx.tokens.issue("bob", "r1").token;
        let r2 = f.cx.tokens.issue("alice", "r2").token;
        let forged = auth("another-secret").issue("alice", "r1").token;
        let long = "u".repeat(crate::command::MAX_ID_BYTES + 1);
        #[rustfmt::skip]
        let cases: [Row; 12] = [
            // scenario                      required user     room  token            token-bound or code
            ("anonymous in development",     false,   "alice", "r1", None,            Ok(false)),
            ("an empty token is none",       false,   "alice", "r1", Some(""),        Ok(false)),
            ("a matching token",             true,    "alice", "r1", Some(&good),     Ok(true)),
            ("a token, not required",        false,   "alice", "r1", Some(&good),     Ok(true)),
            ("no token in production",       true,    "alice", "r1", None,            Err("missing_token")),
            ("another user's token",         true,    "alice", "r1", Some(&bob),      Err("user_mismatch")),
            ("another room's token",         true,    "alice", "r1", Some(&r2),       Err("room_mismatch")),
            ("a forged token",               false,   "alice", "r1", Some(&forged),   Err("bad_signature")),
            ("garbage",                      false,   "alice", "r1", Some("x.y.z"),   Err("invalid_token")),
            ("no user id",                   false,   "",      "r1", None,            Err("missing_fields")),
            ("a user id past 256 bytes",     false,   &long,   "r1", None,            Err("id_too_long")),
            ("a room id past 256 bytes",     false,   "alice", &long, None,           Err("id_too_long")),
        ];
        for (scenario, required, user, room, token, expected) in cases {
            let mut s = f.session_with(required, None);
            let got = s
                .apply(&f.cx, authenticate(user, room, token.map(Into::into)))
                .outcome()
                .await;
            match (expected, got) {
                (
                    Ok(bound),
                    Ok(Reply::Authenticated {
                        user: u, room: r, ..
                    }),
                ) => {
                    assert_eq!((u.as_str(), r.as_str()), (user, room), "{scenario}");
                    assert_eq!(
                        s.identity().map(|i| i.token_bound),
                        Some(bound),
                        "{scenario}"
                    );
                }
                (Err(code), Err(e)) => {
                    assert_eq!(e.code(), code, "{scenario}");
                    assert_eq!(s.identity(), None, "{scenario}");
                }
                (expected, got) => panic!("{scenario}: expected {expected:?}, got {got:?}"),
            }
        }
    }

    #[tokio::test]
    async fn guesses_past_the_budget_are_throttled() {
        let mut f = Fixture::new();
        f.cx.tokens =
            Authenticator::new("test-secret", std::time::Duration::from_secs(60), None, 1);
        let mut s = f.session();
        let cmd = || authenticate("alice", "r1", Some("garbage".into()));
        let first = s.apply(&f.cx, cmd()).outcome().await.unwrap_err();
        let second = s.apply(&f.cx, cmd()).outcome().await.unwrap_err();
        assert_eq!(
            (first.code(), second.code()),
            ("invalid_token", "auth_throttled")
        );
    }

    /// Re-authenticating leaves the rooms joined under the old identity.
    #[tokio::test]
    async fn auth_again_leaves_every_room() {
        let f = Fixture::new();
        let mut s = f.session();
        s.apply(&f.cx, authenticate("alice", "r1", None))
            .outcome()
            .await
            .unwrap();
        f.join_as_identity(&mut s).await.unwrap();
        assert!(s.in_a_room());
        s.apply(&f.cx, authenticate("alice2", "r2", None))
            .outcome()
            .await
            .unwrap();
        assert!(!s.in_a_room());
        assert_eq!(f.members("r1"), 0);
    }

    #[test]
    fn the_auth_reply_carries_the_ice_servers() {
        let mut f = Fixture::new();
        f.cx.ice = crate::turn::IceServers::from_config(&crate::Config {
            stun_urls: "stun:stun.example:3478".parse().unwrap(),
            ..crate::Config::default()
        });
        let mut s = f.session();
        let reply = s.authenticate(&f.cx, "alice".into(), "r1".into(), None);
        let Ok(Reply::Authenticated { ice_servers, .. }) = reply else {
            panic!("{reply:?}")
        };
        assert_eq!(
            ice_servers,
            serde_json::json!([{"urls": ["stun:stun.example:3478"]}])
        );
    }

    /// The URL's and the handshake's form: no user named (the token's is taken), a room
    /// named or not.
    #[test]
    fn a_connection_token_names_its_user_and_binds_its_room() {
        let tokens = auth("test-secret");
        let good = tokens.issue("alice", "r1").token;
        let check = |token, required, room| {
            let check = TokenCheck {
                token,
                required,
                user: None,
                room,
            };
            check_token(&tokens, CLIENT, check).map(|c| c.map(Identity::from))
        };
        let alice = Identity {
            user: PeerId::new("alice"),
            room: RoomId::new("r1"),
            token_bound: true,
        };
        assert_eq!(check(Some(&good), false, None), Ok(Some(alice.clone())));
        assert_eq!(check(Some(&good), true, Some("r1")), Ok(Some(alice)));
        assert_eq!(
            check(Some(&good), true, Some("r2")),
            Err(TokenRefusal::Refused(TokenError::RoomMismatch("r1".into())))
        );
        assert_eq!(check(None, false, Some("r1")), Ok(None));
        assert_eq!(check(None, true, None), Err(TokenRefusal::Missing));
        assert_eq!(
            check(Some(""), false, None),
            Err(TokenRefusal::Refused(TokenError::Malformed)),
            "an empty token is a token (callers that ignore empty ones drop them first)"
        );
    }
}
