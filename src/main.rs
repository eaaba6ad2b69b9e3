//! `nanokube`: one binary for the whole cluster. Every subcommand lives in its own module; this file
//! only parses the command line and turns an error into a one-line message and an exit status.

use clap::Parser;
use nanokube::cli::{Cli, Command};

fn main() {
    // The runtime execs this binary as `nanokube runtime init` for every container and exec,
    // and runc-compatible callers run `nanokube runtime ...` once per container operation:
    // those paths build only the runtime's own parser, not every subcommand's (tens of ms per
    // exec under emulation, see docs/runtime.md "Speed"). Anything else goes through `Cli`.
    let mut args = std::env::args_os().skip(1);
    if args.next().is_some_and(|a| a == "runtime") {
        if args.next().is_some_and(|a| a == "init") && args.next().is_none() {
            nanokube::runtime::init::main();
        }
        finish(nanokube::runtime::cli::run(runtime_args()));
    }
    let cli = Cli::parse();
    finish(match cli.command {
        // The runtime is synchronous and must not start a tokio runtime: after clone(2) the child
        // may only do async-signal-safe work, and a thread pool would make that impossible.
        Command::Runtime(args) => nanokube::runtime::cli::run(args),
        Command::Image(args) => nanokube::image::cli::run(args),
        Command::Server(args) => nanokube::server::run(args),
        Command::Agent(args) => nanokube::agent::run(args),
    })
}

/// `nanokube runtime ...` parsed by the runtime's own arguments alone, with the same help,
/// version and errors as through `Cli`.
fn runtime_args() -> nanokube::runtime::cli::RuntimeArgs {
    use clap::{Args, FromArgMatches};
    let cmd = nanokube::runtime::cli::RuntimeArgs::augment_args(
        clap::Command::new("nanokube-runtime")
            .bin_name("nanokube runtime")
            .version(env!("CARGO_PKG_VERSION"))
            .about("A runc-compatible OCI container runtime over nanokube's runtime code.")
            .subcommand_required(true),
    );
    let matches = cmd.get_matches_from(std::env::args_os().skip(1));
    nanokube::runtime::cli::RuntimeArgs::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

fn finish(code: anyhow::Result<i32>) -> ! {
    match code {
        Ok(status) => std::process::exit(status),
        Err(err) => {
            eprintln!("nanokube: {err:#}");
            std::process::exit(1);
        }
    }
}
