//! kubectl's streaming commands against a real one-node cluster: `attach` (to a container's own
//! output and stdin, twice), `run -i --rm` and `run -it --rm` (attach with stdinOnce and a
//! terminal), `port-forward` to an HTTP server in a pod, and `debug` (ephemeral containers).

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

impl Running {
    /// Ends kubectl and returns what it wrote to stderr (for failure messages).
    fn stderr_after_kill(&mut self) -> String {
        let _ = self.child.kill();
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        err
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kubectl(c: &Cluster, args: &[&str]) -> Command {
    let mut cmd = c.kubectl_command(KUBECTL);
    cmd.args(args);
    cmd
}

/// Runs `kubectl` (a path, then its arguments) with a terminal of script(1)'s as its stdio, the
/// way a user at a console runs it; the kubeconfig goes in as the first flag.
fn in_terminal(c: &Cluster, kubectl_and_args: &str) -> Child {
    let (bin, args) = kubectl_and_args.split_once(' ').unwrap();
    c.ns.command("script")
        .env("KUBECACHEDIR", c.kubecache())
        .arg("-qec")
        .arg(format!(
            "{bin} --kubeconfig {} {args}",
            c.kubeconfig().display()
        ))
        .arg("/dev/null")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
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
    let mut child = in_terminal(
        &c,
        &format!("{KUBECTL} run tty -it --rm --restart=Never --image={IMAGE} --image-pull-policy=IfNotPresent -- sh"),
    );
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

/// A kubectl binary of another minor version, from the SDK's directory.
fn kubectl_version(minor: u32) -> String {
    format!("/usr/lib/google-cloud-sdk/bin/kubectl.1.{minor}")
}

#[test]
fn port_forward_reaches_the_pods_own_loopback() {
    let c = Cluster::start();
    // One server on every address, one only on the pod's loopback, and a file big enough to
    // take many frames.
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {IMAGE}\n    imagePullPolicy: IfNotPresent\n    command: [\"sh\", \"-c\", {:?}]\n",
        "mkdir -p /www && echo hello-from-pod > /www/index.html && dd if=/dev/urandom of=/www/big bs=1024 count=3072 2>/dev/null && httpd -p 80 -h /www && exec httpd -f -p 127.0.0.1:8081 -h /www"
    ));
    c.wait_phase("web", "Running");
    let want_sum = c.ok(&["exec", "web", "--", "sha256sum", "/www/big"]);
    let want_sum = want_sum.split_whitespace().next().unwrap().to_string();
    let curl = |url: &str| -> std::process::Output {
        c.ns.command("curl")
            .args(["-s", "--max-time", "20", url])
            .output()
            .unwrap()
    };
    // kubectl 1.32 tunnels SPDY through a websocket, 1.29 upgrades to SPDY itself.
    for (n, kubectl_bin) in [KUBECTL.to_string(), kubectl_version(29)]
        .iter()
        .enumerate()
    {
        let (p1, p2) = (18080 + 10 * n, 18081 + 10 * n);
        let mut cmd = c.kubectl_command(kubectl_bin);
        cmd.args([
            "port-forward",
            "pod/web",
            &format!("{p1}:80"),
            &format!("{p2}:8081"),
        ]);
        let mut pf = Running::start(cmd);
        pf.expect_line(&format!("Forwarding from 127.0.0.1:{p2} -> 8081"));
        for _ in 0..3 {
            let out = curl(&format!("http://127.0.0.1:{p1}/"));
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                "hello-from-pod\n",
                "{kubectl_bin}: {out:?} {}",
                pf.stderr_after_kill()
            );
        }
        let out = curl(&format!("http://127.0.0.1:{p2}/index.html"));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "hello-from-pod\n",
            "{kubectl_bin}: the pod's loopback-only server"
        );
        let big = curl(&format!("http://127.0.0.1:{p1}/big"));
        assert_eq!(big.stdout.len(), 3072 * 1024, "{kubectl_bin}");
        let mut sha = c.ns.command("sha256sum");
        let mut sha = sha
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        sha.stdin.take().unwrap().write_all(&big.stdout).unwrap();
        let got = String::from_utf8_lossy(&sha.wait_with_output().unwrap().stdout).into_owned();
        assert_eq!(got.split_whitespace().next(), Some(want_sum.as_str()));
    }

