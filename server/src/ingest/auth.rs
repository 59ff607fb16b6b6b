//! Who may POST to a webhook source: the IP allow-list (with trusted
//! proxies' `X-Forwarded-For`) and the credentials (bearer, Optimizely's
//! keyAuth header, or Basic auth), each with one or two accepted secrets for
//! rotation. Secrets are compared in constant time over their hashes, so
//! neither content nor length leaks through timing.

use crate::config::{Secret, SourceAuth, SourceConfig};
use crate::error::ApiError;
use axum::http::{header, HeaderMap, HeaderName};
use base64::Engine;
use ipnet::IpNet;
use std::net::IpAddr;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// A configured source, ready to check requests.
#[derive(Debug)]
pub struct SourceGuard {
    pub name: Arc<str>,
    auth: Auth,
    allow_ips: Vec<IpNet>,
    trusted_proxies: Vec<IpNet>,
}

/// Credentials with secrets pre-hashed for constant-time comparison.
#[derive(Debug)]
enum Auth {
    None,
    Bearer(Vec<Digest>),
    Key {
        header: HeaderName,
        values: Vec<Digest>,
    },
    Basic {
        user: Digest,
        passwords: Vec<Digest>,
    },
}

#[derive(Clone, Copy)]
struct Digest([u8; 32]);

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Digest([redacted])")
    }
}

fn digest(bytes: &[u8]) -> Digest {
    Digest(*blake3::hash(bytes).as_bytes())
}

/// True if `given` matches any of `accepted`; every candidate is compared,
/// so timing does not tell which one (or whether any) matched.
fn matches_any(given: &[u8], accepted: &[Digest]) -> bool {
    let g = digest(given);
    accepted
        .iter()
        .fold(subtle::Choice::from(0), |acc, a| acc | g.0.ct_eq(&a.0))
        .into()
}

fn digests(secrets: &[Secret]) -> Vec<Digest> {
    secrets
        .iter()
        .map(|s| digest(s.expose().as_bytes()))
        .collect()
}

impl SourceGuard {
    pub fn new(name: &str, config: &SourceConfig) -> SourceGuard {
        let auth = match &config.auth {
            SourceAuth::None => Auth::None,
            SourceAuth::Bearer { secrets } => Auth::Bearer(digests(secrets)),
            SourceAuth::Key { header, secrets } => Auth::Key {
                // Validated when the configuration was loaded.
                header: HeaderName::from_bytes(header.as_bytes())
                    .expect("header name validated by Config"),
                values: digests(secrets),
            },
            SourceAuth::Basic {
                username,
                passwords,
            } => Auth::Basic {
                user: digest(username.as_bytes()),
                passwords: digests(passwords),
            },
        };
        SourceGuard {
            name: name.into(),
            auth,
            allow_ips: config.allow_ips.clone(),
            trusted_proxies: config.trusted_proxies.clone(),
        }
    }

    /// 403 unless the client address is allowed (when a list is set).
    pub fn check_ip(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Result<(), ApiError> {
        if self.allow_ips.is_empty() {
            return Ok(());
        }
        let client = peer.map(|p| self.client_ip(p, headers));
        match client {
            Some(ip) if self.allow_ips.iter().any(|n| n.contains(&ip)) => Ok(()),
            Some(ip) => Err(ApiError::Forbidden(format!(
                "address {ip} is not allowed to post to source {:?}",
                &*self.name
            ))),
            None => Err(ApiError::Forbidden(
                "the client address is unknown, and this source has an allow-list".into(),
            )),
        }
    }

    /// The client behind trusted proxies: walk `X-Forwarded-For` from the
    /// right, skipping trusted proxies; an untrusted peer is the client.
    fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let trusted = |ip: &IpAddr| self.trusted_proxies.iter().any(|n| n.contains(ip));
        if !trusted(&peer) {
            return peer;
        }
        let hops: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|s| s.trim().parse().ok())
            .collect();
        hops.iter()
            .rev()
            .find(|ip| !trusted(ip))
            .or(hops.first())
            .copied()
            .unwrap_or(peer)
    }

    /// 401 unless the request carries valid credentials. The error never
    /// says what was wrong with them.
    pub fn check_auth(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let ok = match &self.auth {
            Auth::None => true,
            Auth::Bearer(secrets) => headers
                .get(header::AUTHORIZATION)
                .and_then(|v| strip_scheme(v.as_bytes(), b"bearer"))
                .is_some_and(|token| matches_any(token, secrets)),
            Auth::Key { header, values } => headers
                .get(header)
                .is_some_and(|v| matches_any(v.as_bytes(), values)),
            Auth::Basic { user, passwords } => headers
                .get(header::AUTHORIZATION)
                .and_then(|v| strip_scheme(v.as_bytes(), b"basic"))
                .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
                .is_some_and(|decoded| {
                    let (u, p) = match decoded.iter().position(|b| *b == b':') {
                        Some(i) => (&decoded[..i], &decoded[i + 1..]),
                        None => (&decoded[..], &[][..]),
                    };
                    // Both halves are always compared.
                    let user_ok = matches_any(u, std::slice::from_ref(user));
                    let pass_ok = matches_any(p, passwords);
                    user_ok & pass_ok
                }),
        };
        if ok {
            Ok(())
        } else {
            Err(ApiError::Unauthorized)
        }
    }
}

