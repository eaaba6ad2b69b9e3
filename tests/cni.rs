//! CNI mode (`--cni-conf-dir`, `--cni-bin-dir`) with Debian's containernetworking-plugins:
//! a bridge + host-local + portmap conflist networks the pods in place of the built-in bridge.
//! Everything stays inside the node's network namespace.
//!
//! Run as root: `cargo test --test cni`.

mod node_support;

use node_support::{Cluster, IMAGE, NODE_IP};
use std::path::Path;
use std::time::Duration;

const PLUGINS: &str = "/usr/lib/cni";

fn pod(name: &str, extra_port: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{app: {name}}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: web\n    image: {IMAGE}\n    imagePullPolicy: IfNotPresent\n    ports:\n    - {{containerPort: 8080{extra_port}}}\n    command: [sh, -c, 'mkdir -p /www; echo {name} > /www/index.html; exec httpd -f -p 8080 -h /www']\n"
    )
}

fn running_ip(c: &Cluster, name: &str) -> String {
    c.wait_for(&format!("{name} running"), Duration::from_secs(90), |c| {
        c.ok(&["get", "pod", name, "-o", "jsonpath={.status.phase}"]) == "Running"
    });
    c.ok(&["get", "pod", name, "-o", "jsonpath={.status.podIP}"])
}

fn reserved_ips(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.parse::<std::net::Ipv4Addr>().is_ok())
        .collect()
}

#[test]
fn cni_plugins_network_pods_with_host_ports_and_release_everything() {
    assert!(
        Path::new(PLUGINS).join("bridge").exists(),
        "{PLUGINS}/bridge is missing: scripts/deps.sh installs containernetworking-plugins"
    );
    let conf = tempfile::tempdir().unwrap();
    let ipam = conf.path().join("ipam");
    std::fs::write(
        conf.path().join("10-test.conflist"),
        format!(
            r#"{{"cniVersion":"1.0.0","name":"nk-cni-test","plugins":[
  {{"type":"bridge","bridge":"nkcni0","isGateway":true,"ipMasq":false,"hairpinMode":true,
    "ipam":{{"type":"host-local","dataDir":"{}","ranges":[[{{"subnet":"10.88.0.0/24"}}]],"routes":[{{"dst":"0.0.0.0/0"}}]}}}},
  {{"type":"portmap","capabilities":{{"portMappings":true}}}}
]}}"#,
            ipam.display()
        ),
    )
    .unwrap();
    let c = Cluster::start_with(&[
        "--cni-conf-dir",
        conf.path().to_str().unwrap(),
        "--cni-bin-dir",
        &format!("/nonexistent,{PLUGINS}"),
    ]);
    c.apply(&pod("web-a", ", hostPort: 18080"));
    c.apply(&pod("web-b", ""));
    let (a, b) = (running_ip(&c, "web-a"), running_ip(&c, "web-b"));
    for ip in [&a, &b] {
        assert!(
            ip.starts_with("10.88.0."),
            "an address of the CNI range, not 10.42: {ip}"
        );
    }
    let mut held = reserved_ips(&network_dir(&ipam));
    held.sort();
    let mut want = vec![a.clone(), b.clone()];
    want.sort();
    assert_eq!(held, want, "host-local holds exactly the pods' addresses");
    let links = c.in_node("ip", &["-o", "link", "show", "master", "nkcni0"]);
    let links = String::from_utf8_lossy(&links.stdout).into_owned();
    assert_eq!(
        links.lines().count(),
        2,
        "one veth per pod on the plugin's bridge: {links}"
    );
    let builtin = c.in_node("ip", &["link", "show", "cni0"]);
    assert!(
        !builtin.status.success(),
        "the built-in bridge is not made in CNI mode"
    );

    // Pod to pod, pod to Service (nanokube's proxy in front of CNI addresses), and the
    // hostPort through the portmap plugin from the node.
    let got = c.ok(&[
        "exec",
        "web-b",
        "--",
        "wget",
        "-qO-",
        &format!("http://{a}:8080/"),
    ]);
    assert_eq!(got.trim(), "web-a");
    c.ok(&[
        "expose",
        "pod",
        "web-a",
        "--port",
        "80",
        "--target-port",
        "8080",
    ]);
    c.wait_for("web-a through its Service", Duration::from_secs(30), |c| {
        let out = c.kubectl(&["exec", "web-b", "--", "wget", "-qO-", "http://web-a/"]);
        String::from_utf8_lossy(&out.stdout).trim() == "web-a"
    });
    c.wait_for("the hostPort", Duration::from_secs(30), |c| {
        let out = c.in_node(
            "curl",
            &["-s", "-m", "2", &format!("http://{NODE_IP}:18080/")],
        );
        String::from_utf8_lossy(&out.stdout).trim() == "web-a"
    });
    let uid = c.ok(&["get", "pod", "web-a", "-o", "jsonpath={.metadata.uid}"]);
    let rules = c.in_node("iptables-save", &[]);
    let rules = String::from_utf8_lossy(&rules.stdout).into_owned();
    assert!(rules.contains("18080"), "portmap's DNAT: {rules}");

    // Deleting the pods runs DEL: the addresses, veths and port rules go.
    c.ok(&["delete", "pod", "web-a", "web-b", "--wait=true"]);
    c.wait_for(
        "the CNI attachments released",
        Duration::from_secs(30),
        |_| reserved_ips(&network_dir(&ipam)).is_empty(),
    );
    let links = c.in_node("ip", &["-o", "link", "show", "master", "nkcni0"]);
    assert_eq!(
        String::from_utf8_lossy(&links.stdout).trim(),
        "",
        "no veth left"
    );
    let rules = c.in_node("iptables-save", &[]);
    let rules = String::from_utf8_lossy(&rules.stdout).into_owned();
    assert!(
        !rules.contains("18080"),
        "portmap's rules are gone: {rules}"
    );
    assert!(!rules.contains(&uid), "nothing names the pod: {rules}");
}

/// host-local keeps a network's reservations in <dataDir>/<network name>.
fn network_dir(ipam: &Path) -> std::path::PathBuf {
    ipam.join("nk-cni-test")
}
