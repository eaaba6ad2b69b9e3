//! The command line of `nanokube runtime`, parsed by hand from one table of flags per command.
//!
//! runc-compatible callers (containerd shims, benchmarks, scripts) start one `nanokube runtime`
//! process per container operation, so this parser is on the path of every container start.
//! A derive-based parser builds its whole command tree on each start, which costs more than the
//! rest of a `run` under emulation (see docs/runtime.md, "Speed"); this one is a loop over the
//! arguments. It accepts what runc accepts: global flags before or after the command,
//! `--flag value`, `--flag=value`, `-f value`, `-fvalue`, `--` to end the flags, and for `exec`
//! the command right after the container id.

use std::ffi::OsString;
use std::path::PathBuf;

use super::state;

/// The parsed command line.
#[derive(Debug)]
pub struct RuntimeArgs {
    /// Directory holding container state (`--root`).
    pub root: PathBuf,
    pub command: Command,
}

#[derive(Debug)]
pub enum Command {
    Create(CreateArgs),
    Start {
        id: String,
    },
    Run {
        create: CreateArgs,
        detach: bool,
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
    Exec {
        cwd: Option<PathBuf>,
        env: Vec<String>,
        user: Option<String>,
        tty: bool,
        console_socket: Option<PathBuf>,
        id: String,
        command: Vec<String>,
    },
    Ps {
        format: String,
        id: String,
    },
    /// Internal: the container's init (run by the runtime itself).
    Init,
}

#[derive(Debug)]
pub struct CreateArgs {
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub default_seccomp: bool,
    pub id: String,
}

/// What the command line asks for besides a command.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Print this text to stdout and exit 0 (`--help`, `--version`).
    Print(String),
    /// A usage error: print it to stderr and exit 2, as runc and clap do.
    Usage(String),
}

/// One flag: `--long`, maybe `-s`, and whether it takes a value (named by `value`).
struct Flag {
    long: &'static str,
    short: Option<char>,
    value: Option<&'static str>,
    help: &'static str,
    /// Accepted for runc compatibility but not listed.
    hidden: bool,
}

const fn flag(
    long: &'static str,
    short: Option<char>,
    value: Option<&'static str>,
    help: &'static str,
) -> Flag {
    Flag {
        long,
        short,
        value,
        help,
        hidden: false,
    }
}

const fn compat(long: &'static str, value: Option<&'static str>) -> Flag {
    Flag {
        long,
        short: None,
        value,
        help: "",
        hidden: true,
    }
}

const GLOBAL: &[Flag] = &[
    flag(
        "root",
        None,
        Some("DIR"),
        "Directory holding container state [default: /run/nanokube/runtime]",
    ),
    compat("log", Some("FILE")),
    compat("log-format", Some("FORMAT")),
    compat("debug", None),
    compat("systemd-cgroup", None),
];

const CREATE_FLAGS: &[Flag] = &[
    flag(
        "bundle",
        Some('b'),
        Some("DIR"),
        "Bundle directory (holding config.json) [default: .]",
    ),
    flag("pid-file", None, Some("FILE"), "Write the init's pid here"),
    flag(
        "console-socket",
        None,
        Some("SOCKET"),
        "Unix socket that receives the terminal master when process.terminal is true",
    ),
    flag(
        "default-seccomp",
        None,
        None,
        "Apply the built-in default seccomp profile when the spec has none",
    ),
];

const DETACH: &[Flag] = &[flag(
    "detach",
    Some('d'),
    None,
    "Return once started, leaving the container running",
)];

const EXEC_FLAGS: &[Flag] = &[
    flag(
        "cwd",
        None,
        Some("DIR"),
        "Working directory inside the container",
    ),
    flag(
        "env",
        Some('e'),
        Some("NAME=VALUE"),
        "Extra environment variable (repeatable)",
    ),
    flag("user", Some('u'), Some("UID[:GID]"), "User to run as"),
    flag(
        "tty",
        Some('t'),
        None,
        "Allocate a terminal; its master goes to --console-socket",
    ),
    flag(
        "console-socket",
        None,
        Some("SOCKET"),
        "Unix socket that receives the terminal master (with --tty)",
    ),
];

