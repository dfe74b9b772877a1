//! A TCP fault proxy for tests: put it between a client and a real server, then
//! pass, delay, black-hole or reset the traffic on command.
//!
//! - `Pass`: bytes flow both ways.
//! - `Delay(d)`: every chunk waits `d` before it is forwarded.
//! - `BlackHole`: connections stay open, new ones are accepted, and nothing is
//!   forwarded: a peer that is "up" but never answers (a stuck server, a dropped
//!   route). Held bytes flow again once the mode returns to `Pass`.
//! - `Reset`: every open connection is reset (RST) and new ones are reset at once.
//! - [`FaultProxy::corrupt_next`]: flips one byte in the middle of the next large
//!   chunk from the server (a Kafka fetch response's record data, say), once.
//!
//! It runs on its own thread and runtime, so a test that blocks its own threads
//! cannot starve it. A Kafka client only goes through it when the broker
//! advertises the proxy's port; a MongoDB client needs `directConnection=true`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Only chunks this large are corrupted: a Kafka fetch response with record data,
/// not a small metadata or heartbeat answer.
const CORRUPT_MIN_CHUNK: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pass,
    Delay(Duration),
    BlackHole,
    Reset,
}

pub struct FaultProxy {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    corrupt: Arc<AtomicU8>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub fn start(upstream: SocketAddr) -> Self {
        Self::start_on(0, upstream)
    }

