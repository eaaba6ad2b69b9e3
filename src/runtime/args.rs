//! The command line of `nanokube runtime`, parsed by hand from one table of flags per command.
//!
//! runc-compatible callers (containerd shims, conmon, benchmarks, scripts) start one runtime
//! process per container operation, so this parser is on the path of every container start.
//! A derive-based parser builds its whole command tree on each start, which costs more than the
//! rest of a `run` under emulation (see docs/runtime.md, "Speed"); this one is a loop over the
//! arguments.
//!
//! It accepts what runc (urfave/cli over Go's flag package) accepts: global flags before or
//! after the command, `--flag value`, `--flag=value`, a single dash for long names (`-root`),
//! boolean flags as `--flag=true|false`, `--` to end the flags, and for `exec` and `ps` the
//! words after the container id as the command (or ps(1)'s arguments). For compatibility with
//! earlier nanokube releases a short flag also takes an attached value (`-b/bundle`).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use super::state;

/// The parsed command line.
#[derive(Debug, PartialEq)]
pub struct RuntimeArgs {
    pub global: Global,
    pub command: Command,
}

/// Flags every command takes.
#[derive(Debug, PartialEq)]
pub struct Global {
    /// Directory holding container state (`--root`).
    pub root: PathBuf,
    /// Where log lines go (`--log`); stderr when `None`.
    pub log: Option<PathBuf>,
    /// `--log-format`: `text` or `json`.
    pub log_format: LogFormat,
    /// `--debug`: log what the runtime does, not only errors.
    pub debug: bool,
    /// `--systemd-cgroup`: cgroupsPath is `slice:prefix:name`, managed through systemd.
    pub systemd_cgroup: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, PartialEq)]
// Parsed once per process: boxing the big variant would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    Create(CreateArgs),
    Start {
        id: String,
    },
    Run {
        create: CreateArgs,
        detach: bool,
        /// Keep the stopped container (do not delete it) after a foreground run.
        keep: bool,
    },
    State {
        id: String,
    },
    Kill {
        all: bool,
        id: String,
        signal: Option<String>,
    },
    Delete {
        force: bool,
        id: String,
    },
    List {
        quiet: bool,
        format: String,
    },
    Exec(ExecArgs),
    Ps {
        format: String,
        id: String,
        /// Arguments for ps(1) (default `-ef`).
        ps_args: Vec<String>,
    },
    Pause {
        id: String,
    },
    Resume {
        id: String,
    },
    Update {
        id: String,
        /// `--resources FILE|-`: a LinuxResources JSON document.
        resources: Option<String>,
        /// Resource flags by long name, in order, with their values as given.
        flags: Vec<(String, String)>,
    },
    Events {
        id: String,
        stats: bool,
        interval: Duration,
    },
    Spec {
        bundle: Option<PathBuf>,
        rootless: bool,
    },
    Features,
    /// `checkpoint` and `restore`: parsed so that the refusal is clear, never run.
    Unsupported {
        name: &'static str,
    },
    /// Internal: the container's init (run by the runtime itself).
    Init,
}

#[derive(Debug, Default, PartialEq)]
pub struct CreateArgs {
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub default_seccomp: bool,
    /// Move the rootfs to / and chroot instead of pivot_root (a rootfs on a ramdisk).
    pub no_pivot: bool,
    /// Keep the caller's session keyring instead of a new one for the container.
    pub no_new_keyring: bool,
    /// Pass fds 3 .. 3+N (after any $LISTEN_FDS) on to the container's process.
    pub preserve_fds: u32,
    pub id: String,
}

#[derive(Debug, Default, PartialEq)]
pub struct ExecArgs {
    pub cwd: Option<PathBuf>,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub additional_gids: Vec<String>,
    /// `--process FILE`: the whole process as OCI JSON (then no command is needed).
    pub process: Option<PathBuf>,
    pub tty: Option<bool>,
    pub console_socket: Option<PathBuf>,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub caps: Vec<String>,
    pub no_new_privs: Option<bool>,
    pub preserve_fds: u32,
    pub apparmor: Option<String>,
    pub process_label: Option<String>,
    pub cgroup: crate::runtime::cgroups::SubCgroups,
    pub ignore_paused: bool,
    pub id: String,
    pub command: Vec<String>,
}

/// What the command line asks for besides a command.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Print this text to stdout and exit 0 (`--help`, `--version`).
    Print(String),
    /// A usage error: print it to stderr and exit with `code` (runc: 1 for a misused
    /// command, 3 for an unknown one).
    Usage { message: String, code: i32 },
}

/// What a flag holds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    /// Takes a value, named in the help (`value` in runc's help).
    Value,
}

/// One flag: its long name, its aliases (one-letter or not), and whether it takes a value.
struct Flag {
    long: &'static str,
    aliases: &'static [&'static str],
    kind: Kind,
    help: &'static str,
    /// Accepted for compatibility but not listed.
    hidden: bool,
}

const fn flag(
    long: &'static str,
    aliases: &'static [&'static str],
    kind: Kind,
    help: &'static str,
) -> Flag {
    Flag {
        long,
        aliases,
        kind,
        help,
        hidden: false,
    }
}

const fn hidden(long: &'static str, kind: Kind) -> Flag {
    Flag {
        long,
        aliases: &[],
        kind,
        help: "",
        hidden: true,
    }
}

use Kind::{Bool, Value};

