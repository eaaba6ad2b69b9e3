//! /livez, /readyz and /healthz against a real server on a real etcd (/usr/bin/etcd), which the
//! test freezes (SIGSTOP) to make the store check fail and thaws again.

mod api_support;

use api_support::{eventually, raw::curl, Server};
use std::process::{Child, Command, Stdio};

/// An etcd of the test's own on loopback ports; killed on drop.
struct Etcd {
    _dir: tempfile::TempDir,
    port: u16,
    child: Child,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Etcd {
    fn start() -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        let (port, peer) = (free_port(), free_port());
        let client = format!("http://127.0.0.1:{port}");
        let peer = format!("http://127.0.0.1:{peer}");
        let child = Command::new("/usr/bin/etcd")
            .arg("--name=test")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=test={peer}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("etcd.log")).unwrap())
            .spawn()
            .expect("start /usr/bin/etcd");
        let etcd = Etcd {
            _dir: dir,
            port,
            child,
        };
        eventually(30, || {
            std::net::TcpStream::connect(("127.0.0.1", etcd.port))
                .ok()
                .map(|_| ())
        });
        etcd
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig).unwrap();
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn get(s: &Server, path: &str) -> (u16, String) {
    let (code, body, _) = curl(s, "none", "GET", path, "", None);
    (code, body)
}

#[test]
fn health_endpoints_name_their_checks_as_upstream() {
    let s = Server::start();
    assert_eq!(get(&s, "/livez"), (200, "ok".into()));
    assert_eq!(get(&s, "/healthz"), (200, "ok".into()));
    assert_eq!(
        get(&s, "/livez?verbose"),
        (
            200,
            "[+]ping ok\n[+]log ok\n[+]etcd ok\nlivez check passed\n".into()
        )
    );
    assert_eq!(
        get(&s, "/readyz?verbose"),
        (
            200,
            "[+]ping ok\n[+]log ok\n[+]etcd ok\n[+]etcd-readiness ok\n[+]shutdown ok\nreadyz check passed\n".into()
        )
    );
    assert_eq!(
        get(&s, "/healthz?verbose").1,
        "[+]ping ok\n[+]log ok\n[+]etcd ok\nhealthz check passed\n"
    );
    // One check alone, and excluding checks (an unknown one is warned about).
    assert_eq!(get(&s, "/readyz/etcd"), (200, "ok".into()));
    assert_eq!(get(&s, "/livez/ping"), (200, "ok".into()));
    assert_eq!(get(&s, "/readyz/shutdown"), (200, "ok".into()));
    assert_eq!(
        get(&s, "/readyz?verbose&exclude=etcd&exclude=nosuch").1,
        "[+]ping ok\n[+]log ok\n[+]etcd excluded: ok\n[+]etcd-readiness ok\n[+]shutdown ok\n\
         warn: some health checks cannot be excluded: no matches for \"nosuch\"\nreadyz check passed\n"
    );
    // No such check: nothing is served there (a stranger is refused before routing).
    assert_eq!(get(&s, "/livez/nosuch").0, 401);
    let (code, _, headers) = curl(&s, "none", "GET", "/readyz", "", None);
    assert_eq!(code, 200);
    let headers = headers.to_ascii_lowercase();
    assert!(
        headers.contains("content-type: text/plain; charset=utf-8"),
        "{headers}"
    );
    assert!(
        headers.contains("x-content-type-options: nosniff"),
        "{headers}"
    );
}

#[test]
fn a_frozen_store_fails_readyz_with_reasons_withheld() {
    let etcd = Etcd::start();
    let s = Server::start_with(&[
        "--datastore-endpoint",
        &format!("http://127.0.0.1:{}", etcd.port),
    ]);
    assert_eq!(get(&s, "/readyz"), (200, "ok".into()));

    etcd.signal(nix::sys::signal::Signal::SIGSTOP);
    let (code, body) = get(&s, "/readyz");
    assert_eq!(code, 500, "{body}");
    assert_eq!(
        body,
        "[+]ping ok\n[+]log ok\n[-]etcd failed: reason withheld\n[-]etcd-readiness failed: reason withheld\n[+]shutdown ok\nreadyz check failed\n"
    );
    let (code, body) = get(&s, "/livez");
    assert_eq!(code, 500);
    assert_eq!(
        body,
        "[+]ping ok\n[+]log ok\n[-]etcd failed: reason withheld\nlivez check failed\n"
    );
    // The check alone says why; excluding the store checks passes.
    let (code, body) = get(&s, "/readyz/etcd");
    assert_eq!(code, 500);
    assert!(body.starts_with("internal server error: "), "{body}");
    assert_eq!(
        get(&s, "/readyz?exclude=etcd&exclude=etcd-readiness"),
        (200, "ok".into())
    );
    // The reason is in the server's log.
    assert!(s.log().contains("readyz check failed"), "{}", s.log());

    etcd.signal(nix::sys::signal::Signal::SIGCONT);
    eventually(30, || (get(&s, "/readyz").0 == 200).then_some(()));
    assert_eq!(get(&s, "/livez?verbose").0, 200);
}
