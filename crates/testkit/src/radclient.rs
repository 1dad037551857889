//! Runs Debian's `radclient` (freeradius-utils), the real third-party RADIUS
//! client the RADIUS front end is tested with.

use std::{
    path::PathBuf,
    process::{ExitStatus, Stdio},
    time::Duration,
};

use anyhow::Context;
use tokio::{io::AsyncWriteExt, process::Command};

fn radclient_path() -> anyhow::Result<PathBuf> {
    crate::bins::find_program("radclient", &["/usr/bin"])
        .context("radclient not found: install Debian's freeradius-utils (apt-get install -y freeradius-utils)")
}

/// One `radclient auth` run against `radius_addr`: `attributes` on stdin,
/// `timeout` seconds per try, `tries` tries, the whole run given up after
/// `patience`. Returns what it printed (stdout, then stderr) and how it exited.
pub async fn run(
    radius_addr: &str,
    secret: &str,
    attributes: &str,
    (timeout, tries): (&str, u32),
    patience: Duration,
) -> anyhow::Result<(String, ExitStatus)> {
    let mut child = Command::new(radclient_path()?)
        .args(["-x", "-t", timeout, "-r", &tries.to_string()])
        .arg(radius_addr)
        .args(["auth", secret])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting radclient")?;
    let mut stdin = child.stdin.take().context("radclient's stdin")?;
    stdin.write_all(attributes.as_bytes()).await?;
    drop(stdin);
    let out = tokio::time::timeout(patience, child.wait_with_output())
        .await
        .with_context(|| format!("radclient did not finish within {patience:?}"))??;
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((printed, out.status))
}
