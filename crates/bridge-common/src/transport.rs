//! Which connections may go without TLS. Decided from parsed hosts, never from text:
//! an unencrypted or unverified connection is allowed only in local mode
//! (`BRIDGE_LOCAL_MODE=1`), and then only to a loopback address, `localhost`, or a host
//! the user names in `BRIDGE_LOCAL_HOSTS` (a compose network's service names, say).

use std::net::IpAddr;

/// The user's opt-in to unencrypted connections, and where it applies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalMode {
    enabled: bool,
    /// Lower-cased, without a trailing dot.
    hosts: Vec<String>,
}

impl LocalMode {
    pub fn new(enabled: bool, hosts: &[String]) -> Self {
        Self {
            enabled,
            hosts: hosts
                .iter()
                .map(|h| normalize(h))
                .filter(|h| !h.is_empty())
                .collect(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Whether `host` (a bare host: no port, IPv6 without brackets) may be reached
    /// without TLS.
    pub fn allows(&self, host: &str) -> bool {
        let host = normalize(host);
        self.enabled && (is_loopback(&host) || self.hosts.contains(&host))
    }
}

fn normalize(host: &str) -> String {
    host.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// A literal loopback address (127.0.0.0/8, ::1, ::ffff:127.x.y.z) or `localhost`.
/// A name that merely starts with "127." or ends in "localhost" is not.
pub fn is_loopback(host: &str) -> bool {
    let host = normalize(host);
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(&host);
    match bare.parse::<IpAddr>() {
        Ok(ip) => ip.to_canonical().is_loopback(),
        Err(_) => bare == "localhost",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a host[:port] address")]
pub struct BadAddress(pub String);

/// The hosts of a Kafka bootstrap list (`host:port,[::1]:9092,SSL://host:port`).
pub fn bootstrap_hosts(servers: &str) -> Result<Vec<String>, BadAddress> {
    servers
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|entry| {
            let bad = || BadAddress(entry.to_owned());
            let address = entry.split_once("://").map_or(entry, |(_, rest)| rest);
            let host = if let Some(rest) = address.strip_prefix('[') {
                let (host, after) = rest.split_once(']').ok_or_else(bad)?;
                if !(after.is_empty() || after.starts_with(':')) {
                    return Err(bad());
                }
                host
            } else {
                match address.rsplit_once(':') {
                    Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
                    Some(_) => return Err(bad()),
                    None => address,
                }
            };
            if host.is_empty()
                || host.contains(['/', '@', ' '])
                || host.contains(':') && !address.starts_with('[')
            {
                return Err(bad());
            }
            Ok(host.to_owned())
        })
        .collect::<Result<Vec<_>, _>>()
        .and_then(|hosts| {
            if hosts.is_empty() {
                Err(BadAddress(servers.to_owned()))
            } else {
                Ok(hosts)
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_a_parsed_address_or_localhost_never_a_prefix() {
        for host in [
            "127.0.0.1",
            "127.8.9.10",
            "::1",
            "[::1]",
            "::ffff:127.0.0.1",
            "localhost",
            "LOCALHOST",
            "localhost.",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "127.db.example.com",
            "127.0.0.1.nip.io",
            "localhost.example.com",
            "mylocalhost",
            "10.0.0.1",
            "0.0.0.0",
            "::",
            "[::2]",
            "db",
            "",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn local_mode_allows_loopback_and_listed_hosts_only() {
        let off = LocalMode::new(false, &["kafka".into()]);
        assert!(!off.allows("127.0.0.1") && !off.allows("kafka"));
        let on = LocalMode::new(true, &["kafka".into(), " Mongo. ".into()]);
        assert!(on.allows("127.0.0.1") && on.allows("localhost") && on.allows("::1"));
        assert!(on.allows("kafka") && on.allows("KAFKA") && on.allows("mongo"));
        assert!(!on.allows("kafka.example.com") && !on.allows("db.internal"));
        assert!(!LocalMode::new(true, &[]).allows("kafka"));
    }

    #[test]
    fn bootstrap_lists_are_parsed_into_hosts() {
        let hosts = bootstrap_hosts("a:9092, [::1]:9093,SASL_SSL://b.example.com:9094,c").unwrap();
        assert_eq!(hosts, ["a", "::1", "b.example.com", "c"]);
        for bad in [
            "", " , ", ":9092", "a:b", "[::1", "[::1]x", "::1:9092", "u@h:1",
        ] {
            assert!(bootstrap_hosts(bad).is_err(), "{bad:?}");
        }
    }
}