const GLOBAL: &[Flag] = &[
    flag("debug", &[], Bool, "log debug messages as well as errors"),
    flag(
        "log",
        &[],
        Value,
        "file to append the runtime's log lines to (default: standard error)",
    ),
    flag(
        "log-format",
        &[],
        Value,
        "log line format: 'text' (default) or 'json'",
    ),
    flag(
        "root",
        &[],
        Value,
        "directory holding container state, best on a tmpfs (default: \"/run/nanokube/runtime\")",
    ),
    flag(
        "criu",
        &[],
        Value,
        "accepted for compatibility; checkpoint and restore are not supported",
    ),
    flag(
        "systemd-cgroup",
        &[],
        Bool,
        "let systemd manage cgroups; cgroupsPath is then \"slice:prefix:name\"",
    ),
    flag(
        "rootless",
        &[],
        Value,
        "accepted for compatibility ('true', 'false' or 'auto'); nanokube runs as root",
    ),
];

const BUNDLE: Flag = flag(
    "bundle",
    &["b"],
    Value,
    "bundle directory holding config.json (default: the current directory)",
);
const CONSOLE_SOCKET: Flag = flag(
    "console-socket",
    &[],
    Value,
    "unix socket that is sent the terminal's master side when the process has a terminal",
);
const PID_FILE: Flag = flag(
    "pid-file",
    &[],
    Value,
    "file to write the process's host pid to",
);
const PRESERVE_FDS: Flag = flag(
    "preserve-fds",
    &[],
    Value,
    "pass N more file descriptors (3 .. 3+N, after $LISTEN_FDS) to the process (default: 0)",
);
const DETACH: Flag = flag(
    "detach",
    &["d"],
    Bool,
    "return at once, leaving the process running",
);

const CREATE_FLAGS: &[Flag] = &[
    BUNDLE,
    CONSOLE_SOCKET,
    PID_FILE,
    flag(
        "no-pivot",
        &[],
        Bool,
        "move the rootfs onto / and chroot instead of pivot_root (a rootfs on a ramdisk)",
    ),
    flag(
        "no-new-keyring",
        &[],
        Bool,
        "keep the caller's session keyring instead of a new one for the container",
    ),
    PRESERVE_FDS,
    flag(
        "default-seccomp",
        &[],
        Bool,
        "apply nanokube's default seccomp profile when the spec has none",
    ),
];

const RUN_FLAGS: &[Flag] = &[
    DETACH,
    flag(
        "keep",
        &[],
        Bool,
        "keep the container after it exits (do not delete it)",
    ),
    flag(
        "no-subreaper",
        &[],
        Bool,
        "accepted for compatibility (the runtime reaps only its own child)",
    ),
];

const EXEC_FLAGS: &[Flag] = &[
    CONSOLE_SOCKET,
    flag("cwd", &[], Value, "working directory inside the container"),
    flag(
        "env",
        &["e"],
        Value,
        "add an environment variable NAME=VALUE (repeatable)",
    ),
    flag("tty", &["t"], Bool, "give the process a new terminal"),
    flag("user", &["u"], Value, "user to run as: UID[:GID]"),
    flag(
        "additional-gids",
        &["g"],
        Value,
        "an additional group id (repeatable)",
    ),
    flag(
        "process",
        &["p"],
        Value,
        "file holding the whole process as OCI JSON (process.json)",
    ),
    DETACH,
    PID_FILE,
    flag(
        "process-label",
        &[],
        Value,
        "SELinux label for the process (not supported: refused)",
    ),
    flag(
        "apparmor",
        &[],
        Value,
        "AppArmor profile for the process (not supported: refused)",
    ),
    flag(
        "no-new-privs",
        &[],
        Bool,
        "set no_new_privs for the process",
    ),
    flag(
        "cap",
        &["c"],
        Value,
        "add a capability (CAP_NAME) to the process's sets (repeatable)",
    ),
    PRESERVE_FDS,
    flag(
        "cgroup",
        &[],
        Value,
        "run the process in an (existing) sub-cgroup(s). Format is [<controller>:]<cgroup>.",
    ),
    flag(
        "ignore-paused",
        &[],
        Bool,
        "allow exec in a paused container",
    ),
];

const FORMAT: Flag = flag(
    "format",
    &["f"],
    Value,
    "output format: table or json (default: \"table\")",
);

const UPDATE_FLAGS: &[Flag] = &[
    flag(
        "resources",
        &["r"],
        Value,
        "file holding a LinuxResources JSON document, or '-' for standard input",
    ),
    flag("blkio-weight", &[], Value, "block IO weight, 10 to 1000"),
    flag("cpu-period", &[], Value, "CFS period in microseconds"),
    flag(
        "cpu-quota",
        &[],
        Value,
        "CFS quota in microseconds per period",
    ),
    flag("cpu-share", &[], Value, "CPU shares (relative weight)"),
    flag(
        "cpu-rt-period",
        &[],
        Value,
        "realtime period in microseconds",
    ),
    flag(
        "cpu-rt-runtime",
        &[],
        Value,
        "realtime runtime in microseconds",
    ),
    flag("cpuset-cpus", &[], Value, "CPUs to run on, e.g. 0-1"),
    flag("cpuset-mems", &[], Value, "memory nodes to use"),
    flag(
        "kernel-memory",
        &[],
        Value,
        "kernel memory limit (ignored, as by runc)",
    ),
    flag(
        "kernel-memory-tcp",
        &[],
        Value,
        "kernel TCP memory limit (ignored)",
    ),
    flag(
        "memory",
        &[],
        Value,
        "memory limit in bytes (suffixes k, m, g)",
    ),
    flag(
        "memory-reservation",
        &[],
        Value,
        "memory soft limit in bytes",
    ),
    flag(
        "memory-swap",
        &[],
        Value,
        "memory plus swap limit in bytes; -1 for unlimited swap",
    ),
    flag("pids-limit", &[], Value, "maximum number of processes"),
    flag(
        "l3-cache-schema",
        &[],
        Value,
        "Intel RDT L3 schema (not supported)",
    ),
    flag(
        "mem-bw-schema",
        &[],
        Value,
        "Intel RDT memory bandwidth schema (not supported)",
    ),
];