    // Nothing listens on 9999: the connection fails and kubectl says why.
    let mut cmd = kubectl(&c, &["port-forward", "pod/web", "18099:9999"]);
    cmd.stderr(Stdio::piped());
    let mut pf = Running::start(cmd);
    pf.expect_line("Forwarding from 127.0.0.1:18099 -> 9999");
    let out = curl("http://127.0.0.1:18099/");
    assert!(out.stdout.is_empty());
    let deadline = Instant::now() + Duration::from_secs(30);
    while pf.child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = pf.child.kill();
    let mut err = String::new();
    pf.child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        err.contains("error forwarding port 9999 to pod default/web")
            && err.contains("connection refused"),
        "{err}"
    );
}

/// kubectl before 1.30 speaks SPDY for exec and attach (later ones use websockets).
#[test]
fn older_kubectl_execs_and_attaches_over_spdy() {
    let c = Cluster::start();
    c.apply(&pod("box", true, "while read l; do echo \"echo:$l\"; done"));
    c.wait_phase("box", "Running");
    let old = kubectl_version(29);
    let run = |args: &[&str], input: &[u8]| -> std::process::Output {
        let mut child = c
            .kubectl_command(&old)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    };
    // Streams apart and the exit code back.
    let out = run(
        &[
            "exec",
            "box",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("err\n"),
        "{out:?}"
    );
    // stdin, and its end.
    let out = run(
        &[
            "exec",
            "-i",
            "box",
            "--",
            "sh",
            "-c",
            "tr a-z A-Z; echo done",
        ],
        b"shout\n",
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "SHOUT\ndone\n");
    // Attach to the container's own stdin; the echo comes back through its stdout.
    let mut cmd = c.kubectl_command(&old);
    cmd.args(["attach", "-i", "box"]);
    let mut a = Running::start(cmd);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        a.send("old\n");
        match a.lines.recv_timeout(Duration::from_millis(500)) {
            Ok(line) if line.contains("echo:old") => break,
            Ok(line) => a.seen.push(line),
            Err(_) => {}
        }
        assert!(Instant::now() < deadline, "no echo: {:?}", a.seen);
    }
    drop(a);
    // A terminal: exec -it through script(1).
    let mut child = in_terminal(&c, &format!("{old} exec -it box -- sh"));
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"echo answer=$((6*7)) tty=$(tty)\rexit\r")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("answer=42") && text.contains("tty=/dev/pts/"),
        "{text}"
    );
}

