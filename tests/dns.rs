//! Cluster DNS on a one-node cluster in a network namespace of the test's own: names asked with
//! busybox's nslookup from inside a pod (through its resolv.conf: search path, ndots:5, the
//! node-local address across the bridge) and from the node's namespace, plus raw queries for the
//! exact codes, the SOA of negative answers and the TCP fallback of a truncated answer. Until the
//! EndpointSlice controller exists the test writes the slices itself (selectorless Services).
//! Forwarding is off: nothing here is sent to a real resolver.

mod node_support;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use node_support::{Cluster, IMAGE, NANOKUBE};
use std::io::{Read, Write};
use std::process::Stdio;
use std::time::Duration;

const DNS: &str = "10.43.0.10";

const OBJECTS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  clusterIP: 10.43.0.20
  ports: [{name: http, port: 80, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: default}
spec:
  clusterIP: None
  ports: [{name: pg, port: 5432, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: db-1
  namespace: default
  labels: {kubernetes.io/service-name: db}
addressType: IPv4
ports: [{name: pg, port: 5432, protocol: TCP}]
endpoints:
- addresses: [10.42.0.200]
  hostname: db-0
  conditions: {ready: true}
- addresses: [10.42.0.201]
  conditions: {ready: true}
- addresses: [10.42.0.202]
  hostname: db-2
  conditions: {ready: false}
---
apiVersion: v1
kind: Service
metadata: {name: search, namespace: default}
spec:
  type: ExternalName
  externalName: www.example.com
"#;

fn client_pod() -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: client\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {IMAGE}\n    imagePullPolicy: IfNotPresent\n    command: [\"sleep\", \"3600\"]\n"
    )
}

/// A headless service with more endpoints than a 512-byte UDP answer holds.
fn many() -> String {
    let endpoints: String = (1..=60)
        .map(|i| format!("- addresses: [10.42.1.{i}]\n"))
        .collect();
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: many, namespace: default}}\nspec:\n  clusterIP: None\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: many-1\n  namespace: default\n  labels: {{kubernetes.io/service-name: many}}\naddressType: IPv4\nendpoints:\n{endpoints}"
    )
}