/// Flags of `checkpoint` and `restore`, accepted only so that the refusal names the real
/// problem rather than a flag.
const CRIU_FLAGS: &[Flag] = &[
    hidden("image-path", Value),
    hidden("work-path", Value),
    hidden("parent-path", Value),
    hidden("leave-running", Bool),
    hidden("tcp-established", Bool),
    hidden("ext-unix-sk", Bool),
    hidden("shell-job", Bool),
    hidden("lazy-pages", Bool),
    hidden("status-fd", Value),
    hidden("page-server", Value),
    hidden("file-locks", Bool),
    hidden("pre-dump", Bool),
    hidden("manage-cgroups-mode", Value),
    hidden("empty-ns", Value),
    hidden("auto-dedup", Bool),
    hidden("bundle", Value),
    hidden("detach", Bool),
    hidden("pid-file", Value),
    hidden("no-subreaper", Bool),
    hidden("no-pivot", Bool),
    hidden("console-socket", Value),
];

/// A command: its name, a one-line summary, flags, and positional arguments.
struct Spec {
    name: &'static str,
    about: &'static str,
    flags: &'static [&'static [Flag]],
    positionals: &'static str,
    hidden: bool,
}

const fn cmd(
    name: &'static str,
    about: &'static str,
    flags: &'static [&'static [Flag]],
    positionals: &'static str,
) -> Spec {
    Spec {
        name,
        about,
        flags,
        positionals,
        hidden: false,
    }
}

const COMMANDS: &[Spec] = &[
    cmd(
        "checkpoint",
        "checkpoint a running container (not supported: nanokube has no CRIU support)",
        &[CRIU_FLAGS],
        "<container-id>",
    ),
    cmd(
        "create",
        "create a container from a bundle; its process waits for start",
        &[CREATE_FLAGS],
        "<container-id>",
    ),
    cmd(
        "delete",
        "delete a stopped or created container (running ones with --force)",
        &[&[flag(
            "force",
            &["f"],
            Bool,
            "kill the container first if it is running (SIGKILL)",
        )]],
        "<container-id>",
    ),
    cmd(
        "events",
        "print a container's statistics and OOM events as JSON lines",
        &[&[
            flag(
                "interval",
                &[],
                Value,
                "time between statistics (default: 5s)",
            ),
            flag("stats", &[], Bool, "print the statistics once and exit"),
        ]],
        "<container-id>",
    ),
    cmd(
        "exec",
        "run a new process inside a running container",
        &[EXEC_FLAGS],
        "<container-id> <command> [args...]  ||  -p process.json <container-id>",
    ),
    cmd(
        "kill",
        "send a signal (default: SIGTERM) to the container's init process",
        &[&[flag(
            "all",
            &["a"],
            Bool,
            "signal every process in the container",
        )]],
        "<container-id> [signal]",
    ),
    cmd(
        "list",
        "list the containers under --root",
        &[&[
            FORMAT,
            flag("quiet", &["q"], Bool, "print the container ids only"),
        ]],
        "",
    ),
    cmd(
        "pause",
        "freeze every process in the container",
        &[],
        "<container-id>",
    ),
    cmd(
        "ps",
        "list the processes of a container (with ps(1)'s arguments, default -ef)",
        &[&[FORMAT]],
        "<container-id> [ps options]",
    ),
    cmd(
        "restore",
        "restore a checkpointed container (not supported: nanokube has no CRIU support)",
        &[CRIU_FLAGS],
        "<container-id>",
    ),
    cmd(
        "resume",
        "thaw the processes of a paused container",
        &[],
        "<container-id>",
    ),
    cmd(
        "run",
        "create and start a container; without -d wait for it, delete it and exit with its status",
        &[CREATE_FLAGS, RUN_FLAGS],
        "<container-id>",
    ),
    cmd(
        "spec",
        "write a starter config.json for a bundle",
        &[&[
            BUNDLE,
            flag(
                "rootless",
                &[],
                Bool,
                "a configuration for a rootless container",
            ),
        ]],
        "",
    ),
    cmd(
        "start",
        "let a created container's process run",
        &[],
        "<container-id>",
    ),
    cmd(
        "state",
        "print the state of a container as JSON",
        &[],
        "<container-id>",
    ),
    cmd(
        "update",
        "change the resource limits of a container",
        &[UPDATE_FLAGS],
        "<container-id>",
    ),
    cmd("features", "print the runtime's features as JSON", &[], ""),
    Spec {
        name: "init",
        about: "internal: the container's init (run by the runtime itself)",
        flags: &[],
        positionals: "",
        hidden: true,
    },
];

/// Flags seen so far, by long name, in order (a repeated flag appears more than once).
#[derive(Default)]
struct Seen {
    flags: Vec<(&'static str, String)>,
    positionals: Vec<String>,
}

impl Seen {
    /// The last value given for `long` (later flags win, as with runc).
    fn value(&self, long: &str) -> Option<String> {
        self.flags
            .iter()
            .rev()
            .find(|(l, _)| *l == long)
            .map(|(_, v)| v.clone())
    }

