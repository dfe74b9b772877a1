//! Who may use the console, decided from parsed values only: the listen address, the
//! Host and Origin headers, the session cookie and the CSRF token. Pure, so every rule
//! is unit-tested; `mod.rs` applies them to each request.

use std::net::SocketAddr;

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

pub const SESSION_COOKIE: &str = "iot_console_session";

/// Why the console refuses to start.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    #[error(
        "--listen {0} is not a loopback address: set --token (or CONSOLE_TOKEN) so that every request must carry it"
    )]
    TokenRequired(SocketAddr),
    #[error("--token must be at least 16 characters (it guards the console on the network)")]
    TokenTooShort,
}

/// Loopback needs no token; any other address (0.0.0.0 and :: included) does.
pub fn check_start(listen: SocketAddr, token: Option<&str>) -> Result<(), StartError> {
    match token {
        Some(t) if t.chars().count() < 16 => Err(StartError::TokenTooShort),
        Some(_) => Ok(()),
        None if listen.ip().is_loopback() => Ok(()),
        None => Err(StartError::TokenRequired(listen)),
    }
}

/// The secrets a running console holds: the session value the login cookie carries (a
/// digest, so the token itself never sits in the browser) and the CSRF token.
#[derive(Clone)]
pub struct Keys {
    session: Option<[u8; 32]>,
    csrf: String,
}

impl Keys {
    /// `nonce`: random bytes drawn at start, so a CSRF token is good for one run only.
    pub fn new(token: Option<&str>, nonce: [u8; 32]) -> Self {
        let session = token.map(|t| digest(&[b"session", t.as_bytes()]));
        let csrf = hex::encode(digest(&[b"csrf", &nonce]));
        Self { session, csrf }
    }

    pub fn needs_login(&self) -> bool {
        self.session.is_some()
    }

    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    /// The cookie value a correct login sets, or None when the token is wrong.
    pub fn login(&self, offered: &str) -> Option<String> {
        let want = self.session?;
        let got = digest(&[b"session", offered.as_bytes()]);
        bool::from(want.ct_eq(&got)).then(|| hex::encode(want))
    }

    /// Whether a request may see the console: no token configured, or the session
    /// cookie, or `Authorization: Bearer <token>` (for scripts).
    pub fn admits(&self, cookie: Option<&str>, bearer: Option<&str>) -> bool {
        let Some(want) = self.session else {
            return true;
        };
        let by_cookie = cookie
            .and_then(|c| hex::decode(c).ok())
            .is_some_and(|c| bool::from(c.as_slice().ct_eq(&want)));
        let by_bearer =
            bearer.is_some_and(|b| bool::from(digest(&[b"session", b.as_bytes()]).ct_eq(&want)));
        by_cookie || by_bearer
    }

    pub fn csrf_ok(&self, offered: Option<&str>) -> bool {
        offered.is_some_and(|o| bool::from(o.as_bytes().ct_eq(self.csrf.as_bytes())))
    }
}

/// The value of cookie `name` in a Cookie header.
pub fn cookie<'a>(header: Option<&'a str>, name: &str) -> Option<&'a str> {
    header?
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn digest(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    h.finalize().into()
}

/// The host names (with port) a request may address: what the console listens on, its
/// loopback names when it listens on loopback or everywhere, and `--public-host` names.
/// A DNS-rebinding page addresses the console under the attacker's name: refused.
#[derive(Debug, Clone)]
pub struct Hosts(Vec<String>);

impl Hosts {
    pub fn new(listen: SocketAddr, public: &[String]) -> Self {
        let port = listen.port();
        let mut names = vec![host_port(&listen.ip().to_string(), port)];
        if listen.ip().is_loopback() || listen.ip().is_unspecified() {
            for n in ["localhost", "127.0.0.1", "::1"] {
                names.push(host_port(n, port));
            }
        }
        for p in public {
            let p = p.to_ascii_lowercase();
            let has_port = (!p.starts_with('[') && p.matches(':').count() == 1)
                || (p.starts_with('[') && p.contains("]:"));
            if has_port {
                names.push(p);
            } else {
                // A bare name: served directly, or behind a proxy on the default ports
                // (whose Host header then carries no port).
                for port in [port, 80, 443] {
                    names.push(host_port(&p, port));
                }
                names.push(p);
            }
        }
        Self(names)
    }

    /// The Host header, compared exactly (case-insensitive), port included.
    pub fn host_ok(&self, host: Option<&str>) -> bool {
        host.is_some_and(|h| self.0.contains(&h.to_ascii_lowercase()))
    }

