//! `nanokube`: one binary for the whole cluster. Every subcommand lives in its own module; this file
//! only parses the command line and turns an error into a one-line message and an exit status.
//!
//! The C `main` is ours (`no_main`), not std's: std's start-up reads /proc/self/maps to place a
//! guard for the main thread's stack and sets up alternate signal stacks, ~7 ms per process
//! under emulation (docs/runtime.md "Speed"), and runc-compatible callers start one
//! `nanokube runtime` per container operation. What of std's start-up matters here is done
//! below (stdio descriptors present, SIGPIPE ignored, a panic exits 101); what is given up is
//! std's "has overflowed its stack" message: a stack overflow is a plain SIGSEGV crash.
// In `cargo test` builds of this file the test harness brings its own `main`.
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code))]

use clap::Parser;
use nanokube::cli::{Cli, Command};

#[cfg(not(test))]
#[no_mangle]
pub extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    // std reads the arguments itself (glibc hands them to its init), so args_os works.
    nanokube::runtime::sys::process_start();
    match std::panic::catch_unwind(run) {
        Ok(never) => match never {},
        Err(_) => 101,
    }
}

fn run() -> std::convert::Infallible {
    // The runtime clones (and for multi-threaded callers re-execs) this binary for every
    // container, and runc-compatible callers run `nanokube runtime ...` once per container
    // operation: that path goes straight to the runtime's own small parser, never building
    // every subcommand's (see docs/runtime.md "Speed"). Anything else goes through `Cli`.
    // Called through a link named `runc` or `nanokube-runc` (tools that take a runtime path,
    // such as containerd's `BinaryName` or `podman --runtime`), the binary is the runtime.
    if invoked_as_runc() {
        finish(nanokube::runtime::cli::main(std::env::args_os().skip(1)));
    }
    let mut args = std::env::args_os().skip(1);
    if args.next().is_some_and(|a| a == "runtime") {
        if args.next().is_some_and(|a| a == "init") && args.next().is_none() {
            nanokube::runtime::init::main();
        }
        finish(nanokube::runtime::cli::main(std::env::args_os().skip(2)));
    }
    let cli = Cli::parse();
    finish(match cli.command {
        // The runtime is synchronous and must not start a tokio runtime: after clone(2) the child
        // may only do async-signal-safe work, and a thread pool would make that impossible.
        Command::Runtime(raw) => nanokube::runtime::cli::main(raw.args),
        Command::Image(args) => nanokube::image::cli::run(args),
        Command::Server(args) => nanokube::server::run(*args),
        Command::Agent(args) => nanokube::agent::run(*args),
        Command::Shim(args) => nanokube::shim::run(args),
        Command::Killall(args) => nanokube::agent::killall(args),
        Command::Cluster(args) => nanokube::cluster::run(args),
        Command::SecretsEncrypt(args) => nanokube::apiserver::secrets_encrypt::cli(args),
    })
}

fn invoked_as_runc() -> bool {
    let Some(arg0) = std::env::args_os().next() else {
        return false;
    };
    let name = std::path::Path::new(&arg0)
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name == "runc" || name == "nanokube-runc"
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