    fn values(&self, long: &str) -> Vec<String> {
        self.flags
            .iter()
            .filter(|(l, _)| *l == long)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// A boolean flag: absent is `None`, `--flag` and `--flag=true` are true.
    fn bool(&self, long: &str) -> Option<bool> {
        self.value(long).map(|v| v == "true")
    }

    fn on(&self, long: &str) -> bool {
        self.bool(long).unwrap_or(false)
    }
}

/// The name the runtime goes by in help and messages: `runc` (or `nanokube-runc`) when
/// called through such a link, else `nanokube runtime`.
pub fn program_name() -> String {
    let arg0 = std::env::args_os().next().unwrap_or_default();
    let base = std::path::Path::new(&arg0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if base == "runc" || base == "nanokube-runc" {
        base
    } else {
        "nanokube runtime".into()
    }
}

fn version_text(name: &str) -> String {
    format!(
        "{name} version {}\ncommit: nanokube-{}\nspec: 1.2.0\n",
        env!("CARGO_PKG_VERSION"),
        env!("CARGO_PKG_VERSION")
    )
}

/// Parses the arguments after `runtime` (`nanokube runtime ARGS...`).
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<RuntimeArgs, Outcome> {
    let name = program_name();
    let args: Vec<String> = args
        .into_iter()
        .map(|a| {
            a.into_string().map_err(|a| Outcome::Usage {
                message: format!("argument is not UTF-8: {a:?}"),
                code: 1,
            })
        })
        .collect::<Result<_, _>>()?;
    let mut seen = Seen::default();
    let mut command: Option<&Spec> = None;
    let mut it = args.into_iter();
    let mut only_positionals = false;
    let mut help = false;
    while let Some(arg) = it.next() {
        if only_positionals || arg == "-" || !arg.starts_with('-') {
            match command {
                None => {
                    if arg == "help" || arg == "h" {
                        // `runc help [COMMAND]`
                        let topic = it.next();
                        return Err(help_for(&name, topic.as_deref()));
                    }
                    let Some(c) = COMMANDS.iter().find(|c| c.name == arg) else {
                        // `runc foo -h` asks for help on a topic that does not exist.
                        if help || it.any(|a| a == "-h" || a == "--help") {
                            return Err(no_help_topic(&arg));
                        }
                        return Err(Outcome::Usage {
                            message: format!(
                                "{name}: '{arg}' is not a command (see '{name} --help')"
                            ),
                            code: 3,
                        });
                    };
                    command = Some(c);
                }
                Some(c) => {
                    seen.positionals.push(arg);
                    // `exec ID COMMAND...`, `ps ID PS-ARGS...`: everything after the id
                    // belongs to the command.
                    if (c.name == "exec" || c.name == "ps") && seen.positionals.len() == 1 {
                        let rest: Vec<String> = it.by_ref().collect();
                        let skip = usize::from(rest.first().is_some_and(|a| a == "--"));
                        seen.positionals.extend(rest.into_iter().skip(skip));
                    }
                }
            }
            continue;
        }
        if arg == "--" {
            only_positionals = true;
            continue;
        }
        if arg == "--help" || arg == "-h" {
            match command {
                Some(c) => return Err(Outcome::Print(help_text(&name, Some(c)))),
                // `runc -h foo` names a topic next; `runc -h` alone is the overview.
                None => {
                    help = true;
                    continue;
                }
            }
        }
        if command.is_none() && (arg == "--version" || arg == "-v") {
            return Err(Outcome::Print(version_text(&name)));
        }
        let flags = command.map(|c| c.flags).unwrap_or(&[]);
        let (flag, inline) = find_flag(&arg, flags).ok_or_else(|| {
            usage(
                &name,
                command,
                format!(
                    "flag provided but not defined: -{}",
                    arg.trim_start_matches('-')
                        .split('=')
                        .next()
                        .unwrap_or_default()
                ),
            )
        })?;
        let value = match (flag.kind, inline) {
            (Bool, None) => "true".to_string(),
            (Bool, Some(v)) => match v.as_str() {
                "true" | "1" | "t" | "T" | "TRUE" | "True" => "true".into(),
                "false" | "0" | "f" | "F" | "FALSE" | "False" => "false".into(),
                _ => {
                    return Err(usage(
                        &name,
                        command,
                        format!("invalid boolean value {v:?} for -{}", flag.long),
                    ))
                }
            },
            (Value, Some(v)) => v,
            (Value, None) => it.next().ok_or_else(|| {
                usage(
                    &name,
                    command,
                    format!("flag needs an argument: -{}", flag.long),
                )
            })?,
        };
        seen.flags.push((flag.long, value));
    }
    if help {
        return Err(Outcome::Print(help_text(&name, command)));
    }
    let Some(spec) = command else {
        // runc with no command prints its help.
        return Err(Outcome::Print(help_text(&name, None)));
    };
    let global = global(&name, &seen)?;
    let command = build(&name, spec, &mut seen)?;
    Ok(RuntimeArgs { global, command })
}

fn global(name: &str, seen: &Seen) -> Result<Global, Outcome> {
    let log_format = match seen.value("log-format").as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            return Err(usage(
                name,
                None,
                format!("invalid log-format: {other} (want text or json)"),
            ))
        }
    };
    if let Some(r) = seen.value("rootless") {
        if !matches!(r.as_str(), "true" | "false" | "auto") {
            return Err(usage(
                name,
                None,
                format!("invalid --rootless value {r:?} (want true, false or auto)"),
            ));
        }
    }
    Ok(Global {
        root: seen
            .value("root")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(state::DEFAULT_ROOT)),
        log: seen
            .value("log")
            .filter(|l| !l.is_empty() && l != "/dev/stderr")
            .map(PathBuf::from),
        log_format,
        debug: seen.on("debug"),
        systemd_cgroup: seen.on("systemd-cgroup"),
    })
}

