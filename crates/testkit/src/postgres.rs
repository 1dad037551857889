//! A private PostgreSQL cluster per fixture.

use std::ffi::CString;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, chown};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sqlx::Connection;
use tempfile::TempDir;

use crate::bins::{find_program, is_executable};
use crate::ports::free_port;
use crate::process::{log_stdio, log_tail, spawn_tied, stop_child};
use crate::scratch::fixture_dir;

const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Fast shutdown needs a moment to checkpoint; after that, SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);
const RUN_MARKER: &str = "=== testkit: starting";

/// A throwaway PostgreSQL cluster: `initdb` into a temp dir, then `postgres`
/// as a direct child on a free port, durability off for speed.
///
/// Superuser `postgres`, trust auth, TCP on 127.0.0.1 only. Dropping it
/// shuts the server down and removes the cluster.
pub struct PgServer {
    port: u16,
    bindir: PathBuf,
    run_as: Option<(u32, u32)>,
    // data/, sock/ and the logs; removed on drop (after the server stops).
    dir: TempDir,
    child: Option<Child>,
}

impl PgServer {
    /// Creates a fresh cluster and waits until it accepts connections.
    ///
    /// PostgreSQL refuses to run as root; when the tests run as root (CI
    /// containers), `initdb` and `postgres` run as the `postgres` user.
    pub async fn start() -> anyhow::Result<PgServer> {
        let bindir = find_bindir()?;
        let run_as = if effective_uid() == 0 {
            Some(lookup_user("postgres").context(
                "tests run as root, and PostgreSQL refuses to run as root, so the kit runs it \
                 as the `postgres` system user, which the Debian package `postgresql` creates",
            )?)
        } else {
            None
        };
        let dir = make_temp_dir(run_as)?;
        let sock = dir.path().join("sock");
        std::fs::create_dir(&sock).context("cannot create socket dir")?;
        if let Some((uid, gid)) = run_as {
            for path in [dir.path(), &sock] {
                chown(path, Some(uid), Some(gid))
                    .with_context(|| format!("cannot chown {} to postgres", path.display()))?;
            }
        }
        let mut server = PgServer {
            port: 0,
            bindir,
            run_as,
            dir,
            child: None,
        };
        server.initdb()?;

        let mut attempt = 0;
        loop {
            attempt += 1;
            server.port = free_port();
            match server.launch().await {
                Ok(()) => return Ok(server),
                // Someone took the free port before postgres bound it.
                Err(e) if attempt < 3 && server.port_clash() => {
                    tracing::debug!("postgres port clash, retrying: {e:#}");
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Creates an empty database and returns its URL.
    /// `name` must be 1..=63 characters of `[a-z0-9_]`.
    pub async fn create_database(&self, name: &str) -> anyhow::Result<String> {
        let valid = !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            bail!("invalid database name {name:?}: use 1 to 63 characters of [a-z0-9_]");
        }
        let mut conn = sqlx::PgConnection::connect(&self.url_for("postgres"))
            .await
            .context("cannot connect to the test PostgreSQL")?;
        // Validated above, so quoting cannot be escaped. Simple protocol:
        // CREATE DATABASE may not run inside a transaction.
        sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await
            .with_context(|| format!("cannot create database {name}"))?;
        let _ = conn.close().await;
        Ok(self.url_for(name))
    }

    /// `postgres://postgres@127.0.0.1:<port>/<db>`
    pub fn url_for(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's log so far, for failure messages.
    pub fn log_tail(&self, n: usize) -> String {
        log_tail(&self.log_path(), n)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bindir.join(program));
        // The test's cwd may be unreadable for the postgres user (e.g. /root).
        cmd.current_dir(self.dir.path())
            .env("LC_ALL", "C")
            .env_remove("PGDATA")
            .stdin(Stdio::null());
        if let Some((uid, gid)) = self.run_as {
            // std also drops root's supplementary groups when switching uid.
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    fn initdb(&self) -> anyhow::Result<()> {
        let out = self
            .command("initdb")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-U", "postgres", "-A", "trust", "--no-sync"])
            // C locale: the same sort order on every machine.
            .args(["-E", "UTF8", "--no-locale"])
            .output()
            .context("cannot run initdb")?;
        if !out.status.success() {
            bail!(
                "initdb failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    async fn launch(&mut self) -> anyhow::Result<()> {
        let log_path = self.log_path();
        let (mut out, err) = log_stdio(&log_path)?;
        writeln!(out, "{RUN_MARKER} postgres on port {}", self.port)?;
        let mut cmd = self.command("postgres");
        cmd.arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.dir.path().join("sock"))
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "fsync=off"])
            .args(["-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off"])
            .args(["-c", "max_connections=200"])
            .stdout(out)
            .stderr(err);
        let child = spawn_tied(cmd).context("cannot run postgres")?;
        self.child = Some(child);

        if let Err(e) = self.wait_ready().await {
            self.stop();
            return Err(e.context(format!(
                "PostgreSQL did not start (log {}):\n{}",
                log_path.display(),
                self.log_tail(30)
            )));
        }
        Ok(())
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let url = self.url_for("postgres");
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!("postgres exited with {status}");
                }
            }
            let attempt = tokio::time::timeout(Duration::from_secs(2), sqlx::PgConnection::connect(&url));
            let last = match attempt.await {
                Ok(Ok(conn)) => {
                    let _ = conn.close().await;
                    return Ok(());
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => "connect timed out".to_owned(),
            };
            if Instant::now() >= deadline {
                bail!("postgres not ready after {READY_TIMEOUT:?} (last: {last})");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the server, e.g. to see how services fare without their
    /// database ([`Self::restart`] starts it again). SIGINT is PostgreSQL's
    /// "fast shutdown": it disconnects clients. SIGTERM ("smart") would wait
    /// for every open pool to go away first.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, libc::SIGINT, STOP_GRACE);
        }
    }

    /// Stops the server as [`Self::stop`] does and starts it again, with
    /// its data, on the same port: every client's connection is cut, as by
    /// a database restart.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.launch().await
    }

    fn port_clash(&self) -> bool {
        let log = self.log_tail(30);
        let latest = log.rsplit(RUN_MARKER).next().unwrap_or_default();
        latest.contains("Address already in use")
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Server binaries: `pg_config --bindir` (if it has them: pg_config may come
/// from libpq-dev alone), else the newest /usr/lib/postgresql/*/bin, else PATH.
fn find_bindir() -> anyhow::Result<PathBuf> {
    let has_server = |dir: &Path| is_executable(&dir.join("postgres")) && is_executable(&dir.join("initdb"));

    if let Some(pg_config) = find_program("pg_config", &[]) {
        if let Ok(out) = Command::new(pg_config).arg("--bindir").output() {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if out.status.success() && has_server(&dir) {
                return Ok(dir);
            }
        }
    }

    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, dir)| has_server(dir))
        .collect();
    versions.sort();
    if let Some((_, dir)) = versions.pop() {
        return Ok(dir);
    }

    if let (Some(postgres), Some(_)) = (find_program("postgres", &[]), find_program("initdb", &[])) {
        if let Some(dir) = postgres.parent() {
            return Ok(dir.to_path_buf());
        }
    }
    bail!(
        "PostgreSQL server binaries (initdb, postgres) not found via pg_config, \
         /usr/lib/postgresql/*/bin or PATH; install them (Debian/Ubuntu: `apt-get install postgresql`)"
    )
}

/// The cluster's temp dir. When postgres runs as another user, every parent
/// must be traversable by it; a private `$TMPDIR` (say under /root) is not,
/// so fall back to /tmp.
fn make_temp_dir(run_as: Option<(u32, u32)>) -> anyhow::Result<TempDir> {
    let mut base = std::env::temp_dir();
    if let Some((uid, _)) = run_as {
        let traversable = base.canonicalize().is_ok_and(|dir| {
            dir.ancestors()
                .all(|d| d.metadata().is_ok_and(|m| m.mode() & 0o001 != 0 || m.uid() == uid))
        });
        if !traversable {
            base = PathBuf::from("/tmp");
        }
    }
    fixture_dir("vigil-pg-", &base)
}

#[allow(unsafe_code)]
fn effective_uid() -> u32 {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// (uid, gid) of a system user.
#[allow(unsafe_code)]
fn lookup_user(name: &str) -> anyhow::Result<(u32, u32)> {
    let cname = CString::new(name)?;
    // SAFETY: passwd is plain C data (integers and pointers); all-zero is a
    // valid value, and getpwnam_r overwrites it.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call, `buf.len()` is its real
    // size, and getpwnam_r (unlike getpwnam) is thread-safe. The strings it
    // points into `buf` are not read.
    let rc = unsafe { libc::getpwnam_r(cname.as_ptr(), &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 {
        bail!(
            "looking up user {name} failed: {}",
            std::io::Error::from_raw_os_error(rc)
        );
    }
    if result.is_null() {
        bail!("no user named {name}");
    }
    Ok((pwd.pw_uid, pwd.pw_gid))
}