/// A command: its name, one-line summary, flags, and positional arguments (`<ID>` etc.).
struct Spec {
    name: &'static str,
    about: &'static str,
    /// Groups of flags (a command may share another's).
    flags: &'static [&'static [Flag]],
    positionals: &'static str,
    hidden: bool,
}

const COMMANDS: &[Spec] = &[
    Spec {
        name: "create",
        about: "Create a container from a bundle; it waits for `start`",
        flags: &[CREATE_FLAGS],
        positionals: "<ID>",
        hidden: false,
    },
    Spec {
        name: "start",
        about: "Start a created container's program",
        flags: &[],
        positionals: "<ID>",
        hidden: false,
    },
    Spec {
        name: "run",
        about: "Create and start; without -d wait, delete, and exit with the container's status",
        flags: &[CREATE_FLAGS, DETACH],
        positionals: "<ID>",
        hidden: false,
    },
    Spec {
        name: "state",
        about: "Print the OCI state of a container as JSON",
        flags: &[],
        positionals: "<ID>",
        hidden: false,
    },
    Spec {
        name: "kill",
        about: "Send a signal (name or number, default TERM) to a container",
        flags: &[&[flag(
            "all",
            Some('a'),
            None,
            "Signal every process in the container, not only its init",
        )]],
        positionals: "<ID> [SIGNAL]",
        hidden: false,
    },
    Spec {
        name: "delete",
        about: "Delete a stopped (or created, or with --force running) container",
        flags: &[&[flag(
            "force",
            Some('f'),
            None,
            "Kill it first if it is running",
        )]],
        positionals: "<ID>",
        hidden: false,
    },
    Spec {
        name: "list",
        about: "List containers",
        flags: &[&[
            flag("quiet", Some('q'), None, "Only ids"),
            flag(
                "format",
                Some('f'),
                Some("table|json"),
                "Output format [default: table]",
            ),
        ]],
        positionals: "",
        hidden: false,
    },
    Spec {
        name: "exec",
        about: "Run a command inside a running container; exits with its status",
        flags: &[EXEC_FLAGS],
        positionals: "<ID> [--] <COMMAND>...",
        hidden: false,
    },
    Spec {
        name: "ps",
        about: "List the processes of a container",
        flags: &[&[flag(
            "format",
            Some('f'),
            Some("table|json"),
            "Output format [default: table]",
        )]],
        positionals: "<ID>",
        hidden: false,
    },
    Spec {
        name: "init",
        about: "Internal: the container's init (run by the runtime itself)",
        flags: &[],
        positionals: "",
        hidden: true,
    },
];

/// Flags seen so far, by long name, in order (a repeated flag appears more than once).
#[derive(Default)]
struct Seen {
    flags: Vec<(&'static str, Option<String>)>,
    positionals: Vec<String>,
}

impl Seen {
    fn has(&self, long: &str) -> bool {
        self.flags.iter().any(|(l, _)| *l == long)
    }

    /// The last value given for `long` (later flags win, as with runc).
    fn value(&self, long: &str) -> Option<String> {
        self.flags
            .iter()
            .rev()
            .find(|(l, _)| *l == long)
            .and_then(|(_, v)| v.clone())
    }

