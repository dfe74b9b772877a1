//! A private broker that only accepts TLS and SCRAM-SHA-512 (the code path Confluent Cloud
//! uses, there with PLAIN, which the local broker does not offer): a self-signed
//! certificate for `localhost`/127.0.0.1 and one user.

use std::path::PathBuf;
use std::process::Command;

use rdkafka::ClientConfig;

use crate::StackEnv;
use crate::process::{Server, TempDir};

pub const USER: &str = "bridge";
pub const PASSWORD: &str = "s3cret-scram-password";

pub struct SecureBroker {
    pub server: Server,
    /// PEM of the certificate the broker presents (its own CA: self-signed).
    pub ca: PathBuf,
}

impl SecureBroker {
    pub fn start(dir: &TempDir) -> Self {
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let ok = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=localhost"])
            .args([
                "-addext",
                "subjectAltName=IP:127.0.0.1,DNS:localhost",
                "-keyout",
            ])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("openssl");
        assert!(
            ok.status.success(),
            "openssl: {}",
            String::from_utf8_lossy(&ok.stderr)
        );
        let mut server = Server::nisshi(dir.path());
        server.start();
        let created = Command::new(StackEnv::get().var("IOT_BRIDGE_NISSHI_BIN"))
            .args([
                "user",
                "create",
                "--broker",
                &format!("tcp://{}", server.address()),
            ])
            .args(["--mechanism", "scram512", USER, PASSWORD])
            .output()
            .expect("nisshi user create");
        assert!(
            created.status.success(),
            "user create: {}",
            String::from_utf8_lossy(&created.stderr)
        );
        server.stop();
        server.args.extend([
            "--authentication".into(),
            "--cert".into(),
            cert.display().to_string(),
            "--key".into(),
            key.display().to_string(),
        ]);
        server.start();
        Self { server, ca: cert }
    }

    /// A client configuration that gets in.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = crate::kafka::config();
        c.set("bootstrap.servers", self.server.address())
            .set("security.protocol", "SASL_SSL")
            .set("sasl.mechanisms", "SCRAM-SHA-512")
            .set("sasl.username", USER)
            .set("sasl.password", PASSWORD)
            .set("ssl.ca.location", self.ca.display().to_string());
        c
    }
}
