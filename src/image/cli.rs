//! `nanokube image`: import, pull, list, inspect, remove and prune images in a node's store.

use super::{gc, import, pull, store::Store, Reference};
use clap::{Args, Subcommand};
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct ImageArgs {
    /// Directory holding all of the node's state; images live in <data-dir>/agent/images.
    #[arg(long, global = true, default_value = "/var/lib/nanokube")]
    pub data_dir: PathBuf,
    /// Registry mirrors, credentials and TLS settings, in k3s's registries.yaml format.
    #[arg(long, global = true, default_value = "/etc/nanokube/registries.yaml")]
    pub registries_config: PathBuf,
    #[command(subcommand)]
    pub command: ImageCommand,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Import `docker save` archives, OCI image archives (optionally gzip/zstd) or OCI layout directories.
    Import {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Pull an image from its registry (or a configured mirror) and unpack it.
    Pull {
        reference: String,
        /// No progress display, even on a terminal.
        #[arg(long, short)]
        quiet: bool,
    },
    /// List images: reference, digest and size.
    #[command(alias = "list")]
    Ls {
        /// Print only the references.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Show an image's config and its overlay lower directories (unpacking if needed), as JSON.
    Inspect { reference: String },
    /// Remove image names, then delete the content no remaining name needs.
    #[command(alias = "rmi")]
    Rm {
        #[arg(required = true)]
        references: Vec<String>,
    },
    /// Delete blobs and snapshots that no image name needs, and leftovers of interrupted pulls.
    Prune,
}

pub fn run(args: ImageArgs) -> anyhow::Result<i32> {
    match args.command {
        ImageCommand::Import { files } => {
            for rec in import::import_paths(&args.data_dir, &files)? {
                println!("imported {} ({})", rec.name, rec.digest);
            }
        }
        ImageCommand::Pull { reference, quiet } => {
            let options = pull::PullOptions {
                registries: super::config::RegistriesConfig::load(&args.registries_config)?,
                progress: !quiet && std::io::stdout().is_terminal(),
            };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let rec = runtime.block_on(pull::pull(&args.data_dir, &reference, &options))?;
            println!("{} {}", rec.name, rec.digest);
        }
        ImageCommand::Ls { quiet } => {
            let store = Store::open(&args.data_dir)?;
            let images = store.images()?;
            if quiet {
                for name in images.keys() {
                    println!("{name}");
                }
                return Ok(0);
            }
            let width = images.keys().map(|k| k.len()).max().unwrap_or(0).max(9);
            println!("{:width$}  {:71}  {:>9}", "REFERENCE", "DIGEST", "SIZE");
            for rec in images.values() {
                println!(
                    "{:width$}  {:71}  {:>9}",
                    rec.name,
                    rec.digest.to_string(),
                    human_size(rec.size)
                );
            }
        }
        ImageCommand::Inspect { reference } => {
            let image = super::prepare(&args.data_dir, &reference)?;
            let out = serde_json::json!({
                "name": image.name,
                "digest": image.digest,
                "id": image.id,
                "config": image.config,
                "lowerDirs": image.lower_dirs,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        ImageCommand::Rm { references } => {
            let store = Store::open(&args.data_dir)?;
            let mut names = Vec::new();
            for r in &references {
                // Validate every name before removing any, so a typo removes nothing.
                Reference::parse(r)?;
                names.push(super::find(&store, r)?.name);
            }
            let report = gc::remove_images(&store, &names)?;
            for n in &names {
                println!("removed {n}");
            }
            println!(
                "deleted {} blobs ({}) and {} snapshots",
                report.blobs,
                human_size(report.blob_bytes),
                report.snapshots
            );
        }
        ImageCommand::Prune => {
            let store = Store::open(&args.data_dir)?;
            let report = gc::collect(&store)?;
            println!(
                "deleted {} blobs ({}), {} snapshots and {} leftovers of interrupted pulls",
                report.blobs,
                human_size(report.blob_bytes),
                report.snapshots,
                report.leftovers
            );
        }
    }
    Ok(0)
}

/// Decimal units, as `docker images` shows sizes.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}
