//! Shared by the tests/api*.rs files: a real `nanokube server` process on loopback with its own
//! data dir and port, and the real kubectl pointed at it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const KUBECTL: &str = "/usr/bin/kubectl";

/// A running server; killed (and its data dir removed) on drop.
pub struct Server {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
    extra: Vec<String>,
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// Starts with extra `nanokube server` flags.
    pub fn start_with(extra: &[&str]) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("nk-api-")
            .tempdir()
            .expect("temp dir");
        let mut s = Server {
            dir,
            // Port 0: the server picks a free port and names it in the kubeconfig; restarts reuse it.
            port: 0,
            child: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        s.spawn();
        if !extra.contains(&"--disable-controller-manager") {
            s.wait_settled();
        }
        s
    }

    /// Waits for what the controllers make in every default namespace at start (the `default`
    /// ServiceAccount pods need, the `kube-root-ca.crt` ConfigMap), so a test sees a cluster at
    /// rest and counts only its own objects.
    fn wait_settled(&self) {
        let count = |kind: &str, name: &str| {
            let out = self.kubectl(&[
                "get",
                kind,
                "-A",
                "--field-selector",
                &format!("metadata.name={name}"),
                "-o",
                "name",
            ]);
            String::from_utf8_lossy(&out.stdout).lines().count()
        };
        eventually(60, || {
            (count("serviceaccounts", "default") >= 4
                && count("configmaps", "kube-root-ca.crt") >= 4)
                .then_some(())
        });
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn spawn(&mut self) {
        let _ = std::fs::remove_file(self.kubeconfig());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_nanokube"))
            .arg("server")
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--bind-address")
            .arg("127.0.0.1")
            .arg("--https-listen-port")
            .arg(self.port.to_string())
            .arg("--write-kubeconfig")
            .arg(self.kubeconfig())
            .arg("--disable-agent")
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start nanokube server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        // The kubeconfig is written once the server is ready to answer.
        while !self.kubeconfig().exists() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("server exited early ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "server did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        if self.port == 0 {
            let kc = std::fs::read_to_string(self.kubeconfig()).unwrap();
            let server = kc
                .lines()
                .find_map(|l| l.trim().strip_prefix("server: "))
                .expect("server in kubeconfig");
            self.port = server
                .rsplit(':')
                .next()
                .unwrap()
                .parse()
                .expect("port in kubeconfig");
        }
    }

    /// SIGTERM, wait, start again on the same port and data dir.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if c.try_wait().unwrap().is_some() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    panic!("server did not stop on SIGTERM:\n{}", self.log());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// kill -9 (no chance to flush or say goodbye).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// Starts a stopped or killed server again on the same port and data dir, with other
    /// extra flags.
    pub fn start_again_with(&mut self, extra: &[&str]) {
        self.extra = extra.iter().map(|s| s.to_string()).collect();
        self.start_again();
    }

    /// Starts a stopped or killed server again on the same port and data dir.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "server still running");
        self.spawn();
    }

    /// The server process's id (while it runs).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_env(args, &[])
    }

    /// `binary` (a kubectl) pointed at this server. Its discovery cache is this server's own:
    /// kubectl keys the cache by host and port only, and a port the kernel hands to a later
    /// test's server would otherwise show that server the kinds (CRDs) of an earlier one.
    pub fn kubectl_command(&self, binary: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(binary);
        c.env("KUBECONFIG", self.kubeconfig())
            .env("KUBECACHEDIR", self.dir.path().join("kubecache"))
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy");
        c
    }