    fn values(&self, long: &str) -> Vec<String> {
        self.flags
            .iter()
            .filter(|(l, _)| *l == long)
            .filter_map(|(_, v)| v.clone())
            .collect()
    }
}

/// Parses the arguments after `runtime` (`nanokube runtime ARGS...`).
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<RuntimeArgs, Outcome> {
    let args: Vec<String> = args
        .into_iter()
        .map(|a| {
            a.into_string()
                .map_err(|a| Outcome::Usage(format!("argument is not UTF-8: {a:?}")))
        })
        .collect::<Result<_, _>>()?;
    let mut seen = Seen::default();
    let mut command: Option<&Spec> = None;
    let mut it = args.into_iter();
    let mut only_positionals = false;
    while let Some(arg) = it.next() {
        if only_positionals || arg == "-" || !arg.starts_with('-') {
            match command {
                None => {
                    command = Some(
                        COMMANDS
                            .iter()
                            .find(|c| c.name == arg)
                            .ok_or_else(|| usage(None, format!("unknown command '{arg}'")))?,
                    );
                }
                Some(c) => {
                    seen.positionals.push(arg);
                    // `exec ID COMMAND...`: everything after the id belongs to the command.
                    if c.name == "exec" && seen.positionals.len() == 1 {
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
            return Err(Outcome::Print(help(command)));
        }
        if command.is_none() && (arg == "--version" || arg == "-v" || arg == "-V") {
            return Err(Outcome::Print(format!(
                "nanokube runtime {}\nspec: 1.2.0\n",
                env!("CARGO_PKG_VERSION")
            )));
        }
        let flags = command.map(|c| c.flags).unwrap_or(&[]);
        let (flag, inline) = find_flag(&arg, flags).ok_or_else(|| {
            let what = command.map_or(String::new(), |c| format!(" for '{}'", c.name));
            usage(command, format!("unknown flag '{arg}'{what}"))
        })?;
        let value = match (flag.value, inline) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err(usage(
                    command,
                    format!("flag '--{}' takes no value", flag.long),
                ));
            }
            (Some(_), Some(v)) => Some(v),
            (Some(name), None) => Some(it.next().ok_or_else(|| {
                usage(
                    command,
                    format!("flag '--{}' needs a value <{name}>", flag.long),
                )
            })?),
        };
        seen.flags.push((flag.long, value));
    }
    let Some(spec) = command else {
        return Err(usage(None, "a command is required".into()));
    };
    let root = seen
        .value("root")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(state::DEFAULT_ROOT));
    let command = build(spec, &mut seen)?;
    Ok(RuntimeArgs { root, command })
}

/// Finds the flag `arg` names among the command's and the global flags; returns it with the
/// value given inline (`--flag=value`, `-fvalue`), if any.
fn find_flag(
    arg: &str,
    groups: &'static [&'static [Flag]],
) -> Option<(&'static Flag, Option<String>)> {
    let all = || groups.iter().copied().flatten().chain(GLOBAL);
    if let Some(long) = arg.strip_prefix("--") {
        let (name, inline) = match long.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (long, None),
        };
        return all().find(|f| f.long == name).map(|f| (f, inline));
    }
    let mut chars = arg[1..].chars();
    let short = chars.next()?;
    let rest: String = chars.collect();
    let f = all().find(|f| f.short == Some(short))?;
    let inline = if rest.is_empty() {
        None
    } else {
        Some(rest.strip_prefix('=').unwrap_or(&rest).to_string())
    };
    Some((f, inline))
}

