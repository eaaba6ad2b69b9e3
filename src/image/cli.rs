//! `nanokube image`.

use clap::Args;

#[derive(Debug, Args)]
pub struct ImageArgs {}

pub fn run(_args: ImageArgs) -> anyhow::Result<i32> {
    anyhow::bail!("images are not implemented yet")
}