/// Finds the flag `arg` names among the command's and the global flags; returns it with the
/// value given inline (`--flag=value`, or attached to a one-letter alias), if any.
fn find_flag(
    arg: &str,
    groups: &'static [&'static [Flag]],
) -> Option<(&'static Flag, Option<String>)> {
    let all = || groups.iter().copied().flatten().chain(GLOBAL);
    let body = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-'))?;
    let (name, inline) = match body.split_once('=') {
        Some((n, v)) => (n, Some(v.to_string())),
        None => (body, None),
    };
    if let Some(f) = all().find(|f| f.long == name || f.aliases.contains(&name)) {
        return Some((f, inline));
    }
    // `-bVALUE`: a one-letter alias with its value attached (single dash only).
    if arg.starts_with("--") {
        return None;
    }
    let mut chars = body.chars();
    let short = chars.next()?.to_string();
    let rest: String = chars.collect();
    let f = all().find(|f| f.aliases.contains(&short.as_str()))?;
    if f.kind == Bool {
        return None;
    }
    Some((f, Some(rest.strip_prefix('=').unwrap_or(&rest).to_string())))
}

/// A Go duration: "5s", "100ms", "1m30s", "1h", "1.5s".
pub fn parse_duration(text: &str) -> Option<Duration> {
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += n * scale;
    }
    Some(Duration::from_secs_f64(total))
}

/// Builds the command from what was seen, checking its positional arguments.
fn build(name: &str, spec: &'static Spec, seen: &mut Seen) -> Result<Command, Outcome> {
    let pos = std::mem::take(&mut seen.positionals);
    let exactly = |n: usize| -> Result<(), Outcome> {
        if pos.len() != n {
            return Err(usage(
                name,
                Some(spec),
                format!("{name}: \"{}\" requires exactly {n} argument(s)", spec.name),
            ));
        }
        Ok(())
    };
    let at_least = |n: usize| -> Result<(), Outcome> {
        if pos.len() < n {
            return Err(usage(
                name,
                Some(spec),
                format!(
                    "{name}: \"{}\" requires a minimum of {n} argument(s)",
                    spec.name
                ),
            ));
        }
        Ok(())
    };
    let id = || pos.first().cloned().unwrap_or_default();
    let fds = |seen: &Seen| -> Result<u32, Outcome> {
        match seen.value("preserve-fds") {
            None => Ok(0),
            Some(v) => v.parse().map_err(|_| {
                usage(
                    name,
                    Some(spec),
                    format!("invalid value {v:?} for flag -preserve-fds: parse error"),
                )
            }),
        }
    };
    let create = |seen: &Seen| -> Result<CreateArgs, Outcome> {
        Ok(CreateArgs {
            bundle: PathBuf::from(seen.value("bundle").unwrap_or_else(|| ".".into())),
            pid_file: seen.value("pid-file").map(PathBuf::from),
            console_socket: seen.value("console-socket").map(PathBuf::from),
            default_seccomp: seen.on("default-seccomp"),
            no_pivot: seen.on("no-pivot"),
            no_new_keyring: seen.on("no-new-keyring"),
            preserve_fds: fds(seen)?,
            id: id(),
        })
    };
    let format = |seen: &Seen| -> Result<String, Outcome> {
        let f = seen.value("format").unwrap_or_else(|| "table".into());
        if f != "table" && f != "json" {
            return Err(Outcome::Usage {
                message: format!("invalid format option {f:?} (want table or json)"),
                code: 1,
            });
        }
        Ok(f)
    };
    Ok(match spec.name {
        "create" => {
            exactly(1)?;
            Command::Create(create(seen)?)
        }
        "run" => {
            exactly(1)?;
            Command::Run {
                create: create(seen)?,
                detach: seen.on("detach"),
                keep: seen.on("keep"),
            }
        }
        "start" | "state" | "pause" | "resume" => {
            exactly(1)?;
            match spec.name {
                "start" => Command::Start { id: id() },
                "state" => Command::State { id: id() },
                "pause" => Command::Pause { id: id() },
                _ => Command::Resume { id: id() },
            }
        }
        "kill" => {
            at_least(1)?;
            if pos.len() > 2 {
                return Err(usage(
                    name,
                    Some(spec),
                    format!("{name}: \"kill\" requires a maximum of 2 argument(s)"),
                ));
            }
            Command::Kill {
                all: seen.on("all"),
                id: id(),
                signal: pos.get(1).cloned(),
            }
        }
        "delete" => {
            exactly(1)?;
            Command::Delete {
                force: seen.on("force"),
                id: id(),
            }
        }
        "list" => {
            exactly(0)?;
            Command::List {
                quiet: seen.on("quiet"),
                format: format(seen)?,
            }
        }
        "ps" => {
            at_least(1)?;
            Command::Ps {
                format: format(seen)?,
                id: id(),
                ps_args: pos[1..].to_vec(),
            }
        }
        "exec" => {
            let process = seen.value("process").map(PathBuf::from);
            at_least(if process.is_some() { 1 } else { 2 })?;
            Command::Exec(ExecArgs {
                cwd: seen.value("cwd").map(PathBuf::from),
                env: seen.values("env"),
                user: seen.value("user"),
                additional_gids: seen.values("additional-gids"),
                process,
                tty: seen.bool("tty"),
                console_socket: seen.value("console-socket").map(PathBuf::from),
                detach: seen.on("detach"),
                pid_file: seen.value("pid-file").map(PathBuf::from),
                caps: seen.values("cap"),
                no_new_privs: seen.bool("no-new-privs"),
                preserve_fds: fds(seen)?,
                apparmor: seen.value("apparmor"),
                process_label: seen.value("process-label"),
                cgroup: crate::runtime::cgroups::SubCgroups::parse(&seen.values("cgroup"))
                    .map_err(|message| Outcome::Usage { message, code: 1 })?,
                ignore_paused: seen.on("ignore-paused"),
                id: id(),
                command: pos[1..].to_vec(),
            })
        }
        "update" => {
            exactly(1)?;
            let resources = seen.value("resources");
            let flags = seen
                .flags
                .iter()
                .filter(|(l, _)| UPDATE_FLAGS.iter().any(|f| f.long == *l) && *l != "resources")
                .map(|(l, v)| (l.to_string(), v.clone()))
                .collect();
            Command::Update {
                id: id(),
                resources,
                flags,
            }
        }
        "events" => {
            exactly(1)?;
            let interval =
                match seen.value("interval") {
                    None => Duration::from_secs(5),
                    Some(v) => parse_duration(&v).filter(|d| !d.is_zero()).ok_or_else(|| {
                        Outcome::Usage {
                            message: format!(
                            "invalid value {v:?} for flag -interval: want a duration such as 5s"
                        ),
                            code: 1,
                        }
                    })?,
                };
            Command::Events {
                id: id(),
                stats: seen.on("stats"),
                interval,
            }
        }
        "spec" => {
            exactly(0)?;
            Command::Spec {
                bundle: seen.value("bundle").map(PathBuf::from),
                rootless: seen.on("rootless"),
            }
        }
        "features" => {
            exactly(0)?;
            Command::Features
        }
        "checkpoint" | "restore" => Command::Unsupported { name: spec.name },
        "init" => {
            exactly(0)?;
            Command::Init
        }
        other => unreachable!("command {other} is in COMMANDS but not built"),
    })
}

