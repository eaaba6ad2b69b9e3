//! `nanokube`: one binary for the whole cluster. Every subcommand lives in its own module; this file
//! only parses the command line and turns an error into a one-line message and an exit status.

use clap::Parser;
use nanokube::cli::{Cli, Command};

fn main() {
    // The runtime execs this binary as `nanokube runtime init` for every container and exec;
    // that path skips building the parser for every subcommand (measurable under emulation,
    // see docs/runtime.md "Speed"). Anything else goes through clap as usual.
    let mut args = std::env::args_os().skip(1);
    if args.next().is_some_and(|a| a == "runtime")
        && args.next().is_some_and(|a| a == "init")
        && args.next().is_none()
    {
        nanokube::runtime::init::main();
    }
    let cli = Cli::parse();
    let code = match cli.command {
        // The runtime is synchronous and must not start a tokio runtime: after clone(2) the child
        // may only do async-signal-safe work, and a thread pool would make that impossible.
        Command::Runtime(args) => nanokube::runtime::cli::run(args),
        Command::Image(args) => nanokube::image::cli::run(args),
        Command::Server(args) => nanokube::server::run(args),
        Command::Agent(args) => nanokube::agent::run(args),
    };
    match code {
        Ok(status) => std::process::exit(status),
        Err(err) => {
            eprintln!("nanokube: {err:#}");
            std::process::exit(1);
        }
    }
}
