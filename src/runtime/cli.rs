//! `nanokube runtime`: a runc-compatible command line.

use clap::Args;

#[derive(Debug, Args)]
pub struct RuntimeArgs {}

pub fn run(_args: RuntimeArgs) -> anyhow::Result<i32> {
    anyhow::bail!("the runtime is not implemented yet")
}