/// `kubectl cp` is tar through exec, both ways.
#[test]
fn kubectl_cp_copies_into_and_out_of_a_pod() {
    let c = Cluster::start();
    c.apply(&pod("files", false, "exec sleep 3600"));
    c.wait_phase("files", "Running");
    let dir = tempdir();
    let src = dir.join("in.txt");
    let body: String = (0..20000).map(|i| format!("line {i}\n")).collect();
    std::fs::write(&src, &body).unwrap();
    c.ok(&["cp", src.to_str().unwrap(), "files:/tmp/in.txt"]);
    let inside = c.ok(&["exec", "files", "--", "wc", "-l", "/tmp/in.txt"]);
    assert!(inside.trim_start().starts_with("20000"), "{inside}");
    let back = dir.join("back.txt");
    c.ok(&["cp", "files:/tmp/in.txt", back.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&back).unwrap(), body);
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("nk-cp-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// PUTs exactly `obj` to `path`; stderr when it is refused.
fn put_raw(c: &Cluster, path: &str, obj: &serde_json::Value) -> Result<(), String> {
    raw(c, "replace", path, obj)
}

/// `kubectl <verb> --raw path -f -` with `obj` as the body (create: POST, replace: PUT).
fn raw(c: &Cluster, verb: &str, path: &str, obj: &serde_json::Value) -> Result<(), String> {
    let mut child = kubectl(c, &[verb, "--raw", path, "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(obj.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn ephemeral_state(c: &Cluster, pod: &str, name: &str) -> serde_json::Value {
    c.pod(pod)["status"]["ephemeralContainerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["name"] == name)
        .map(|s| s["state"].clone())
        .unwrap_or_default()
}

#[test]
fn kubectl_debug_adds_ephemeral_containers_that_see_their_target() {
    let c = Cluster::start();
    c.apply(&pod("app", false, "exec sleep 3601"));
    c.wait_phase("app", "Running");
    // Aimed at the app's container: the debugger shares its process namespace.
    c.ok(&[
        "debug",
        "app",
        "--image",
        IMAGE,
        "--image-pull-policy",
        "IfNotPresent",
        "--target",
        "main",
        "-c",
        "dbg",
        "--",
        "sleep",
        "3602",
    ]);
    c.wait_for("dbg running", Duration::from_secs(60), |c| {
        ephemeral_state(c, "app", "dbg")["running"].is_object()
    });
    let ps = c.ok(&["exec", "app", "-c", "dbg", "--", "ps", "-o", "args"]);
    assert!(
        ps.contains("sleep 3601") && ps.contains("sleep 3602"),
        "the debugger sees the target's processes and its own: {ps}"
    );
    // One namespace, not a view: the target sees the debugger too.
    let ps = c.ok(&["exec", "app", "-c", "main", "--", "ps", "-o", "args"]);
    assert!(ps.contains("sleep 3602"), "{ps}");
    // And it is in the pod's network and uts namespaces.
    let host = c.ok(&["exec", "app", "-c", "dbg", "--", "hostname"]);
    assert_eq!(host.trim(), "app");
    let pod = c.pod("app");
    let status = &pod["status"]["ephemeralContainerStatuses"][0];
    assert_eq!(status["ready"], false, "{status}");
    assert!(
        status["containerID"]
            .as_str()
            .is_some_and(|id| id.starts_with("nanokube://")),
        "{status}"
    );
    // The pod stays Ready: ephemeral containers take no part in it.
    let ready = pod["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    assert!(ready, "{pod}");

    // Interactive: -i attaches kubectl's stdin to the new container once it runs.
    let mut child = kubectl(
        &c,
        &[
            "debug",
            "app",
            "-i",
            "--image",
            IMAGE,
            "--image-pull-policy=IfNotPresent",
            "-c",
            "shell",
            "--",
            "sh",
            "-c",
            "read l; echo got:$l; exit 3",
        ],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    child.stdin.as_mut().unwrap().write_all(b"hello\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("got:hello"),
        "stdout {stdout}; stderr {}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.wait_for("shell terminated", Duration::from_secs(30), |c| {
        ephemeral_state(c, "app", "shell")["terminated"]["exitCode"] == 3
    });
    let log = c.ok(&["logs", "app", "-c", "shell"]);
    assert!(log.contains("got:hello"), "{log}");
    // Ended, it stays ended: ephemeral containers are never restarted.
    std::thread::sleep(Duration::from_secs(3));
    let statuses = c.pod("app")["status"]["ephemeralContainerStatuses"].clone();
    let shell = statuses
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "shell")
        .unwrap()
        .clone();
    assert_eq!(shell["restartCount"], 0, "{shell}");
    assert!(shell["state"]["terminated"].is_object(), "{shell}");

    // What the API refuses, as upstream words it.
    let path = "/api/v1/namespaces/default/pods/app/ephemeralcontainers";
    let mut changed = c.pod("app");
    changed["spec"]["ephemeralContainers"][0]["image"] = "other:1".into();
    let err = put_raw(&c, path, &changed).unwrap_err();
    assert!(
        err.contains("existing ephemeral containers \"dbg\" may not be changed"),
        "{err}"
    );
    let mut removed = c.pod("app");
    removed["spec"]["ephemeralContainers"]
        .as_array_mut()
        .unwrap()
        .remove(0);
    let err = put_raw(&c, path, &removed).unwrap_err();
    assert!(
        err.contains("existing ephemeral containers \"dbg\" may not be removed"),
        "{err}"
    );
    let mut bad = c.pod("app");
    bad["spec"]["ephemeralContainers"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "name": "probe", "image": IMAGE, "targetContainerName": "nosuch",
            "ports": [{"containerPort": 80}],
        }));
    let err = put_raw(&c, path, &bad).unwrap_err();
    assert!(
        err.contains("spec.ephemeralContainers[2].ports: Forbidden: cannot be set for an Ephemeral Container"),
        "{err}"
    );
    assert!(
        err.contains("spec.ephemeralContainers[2].targetContainerName: Not found: \"nosuch\""),
        "{err}"
    );
    // Through the pod itself, they can be neither created nor added.
    let out = c.kubectl(&[
        "patch",
        "pod",
        "app",
        "--type",
        "json",
        "-p",
        r#"[{"op":"add","path":"/spec/ephemeralContainers/-","value":{"name":"x","image":"y"}}]"#,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("pod updates may not change fields"), "{err}");
    let mut fresh = c.pod("app");
    fresh["metadata"] = serde_json::json!({"name": "born-with-one"});
    fresh.as_object_mut().unwrap().remove("status");
    let err = raw(&c, "create", "/api/v1/namespaces/default/pods", &fresh).unwrap_err();
    assert!(
        err.contains("spec.ephemeralContainers: Forbidden: cannot be set on create"),
        "{err}"
    );
}
