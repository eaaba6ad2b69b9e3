//! kubectl's streaming commands against a real one-node cluster: `attach` (to a container's own
//! output and stdin, twice), `run -i --rm` and `run -it --rm` (attach with stdinOnce and a
//! terminal), and `port-forward` to an HTTP server in a pod.

mod node_support;

use node_support::{Cluster, IMAGE, KUBECTL};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A kubectl left running, whose stdout is read line by line in the background.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn start(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    fn send(&mut self, text: &str) {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        stdin.write_all(text.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    /// Waits for a line that contains `want`; fails with what was seen and kubectl's stderr.
    fn expect_line(&mut self, want: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            match self.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(want) {
                        return line;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let _ = self.child.kill();
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        panic!(
            "no line with {want:?}; stdout: {:?}; stderr: {err}",
            self.seen
        );
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kubectl(c: &Cluster, args: &[&str]) -> Command {
    let mut cmd = c.ns.command(KUBECTL);
    cmd.arg("--kubeconfig").arg(c.kubeconfig()).args(args);
    cmd
}

fn pod(name: &str, stdin: bool, script: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {IMAGE}\n    imagePullPolicy: IfNotPresent\n    stdin: {stdin}\n    command: [\"sh\", \"-c\", {script:?}]\n"
    )
}

#[test]
fn attach_follows_output_and_feeds_stdin() {
    let c = Cluster::start();
    // Output only: an attached client sees what the container prints from then on.
    c.apply(&pod(
        "ticker",
        false,
        "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done",
    ));
    // stdin kept open across clients: each attached client's lines reach the same shell.
    c.apply(&pod(
        "echoer",
        true,
        "while read l; do echo \"echo:$l\"; done; echo stdin closed",
    ));
    c.wait_phase("ticker", "Running");
    c.wait_phase("echoer", "Running");

    let mut a = Running::start(kubectl(&c, &["attach", "ticker"]));
    let first = a.expect_line("tick ");
    let n: u32 = first.trim_start_matches("tick ").trim().parse().unwrap();
    let later = a.expect_line(&format!("tick {}", n + 3));
    assert!(later.starts_with("tick "), "{later}");
    drop(a);
    // Detaching left the container running and its log whole.
    assert_eq!(c.pod("ticker")["status"]["phase"], "Running");
    let log = c.ok(&["logs", "ticker"]);
    assert!(log.contains(&format!("tick {}\n", n + 3)), "{log}");

    for word in ["one", "two"] {
        let mut a = Running::start(kubectl(&c, &["attach", "-i", "echoer"]));
        // The attach is up once output flows back; lines sent before that may precede it,
        // so keep sending until the echo shows.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            a.send(&format!("{word}\n"));
            match a.lines.recv_timeout(Duration::from_millis(500)) {
                Ok(line) if line.contains(&format!("echo:{word}")) => break,
                Ok(line) => a.seen.push(line),
                Err(_) => {}
            }
            assert!(Instant::now() < deadline, "no echo of {word}: {:?}", a.seen);
        }
    }
    // Two clients came and went; the container's stdin stayed open (no stdinOnce).
    assert_eq!(c.pod("echoer")["status"]["phase"], "Running");
    let log = c.ok(&["logs", "echoer"]);
    assert!(
        log.contains("echo:one\n") && log.contains("echo:two\n"),
        "{log}"
    );
    assert!(!log.contains("stdin closed"), "{log}");

    // A pod that does not exist, and a container the pod lacks, as upstream words them.
    let out = c.kubectl(&["attach", "nosuch"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pods \"nosuch\" not found"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn run_interactive_with_and_without_a_terminal() {
    let c = Cluster::start();
    // -i: stdin reaches the container and its end (stdinOnce) ends the shell's read loop; the
    // exit code comes back and --rm deletes the pod.
    let mut child = kubectl(
        &c,
        &[
            "run",
            "once",
            "-i",
            "--rm",
            "--restart=Never",
            &format!("--image={IMAGE}"),
            "--image-pull-policy=IfNotPresent",
            "--",
            "sh",
            "-c",
            "while read l; do echo \"got:$l\"; done; echo eof; exit 4",
        ],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"alpha\nbeta\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("got:alpha\ngot:beta\neof\n"),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert_eq!(
        out.status.code(),
        Some(4),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    c.wait_for("pod once deleted", Duration::from_secs(60), |c| {
        c.json(&["get", "pod", "once"]).is_none()
    });

    // -it through a real terminal (script(1) gives kubectl one): the shell is interactive, its
    // output comes back through the pod's pty, and `exit` ends the session.
    let mut child = c
        .ns
        .command("script")
        .args(["-qec"])
        .arg(format!(
            "{KUBECTL} --kubeconfig {} run tty -it --rm --restart=Never --image={IMAGE} --image-pull-policy=IfNotPresent -- sh",
            c.kubeconfig().display()
        ))
        .arg("/dev/null")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut out = out;
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = out.read(&mut buf) {
            if tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    // Until the shell answers, keep asking (what is typed before the attach is up can be lost).
    while !String::from_utf8_lossy(&seen).contains("answer=42") {
        assert!(
            Instant::now() < deadline,
            "no answer through the terminal: {}",
            String::from_utf8_lossy(&seen)
        );
        let _ = stdin.write_all(b"echo answer=$((6*7)) tty=$(tty)\r");
        let _ = stdin.flush();
        if let Ok(b) = rx.recv_timeout(Duration::from_millis(700)) {
            seen.extend(b);
        }
    }
    let text = String::from_utf8_lossy(&seen).into_owned();
    assert!(text.contains("tty=/dev/pts/"), "{text}");
    stdin.write_all(b"exit\r").unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{text}");
    c.wait_for("pod tty deleted", Duration::from_secs(60), |c| {
        c.json(&["get", "pod", "tty"]).is_none()
    });
}
