//! A private OpenLDAP `slapd` per fixture, for the LDAP / Active Directory
//! import and the RADIUS password check.
//!
//! The kit writes a `slapd.conf` of its own (mdb backend, a known root DN and
//! password, the core, cosine, nis, inetOrgPerson and Microsoft user schemas
//! so entries can carry `sAMAccountName` as in Active Directory), loads the
//! caller's LDIF offline with `slapadd`, then starts `slapd` on a free port.
//! The directory and the server go away on `Drop`.

use std::io::Write;
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tempfile::TempDir;

use crate::bins::find_program;
use crate::ports::free_port;
use crate::process::{log_stdio, log_tail, spawn_tied, stop_child};
use crate::scratch::fixture_dir;

const READY_TIMEOUT: Duration = Duration::from_secs(15);
const SBIN: &[&str] = &["/usr/sbin", "/usr/bin", "/usr/local/sbin"];
const SCHEMAS: &[&str] = &["core", "cosine", "nis", "inetorgperson", "msuser"];

/// How the test server behaves.
#[derive(Debug, Clone, Copy, Default)]
pub struct SlapdOptions {
    /// Entries a search without the paged-results control may return (the
    /// server's `sizelimit`); paged searches stay unlimited, as on Active
    /// Directory (its MaxPageSize is 1000). `None` keeps slapd's 500.
    pub size_limit: Option<u32>,
    /// A directory that holds nothing and accepts a bind as any DN under
    /// the suffix with any password (slapd's `null` backend): for load tests
    /// of RADIUS password checks with users made on the fly. The LDIF is ignored.
    pub any_password: bool,
}

/// A running `slapd` with the kit's suffix and root account.
pub struct SlapdServer {
    port: u16,
    dir: TempDir,
    child: Option<Child>,
}

impl SlapdServer {
    /// The naming context every fixture serves.
    pub const SUFFIX: &'static str = "dc=example,dc=org";
    /// The root account, which no limit or access rule applies to.
    pub const ROOT_DN: &'static str = "cn=admin,dc=example,dc=org";
    pub const ROOT_PASSWORD: &'static str = "vigil-test-root-password";

    /// Starts a server holding the suffix entry followed by `ldif` (entries
    /// under [`Self::SUFFIX`], parents before children).
    pub async fn start(ldif: &str) -> anyhow::Result<SlapdServer> {
        Self::start_with(SlapdOptions::default(), ldif).await
    }

    pub async fn start_with(options: SlapdOptions, ldif: &str) -> anyhow::Result<SlapdServer> {
        let missing = "slapd not found in /usr/sbin; install it (Debian/Ubuntu: `apt-get install slapd`)";
        let slapd = find_program("slapd", SBIN).context(missing)?;
        let slapadd = find_program("slapadd", SBIN).context(missing)?;
        let dir = fixture_dir("vigil-slapd-", &std::env::temp_dir())?;
        std::fs::create_dir(dir.path().join("db"))?;
        let conf = dir.path().join("slapd.conf");
        std::fs::write(&conf, config(dir.path(), options))?;
        let data = dir.path().join("data.ldif");
        std::fs::write(&data, format!("{}\n{ldif}", suffix_entry()))?;

        let mut server = SlapdServer {
            port: 0,
            dir,
            child: None,
        };
        // Offline load: no network, no ldap-utils, and as fast as it gets.
        // A null backend holds nothing to load.
        if !options.any_password {
            let (out, err) = log_stdio(&server.dir.path().join("slapd.log"))?;
            let loaded = Command::new(&slapadd)
                .arg("-q")
                .arg("-f")
                .arg(&conf)
                .arg("-l")
                .arg(&data)
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .status()
                .with_context(|| format!("cannot run {}", slapadd.display()))?;
            if !loaded.success() {
                bail!("slapadd could not load the LDIF ({loaded}):\n{}", server.log_tail(30));
            }
        }
        for attempt in 1..=3 {
            server.port = free_port();
            match server.launch(&slapd, &conf).await {
                Ok(()) => return Ok(server),
                Err(e) if attempt < 3 && server.log_tail(5).contains("Address already in use") => {
                    tracing::debug!("slapd port clash, retrying: {e:#}");
                }
                Err(e) => return Err(e),
            }
        }
        bail!("slapd did not start")
    }

    /// `ldap://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// The server's log, for failure messages.
    pub fn log_tail(&self, n: usize) -> String {
        log_tail(&self.dir.path().join("slapd.log"), n)
    }

    async fn launch(&mut self, slapd: &Path, conf: &PathBuf) -> anyhow::Result<()> {
        let (mut out, err) = log_stdio(&self.dir.path().join("slapd.log"))?;
        writeln!(out, "=== testkit: starting slapd on port {}", self.port)?;
        let mut cmd = Command::new(slapd);
        // `-d 0`: stay in the foreground (a child the kit can stop) without debug output.
        cmd.arg("-f")
            .arg(conf)
            .arg("-h")
            .arg(format!("ldap://127.0.0.1:{}/", self.port))
            .arg("-d")
            .arg("0")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        self.child = Some(spawn_tied(cmd).with_context(|| format!("cannot run {}", slapd.display()))?);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                bail!("slapd exited with {status}:\n{}", self.log_tail(20));
            }
            if TcpStream::connect_timeout(&(Ipv4Addr::LOCALHOST, self.port).into(), Duration::from_secs(1)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("slapd not ready after {READY_TIMEOUT:?}:\n{}", self.log_tail(20));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for SlapdServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, libc::SIGTERM, Duration::from_secs(5));
        }
    }
}

fn config(dir: &Path, options: SlapdOptions) -> String {
    let mut conf: String = SCHEMAS
        .iter()
        .map(|s| format!("include /etc/ldap/schema/{s}.schema\n"))
        .collect();
    if options.any_password {
        return format!(
            "{conf}pidfile {dir}/slapd.pid\nmodulepath /usr/lib/ldap\nmoduleload back_null\n\
             database null\nsuffix \"{suffix}\"\nbind on\n",
            dir = dir.display(),
            suffix = SlapdServer::SUFFIX,
        );
    }
    conf.push_str(&format!(
        "pidfile {dir}/slapd.pid\nmodulepath /usr/lib/ldap\nmoduleload back_mdb\n",
        dir = dir.display()
    ));
    if let Some(limit) = options.size_limit {
        conf.push_str(&format!(
            "sizelimit size.soft={limit} size.hard={limit} size.prtotal=unlimited\n"
        ));
    }
    conf.push_str(&format!(
        "database mdb\nsuffix \"{suffix}\"\nrootdn \"{root}\"\nrootpw {password}\ndirectory {dir}/db\nmaxsize 104857600\n",
        suffix = SlapdServer::SUFFIX,
        root = SlapdServer::ROOT_DN,
        password = SlapdServer::ROOT_PASSWORD,
        dir = dir.display(),
    ));
    conf
}

fn suffix_entry() -> String {
    format!(
        "dn: {}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n",
        SlapdServer::SUFFIX
    )
}