    pub fn kubectl_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.kubectl_command(KUBECTL)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .expect("run kubectl")
    }

    /// kubectl that must succeed; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {:?} failed: {}\n{}",
            args,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// kubectl that must fail; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            !out.status.success(),
            "kubectl {:?} should fail but printed {}",
            args,
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// kubectl apply -f - with `yaml` on stdin.
    pub fn apply(&self, yaml: &str, extra: &[&str]) -> Output {
        use std::io::Write;
        let mut child = self
            .kubectl_command(KUBECTL)
            .args(["apply", "-f", "-"])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(yaml.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// kubectl apply -f - that must succeed.
    pub fn apply_ok(&self, yaml: &str) -> String {
        let out = self.apply(yaml, &[]);
        assert!(
            out.status.success(),
            "apply failed: {}\n{yaml}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A ConfigMap or Namespace made through `kubectl apply`.
    pub fn configmap(&self, name: &str, ns: &str, data: &[(&str, &str)]) {
        let mut y = format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {ns}\ndata:\n");
        for (k, v) in data {
            y.push_str(&format!("  {k}: \"{v}\"\n"));
        }
        if data.is_empty() {
            y.push_str("  {}\n");
            y = y.replace("data:\n  {}", "data: {}");
        }
        self.apply_ok(&y);
    }

    pub fn namespace(&self, name: &str) {
        self.apply_ok(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n"
        ));
    }

    /// A path of the test's own, for files the test writes.
    pub fn file(&self, name: &str, content: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, content).unwrap();
        p
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Raw HTTPS requests (no kubectl), trusting the cluster CA, with the admin client certificate
/// or a bearer token or nothing.
pub mod raw {
    use super::*;

    pub fn admin_token(s: &Server) -> String {
        std::fs::read_to_string(s.data_dir().join("server/admin-token"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// A bearer token for a new ServiceAccount `name` in `default`: an ordinary user, neither
    /// in system:masters nor a node, bound to the `edit` role in `default`.
    pub fn service_account_token(s: &Server, name: &str) -> String {
        s.ok(&["create", "serviceaccount", name]);
        s.ok(&[
            "create",
            "rolebinding",
            &format!("{name}-edit"),
            "--clusterrole=edit",
            &format!("--serviceaccount=default:{name}"),
        ]);
        s.ok(&["create", "token", name]).trim().to_string()
    }

    /// curl with the CA; `auth` "admin" (client cert), "token:<t>", or "none". Returns (code, body, headers).
    pub fn curl(
        s: &Server,
        auth: &str,
        method: &str,
        path: &str,
        content_type: &str,
        body: Option<&Path>,
    ) -> (u16, String, String) {
        let data = body.map(|b| format!("@{}", b.display()));
        let mut extra = vec!["-H".to_string(), format!("Content-Type: {content_type}")];
        if let Some(d) = data {
            extra.extend(["--data-binary".to_string(), d]);
        }
        curl_args(s, auth, method, path, &extra)
    }

    /// `curl` with any further curl arguments (headers, inline data) before the URL.
    pub fn curl_args(
        s: &Server,
        auth: &str,
        method: &str,
        path: &str,
        extra: &[String],
    ) -> (u16, String, String) {
        let tls = s.data_dir().join("server/tls");
        let mut c = Command::new("curl");
        c.args([
            "-sS",
            "-o",
            "-",
            "-D",
            "/dev/stderr",
            "-w",
            "\n%{http_code}",
            "-X",
            method,
            "--cacert",
        ])
        .arg(tls.join("ca.crt"));
        match auth {
            "admin" => {
                c.arg("--cert")
                    .arg(tls.join("admin.crt"))
                    .arg("--key")
                    .arg(tls.join("admin.key"));
            }
            "none" => {}
            t => {
                c.args([
                    "-H",
                    &format!("Authorization: Bearer {}", t.trim_start_matches("token:")),
                ]);
            }
        }
        c.args(extra);
        c.arg(format!("{}{}", s.url(), path));
        let out = c.output().expect("curl");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = stdout.rsplit_once('\n').unwrap_or(("", "0"));
        (
            code.trim().parse().unwrap_or(0),
            body.to_string(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// Polls `f` until it returns Some, for at most `secs` seconds.
pub fn eventually<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "condition not met within {secs}s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