fn usage(name: &str, command: Option<&Spec>, message: String) -> Outcome {
    let see = match command {
        Some(c) => format!("{name} {} --help", c.name),
        None => format!("{name} --help"),
    };
    Outcome::Usage {
        message: format!("{message}\n(see '{see}')"),
        code: 1,
    }
}

fn no_help_topic(topic: &str) -> Outcome {
    Outcome::Usage {
        message: format!("No help topic for '{topic}'"),
        code: 3,
    }
}

fn help_for(name: &str, topic: Option<&str>) -> Outcome {
    match topic {
        None => Outcome::Print(help_text(name, None)),
        Some(t) => match COMMANDS.iter().find(|c| c.name == t && !c.hidden) {
            Some(c) => Outcome::Print(help_text(name, Some(c))),
            None => no_help_topic(t),
        },
    }
}

fn flag_lines(flags: &[Flag], out: &mut Vec<(String, &'static str)>) {
    for f in flags.iter().filter(|f| !f.hidden) {
        let value = if f.kind == Value { " value" } else { "" };
        let mut left = format!("--{}{value}", f.long);
        for a in f.aliases {
            let dash = if a.len() == 1 { "-" } else { "--" };
            left.push_str(&format!(", {dash}{a}{value}"));
        }
        out.push((left, f.help));
    }
}

fn columns(rows: &[(String, &str)], out: &mut String) {
    let width = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    for (left, help) in rows {
        out.push_str(&format!("   {left:<width$}  {help}\n"));
    }
}

/// The help text of the whole CLI (`command` None) or of one command, laid out as runc's
/// (NAME, USAGE, COMMANDS or OPTIONS), which scripts and tests look for.
fn help_text(name: &str, command: Option<&Spec>) -> String {
    let mut out = String::new();
    match command {
        None => {
            out.push_str(&format!(
                "NAME:\n   {name} - Open Container Initiative runtime (nanokube)\n\n"
            ));
            out.push_str(
                "A runc-compatible OCI runtime: it runs containers from bundles (a config.json\n\
                 and a root filesystem) with namespaces, cgroups and an overlay or bind root.\n\n",
            );
            out.push_str(&format!(
                "USAGE:\n   {name} [global options] command [command options] [arguments...]\n\n"
            ));
            out.push_str("VERSION:\n   ");
            out.push_str(&version_text(name).replacen(&format!("{name} version "), "", 1));
            out.push_str("\nCOMMANDS:\n");
            let mut rows: Vec<(String, &str)> = COMMANDS
                .iter()
                .filter(|c| !c.hidden)
                .map(|c| (c.name.to_string(), c.about))
                .collect();
            rows.push((
                "help, h".into(),
                "show the commands, or the help of one command",
            ));
            columns(&rows, &mut out);
            out.push_str("\nGLOBAL OPTIONS:\n");
            let mut rows = Vec::new();
            flag_lines(GLOBAL, &mut rows);
            rows.push(("--help, -h".into(), "show help"));
            rows.push(("--version, -v".into(), "print the version"));
            columns(&rows, &mut out);
        }
        Some(c) => {
            out.push_str(&format!("NAME:\n   {name} {} - {}\n\n", c.name, c.about));
            let opts = if c.flags.iter().any(|g| g.iter().any(|f| !f.hidden)) {
                " [command options]"
            } else {
                ""
            };
            out.push_str(&format!(
                "USAGE:\n   {name} {}{opts} {}\n",
                c.name, c.positionals
            ));
            let mut rows = Vec::new();
            for group in c.flags {
                flag_lines(group, &mut rows);
            }
            if !rows.is_empty() {
                out.push_str("\nOPTIONS:\n");
                columns(&rows, &mut out);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<RuntimeArgs, Outcome> {
        parse(args.iter().map(OsString::from))
    }

    fn usage_text(args: &[&str]) -> String {
        match p(args) {
            Err(Outcome::Usage { message, .. }) => message,
            other => panic!("{args:?}: expected a usage error, got {other:?}"),
        }
    }

    #[test]
    fn runc_style_create_and_run() {
        let a = p(&[
            "--root",
            "/r",
            "create",
            "--bundle",
            "/b",
            "--pid-file=/p",
            "--no-pivot",
            "--no-new-keyring",
            "--preserve-fds",
            "2",
            "c1",
        ])
        .unwrap();
        assert_eq!(a.global.root, PathBuf::from("/r"));
        let Command::Create(c) = a.command else {
            panic!()
        };
        assert_eq!(
            (c.bundle, c.pid_file, c.id),
            ("/b".into(), Some("/p".into()), "c1".into())
        );
        assert!(c.no_pivot && c.no_new_keyring && !c.default_seccomp);
        assert_eq!(c.preserve_fds, 2);

        // Global flags after the command, attached short values, -d, Go's single-dash names.
        let a = p(&["run", "-d", "-b/b", "c2", "--root=/x", "--default-seccomp"]).unwrap();
        assert_eq!(a.global.root, PathBuf::from("/x"));
        let Command::Run {
            create,
            detach,
            keep,
        } = a.command
        else {
            panic!()
        };
        assert!(detach && !keep && create.default_seccomp);
        assert_eq!((create.bundle, create.id), ("/b".into(), "c2".into()));
        let a = p(&["-root", "/y", "run", "-bundle", "/b", "--keep", "c3"]).unwrap();
        assert_eq!(a.global.root, PathBuf::from("/y"));
        let Command::Run {
            create,
            detach,
            keep,
        } = a.command
        else {
            panic!()
        };
        assert!(keep && !detach);
        assert_eq!(create.bundle, PathBuf::from("/b"));

        let a = p(&["run", "c3"]).unwrap();
        assert_eq!(a.global.root, PathBuf::from(state::DEFAULT_ROOT));
        let Command::Run { create, detach, .. } = a.command else {
            panic!()
        };
        assert_eq!((create.bundle, detach), (".".into(), false));
        let a = p(&[
            "--log",
            "/l",
            "--log-format",
            "json",
            "--systemd-cgroup",
            "--debug",
            "start",
            "x",
        ])
        .unwrap();
        assert_eq!(a.global.log, Some(PathBuf::from("/l")));
        assert_eq!(a.global.log_format, LogFormat::Json);
        assert!(a.global.systemd_cgroup && a.global.debug);
        assert!(usage_text(&["--log-format", "xml", "start", "x"]).contains("log-format"));
    }

    #[test]
    fn exec_takes_the_command_after_the_id_with_or_without_dashes() {
        let flags = [
            "exec",
            "-e",
            "A=1",
            "--env=B=2",
            "-t",
            "--cwd",
            "/w",
            "--cap",
            "CAP_SYS_ADMIN",
            "-g",
            "10",
            "--additional-gids=11",
            "c",
        ];
        for tail in [&["--", "ls", "-l"][..], &["ls", "-l"][..]] {
            let args: Vec<&str> = flags.iter().chain(tail).copied().collect();
            let Command::Exec(e) = p(&args).unwrap().command else {
                panic!()
            };
            assert_eq!(e.cwd, Some("/w".into()));
            assert_eq!(e.env, ["A=1", "B=2"]);
            assert_eq!(e.tty, Some(true));
            assert!(e.user.is_none() && !e.detach);
            assert_eq!(e.caps, ["CAP_SYS_ADMIN"]);
            assert_eq!(e.additional_gids, ["10", "11"]);
            assert_eq!(e.id, "c");
            assert_eq!(e.command, ["ls", "-l"]);
        }
        // What containerd's shim and conmon send: a process file, no command.
        let Command::Exec(e) = p(&[
            "exec",
            "--process",
            "/p.json",
            "--detach",
            "--pid-file",
            "/pid",
            "c",
        ])
        .unwrap()
        .command
        else {
            panic!()
        };
        assert!(e.detach && e.command.is_empty() && e.tty.is_none());
        assert_eq!(
            (e.process, e.pid_file),
            (Some("/p.json".into()), Some("/pid".into()))
        );
        assert!(usage_text(&["exec", "c"]).contains("requires a minimum of 2 argument(s)"));
    }

    #[test]
    fn kill_delete_list_ps() {
        let Command::Kill { all, id, signal } = p(&["kill", "-a", "c", "KILL"]).unwrap().command
        else {
            panic!()
        };
        assert!(all);
        assert_eq!((id.as_str(), signal.as_deref()), ("c", Some("KILL")));
        let Command::Delete { force, .. } = p(&["delete", "--force", "c"]).unwrap().command else {
            panic!()
        };
        assert!(force);
        let Command::List { quiet, format } = p(&["list", "-q", "-f", "json"]).unwrap().command
        else {
            panic!()
        };
        assert!(quiet);
        assert_eq!(format, "json");
        let Command::Ps {
            format,
            id,
            ps_args,
        } = p(&["ps", "--format", "json", "c"]).unwrap().command
        else {
            panic!()
        };
        assert_eq!((format.as_str(), id.as_str()), ("json", "c"));
        assert!(ps_args.is_empty());
        // ps(1)'s own flags after the id are its arguments, not ours.
        let Command::Ps { id, ps_args, .. } = p(&["ps", "c", "-e", "-x"]).unwrap().command else {
            panic!()
        };
        assert_eq!(
            (id.as_str(), ps_args),
            ("c", vec!["-e".into(), "-x".into()])
        );
    }

    #[test]
    fn update_events_spec_and_the_rest() {
        let Command::Update {
            id,
            resources,
            flags,
        } = p(&[
            "update",
            "--memory",
            "100M",
            "--pids-limit=10",
            "-r",
            "-",
            "c",
        ])
        .unwrap()
        .command
        else {
            panic!()
        };
        assert_eq!((id.as_str(), resources.as_deref()), ("c", Some("-")));
        assert_eq!(
            flags,
            [
                ("memory".to_string(), "100M".to_string()),
                ("pids-limit".into(), "10".into())
            ]
        );
        let Command::Events {
            stats, interval, ..
        } = p(&["events", "--interval", "1m30s", "c"]).unwrap().command
        else {
            panic!()
        };
        assert!(!stats);
        assert_eq!(interval, Duration::from_secs(90));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("5"), None);
        assert!(usage_text(&["events", "--interval", "soon", "c"]).contains("interval"));
        let Command::Spec { bundle, rootless } =
            p(&["spec", "--rootless", "-b", "/b"]).unwrap().command
        else {
            panic!()
        };
        assert!(rootless);
        assert_eq!(bundle, Some("/b".into()));
        assert!(matches!(
            p(&["features"]).unwrap().command,
            Command::Features
        ));
        assert!(matches!(
            p(&["checkpoint", "--image-path", "/i", "--leave-running", "c"])
                .unwrap()
                .command,
            Command::Unsupported { name: "checkpoint" }
        ));
        assert!(matches!(
            p(&["pause", "c"]).unwrap().command,
            Command::Pause { .. }
        ));
        assert!(matches!(
            p(&["resume", "c"]).unwrap().command,
            Command::Resume { .. }
        ));
    }

    #[test]
    fn bad_input_is_one_clear_usage_error() {
        assert!(matches!(
            p(&["frobnicate"]),
            Err(Outcome::Usage { code: 3, .. })
        ));
        assert!(
            usage_text(&["create", "--nope", "c"]).contains("flag provided but not defined: -nope")
        );
        assert!(usage_text(&["create"]).contains("\"create\" requires exactly 1 argument(s)"));
        assert!(usage_text(&["start", "a", "b"]).contains("requires exactly 1 argument(s)"));
        assert!(usage_text(&["create", "--bundle"]).contains("flag needs an argument: -bundle"));
        assert!(usage_text(&["delete", "--force=yes", "c"]).contains("invalid boolean value"));
        assert!(usage_text(&["list", "--format", "yaml"]).contains("want table or json"));
        assert!(usage_text(&["run", "--preserve-fds", "x", "c"]).contains("preserve-fds"));
        // Flags of one command are not accepted by another.
        assert!(usage_text(&["start", "-d", "c"]).contains("not defined: -d"));
        assert_eq!(
            p(&["foo", "-h"]),
            Err(Outcome::Usage {
                message: "No help topic for 'foo'".into(),
                code: 3
            })
        );
        assert_eq!(
            p(&["-h", "foo"]),
            Err(Outcome::Usage {
                message: "No help topic for 'foo'".into(),
                code: 3
            })
        );
    }

    #[test]
    fn help_and_version_are_laid_out_as_runc_s() {
        let Err(Outcome::Print(top)) = p(&["--help"]) else {
            panic!()
        };
        let lines: Vec<&str> = top.lines().collect();
        assert_eq!(lines[0], "NAME:");
        assert!(lines[1].contains(" - Open Container Initiative runtime"));
        for c in [
            "checkpoint",
            "create",
            "delete",
            "events",
            "exec",
            "kill",
            "list",
            "pause",
            "ps",
            "restore",
            "resume",
            "run",
            "spec",
            "start",
            "state",
            "update",
            "features",
        ] {
            assert!(
                top.contains(&format!("\n   {c} ")),
                "{c} missing from:\n{top}"
            );
        }
        assert!(!top.contains("   init ") && !top.contains("image-path"));
        assert!(top.contains("--log-format value"));
        let Err(Outcome::Print(run)) = p(&["run", "-h"]) else {
            panic!()
        };
        let lines: Vec<&str> = run.lines().collect();
        assert_eq!(lines[0], "NAME:");
        assert!(lines[1].ends_with("runtime run - create and start a container; without -d wait for it, delete it and exit with its status"), "{run}");
        assert!(run.contains("--bundle value, -b value") && run.contains("--keep"));
        assert_eq!(p(&["help", "exec"]), p(&["exec", "--help"]));
        let Err(Outcome::Print(v)) = p(&["-v"]) else {
            panic!()
        };
        let lines: Vec<&str> = v.lines().collect();
        assert!(lines[0].starts_with("nanokube runtime version 0."), "{v}");
        assert!(lines[1].starts_with("commit: "));
        assert!(lines[2].starts_with("spec: 1."));
    }
}
