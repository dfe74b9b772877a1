//! The MongoDB transport rule, from the driver's own parse of the connection string
//! (`ConnectionString::parse` needs no DNS, so `mongodb+srv` URIs are checked offline,
//! before any connection): TLS on and certificates verified, unless local mode allows
//! every host ([`LocalMode`]). And what every call needs: a deadline, the server's code, text
//! without credentials ([`deadline`], [`CallError`]).

mod call;

pub use call::{CallError, DUPLICATE_KEY, NAMESPACE_EXISTS, code_of, deadline, redact};
use mongodb::options::{ConnectionString, HostInfo, ServerAddress, Tls};

use crate::transport::LocalMode;

const LOCAL_RULE: &str =
    "allowed only with BRIDGE_LOCAL_MODE=1 and a loopback host or one listed in BRIDGE_LOCAL_HOSTS";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MongoTransportError {
    /// The driver's reason; it never echoes the credentials.
    #[error("the MongoDB URI is not a valid connection string: {0}")]
    BadUri(String),
    #[error(
        "MongoDB at {host} without TLS: set tls=true in the URI (mongodb+srv implies it); an unencrypted connection is {LOCAL_RULE}"
    )]
    NoTls { host: String },
    #[error(
        "the MongoDB URI sets {flag}=true, which turns off certificate checks for {host}: {LOCAL_RULE}"
    )]
    Unverified { flag: &'static str, host: String },
}

pub fn check_uri(uri: &str, local: &LocalMode) -> Result<(), MongoTransportError> {
    let cs = ConnectionString::parse(uri)
        .map_err(|e| MongoTransportError::BadUri(e.kind.to_string()))?;
    let srv = matches!(cs.host_info, HostInfo::DnsRecord(_));
    // A Unix socket never leaves the machine; a host form this rule does not know fails closed.
    let hosts: Vec<&str> = match &cs.host_info {
        HostInfo::DnsRecord(name) => vec![name.as_str()],
        HostInfo::HostIdentifiers(addresses) => addresses
            .iter()
            .filter_map(|a| match a {
                ServerAddress::Tcp { host, .. } => Some(host.as_str()),
                ServerAddress::Unix { .. } => None,
                _ => Some("(an unknown address form)"),
            })
            .collect(),
        _ => return Err(MongoTransportError::BadUri("unsupported host list".into())),
    };
    let tls_on = match &cs.tls {
        Some(Tls::Enabled(_)) => true,
        Some(Tls::Disabled) => false,
        None => srv,
    };
    let unverified = match &cs.tls {
        Some(Tls::Enabled(o)) if o.allow_invalid_certificates == Some(true) => {
            Some(if cs.tls_insecure() == Some(true) {
                "tlsInsecure"
            } else {
                "tlsAllowInvalidCertificates"
            })
        }
        _ => None,
    };
    for host in hosts.into_iter().filter(|h| !local.allows(h)) {
        if !tls_on {
            return Err(MongoTransportError::NoTls {
                host: host.to_owned(),
            });
        }
        if let Some(flag) = unverified {
            return Err(MongoTransportError::Unverified {
                flag,
                host: host.to_owned(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(enabled: bool, hosts: &[&str]) -> LocalMode {
        let hosts: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
        LocalMode::new(enabled, &hosts)
    }

    /// (URI, local mode, listed hosts, expected: Ok or the rule it breaks)
    type Row = (
        &'static str,
        bool,
        &'static [&'static str],
        Result<(), MongoTransportError>,
    );

    #[test]
    fn the_uri_table() {
        use MongoTransportError as E;
        let no_tls = |h: &str| Err(E::NoTls { host: h.into() });
        let insecure = |f: &'static str, h: &str| {
            Err(E::Unverified {
                flag: f,
                host: h.into(),
            })
        };
        let table: Vec<Row> = vec![
            // TLS on and verified: fine anywhere, local mode or not.
            (
                "mongodb+srv://u:p@cluster0.example.net/",
                false,
                &[],
                Ok(()),
            ),
            (
                "mongodb://db.example.com:27017/?tls=true",
                false,
                &[],
                Ok(()),
            ),
            ("mongodb://db.example.com/?ssl=true", false, &[], Ok(())),
            (
                "mongodb://a.example.com,b.example.com/?tls=true&replicaSet=rs0",
                false,
                &[],
                Ok(()),
            ),
            // Text that merely looks safe is not.
            (
                "mongodb://u:p@127.db.example.com",
                true,
                &[],
                no_tls("127.db.example.com"),
            ),
            (
                "mongodb://u:tls=true@db.example.com",
                false,
                &[],
                no_tls("db.example.com"),
            ),
            (
                "mongodb://localhost.example.com:27017",
                true,
                &[],
                no_tls("localhost.example.com"),
            ),
            (
                "mongodb+srv://u:p@cluster0.example.net/?tls=false",
                false,
                &[],
                no_tls("cluster0.example.net"),
            ),
            (
                "mongodb+srv://u:p@cluster0.example.net/?tls=false",
                true,
                &[],
                no_tls("cluster0.example.net"),
            ),
            // Certificate checks off: refused off local hosts, whatever the mode.
            (
                "mongodb://db.example.com/?tls=true&tlsInsecure=true",
                false,
                &[],
                insecure("tlsInsecure", "db.example.com"),
            ),
            (
                "mongodb://db.example.com/?tlsAllowInvalidCertificates=true",
                true,
                &[],
                insecure("tlsAllowInvalidCertificates", "db.example.com"),
            ),
            (
                "mongodb+srv://c.example.net/?tlsInsecure=true",
                false,
                &[],
                insecure("tlsInsecure", "c.example.net"),
            ),
            (
                "mongodb://db.example.com/?tls=true&tlsAllowInvalidCertificates=false",
                false,
                &[],
                Ok(()),
            ),
            // Unencrypted needs local mode, and then only to loopback or listed hosts.
            (
                "mongodb://127.0.0.1:27017/?directConnection=true",
                false,
                &[],
                no_tls("127.0.0.1"),
            ),
            (
                "mongodb://127.0.0.1:27017/?directConnection=true",
                true,
                &[],
                Ok(()),
            ),
            ("mongodb://u:p@localhost:27017", true, &[], Ok(())),
            ("mongodb://[::1]:27017", true, &[], Ok(())),
            (
                "mongodb://localhost:27017,db.internal:27017",
                true,
                &[],
                no_tls("db.internal"),
            ),
            (
                "mongodb://db.internal:27017",
                true,
                &[],
                no_tls("db.internal"),
            ),
            ("mongodb://mongo:27017", true, &["mongo"], Ok(())),
            ("mongodb://mongo:27017", false, &["mongo"], no_tls("mongo")),
            ("mongodb://localhost/?tlsInsecure=true", true, &[], Ok(())),
            ("mongodb://%2Ftmp%2Fmongodb-27017.sock", false, &[], Ok(())),
        ];
        for (uri, enabled, hosts, expected) in table {
            assert_eq!(
                check_uri(uri, &local(enabled, hosts)),
                expected,
                "{uri} local={enabled} {hosts:?}"
            );
        }
    }

    #[test]
    fn a_bad_uri_is_refused_without_echoing_its_password() {
        let err = check_uri("mongodb://user:s3cr%t@db.example.com", &local(true, &[])).unwrap_err();
        assert!(matches!(err, MongoTransportError::BadUri(_)), "{err}");
        assert!(!err.to_string().contains("s3cr"), "{err}");
        assert!(matches!(
            check_uri("http://db.example.com", &local(true, &[])),
            Err(MongoTransportError::BadUri(_))
        ));
    }
}
