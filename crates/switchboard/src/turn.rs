//! ICE servers for clients: the configured STUN URLs and, with `TURN_SECRET` set, TURN URLs
//! with time-limited credentials in coturn's REST scheme (`use-auth-secret` +
//! `static-auth-secret`, draft-uberti-behave-turn-rest-00):
//!
//! - `username = "<expiry-unix-seconds>:<userId>"`
//! - `credential = base64(HMAC-SHA1(key = secret, msg = username))` (standard, padded).
//!
//! coturn rejects the username once the expiry lies in the past, so `TURN_TTL` bounds how
//! long a handed-out credential can allocate relays. Served by `GET /api/ice-servers` and
//! added to the OctateCode `auth` reply as `data.iceServers`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha1::Sha1;

use crate::config::Config;

/// `base64(HMAC-SHA1(secret, username))`: the password coturn derives for `username`.
pub fn credential(secret: &str, username: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(username.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// The REST-scheme username: `<expiry>:<user>`, or the bare expiry for an empty user.
pub fn username(expiry_unix: u64, user: &str) -> String {
    if user.is_empty() {
        expiry_unix.to_string()
    } else {
        format!("{expiry_unix}:{user}")
    }
}

/// A random user id for requests that name none.
fn random_user() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Seconds since the Unix epoch.
fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

/// What an `iceServers` list is made of: `STUN_URLS`, `TURN_URLS`, `TURN_SECRET` and
/// `TURN_TTL`. The command layer keeps one for the OctateCode `auth` reply.
#[derive(Clone, Debug, Default)]
pub struct IceServers {
    stun_urls: Vec<String>,
    turn_urls: Vec<String>,
    turn_secret: Option<String>,
    turn_ttl: Duration,
}

impl IceServers {
    /// The servers `config` names.
    pub fn from_config(config: &Config) -> Self {
        Self {
            stun_urls: config.stun_urls.as_slice().to_vec(),
            turn_urls: config.turn_urls.as_slice().to_vec(),
            turn_secret: config.turn_secret.clone(),
            turn_ttl: config.turn_ttl.get(),
        }
    }

    /// The list for `user` (a random id when `None` or empty), valid from now.
    pub fn for_user(&self, user: Option<&str>) -> Vec<Value> {
        self.at(user, now_unix())
    }

    /// The list for `user` (a random id when `None` or empty), valid from `now_unix` for
    /// `TURN_TTL`.
    pub fn at(&self, user: Option<&str>, now_unix: u64) -> Vec<Value> {
        let mut out = Vec::new();
        if !self.stun_urls.is_empty() {
            out.push(json!({ "urls": self.stun_urls }));
        }
        if !self.turn_urls.is_empty() {
            match self.turn_secret.as_deref() {
                Some(secret) => {
                    let user = match user.map(str::trim).filter(|u| !u.is_empty()) {
                        Some(u) => u.to_owned(),
                        None => random_user(),
                    };
                    let name = username(now_unix.saturating_add(self.turn_ttl.as_secs()), &user);
                    let cred = credential(secret, &name);
                    out.push(
                        json!({ "urls": self.turn_urls, "username": name, "credential": cred }),
                    );
                }
                // Without a secret the TURN server is assumed open (or credentials are handed
                // out elsewhere): list the URLs alone.
                None => out.push(json!({ "urls": self.turn_urls })),
            }
        }
        out
    }
}

/// The `iceServers` list for `user` (a random id when `None` or empty), valid from `now_unix`
/// for `config.turn_ttl`.
pub fn ice_servers_at(config: &Config, user: Option<&str>, now_unix: u64) -> Vec<Value> {
    IceServers::from_config(config).at(user, now_unix)
}

/// The `iceServers` list for `user`, valid from now.
pub fn ice_servers(config: &Config, user: Option<&str>) -> Vec<Value> {
    ice_servers_at(config, user, now_unix())
}

/// The `GET /api/ice-servers` body: `{"iceServers": [...], "ttl": seconds}`.
pub fn response(config: &Config, user: Option<&str>) -> Value {
    json!({ "iceServers": ice_servers(config, user), "ttl": config.turn_ttl.get().as_secs() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answer_vectors() {
        assert_eq!(
            credential("north", "1700000000:alice"),
            "Cd/49soE35ICqcJF/bCTn8Z4OyE="
        );
        assert_eq!(
            credential("logen", "1893456000:user42"),
            "vXVBKV0ek0Wy/cargclfCBpA0aY="
        );
        assert_eq!(
            credential("secret", "1700000000"),
            "WGw37+g43pfwVUmrc9tgArn/juE="
        );
    }

    #[test]
    fn username_shapes() {
        assert_eq!(username(1_700_000_000, "alice"), "1700000000:alice");
        assert_eq!(username(1_700_000_000, ""), "1700000000");
    }

    fn turn_config() -> Config {
        Config {
            stun_urls: "stun:127.0.0.1:3478".parse().unwrap(),
            turn_urls: "turn:127.0.0.1:3478?transport=udp".parse().unwrap(),
            turn_secret: Some("north".into()),
            turn_ttl: crate::config::Span::secs(300),
            ..Config::default()
        }
    }

    #[test]
    fn list_with_secret_carries_rest_credentials() {
        let list = ice_servers_at(&turn_config(), Some("alice"), 1_699_999_700);
        assert_eq!(list.len(), 2);
        assert_eq!(list[0], json!({ "urls": ["stun:127.0.0.1:3478"] }));
        assert_eq!(
            list[1]["urls"],
            json!(["turn:127.0.0.1:3478?transport=udp"])
        );
        assert_eq!(list[1]["username"], "1700000000:alice");
        assert_eq!(list[1]["credential"], "Cd/49soE35ICqcJF/bCTn8Z4OyE=");
    }

    #[test]
    fn missing_user_gets_a_random_id() {
        let a = ice_servers_at(&turn_config(), None, 1_000);
        let b = ice_servers_at(&turn_config(), Some(" "), 1_000);
        let (ua, ub) = (a[1]["username"].as_str(), b[1]["username"].as_str());
        let (ua, ub) = (ua.expect("username"), ub.expect("username"));
        assert!(ua.starts_with("1300:") && ua.len() > 10, "{ua}");
        assert_ne!(ua, ub);
        assert_eq!(a[1]["credential"], credential("north", ua));
    }

    #[test]
    fn settings_parse_and_validate() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["switchboard"];
            argv.extend_from_slice(extra);
            Config::parse_without_env(argv)
        };
        let c = parse(&[
            "--stun-urls",
            "stun:a:3478, stun:b:3478",
            "--turn-urls",
            "turn:a:3478?transport=udp,turns:a:5349?transport=tcp",
            "--turn-secret",
            "s3",
            "--turn-ttl",
            "10m",
        ])
        .expect("valid");
        assert_eq!(c.stun_urls.as_slice(), ["stun:a:3478", "stun:b:3478"]);
        assert_eq!(c.turn_urls.as_slice().len(), 2);
        assert_eq!(c.turn_secret.as_deref(), Some("s3"));
        assert_eq!(c.turn_ttl, crate::config::Span::secs(600));
        let e = parse(&[
            "--turn-urls",
            "http://x",
            "--turn-ttl",
            "0s",
            "--stun-urls",
            "turn:x",
        ])
        .expect_err("invalid");
        let all = e.to_string();
        assert!(
            all.contains("TURN_URLS") && all.contains("TURN_TTL") && all.contains("STUN_URLS"),
            "{all}"
        );
        let e = parse(&["--turn-secret", "s3"]).expect_err("secret without URLs");
        assert!(e.to_string().contains("TURN_SECRET"));
    }

    #[tokio::test]
    async fn http_route_serves_the_list() {
        use tower::ServiceExt as _;
        let app = crate::AppState::new(turn_config(), crate::Shutdown::new());
        let router = crate::http::api::router().with_state(app);
        let req = axum::http::Request::get("/api/ice-servers?userId=alice")
            .body(axum::body::Body::empty())
            .expect("request");
        let res = router.oneshot(req).await.expect("response");
        assert_eq!(res.status(), axum::http::StatusCode::OK);
        let body = axum::body::to_bytes(res.into_body(), 1 << 16)
            .await
            .expect("body");
        let v: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["ttl"], 300);
        let name = v["iceServers"][1]["username"].as_str().expect("username");
        let (expiry, user) = name.split_once(':').expect("expiry:user");
        assert_eq!(user, "alice");
        let expiry: u64 = expiry.parse().expect("number");
        assert!(expiry.abs_diff(now_unix() + 300) <= 5, "{expiry}");
        assert_eq!(v["iceServers"][1]["credential"], credential("north", name));
    }

    #[test]
    fn defaults_give_an_empty_list_and_no_secret_gives_bare_urls() {
        assert!(ice_servers(&Config::default(), None).is_empty());
        let open = Config {
            turn_secret: None,
            ..turn_config()
        };
        let list = ice_servers(&open, Some("bob"));
        assert_eq!(
            list[1],
            json!({ "urls": ["turn:127.0.0.1:3478?transport=udp"] })
        );
        let body = response(&open, None);
        assert_eq!(body["ttl"], 300);
    }
}