/// `Scheme token` with a case-insensitive scheme.
fn strip_scheme<'a>(value: &'a [u8], scheme: &[u8]) -> Option<&'a [u8]> {
    let n = scheme.len();
    if value.len() > n + 1 && value[..n].eq_ignore_ascii_case(scheme) && value[n] == b' ' {
        Some(value[n + 1..].trim_ascii())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn guard(auth: SourceAuth, allow: &[&str], proxies: &[&str]) -> SourceGuard {
        SourceGuard::new(
            "t",
            &SourceConfig {
                auth,
                allow_ips: allow.iter().map(|s| s.parse().unwrap()).collect(),
                trusted_proxies: proxies.iter().map(|s| s.parse().unwrap()).collect(),
            },
        )
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn bearer_accepts_either_rotation_secret() {
        let g = guard(
            SourceAuth::Bearer {
                secrets: vec![Secret::new("old"), Secret::new("new")],
            },
            &[],
            &[],
        );
        assert!(g
            .check_auth(&headers(&[("authorization", "Bearer old")]))
            .is_ok());
        assert!(g
            .check_auth(&headers(&[("authorization", "bearer new")]))
            .is_ok());
        assert!(g
            .check_auth(&headers(&[("authorization", "Bearer ol")]))
            .is_err());
        assert!(g
            .check_auth(&headers(&[("authorization", "Bearer")]))
            .is_err());
        assert!(g
            .check_auth(&headers(&[("authorization", "Basic old")]))
            .is_err());
        assert!(g.check_auth(&headers(&[])).is_err());
    }

    #[test]
    fn key_auth_uses_the_configured_header() {
        let g = guard(
            SourceAuth::Key {
                header: "X-Opti-Key".into(),
                secrets: vec![Secret::new("k1")],
            },
            &[],
            &[],
        );
        assert!(g.check_auth(&headers(&[("x-opti-key", "k1")])).is_ok());
        assert!(g.check_auth(&headers(&[("x-opti-key", "k2")])).is_err());
        assert!(g
            .check_auth(&headers(&[("authorization", "Bearer k1")]))
            .is_err());
    }

    #[test]
    fn basic_auth_checks_user_and_password() {
        let g = guard(
            SourceAuth::Basic {
                username: "opti".into(),
                passwords: vec![Secret::new("pw:with:colons")],
            },
            &[],
            &[],
        );
        let enc = |s: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(s)
            )
        };
        assert!(g
            .check_auth(&headers(&[("authorization", &enc("opti:pw:with:colons"))]))
            .is_ok());
        assert!(g
            .check_auth(&headers(&[("authorization", &enc("other:pw:with:colons"))]))
            .is_err());
        assert!(g
            .check_auth(&headers(&[("authorization", &enc("opti:pw"))]))
            .is_err());
        assert!(g
            .check_auth(&headers(&[("authorization", &enc("opti"))]))
            .is_err());
        assert!(g
            .check_auth(&headers(&[("authorization", "Basic !!!")]))
            .is_err());
    }

    #[test]
    fn allow_list_and_trusted_proxies() {
        let g = guard(SourceAuth::None, &["193.169.180.1/32"], &["10.0.0.0/8"]);
        let opti: IpAddr = "193.169.180.1".parse().unwrap();
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        assert!(g.check_ip(Some(opti), &headers(&[])).is_ok());
        assert!(g
            .check_ip(Some("8.8.8.8".parse().unwrap()), &headers(&[]))
            .is_err());
        assert!(g.check_ip(None, &headers(&[])).is_err());
        // Via the proxy, the forwarded client counts.
        let via = headers(&[("x-forwarded-for", "6.6.6.6, 193.169.180.1")]);
        assert!(g.check_ip(Some(proxy), &via).is_ok());
        let spoof = headers(&[("x-forwarded-for", "193.169.180.1, 6.6.6.6")]);
        assert!(g.check_ip(Some(proxy), &spoof).is_err());
        // An untrusted peer's X-Forwarded-For is ignored.
        let direct = headers(&[("x-forwarded-for", "193.169.180.1")]);
        assert!(g
            .check_ip(Some("6.6.6.6".parse().unwrap()), &direct)
            .is_err());
        // No list: anyone.
        let open = guard(SourceAuth::None, &[], &[]);
        assert!(open.check_ip(None, &headers(&[])).is_ok());
    }

    #[test]
    fn debug_output_has_no_secrets() {
        let g = guard(
            SourceAuth::Key {
                header: "X-K".into(),
                secrets: vec![Secret::new("topsecret")],
            },
            &[],
            &[],
        );
        assert!(!format!("{g:?}").contains("topsecret"));
    }
}