    /// Listens on `port` (0: any free one) and forwards to `upstream`.
    pub fn start_on(port: u16, upstream: SocketAddr) -> Self {
        let std_listener =
            std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind the fault proxy");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("proxy address");
        let (mode, rx) = watch::channel(Mode::Pass);
        let corrupt = Arc::new(AtomicU8::new(CORRUPT_OFF));
        let armed = Arc::clone(&corrupt);
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(format!("fault-proxy-{}", addr.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("proxy runtime");
                rt.block_on(async move {
                    let listener = TcpListener::from_std(std_listener).expect("proxy listener");
                    tokio::select! {
                        () = accept_loop(listener, upstream, rx, armed) => {}
                        _ = stopped => {}
                    }
                });
            })
            .expect("proxy thread");
        Self {
            addr,
            mode,
            corrupt,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    /// Flips one byte in the middle of the next server chunk of at least 16 KiB: a
    /// batch corrupted in transit.
    pub fn corrupt_next(&self) {
        self.corrupt.store(CORRUPT_ONCE, Ordering::SeqCst);
    }

    /// Whether the corruption armed by [`FaultProxy::corrupt_next`] has happened.
    pub fn corrupted(&self) -> bool {
        self.corrupt.load(Ordering::SeqCst) == CORRUPT_OFF
    }

    /// Flips a byte in every server chunk of at least 16 KiB while on: a batch
    /// corrupted where it is stored, however often it is read.
    pub fn corrupt_always(&self, on: bool) {
        let state = if on { CORRUPT_ALWAYS } else { CORRUPT_OFF };
        self.corrupt.store(state, Ordering::SeqCst);
    }

    pub fn mode(&self) -> Mode {
        *self.mode.borrow()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    mode: watch::Receiver<Mode>,
    corrupt: Arc<AtomicU8>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(connection(
            client,
            upstream,
            mode.clone(),
            Arc::clone(&corrupt),
        ));
    }
}

/// Resets the socket: SO_LINGER 0, then close, sends RST instead of FIN.
fn reset(s: TcpStream) {
    let _ = s.set_zero_linger();
    drop(s);
}

async fn connection(
    client: TcpStream,
    upstream: SocketAddr,
    mut mode: watch::Receiver<Mode>,
    corrupt: Arc<AtomicU8>,
) {
    // A new connection waits while the proxy black-holes, and is reset in Reset.
    loop {
        match *mode.borrow_and_update() {
            Mode::Reset => return reset(client),
            Mode::BlackHole => {}
            Mode::Pass | Mode::Delay(_) => break,
        }
        if mode.changed().await.is_err() {
            return;
        }
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        return reset(client);
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    // Each pump ends when its side closes or the proxy resets; dropping the halves closes both sockets.
    tokio::join!(
        pump(cr, sw, mode.clone(), None),
        pump(sr, cw, mode, Some(corrupt))
    );
}

/// Forwards one direction until either side closes or the proxy resets.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
    corrupt: Option<Arc<AtomicU8>>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => {
                    let _ = to.shutdown().await;
                    return;
                }
                Ok(n) => n,
            },
            changed = mode.changed() => {
                if changed.is_err() { return; }
                if *mode.borrow_and_update() == Mode::Reset {
                    return reset_halves(&from, &to);
                }
                continue;
            }
        };
        // Hold the chunk until the mode lets it through.
        loop {
            let current = *mode.borrow_and_update();
            match current {
                Mode::Pass => break,
                Mode::Delay(d) => {
                    tokio::time::sleep(d).await;
                    break;
                }
                Mode::Reset => return reset_halves(&from, &to),
                Mode::BlackHole => {
                    if mode.changed().await.is_err() {
                        return;
                    }
                }
            }
        }
        if n >= CORRUPT_MIN_CHUNK && corrupt.as_ref().is_some_and(|c| corrupt_now(c)) {
            buf[n / 2] ^= 0xFF;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

const CORRUPT_OFF: u8 = 0;
const CORRUPT_ONCE: u8 = 1;
const CORRUPT_ALWAYS: u8 = 2;

/// Whether to corrupt this chunk; a one-shot corruption is spent here.
fn corrupt_now(state: &AtomicU8) -> bool {
    state
        .compare_exchange(
            CORRUPT_ONCE,
            CORRUPT_OFF,
            Ordering::SeqCst,
            Ordering::SeqCst,
        )
        .is_ok()
        || state.load(Ordering::SeqCst) == CORRUPT_ALWAYS
}

/// SO_LINGER 0 on both sockets this pump touches (the other pump holds their other
/// halves): when the halves are dropped, both peers get a RST instead of a FIN.
fn reset_halves(from: &OwnedReadHalf, to: &OwnedWriteHalf) {
    let _ = from.as_ref().set_zero_linger();
    let _ = to.as_ref().set_zero_linger();
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn roundtrip(s: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
        s.write_all(b"ping").await.ok()?;
        let mut buf = [0u8; 4];
        match tokio::time::timeout(within, s.read_exact(&mut buf)).await {
            Ok(Ok(_)) => Some(buf.to_vec()),
            _ => None,
        }
    }

    #[tokio::test]
    async fn passes_holds_then_releases_and_resets() {
        let proxy = FaultProxy::start(echo_server().await);
        let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(
            roundtrip(&mut c, Duration::from_secs(5)).await.as_deref(),
            Some(&b"ping"[..])
        );

        proxy.set(Mode::BlackHole);
        assert_eq!(
            roundtrip(&mut c, Duration::from_millis(300)).await,
            None,
            "black hole: no answer"
        );
        proxy.set(Mode::Pass);
        let mut buf = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut buf))
            .await
            .expect("held bytes flow again after Pass")
            .unwrap();

        proxy.set(Mode::Reset);
        let mut buf = [0u8; 4];
        let r = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
            .await
            .expect("reset is immediate");
        assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
        // A new connection is reset too: at connect, or at its first exchange.
        if let Ok(mut fresh) = TcpStream::connect(proxy.addr()).await {
            assert_eq!(roundtrip(&mut fresh, Duration::from_secs(2)).await, None);
        }
        proxy.set(Mode::Pass);
        let mut again = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(
            roundtrip(&mut again, Duration::from_secs(5))
                .await
                .as_deref(),
            Some(&b"ping"[..]),
            "Pass again: new connections flow"
        );
    }
}
