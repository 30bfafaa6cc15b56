//! The client's address, as every per-client limit sees it.
//!
//! It is the TCP peer's address, unless that peer is one of `TRUSTED_PROXIES`: then it is
//! the address the proxy says it forwarded for. `X-Forwarded-For` is read right to left and
//! the first hop that is not itself a trusted proxy is the client (the hops to its left are
//! whatever the client claimed, so they are never believed); without `X-Forwarded-For`,
//! the RFC 7239 `Forwarded` header's `for=` parameters are read the same way. From any peer
//! that is not a trusted proxy both headers are ignored, so a client cannot choose the
//! address its limits are counted against.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;

use crate::config::Cidrs;

/// The resolved client address, put into every request's extensions by the HTTP layer
/// (`http::resolve_client`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// Which address `peer`'s request comes from, given the trusted proxies.
pub fn resolve(trusted: &Cidrs, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted.contains(peer) {
        return peer;
    }
    let xff: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    let hops: Vec<&str> = if xff.is_empty() {
        headers
            .get_all("forwarded")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(forwarded_for)
            .collect()
    } else {
        xff
    };
    // Right to left: each hop was appended by the proxy to its right, which we trust so
    // far; the first untrusted one is the client.
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else {
            // Garbage where a trusted proxy should have written an address: stop at the
            // last address we could believe.
            break;
        };
        client = ip;
        if !trusted.contains(ip) {
            break;
        }
    }
    client
}

/// The `for=` value of one `Forwarded` element.
fn forwarded_for(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        k.trim().eq_ignore_ascii_case("for").then_some(v.trim())
    })
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:5678`, `"[::1]:80"`, `::1`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let h = hop.trim().trim_matches('"');
    if let Ok(ip) = h.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(sa) = h.parse::<SocketAddr>() {
        return Some(sa.ip().to_canonical());
    }
    let bracketed = h.strip_prefix('[')?;
    bracketed
        .split_once(']')
        .and_then(|(ip, _)| ip.parse::<IpAddr>().ok())
        .map(|ip| ip.to_canonical())
}

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(from_parts(&parts.extensions))
    }
}

/// The resolved address in a request's extensions; the TCP peer when the middleware did
/// not run (then no proxy is trusted), the unspecified address when neither is known.
pub fn from_parts(ext: &axum::http::Extensions) -> ClientIp {
    ext.get::<ClientIp>().copied().unwrap_or_else(|| {
        ClientIp(
            ext.get::<ConnectInfo<SocketAddr>>()
                .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip().to_canonical()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let trusted: Cidrs = "10.0.0.0/8".parse().unwrap();
        let h = headers(&[("x-forwarded-for", "1.1.1.1"), ("forwarded", "for=2.2.2.2")]);
        assert_eq!(resolve(&trusted, ip("192.0.2.7"), &h), ip("192.0.2.7"));
        assert_eq!(
            resolve(&Cidrs::default(), ip("10.0.0.1"), &h),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn a_trusted_proxy_names_the_rightmost_untrusted_hop() {
        let trusted: Cidrs = "10.0.0.0/8,127.0.0.1".parse().unwrap();
        // The client claimed 6.6.6.6; the edge proxy saw 203.0.113.9; an inner proxy 10.1.1.1.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.1.1.1")]);
        assert_eq!(resolve(&trusted, ip("127.0.0.1"), &h), ip("203.0.113.9"));
        // Several header lines read as one list.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "203.0.113.9:4711"),
        ]);
        assert_eq!(resolve(&trusted, ip("10.2.2.2"), &h), ip("203.0.113.9"));
        // Only proxies: the leftmost is as far as we can see.
        let h = headers(&[("x-forwarded-for", "10.9.9.9, 10.1.1.1")]);
        assert_eq!(resolve(&trusted, ip("127.0.0.1"), &h), ip("10.9.9.9"));
        // No header: the proxy itself.
        assert_eq!(
            resolve(&trusted, ip("127.0.0.1"), &HeaderMap::new()),
            ip("127.0.0.1")
        );
        // Garbage from the client left of a real hop does not matter.
        let h = headers(&[("x-forwarded-for", "not-an-ip, 198.51.100.4")]);
        assert_eq!(resolve(&trusted, ip("127.0.0.1"), &h), ip("198.51.100.4"));
    }

    #[test]
    fn forwarded_is_read_when_x_forwarded_for_is_absent() {
        let trusted: Cidrs = "127.0.0.1".parse().unwrap();
        let h = headers(&[(
            "forwarded",
            "for=6.6.6.6, for=\"[2001:db8::1]:4711\";proto=https",
        )]);
        assert_eq!(resolve(&trusted, ip("127.0.0.1"), &h), ip("2001:db8::1"));
        let h = headers(&[("forwarded", "proto=http;For=198.51.100.17")]);
        assert_eq!(
            resolve(&trusted, ip("::ffff:127.0.0.1"), &h),
            ip("198.51.100.17")
        );
    }
}