/// Builds the command from what was seen, checking its positional arguments.
fn build(spec: &'static Spec, seen: &mut Seen) -> Result<Command, Outcome> {
    let pos = std::mem::take(&mut seen.positionals);
    let want = |n: usize, max: usize| -> Result<(), Outcome> {
        if pos.len() < n {
            return Err(usage(
                Some(spec),
                format!("missing argument {}", spec.positionals),
            ));
        }
        if pos.len() > max {
            return Err(usage(
                Some(spec),
                format!("unexpected argument '{}'", pos[max]),
            ));
        }
        Ok(())
    };
    let id = || pos.first().cloned().unwrap_or_default();
    let create = |seen: &Seen| CreateArgs {
        bundle: PathBuf::from(seen.value("bundle").unwrap_or_else(|| ".".into())),
        pid_file: seen.value("pid-file").map(PathBuf::from),
        console_socket: seen.value("console-socket").map(PathBuf::from),
        default_seccomp: seen.has("default-seccomp"),
        id: id(),
    };
    let format = |seen: &Seen| -> Result<String, Outcome> {
        let f = seen.value("format").unwrap_or_else(|| "table".into());
        if f != "table" && f != "json" {
            return Err(usage(
                Some(spec),
                format!("--format: expected table or json, not '{f}'"),
            ));
        }
        Ok(f)
    };
    Ok(match spec.name {
        "create" => {
            want(1, 1)?;
            Command::Create(create(seen))
        }
        "run" => {
            want(1, 1)?;
            Command::Run {
                create: create(seen),
                detach: seen.has("detach"),
            }
        }
        "start" => {
            want(1, 1)?;
            Command::Start { id: id() }
        }
        "state" => {
            want(1, 1)?;
            Command::State { id: id() }
        }
        "kill" => {
            want(1, 2)?;
            Command::Kill {
                all: seen.has("all"),
                id: id(),
                signal: pos.get(1).cloned(),
            }
        }
        "delete" => {
            want(1, 1)?;
            Command::Delete {
                force: seen.has("force"),
                id: id(),
            }
        }
        "list" => {
            want(0, 0)?;
            Command::List {
                quiet: seen.has("quiet"),
                format: format(seen)?,
            }
        }
        "ps" => {
            want(1, 1)?;
            Command::Ps {
                format: format(seen)?,
                id: id(),
            }
        }
        "exec" => {
            want(2, usize::MAX)?;
            Command::Exec {
                cwd: seen.value("cwd").map(PathBuf::from),
                env: seen.values("env"),
                user: seen.value("user"),
                tty: seen.has("tty"),
                console_socket: seen.value("console-socket").map(PathBuf::from),
                id: id(),
                command: pos[1..].to_vec(),
            }
        }
        "init" => {
            want(0, 0)?;
            Command::Init
        }
        other => unreachable!("command {other} is in COMMANDS but not built"),
    })
}

fn usage(command: Option<&Spec>, message: String) -> Outcome {
    let cmd = command.map_or(String::new(), |c| format!(" {}", c.name));
    Outcome::Usage(format!(
        "nanokube runtime{cmd}: {message}\n(see 'nanokube runtime{cmd} --help')"
    ))
}

fn flag_lines(flags: &[Flag], out: &mut String) {
    for f in flags.iter().filter(|f| !f.hidden) {
        let short = f.short.map_or("    ".to_string(), |s| format!("-{s}, "));
        let value = f.value.map_or(String::new(), |v| format!(" <{v}>"));
        let left = format!("{short}--{}{value}", f.long);
        out.push_str(&format!("  {left:<34} {}\n", f.help));
    }
}

