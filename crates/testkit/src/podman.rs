//! The writer's container image under podman (`infra/image/podman`: the project's settings,
//! podman installed when missing). The image is built by `make image-amd64` before the tests.

use std::process::{Command, Output};

/// The image the tests run: IOT_BRIDGE_IMAGE, or the development tag `make image` sets.
pub fn image() -> String {
    std::env::var("IOT_BRIDGE_IMAGE")
        .unwrap_or_else(|_| "iot-bridge/kafka-to-mongo:dev-amd64".into())
}

pub fn podman(args: &[&str]) -> Output {
    Command::new(crate::workspace_root().join("infra/image/podman"))
        .args(args)
        .output()
        .expect("run infra/image/podman")
}

/// `podman` that must succeed; returns its stdout.
pub fn podman_ok(args: &[&str]) -> String {
    let out = podman(args);
    assert!(
        out.status.success(),
        "podman {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A started container, removed (forcibly) when dropped.
pub struct Container {
    pub name: String,
}

impl Container {
    /// `podman run -d --name NAME <args...>`: fails the test if the image is missing.
    pub fn run(args: &[&str]) -> Self {
        let name = crate::unique("writer-image");
        let mut all = vec!["run", "-d", "--name", &name];
        all.extend_from_slice(args);
        podman_ok(&all);
        Self { name }
    }

    pub fn exec(&self, cmd: &[&str]) -> Output {
        let mut all = vec!["exec", self.name.as_str()];
        all.extend_from_slice(cmd);
        podman(&all)
    }

    pub fn logs(&self) -> String {
        let out = podman(&["logs", &self.name]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// SIGTERM, up to `grace_s` for it to exit, then its exit code.
    pub fn stop(&self, grace_s: u32) -> i32 {
        podman_ok(&["stop", "-t", &grace_s.to_string(), &self.name]);
        podman_ok(&["inspect", "--format", "{{.State.ExitCode}}", &self.name])
            .parse()
            .expect("exit code")
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman(&["rm", "-f", "-t", "0", &self.name]);
    }
}
