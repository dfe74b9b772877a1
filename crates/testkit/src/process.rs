//! Private server processes for tests that stop, kill or reconfigure a server:
//! they must not disturb the shared stack other tests are using.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::StackEnv;

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> Self {
        let p = std::env::temp_dir().join(crate::unique(prefix));
        std::fs::create_dir_all(&p).expect("temp dir");
        Self(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A server we start, stop (SIGTERM), kill (SIGKILL) and restart on the same port and data.
pub struct Server {
    name: String,
    program: PathBuf,
    pub args: Vec<String>,
    cwd: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

impl Server {
    pub fn new(
        name: &str,
        program: impl Into<PathBuf>,
        args: Vec<String>,
        cwd: &Path,
        port: u16,
    ) -> Self {
        Self {
            name: name.to_owned(),
            program: program.into(),
            args,
            cwd: cwd.to_owned(),
            port,
            child: None,
        }
    }

    /// A Nisshi broker on its own port, with sqlite storage in `dir` (data survives restarts).
    pub fn nisshi(dir: &Path) -> Self {
        Self::nisshi_with_storage(dir, "sqlite://nisshi.db")
    }

    /// A Nisshi broker keeping everything in memory: for benchmarks of our code, not of sqlite.
    pub fn nisshi_memory(dir: &Path) -> Self {
        Self::nisshi_with_storage(dir, "memory://nisshi/")
    }

    /// A Nisshi broker that tells clients to connect to `advertised_port` (a fault
    /// proxy's), so every client connection goes through the proxy.
    pub fn nisshi_behind(dir: &Path, advertised_port: u16) -> Self {
        Self::nisshi_advertising(dir, "sqlite://nisshi.db", Some(advertised_port))
    }

    fn nisshi_with_storage(dir: &Path, storage: &str) -> Self {
        Self::nisshi_advertising(dir, storage, None)
    }

    fn nisshi_advertising(dir: &Path, storage: &str, advertised_port: Option<u16>) -> Self {
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let advertised = format!("tcp://127.0.0.1:{}", advertised_port.unwrap_or(port));
        let args = [
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &advertised,
            "--storage-engine",
            storage,
            "--group-initial-rebalance-delay",
            "0s",
            "--silent",
        ];
        let program = StackEnv::get().var("IOT_BRIDGE_NISSHI_BIN").to_owned();
        Self::new(
            "nisshi",
            program,
            args.iter().map(|s| (*s).to_owned()).collect(),
            dir,
            port,
        )
    }

    /// A SecantusDB MongoDB server on its own port, with its data in `dir`.
    pub fn secantus(dir: &Path) -> Self {
        let port = free_port();
        let data = dir.join("data").display().to_string();
        let args = [
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--storage-path",
            &data,
            "--cache-size",
            "128M",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let program = StackEnv::get().var("IOT_BRIDGE_SECANTUS_BIN").to_owned();
        Self::new("secantus", program, args, dir, port)
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts it and waits (20 s at most) until its port accepts connections.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.cwd.join(format!("{}.log", self.name)))
            .expect("log file");
        let child = Command::new(&self.program)
            .args(&self.args)
            .current_dir(&self.cwd)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {} ({}): {e}", self.name, self.program.display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "{} did not open port {} within 20 s",
                self.name,
                self.port
            );
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "{} exited at start-up with {status}; see {}",
                    self.name,
                    self.cwd.display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then wait for exit (SIGKILL after 15 s).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-CONT", &child.id().to_string()])
            .status();
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: a crash, with no chance to flush or say goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the process keeps its sockets open and answers nothing (a hung server).
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT after [`Server::pause`].
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let ok = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {} ({pid})", self.name);
    }

    pub fn restart(&mut self) {
        self.stop();
        self.start();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}
