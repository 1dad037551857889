//! A private `nats-server -js` per fixture.

use std::io::Write;
use std::net::{Ipv4Addr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tempfile::TempDir;

use crate::bins::find_program;
use crate::ports::free_port;
use crate::process::{http_client, log_stdio, log_tail, spawn_tied, stop_child};
use crate::scratch::fixture_dir;

const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// Written to the log before each run, which all append to one file.
const RUN_MARKER: &str = "=== testkit: starting";

/// A `nats-server` with JetStream, on a free port with a temp store dir.
///
/// Dropping it kills the server and removes the store.
pub struct NatsServer {
    program: PathBuf,
    port: u16,
    monitor_port: u16,
    // Holds the JetStream store and nats.log; removed on drop.
    dir: TempDir,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts a fresh server and waits until JetStream is up.
    pub async fn start() -> anyhow::Result<NatsServer> {
        let program = find_program("nats-server", &["/usr/sbin", "/usr/bin", "/usr/local/bin"]).context(
            "nats-server not found on PATH or in /usr/sbin, /usr/bin, /usr/local/bin; \
                 install it (Debian/Ubuntu: `apt-get install nats-server`)",
        )?;
        let dir = fixture_dir("vigil-nats-", &std::env::temp_dir())?;
        let mut server = NatsServer {
            program,
            port: 0,
            monitor_port: 0,
            dir,
            child: None,
        };
        // A free port can be taken by someone else before the server binds
        // it; then try again with new ports.
        let mut attempt = 0;
        loop {
            attempt += 1;
            server.port = free_port();
            server.monitor_port = free_port();
            match server.launch().await {
                Ok(()) => return Ok(server),
                Err(e) if attempt < 3 && server.port_clash() => {
                    tracing::debug!("nats-server port clash, retrying: {e:#}");
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `nats://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The subjects of every client subscription the server holds now (its
    /// monitoring endpoint `/subsz`), one entry per subscription.
    pub async fn subscribed_subjects(&self) -> anyhow::Result<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct Subsz {
            #[serde(default)]
            subscriptions_list: Vec<Sub>,
        }
        #[derive(serde::Deserialize)]
        struct Sub {
            subject: String,
        }
        let url = format!("http://127.0.0.1:{}/subsz?subs=1&limit=100000", self.monitor_port);
        let subsz: Subsz = http_client()?
            .get(&url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(subsz.subscriptions_list.into_iter().map(|s| s.subject).collect())
    }

    /// Kills the server (SIGKILL, like a crash) to simulate "NATS is down".
    /// The store dir is kept for [`NatsServer::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, libc::SIGKILL, Duration::ZERO);
        }
    }

    /// Starts the server again on the same port with the same store.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.launch().await
    }

    /// The server's log so far (all runs), for failure messages.
    pub fn log_tail(&self, n: usize) -> String {
        log_tail(&self.log_path(), n)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("nats.log")
    }

    async fn launch(&mut self) -> anyhow::Result<()> {
        let log_path = self.log_path();
        let (mut out, err) = log_stdio(&log_path)?;
        writeln!(out, "{RUN_MARKER} nats-server on port {}", self.port)?;

        let mut cmd = Command::new(&self.program);
        cmd.arg("-a")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-m")
            .arg(self.monitor_port.to_string())
            .arg("-js")
            .arg("-sd")
            .arg(self.dir.path().join("store"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = spawn_tied(cmd).with_context(|| format!("cannot run {}", self.program.display()))?;
        self.child = Some(child);

        if let Err(e) = self.wait_ready().await {
            self.stop();
            return Err(e.context(format!(
                "nats-server did not start (log {}):\n{}",
                log_path.display(),
                self.log_tail(30)
            )));
        }
        Ok(())
    }

    /// Ready = the monitor's healthz says JetStream is up and the client
    /// port accepts connections (the monitor starts listening first).
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let client = http_client()?;
        let health = format!("http://127.0.0.1:{}/healthz?js-enabled-only=true", self.monitor_port);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!("nats-server exited with {status}");
                }
            }
            let healthy = matches!(
                client.get(&health).send().await,
                Ok(r) if r.status().is_success()
            );
            if healthy
                && TcpStream::connect_timeout(&(Ipv4Addr::LOCALHOST, self.port).into(), Duration::from_secs(1)).is_ok()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("nats-server not ready after {READY_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether the latest run failed because its port was taken.
    fn port_clash(&self) -> bool {
        let log = self.log_tail(30);
        let latest = log.rsplit(RUN_MARKER).next().unwrap_or_default();
        latest.contains("address already in use")
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}
