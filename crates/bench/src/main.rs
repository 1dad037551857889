//! `vigil-bench`: see the library docs and `vigil-bench --help`.

use clap::Parser;
use vigil_bench::args::Args;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let reports = vigil_bench::run(args).await?;
    // A run where a scenario never succeeded did not measure anything.
    if let Some(r) = reports.iter().find(|r| r.run.tally.ok == 0) {
        anyhow::bail!("scenario {} had no successful request", r.name);
    }
    Ok(())
}