/// busybox nslookup inside the client pod: (succeeded, stdout + stderr).
fn nslookup(c: &Cluster, args: &[&str]) -> (bool, String) {
    let mut a = vec!["exec", "client", "--", "nslookup"];
    a.extend(args);
    let out = c.kubectl(&a);
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn nslookup_ok(c: &Cluster, args: &[&str]) -> String {
    let (ok, out) = nslookup(c, args);
    assert!(ok, "nslookup {args:?} failed:\n{out}");
    out
}

/// Runs `f` on a thread inside the cluster's network namespace (the test itself stays in the
/// host's).
fn in_netns<T: Send>(c: &Cluster, f: impl FnOnce() -> T + Send) -> T {
    let ns = std::fs::File::open(format!("/run/netns/{}", c.ns.name)).unwrap();
    std::thread::scope(|s| {
        s.spawn(move || {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            f()
        })
        .join()
        .unwrap()
    })
}

fn question(name: &str, t: RecordType) -> Message {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
    m
}

/// One query over UDP to the node's DNS address, from the node's namespace.
fn udp(c: &Cluster, name: &str, t: RecordType) -> Message {
    let q = question(name, t);
    let bytes = q.to_vec().unwrap();
    in_netns(c, move || {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.send_to(&bytes, (DNS, 53)).unwrap();
        let mut buf = vec![0u8; 65535];
        let n = s.recv(&mut buf).unwrap();
        let m = Message::from_vec(&buf[..n]).unwrap();
        assert_eq!(m.metadata.id, q.metadata.id);
        m
    })
}

/// The same over TCP (two-byte length prefix).
fn tcp(c: &Cluster, name: &str, t: RecordType) -> Message {
    let bytes = question(name, t).to_vec().unwrap();
    in_netns(c, move || {
        let mut s = std::net::TcpStream::connect((DNS, 53)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&bytes);
        s.write_all(&framed).unwrap();
        let mut len = [0u8; 2];
        s.read_exact(&mut len).unwrap();
        let mut buf = vec![0u8; u16::from_be_bytes(len).into()];
        s.read_exact(&mut buf).unwrap();
        Message::from_vec(&buf).unwrap()
    })
}

fn addresses(m: &Message) -> Vec<String> {
    let mut v: Vec<String> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

#[test]
fn cluster_dns_answers_pods_and_the_node() {
    let c = Cluster::start();
    c.apply(OBJECTS);
    c.apply(&client_pod());
    let pod = c.wait_phase("client", "Running");
    let pod_ip = pod["status"]["podIP"].as_str().unwrap().to_string();

    // The index follows the API within moments; wait for the first answer.
    c.wait_for("the service's name", Duration::from_secs(30), |c| {
        nslookup(c, &["web.default.svc.cluster.local"])
            .1
            .contains("10.43.0.20")
    });

    // A: full name, and short names through the pod's search path (ndots:5). busybox's
    // nslookup applies the search path to dotless names only, asks every search domain and
    // fails if any is NXDOMAIN, so its output is read; ping resolves through the C library's
    // resolver (search path and ndots as any application sees them), which stops at the first
    // answer.
    let out = nslookup_ok(&c, &["web.default.svc.cluster.local"]);
    assert!(out.contains("Address: 10.43.0.20"), "{out}");
    // The server writes the kube-dns Service at the DNS address, as CoreDNS clusters have it.
    let out = nslookup_ok(&c, &["kube-dns.kube-system.svc.cluster.local"]);
    assert!(out.contains("Address: 10.43.0.10"), "{out}");
    let (_, out) = nslookup(&c, &["web"]);
    assert!(
        out.contains("Name:\tweb.default.svc.cluster.local\nAddress: 10.43.0.20"),
        "{out}"
    );
    for name in ["web", "web.default", "web.default.svc"] {
        let ping = c.kubectl(&["exec", "client", "--", "ping", "-c", "1", "-W", "1", name]);
        let text = String::from_utf8_lossy(&ping.stdout);
        assert!(
            text.contains("(10.43.0.20)"),
            "ping {name}: {text}{}",
            String::from_utf8_lossy(&ping.stderr)
        );
    }
    // SRV for the named port.
    let out = nslookup_ok(
        &c,
        &["-type=SRV", "_http._tcp.web.default.svc.cluster.local"],
    );
    assert!(out.contains("web.default.svc.cluster.local"), "{out}");
    assert!(out.contains(" 80 "), "{out}");
    // PTR of the service IP.
    let out = nslookup_ok(&c, &["-type=PTR", "20.0.43.10.in-addr.arpa"]);
    assert!(out.contains("web.default.svc.cluster.local"), "{out}");

    // Headless: each ready endpoint, never the not-ready one.
    let out = nslookup_ok(&c, &["db.default.svc.cluster.local"]);
    assert!(
        out.contains("10.42.0.200") && out.contains("10.42.0.201"),
        "{out}"
    );
    assert!(!out.contains("10.42.0.202"), "{out}");
    let ping = c.kubectl(&[
        "exec", "client", "--", "ping", "-c", "1", "-W", "1", "db-0.db",
    ]);
    let text = String::from_utf8_lossy(&ping.stdout);
    assert!(text.contains("(10.42.0.200)"), "{text}");
    let out = nslookup_ok(&c, &["-type=SRV", "_pg._tcp.db.default.svc.cluster.local"]);
    assert!(out.contains("db-0.db.default.svc.cluster.local"), "{out}");
    assert!(
        out.contains("10-42-0-201.db.default.svc.cluster.local"),
        "{out}"
    );
    assert!(!out.contains("db-2"), "{out}");
    let out = nslookup_ok(&c, &["-type=PTR", "200.0.42.10.in-addr.arpa"]);
    assert!(out.contains("db-0.db.default.svc.cluster.local"), "{out}");

    // ExternalName: a CNAME (its target is not resolved: forwarding is off).
    let (_, out) = nslookup(&c, &["-type=CNAME", "search.default.svc.cluster.local"]);
    assert!(out.contains("canonical name = www.example.com"), "{out}");

    // The pod's own A record.
    let dashed = pod_ip.replace('.', "-");
    let out = nslookup_ok(&c, &[&format!("{dashed}.default.pod.cluster.local")]);
    assert!(out.contains(&format!("Address: {pod_ip}")), "{out}");

    // NXDOMAIN.
    let (ok, out) = nslookup(&c, &["nope.default.svc.cluster.local"]);
    assert!(!ok && out.contains("NXDOMAIN"), "{out}");

    // From the node's namespace: busybox (the host's static one) asking the address directly.
    let out = c.in_node(
        "/bin/busybox",
        &["nslookup", "web.default.svc.cluster.local", DNS],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("10.43.0.20"),
        "{text}"
    );

    // Exact codes: NODATA for AAAA of an existing name and for a name with only children,
    // NXDOMAIN otherwise, both with the zone's SOA and its 5 s negative TTL.
    for name in [
        "web.default.svc.cluster.local.",
        "default.svc.cluster.local.",
    ] {
        let m = udp(&c, name, RecordType::AAAA);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name}");
        assert!(m.answers.is_empty() && m.metadata.authoritative, "{m:?}");
        let RData::SOA(soa) = &m.authorities[0].data else {
            panic!("{m:?}")
        };
        assert_eq!(soa.minimum, 5);
    }
    let m = udp(&c, "nope.default.svc.cluster.local.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
    let m = udp(&c, "web.default.svc.cluster.local.", RecordType::A);
    assert_eq!(addresses(&m), ["10.43.0.20"]);
    assert_eq!(m.answers[0].ttl, 5);
    // Outside the cluster, with forwarding off: refused, not sent anywhere.
    let m = udp(&c, "example.com.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);

    // A truncated UDP answer, whole over TCP.
    c.apply(&many());
    c.wait_for("the large headless service", Duration::from_secs(30), |c| {
        udp(c, "many.default.svc.cluster.local.", RecordType::A)
            .metadata
            .truncation
    });
    let m = tcp(&c, "many.default.svc.cluster.local.", RecordType::A);
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 60);

    // Changes follow: an endpoint that turns not ready leaves the answer.
    c.ok(&[
        "patch",
        "endpointslice",
        "db-1",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/endpoints/1/conditions/ready","value":false}]"#,
    ]);
    c.wait_for("the endpoint to leave", Duration::from_secs(30), |c| {
        addresses(&udp(c, "db.default.svc.cluster.local.", RecordType::A)) == ["10.42.0.200"]
    });
    // A deleted service's name goes.
    c.ok(&["delete", "service", "web"]);
    c.wait_for("the service's name to go", Duration::from_secs(30), |c| {
        udp(c, "web.default.svc.cluster.local.", RecordType::A)
            .metadata
            .response_code
            == ResponseCode::NXDomain
    });

    // killall removes the address (labelled, on the node's loopback).
    let out = c.in_node("ip", &["-4", "addr", "show", "dev", "lo"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("{DNS}/32")) && text.contains("lo:nanokube-dns"),
        "{text}"
    );
    let mut c = c;
    c.kill9();
    let st =
        c.ns.command(NANOKUBE)
            .arg("killall")
            .arg("--data-dir")
            .arg(c.data_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
    assert!(st.success());
    let out = c.in_node("ip", &["-4", "addr", "show", "dev", "lo"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("127.0.0.1"), "{text}");
    assert!(
        !text.contains(DNS),
        "the DNS address is still there:\n{text}"
    );
}

/// Each node answers on its own: a pod on a joined node resolves through that node's agent (the
/// address is local there too; nothing crosses to node1).
#[test]
fn every_node_serves_its_own_pods() {
    let c = Cluster::start_nodes(2);
    c.apply(
        "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\nspec:\n  clusterIP: 10.43.0.21\n  ports: [{name: http, port: 80}]\n",
    );
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: far\nspec:\n  nodeName: node2\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {IMAGE}\n    imagePullPolicy: IfNotPresent\n    command: [\"sleep\", \"3600\"]\n"
    ));
    c.wait_phase("far", "Running");
    c.wait_for("the name on node2", Duration::from_secs(30), |c| {
        let out = c.kubectl(&[
            "exec",
            "far",
            "--",
            "nslookup",
            "web.default.svc.cluster.local",
        ]);
        String::from_utf8_lossy(&out.stdout).contains("Address: 10.43.0.21")
    });
    let node2 = c.agent("node2");
    let out = node2.in_node("ip", &["-4", "addr", "show", "dev", "lo"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("10.43.0.10/32"),
        "node2 holds the DNS address itself"
    );
    let out = node2.in_node(
        "/bin/busybox",
        &["nslookup", "web.default.svc.cluster.local", DNS],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("10.43.0.21"),
        "{text}"
    );
}
