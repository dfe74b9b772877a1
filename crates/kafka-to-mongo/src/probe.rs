//! `kafka-to-mongo healthcheck`: what `curl -f http://127.0.0.1:$HEALTH_PORT/healthz` does,
//! for a container image with no shell and no curl (the ECS health check runs it). It reads
//! only HEALTH_PORT and HEALTH_BIND, so it works with or without the writer's other settings.

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// ECS gives a health check 5 s by default; answer well before.
const TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{name}={value:?} is not {expected}")]
    Setting {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("GET http://{addr}/healthz: {source}")]
    Io {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("GET http://{addr}/healthz answered {status:?}")]
    Unhealthy { addr: SocketAddr, status: String },
}

/// Where the writer's health server listens, as seen from inside the same container.
pub fn target(port: Option<&str>, bind: Option<&str>) -> Result<SocketAddr, ProbeError> {
    let port = match port {
        None => 8080,
        Some(p) => p.parse::<u16>().map_err(|_| ProbeError::Setting {
            name: "HEALTH_PORT",
            value: p.to_owned(),
            expected: "a port number",
        })?,
    };
    let ip = match bind {
        None => IpAddr::V4(Ipv4Addr::LOCALHOST),
        Some(b) => match b.parse::<IpAddr>() {
            Ok(IpAddr::V4(ip)) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            Ok(IpAddr::V6(ip)) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            Ok(ip) => ip,
            Err(_) => {
                return Err(ProbeError::Setting {
                    name: "HEALTH_BIND",
                    value: b.to_owned(),
                    expected: "an IP address",
                });
            }
        },
    };
    Ok(SocketAddr::new(ip, port))
}

/// Ok when `/healthz` answers 2xx within the timeout.
pub fn check(addr: SocketAddr) -> Result<(), ProbeError> {
    let io = |source| ProbeError::Io { addr, source };
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(io)?;
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
    stream
        .write_all(format!("GET /healthz HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .map_err(io)?;
    // The status line is all it needs; the body names the reason when unhealthy.
    let mut head = Vec::with_capacity(512);
    stream.take(4096).read_to_end(&mut head).map_err(io)?;
    let text = String::from_utf8_lossy(&head);
    let status = text.lines().next().unwrap_or_default().to_owned();
    let code = status
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok());
    match code {
        Some(200..=299) => Ok(()),
        _ => Err(ProbeError::Unhealthy {
            addr,
            status: text.chars().take(300).collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_follows_health_port_and_bind() {
        let t = |p, b| target(p, b).map(|a| a.to_string());
        assert_eq!(t(None, None).unwrap(), "127.0.0.1:8080");
        assert_eq!(t(Some("9000"), Some("0.0.0.0")).unwrap(), "127.0.0.1:9000");
        assert_eq!(t(Some("9000"), Some("::")).unwrap(), "[::1]:9000");
        assert_eq!(t(Some("9000"), Some("10.1.2.3")).unwrap(), "10.1.2.3:9000");
        assert!(
            t(Some("http"), None)
                .unwrap_err()
                .to_string()
                .contains("HEALTH_PORT")
        );
        assert!(
            t(None, Some("any"))
                .unwrap_err()
                .to_string()
                .contains("HEALTH_BIND")
        );
    }

    /// A real listener answering each status in turn (no writer needed).
    #[test]
    fn only_a_2xx_answer_is_healthy_and_nothing_listening_is_unhealthy() {
        for (answer, healthy) in [
            ("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", true),
            (
                "HTTP/1.1 503 Service Unavailable\r\n\r\nstalled partitions: 3",
                false,
            ),
            ("garbage", false),
        ] {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let server = std::thread::spawn(move || {
                let (mut s, _) = listener.accept().unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                s.write_all(answer.as_bytes()).unwrap();
            });
            assert_eq!(check(addr).is_ok(), healthy, "{answer}");
            server.join().unwrap();
        }
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        assert!(matches!(check(closed), Err(ProbeError::Io { .. })));
    }
}
