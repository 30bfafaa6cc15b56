//! Authentication: stateless HS256 JWT tokens and the admin bearer key.
//!
//! A token's claims are `sub` (the user id), `room` (the room it admits to), `iat` and
//! `exp` (Unix seconds). Any node that knows `AUTH_SECRET` verifies them, a restart does not
//! invalidate them, and an application's own backend may mint them with any JWT library.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};

/// The claims Switchboard signs and checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: String,
    /// Room id.
    pub room: String,
    /// Issued at, Unix seconds.
    #[serde(default)]
    pub iat: u64,
    /// Expiry, Unix seconds.
    pub exp: u64,
}

/// Why a token was refused. Each has its own message, as the OctateCode server had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a JWT, or not one of ours.
    #[error("Invalid or expired token")]
    Malformed,
    /// Signed with another secret.
    #[error("Invalid token signature")]
    BadSignature,
    /// Past its `exp`.
    #[error("Token expired")]
    Expired,
    /// Issued for another user.
    #[error("User ID mismatch")]
    UserMismatch,
    /// Issued for another room.
    #[error("Not authorized for this room. Token is for room {0}")]
    RoomMismatch(String),
}

impl TokenError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed => "invalid_token",
            Self::BadSignature => "bad_signature",
            Self::Expired => "token_expired",
            Self::UserMismatch => "user_mismatch",
            Self::RoomMismatch(_) => "room_mismatch",
        }
    }
}

/// Signs and verifies tokens; checks the admin key.
#[derive(Clone)]
pub struct Authenticator {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
    admin_key: Option<String>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// A freshly minted token.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The JWT.
    pub token: String,
    /// Its claims.
    pub claims: Claims,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Authenticator {
    /// Builds an authenticator for `secret`; tokens live `ttl`.
    pub fn new(secret: &str, ttl: Duration, admin_key: Option<String>) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
            ttl,
            admin_key,
        }
    }

    /// The token lifetime.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Mints a token for `user` in `room`.
    pub fn issue(&self, user: &str, room: &str) -> IssuedToken {
        let iat = now_secs();
        let claims = Claims {
            sub: user.to_owned(),
            room: room.to_owned(),
            iat,
            exp: iat + self.ttl.as_secs().max(1),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing with an HMAC key cannot fail");
        IssuedToken { token, claims }
    }

    /// Verifies a token's signature and expiry.
    ///
    /// # Errors
    /// [`TokenError::Malformed`], [`TokenError::BadSignature`] or [`TokenError::Expired`].
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::InvalidSignature => TokenError::BadSignature,
                _ => TokenError::Malformed,
            })
    }

    /// Verifies a token and that it admits `user` to `room`.
    ///
    /// # Errors
    /// Any [`TokenError`].
    pub fn verify_for(&self, token: &str, user: &str, room: &str) -> Result<Claims, TokenError> {
        let claims = self.verify(token)?;
        if claims.sub != user {
            return Err(TokenError::UserMismatch);
        }
        if claims.room != room {
            return Err(TokenError::RoomMismatch(claims.room));
        }
        Ok(claims)
    }

    /// Whether an admin key is configured.
    pub fn has_admin_key(&self) -> bool {
        self.admin_key.is_some()
    }

    /// Whether an `Authorization` header value carries the admin key. Compared in constant
    /// time so the key cannot be guessed byte by byte from response timing.
    pub fn is_admin(&self, authorization: Option<&str>) -> bool {
        let (Some(key), Some(header)) = (&self.admin_key, authorization) else {
            return false;
        };
        let Some(given) = header.strip_prefix("Bearer ") else {
            return false;
        };
        constant_time_eq(given.trim().as_bytes(), key.as_bytes())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Authenticator {
        Authenticator::new("test-secret", Duration::from_secs(60), Some("admin".into()))
    }

    #[test]
    fn an_issued_token_verifies_for_its_user_and_room_only() {
        let a = auth();
        let t = a.issue("alice", "r1");
        assert_eq!(a.verify_for(&t.token, "alice", "r1").unwrap().sub, "alice");
        assert_eq!(
            a.verify_for(&t.token, "bob", "r1"),
            Err(TokenError::UserMismatch)
        );
        assert_eq!(
            a.verify_for(&t.token, "alice", "r2"),
            Err(TokenError::RoomMismatch("r1".into()))
        );
    }

    #[test]
    fn forged_expired_and_garbage_tokens_fail_differently() {
        let a = auth();
        let other = Authenticator::new("another-secret", Duration::from_secs(60), None);
        assert_eq!(
            a.verify(&other.issue("alice", "r1").token),
            Err(TokenError::BadSignature)
        );
        assert_eq!(a.verify("not-a-jwt"), Err(TokenError::Malformed));
        let expired = Claims {
            sub: "alice".into(),
            room: "r1".into(),
            iat: 1,
            exp: 2,
        };
        let t = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &expired,
            &EncodingKey::from_secret(b"test-secret"),
        )
        .unwrap();
        assert_eq!(a.verify(&t), Err(TokenError::Expired));
    }

    #[test]
    fn the_admin_key_must_match_exactly() {
        let a = auth();
        assert!(a.is_admin(Some("Bearer admin")));
        assert!(!a.is_admin(Some("Bearer admin2")));
        assert!(!a.is_admin(Some("admin")));
        assert!(!a.is_admin(None));
    }
}
