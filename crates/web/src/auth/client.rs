//! Who the client is and whether it came over HTTPS when a reverse proxy stands in between.
//!
//! `X-Forwarded-For` and `X-Forwarded-Proto` are believed only from the proxies named with
//! `rampart serve --trusted-proxy CIDR`: anyone else could write any address into them, and so
//! slip past the login rate limit or lock other people out.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;

use crate::state::AppState;

#[derive(Debug, Clone, Default)]
pub struct ClientAddressing {
    trusted: Vec<IpNet>,
    /// Rampart itself is reached over TLS (a TLS terminator that sends no X-Forwarded-Proto).
    always_https: bool,
}

impl ClientAddressing {
    pub fn new(trusted: Vec<IpNet>, always_https: bool) -> Self {
        Self {
            trusted,
            always_https,
        }
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The client's address: the peer, or, when the peer is a trusted proxy, the nearest address
    /// in `X-Forwarded-For` that is not a trusted proxy (addresses further left were written by
    /// whoever the untrusted hop was, and prove nothing).
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return peer;
        }
        let mut hops: Vec<IpAddr> = Vec::new();
        for value in headers.get_all("x-forwarded-for") {
            let Ok(text) = value.to_str() else {
                return peer;
            };
            for part in text.split(',') {
                match parse_hop(part) {
                    Some(ip) => hops.push(canonical(ip)),
                    // A list we cannot read is a list we cannot trust.
                    None => return peer,
                }
            }
        }
        let mut client = peer;
        for ip in hops.into_iter().rev() {
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        client
    }

    /// Whether the browser reached Rampart over HTTPS: Rampart is configured so, or a trusted
    /// proxy says so in `X-Forwarded-Proto`.
    pub fn is_https(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> bool {
        if self.always_https {
            return true;
        }
        if !peer.is_some_and(|p| self.trusts(p)) {
            return false;
        }
        headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
    }
}

/// An IPv4 address written as IPv6 (`::ffff:10.0.0.1`, as a dual-stack socket reports it) is the
/// IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// One entry of `X-Forwarded-For`: an address, maybe with a port (`1.2.3.4:5678`, `[::1]:80`).
fn parse_hop(part: &str) -> Option<IpAddr> {
    let part = part.trim();
    part.parse::<IpAddr>()
        .ok()
        .or_else(|| part.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

/// The peer of the connection, when the server was started with connection info.
pub fn peer(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// Marks every cookie the portal sets `Secure` when the browser came over HTTPS (see
/// [`ClientAddressing::is_https`]), so that it is never sent over plain HTTP; a browser that came
/// over plain HTTP would not send a `Secure` cookie back, so it gets none.
pub async fn secure_cookies(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let https = state.auth.client.is_https(peer, request.headers());
    let mut response = next.run(request).await;
    if https {
        let cookies: Vec<HeaderValue> = response
            .headers_mut()
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| match v.to_str() {
                Ok(text) if !text.to_ascii_lowercase().contains("; secure") => {
                    HeaderValue::from_str(&format!("{text}; Secure")).unwrap_or_else(|_| v.clone())
                }
                _ => v.clone(),
            })
            .collect();
        response.headers_mut().remove(header::SET_COOKIE);
        for c in cookies {
            response.headers_mut().append(header::SET_COOKIE, c);
        }
    }
    response
}

/// The client's address (see [`ClientAddressing::client_ip`]).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = peer(parts).unwrap_or(IpAddr::from([0, 0, 0, 0]));
        Ok(ClientIp(state.auth.client.client_ip(peer, &parts.headers)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn xff(values: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_static(v));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let net = ClientAddressing::new(vec!["10.0.0.0/8".parse().unwrap()], false);
        let spoofed = xff(&["203.0.113.7"]);
        // An untrusted peer: its header is ignored.
        assert_eq!(
            net.client_ip(ip("198.51.100.1"), &spoofed),
            ip("198.51.100.1")
        );
        // A trusted proxy: the client it saw.
        assert_eq!(net.client_ip(ip("10.0.0.2"), &spoofed), ip("203.0.113.7"));
        // What the client wrote itself (left of the address the proxy saw) proves nothing.
        let chain = xff(&["1.1.1.1, 203.0.113.7"]);
        assert_eq!(net.client_ip(ip("10.0.0.2"), &chain), ip("203.0.113.7"));
        // Two trusted proxies in a row, over two header lines, with ports.
        let two = xff(&["203.0.113.9:5555", "10.1.1.1"]);
        assert_eq!(net.client_ip(ip("10.0.0.2"), &two), ip("203.0.113.9"));
        // Garbage: the proxy itself.
        assert_eq!(
            net.client_ip(ip("10.0.0.2"), &xff(&["nonsense"])),
            ip("10.0.0.2")
        );
        // IPv4-mapped peers count as IPv4.
        assert_eq!(
            net.client_ip(ip("::ffff:10.0.0.2"), &spoofed),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn https_only_from_config_or_a_trusted_proxy() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        let net = ClientAddressing::new(vec!["10.0.0.0/8".parse().unwrap()], false);
        assert!(net.is_https(Some(ip("10.0.0.2")), &h));
        assert!(!net.is_https(Some(ip("192.0.2.1")), &h));
        assert!(!net.is_https(Some(ip("10.0.0.2")), &HeaderMap::new()));
        assert!(ClientAddressing::new(vec![], true).is_https(None, &HeaderMap::new()));
    }
}
