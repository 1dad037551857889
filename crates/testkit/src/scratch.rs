//! Temp dirs for server fixtures, and cleanup after killed test runs.

use std::path::Path;

use anyhow::Context;
use tempfile::TempDir;

/// Names the test process that owns a fixture dir.
const OWNER_FILE: &str = "owner.pid";

/// A fresh `<base>/<prefix>XXXXXX` dir, tagged with this process's pid.
///
/// `Drop` never runs when a test process is killed, and a PostgreSQL cluster
/// is ~40 MB, so first remove dirs left behind by dead test processes.
pub(crate) fn fixture_dir(prefix: &str, base: &Path) -> anyhow::Result<TempDir> {
    sweep_stale(prefix, base);
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(base)
        .with_context(|| format!("cannot create a temp dir in {}", base.display()))?;
    std::fs::write(dir.path().join(OWNER_FILE), std::process::id().to_string())
        .context("cannot write fixture owner file")?;
    Ok(dir)
}

fn sweep_stale(prefix: &str, base: &Path) {
    // Liveness is read from /proc; without it, leave everything alone.
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(prefix) {
            continue;
        }
        // No owner file: being created right now, or not ours.
        let Ok(owner) = std::fs::read_to_string(entry.path().join(OWNER_FILE)) else {
            continue;
        };
        let Ok(pid) = owner.trim().parse::<u32>() else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            tracing::debug!(dir = %entry.path().display(), pid, "removing stale fixture dir");
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