    /// A state-changing request must name its origin, and it must be the console.
    pub fn origin_ok(&self, origin: Option<&str>) -> bool {
        let Some(origin) = origin else { return false };
        let Ok(url) = url::Url::parse(origin) else {
            return false;
        };
        if !matches!(url.scheme(), "http" | "https") || url.path() != "/" && !url.path().is_empty()
        {
            return false;
        }
        let Some(host) = url.host_str() else {
            return false;
        };
        let port = url.port_or_known_default().unwrap_or(0);
        self.host_ok(Some(&host_port(
            host.trim_start_matches('[').trim_end_matches(']'),
            port,
        )))
    }
}

fn host_port(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_loopback_may_run_without_a_token() {
        assert_eq!(check_start(addr("127.0.0.1:8090"), None), Ok(()));
        assert_eq!(check_start(addr("[::1]:8090"), None), Ok(()));
        for a in ["0.0.0.0:8090", "[::]:8090", "10.0.0.5:8090"] {
            assert_eq!(
                check_start(addr(a), None),
                Err(StartError::TokenRequired(addr(a)))
            );
        }
        assert_eq!(
            check_start(addr("0.0.0.0:8090"), Some("0123456789abcdef")),
            Ok(())
        );
        assert_eq!(
            check_start(addr("0.0.0.0:8090"), Some("short")),
            Err(StartError::TokenTooShort)
        );
    }

    #[test]
    fn a_session_is_the_digest_of_the_token_and_nothing_else_admits() {
        let keys = Keys::new(Some("0123456789abcdef"), [7; 32]);
        assert!(keys.needs_login());
        assert_eq!(keys.login("wrong-token-wrong"), None);
        let cookie = keys.login("0123456789abcdef").unwrap();
        assert!(!cookie.contains("0123456789abcdef"));
        assert!(keys.admits(Some(&cookie), None));
        assert!(keys.admits(None, Some("0123456789abcdef")));
        assert!(!keys.admits(None, None));
        assert!(!keys.admits(Some("00"), None));
        assert!(!keys.admits(Some("not hex"), Some("0123456789abcdeF")));
        let open = Keys::new(None, [7; 32]);
        assert!(open.admits(None, None));
        assert_eq!(open.login("anything-at-all!"), None);
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let h = Some("a=1; iot_console_session=abc ; b=2");
        assert_eq!(cookie(h, SESSION_COOKIE), Some("abc"));
        assert_eq!(
            cookie(Some("iot_console_session_x=1"), SESSION_COOKIE),
            None
        );
        assert_eq!(cookie(None, SESSION_COOKIE), None);
    }

    #[test]
    fn the_csrf_token_is_per_run_and_checked_exactly() {
        let a = Keys::new(None, [1; 32]);
        let b = Keys::new(None, [2; 32]);
        assert_ne!(a.csrf(), b.csrf());
        assert!(a.csrf_ok(Some(a.csrf())));
        assert!(!a.csrf_ok(Some(b.csrf())));
        assert!(!a.csrf_ok(None));
        assert!(!a.csrf_ok(Some("")));
    }

    #[test]
    fn host_and_origin_must_name_the_console() {
        let hosts = Hosts::new(addr("127.0.0.1:8090"), &[]);
        assert!(hosts.host_ok(Some("127.0.0.1:8090")));
        assert!(hosts.host_ok(Some("LOCALHOST:8090")));
        assert!(hosts.host_ok(Some("[::1]:8090")));
        // DNS rebinding: the attacker's name resolving to 127.0.0.1.
        assert!(!hosts.host_ok(Some("evil.example:8090")));
        assert!(!hosts.host_ok(Some("127.0.0.1:8091")));
        assert!(!hosts.host_ok(Some("127.0.0.1")));
        assert!(!hosts.host_ok(None));
        assert!(hosts.origin_ok(Some("http://127.0.0.1:8090")));
        assert!(hosts.origin_ok(Some("http://localhost:8090")));
        assert!(!hosts.origin_ok(Some("http://evil.example:8090")));
        assert!(!hosts.origin_ok(Some("null")));
        assert!(!hosts.origin_ok(None));

        let public = Hosts::new(
            addr("0.0.0.0:8090"),
            &["console.example.net".into(), "ops.example.net:443".into()],
        );
        assert!(public.host_ok(Some("console.example.net:8090")));
        assert!(public.host_ok(Some("ops.example.net:443")));
        assert!(public.origin_ok(Some("https://ops.example.net")));
        assert!(public.host_ok(Some("console.example.net")));
        assert!(!public.host_ok(Some("console.example.net:9999")));
    }
}