/// The help text of the whole CLI (`command` None) or of one command.
fn help(command: Option<&Spec>) -> String {
    let mut out = String::new();
    match command {
        None => {
            out.push_str(
                "A runc-compatible OCI container runtime over nanokube's runtime code.\n\n",
            );
            out.push_str("Usage: nanokube runtime [OPTIONS] <COMMAND>\n\nCommands:\n");
            for c in COMMANDS.iter().filter(|c| !c.hidden) {
                out.push_str(&format!("  {:<8} {}\n", c.name, c.about));
            }
            out.push_str("\nOptions:\n");
            flag_lines(GLOBAL, &mut out);
            out.push_str(&format!("  {:<34} {}\n", "-h, --help", "Print help"));
            out.push_str(&format!("  {:<34} {}\n", "-v, --version", "Print version"));
        }
        Some(c) => {
            out.push_str(&format!("{}\n\n", c.about));
            let pos = if c.positionals.is_empty() {
                String::new()
            } else {
                format!(" {}", c.positionals)
            };
            out.push_str(&format!(
                "Usage: nanokube runtime {} [OPTIONS]{pos}\n\nOptions:\n",
                c.name
            ));
            for group in c.flags {
                flag_lines(group, &mut out);
            }
            flag_lines(GLOBAL, &mut out);
            out.push_str(&format!("  {:<34} {}\n", "-h, --help", "Print help"));
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
            Err(Outcome::Usage(text)) => text,
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
            "c1",
        ])
        .unwrap();
        assert_eq!(a.root, PathBuf::from("/r"));
        let Command::Create(c) = a.command else {
            panic!()
        };
        assert_eq!(
            (c.bundle, c.pid_file, c.id),
            ("/b".into(), Some("/p".into()), "c1".into())
        );
        assert!(!c.default_seccomp);

        // Global flags after the command, short flags with attached values, -d.
        let a = p(&["run", "-d", "-b/b", "c2", "--root=/x", "--default-seccomp"]).unwrap();
        assert_eq!(a.root, PathBuf::from("/x"));
        let Command::Run { create, detach } = a.command else {
            panic!()
        };
        assert!(detach && create.default_seccomp);
        assert_eq!((create.bundle, create.id), ("/b".into(), "c2".into()));

        let a = p(&["run", "c3"]).unwrap();
        assert_eq!(a.root, PathBuf::from(state::DEFAULT_ROOT));
        let Command::Run { create, detach } = a.command else {
            panic!()
        };
        assert_eq!((create.bundle, detach), (".".into(), false));
        // runc's compatibility flags are accepted and ignored.
        assert!(p(&[
            "--log",
            "/l",
            "--log-format",
            "json",
            "--systemd-cgroup",
            "start",
            "x"
        ])
        .is_ok());
    }

    #[test]
    fn exec_takes_the_command_after_the_id_with_or_without_dashes() {
        let flags = ["exec", "-e", "A=1", "--env=B=2", "-t", "--cwd", "/w", "c"];
        for tail in [&["--", "ls", "-l"][..], &["ls", "-l"][..]] {
            let args: Vec<&str> = flags.iter().chain(tail).copied().collect();
            let Command::Exec {
                cwd,
                env,
                tty,
                id,
                command,
                user,
                ..
            } = p(&args).unwrap().command
            else {
                panic!()
            };
            assert_eq!(cwd, Some("/w".into()));
            assert_eq!(env, ["A=1", "B=2"]);
            assert!(tty && user.is_none());
            assert_eq!(id, "c");
            assert_eq!(command, ["ls", "-l"]);
        }
        assert!(usage_text(&["exec", "c"]).contains("missing argument"));
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
        let Command::Ps { format, id } = p(&["ps", "--format", "json", "c"]).unwrap().command
        else {
            panic!()
        };
        assert_eq!((format.as_str(), id.as_str()), ("json", "c"));
    }

    #[test]
    fn bad_input_is_one_clear_usage_error() {
        assert!(usage_text(&[]).contains("a command is required"));
        assert!(usage_text(&["frobnicate"]).contains("unknown command 'frobnicate'"));
        assert!(
            usage_text(&["create", "--nope", "c"]).contains("unknown flag '--nope' for 'create'")
        );
        assert!(usage_text(&["create"]).contains("missing argument <ID>"));
        assert!(usage_text(&["start", "a", "b"]).contains("unexpected argument 'b'"));
        assert!(usage_text(&["create", "--bundle"]).contains("needs a value <DIR>"));
        assert!(usage_text(&["delete", "--force=yes", "c"]).contains("takes no value"));
        assert!(usage_text(&["list", "--format", "yaml"]).contains("expected table or json"));
        // Flags of one command are not accepted by another.
        assert!(usage_text(&["start", "-d", "c"]).contains("unknown flag '-d'"));
    }

    #[test]
    fn help_and_version() {
        let Err(Outcome::Print(top)) = p(&["--help"]) else {
            panic!()
        };
        for c in [
            "create", "start", "run", "state", "kill", "delete", "list", "exec", "ps",
        ] {
            assert!(top.contains(&format!("  {c} ")), "{c} missing from:\n{top}");
        }
        assert!(!top.contains("init") && !top.contains("--log-format"));
        let Err(Outcome::Print(run)) = p(&["run", "-h"]) else {
            panic!()
        };
        assert!(run.contains("Usage: nanokube runtime run [OPTIONS] <ID>"));
        assert!(run.contains("-b, --bundle <DIR>") && run.contains("--root <DIR>"));
        let Err(Outcome::Print(v)) = p(&["--version"]) else {
            panic!()
        };
        assert!(v.starts_with("nanokube runtime "));
    }
}
