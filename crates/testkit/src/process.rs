//! Child processes: workspace services under test, plus the spawning,
//! signalling and log helpers the server fixtures share.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A workspace binary running as a child of the test.
///
/// Output goes to `<log_dir>/<name>.log` (or to the terminal with
/// `TEST_LOG=1`). Dropping it sends SIGTERM, waits up to 5 s, then SIGKILLs.
pub struct ServiceProcess {
    name: String,
    child: Child,
    log_path: PathBuf,
    inherited_output: bool,
    /// How it was started, so a test can start it again after a stop.
    command: Launch,
}

/// A service's command line, kept for [`ServiceProcess::respawn`].
struct Launch {
    program: PathBuf,
    args: Vec<String>,
    envs: Vec<(String, String)>,
}

impl ServiceProcess {
    /// Starts `program` with `envs` added to the test's environment.
    pub fn spawn(
        name: &str,
        program: &Path,
        envs: &[(String, String)],
        log_dir: &Path,
    ) -> anyhow::Result<ServiceProcess> {
        Self::spawn_with_args(name, program, &[], envs, log_dir)
    }

    /// [`ServiceProcess::spawn`] with command-line arguments.
    pub fn spawn_with_args(
        name: &str,
        program: &Path,
        args: &[&str],
        envs: &[(String, String)],
        log_dir: &Path,
    ) -> anyhow::Result<ServiceProcess> {
        std::fs::create_dir_all(log_dir).with_context(|| format!("cannot create log dir {}", log_dir.display()))?;
        let command = Launch {
            program: program.to_owned(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            envs: envs.to_vec(),
        };
        let log_path = log_dir.join(format!("{name}.log"));
        let inherited_output = test_log_enabled();
        let child = launch(name, &command, &log_path, inherited_output)?;
        Ok(ServiceProcess {
            name: name.to_owned(),
            child,
            log_path,
            inherited_output,
            command,
        })
    }

    /// Starts the same program again, with the same arguments, environment
    /// and log file (appended to), once the previous run has exited: a
    /// restart after a SIGTERM or a crash.
    pub fn respawn(&mut self) -> anyhow::Result<()> {
        if self.child.try_wait()?.is_none() {
            bail!("{} (pid {}) is still running", self.name, self.pid());
        }
        self.child = launch(&self.name, &self.command, &self.log_path, self.inherited_output)?;
        Ok(())
    }

    /// Polls `GET url` until it answers 200.
    ///
    /// Fails early if the process exits, and with the last 40 log lines
    /// either way, which is usually the reason it never became ready.
    pub async fn wait_http_ready(&mut self, url: &str, timeout: Duration) -> anyhow::Result<()> {
        let client = http_client()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited ({status}) before {url} was ready\n{}",
                    self.name,
                    self.log_report(40)
                );
            }
            let last = match client.get(url).send().await {
                Ok(resp) if resp.status() == reqwest::StatusCode::OK => return Ok(()),
                Ok(resp) => format!("HTTP {}", resp.status()),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() >= deadline {
                bail!(
                    "{} not ready at {url} after {timeout:?} (last: {last})\n{}",
                    self.name,
                    self.log_report(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends SIGTERM (graceful shutdown) if it is still running.
    pub fn terminate(&mut self) {
        send_signal(&mut self.child, libc::SIGTERM);
    }

    /// Sends SIGKILL if it is still running.
    pub fn kill(&mut self) {
        // Only fails if the process is already gone, which is the goal.
        let _ = self.child.kill();
    }

    /// Waits for the process to exit, without signalling it.
    pub async fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} (pid {}) still running after {timeout:?}\n{}",
                    self.name,
                    self.pid(),
                    self.log_report(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Where stdout and stderr go (not written when `TEST_LOG=1`).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The whole log as written to its file; `None` when the output went to
    /// the terminal instead (`TEST_LOG=1`).
    pub fn log_text(&self) -> Option<std::io::Result<String>> {
        (!self.inherited_output).then(|| std::fs::read_to_string(&self.log_path))
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        if self.inherited_output {
            return "(output went to the terminal: TEST_LOG=1)".to_owned();
        }
        log_tail(&self.log_path, n)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_report(&self, n: usize) -> String {
        format!(
            "--- last {n} lines of {} ---\n{}",
            self.log_path.display(),
            self.log_tail(n)
        )
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        stop_child(&mut self.child, libc::SIGTERM, Duration::from_secs(5));
    }
}

fn launch(name: &str, command: &Launch, log_path: &Path, inherited_output: bool) -> anyhow::Result<Child> {
    let mut cmd = Command::new(&command.program);
    cmd.args(&command.args)
        .envs(command.envs.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null());
    if !inherited_output {
        let (out, err) = log_stdio(log_path)?;
        cmd.stdout(out).stderr(err);
    }
    let child = spawn_tied(cmd).with_context(|| format!("cannot start {name} ({})", command.program.display()))?;
    tracing::debug!(name, pid = child.id(), program = %command.program.display(), "spawned service");
    Ok(child)
}

/// `TEST_LOG=1` shows service output and test tracing on the terminal.
pub(crate) fn test_log_enabled() -> bool {
    std::env::var("TEST_LOG").is_ok_and(|v| v == "1")
}

/// A client for readiness probes on 127.0.0.1: no proxy, since a CI
/// `HTTP_PROXY` would otherwise swallow requests to loopback.
pub(crate) fn http_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .context("cannot build HTTP client")
}

/// Stdout and stderr handles appending to one log file.
pub(crate) fn log_stdio(path: &Path) -> anyhow::Result<(File, File)> {
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open log {}", path.display()))?;
    let err = out.try_clone()?;
    Ok((out, err))
}

/// The last `n` lines of a log file (reads at most its last 256 KiB).
pub(crate) fn log_tail(path: &Path, n: usize) -> String {
    const MAX: u64 = 256 * 1024;
    let read = || -> io::Result<String> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(MAX)))?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    match read() {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// Spawns `cmd` so the child gets SIGKILL when the test process dies.
///
/// PR_SET_PDEATHSIG fires when the spawning *thread* exits, not the process.
/// Test threads and tokio workers come and go (and a fixture kept in a
/// `static` outlives the test that started it), so all spawns go through
/// one thread that lives as long as the process.
pub(crate) fn spawn_tied(mut cmd: Command) -> io::Result<Child> {
    type Job = (Command, mpsc::Sender<io::Result<Child>>);
    static SPAWNER: OnceLock<Option<mpsc::Sender<Job>>> = OnceLock::new();

    set_parent_death_signal(&mut cmd);
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("testkit-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .ok()
            .map(|_| tx)
    });
    let Some(tx) = spawner else {
        // No spawner thread: the children still die with this thread.
        return cmd.spawn();
    };
    let (reply_tx, reply_rx) = mpsc::channel();
    tx.send((cmd, reply_tx))
        .map_err(|_| io::Error::other("testkit spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("testkit spawner thread is gone"))?
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn set_parent_death_signal(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec, so it must be
    // async-signal-safe: it only calls prctl(2) and getppid(2) and builds
    // io::Errors from raw codes, which does not allocate.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if u32::try_from(libc::getppid()).ok() != Some(parent) {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn set_parent_death_signal(_cmd: &mut Command) {}

/// Sends `sig` to the child unless it has already been reaped (after which
/// its pid may belong to an unrelated process).
#[allow(unsafe_code)]
pub(crate) fn send_signal(child: &mut Child, sig: libc::c_int) {
    if !matches!(child.try_wait(), Ok(None)) {
        return;
    }
    let Ok(pid) = libc::pid_t::try_from(child.id()) else {
        return;
    };
    // SAFETY: kill(2) has no memory-safety preconditions; the child is not
    // reaped yet, so `pid` still names it.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Sends `sig`, waits up to `grace`, then SIGKILLs; always reaps the child.
/// Blocking, because it runs in `Drop`.
pub(crate) fn stop_child(child: &mut Child, sig: libc::c_int, grace: Duration) -> Option<ExitStatus> {
    send_signal(child, sig);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    child.wait().ok()
}
