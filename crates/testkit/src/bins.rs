//! Locating executables: this workspace's binaries and system servers.

use std::env;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Path of a binary of this workspace built by `cargo build --bins`.
///
/// Looks in `$VIGIL_BIN_DIR` if set, else next to the running test: a test
/// executable lives in `target/<profile>/deps/`, the binaries one level up.
/// Cargo only builds the binaries of the package under test, so the other
/// services must have been built beforehand.
pub fn workspace_bin(name: &str) -> anyhow::Result<PathBuf> {
    let dir = match env::var_os("VIGIL_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => bin_dir_of_current_exe()?,
    };
    let path = dir.join(format!("{name}{}", env::consts::EXE_SUFFIX));
    if path.is_file() {
        Ok(path)
    } else {
        bail!(
            "binary `{name}` not found in {}; run `cargo build --workspace --bins` first",
            dir.display()
        )
    }
}

fn bin_dir_of_current_exe() -> anyhow::Result<PathBuf> {
    let exe = env::current_exe().context("cannot locate the running test executable")?;
    let dir = exe
        .parent()
        .with_context(|| format!("{} has no parent directory", exe.display()))?;
    Ok(match dir.file_name() {
        Some(n) if n == "deps" => dir.parent().unwrap_or(dir).to_path_buf(),
        _ => dir.to_path_buf(),
    })
}

/// First executable called `name` on `$PATH`, then in `extra_dirs`.
///
/// The extra dirs matter because `/usr/sbin` (where Debian puts
/// `nats-server`) is not on a normal user's `$PATH`.
pub(crate) fn find_program(name: &str, extra_dirs: &[&str]) -> Option<PathBuf> {
    let path_dirs = env::var_os("PATH")
        .map(|p| env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    path_dirs
        .into_iter()
        .chain(extra_dirs.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

pub(crate) fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
