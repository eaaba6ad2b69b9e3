//! NetworkPolicy on real nodes: busybox pods serving HTTP on 80 and 8080, reached with wget
//! from other pods (all addresses inside the test's own network namespaces), while policies
//! come and go. The table is read back with `nft` inside the node's namespace.
//!
//! Run as root: `cargo test --test netpol`.

mod node_support;

use node_support::{Cluster, IMAGE};
use std::time::Duration;

/// A pod serving its name on 80 (named `http`) and 8080, in `ns`, with `labels`.
fn pod(name: &str, ns: &str, labels: &str, node: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels: {{{labels}}}\nspec:\n  nodeName: {node}\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: web\n    image: {IMAGE}\n    imagePullPolicy: IfNotPresent\n    ports:\n    - {{name: http, containerPort: 80}}\n    command: [sh, -c, 'mkdir -p /www; echo {name} > /www/index.html; httpd -p 8080 -h /www; exec httpd -f -p 80 -h /www']\n"
    )
}

fn ip_of(c: &Cluster, ns: &str, name: &str) -> String {
    c.wait_for(
        &format!("{ns}/{name} running"),
        Duration::from_secs(90),
        |c| {
            c.ok(&[
                "get",
                "pod",
                "-n",
                ns,
                name,
                "-o",
                "jsonpath={.status.phase}",
            ]) == "Running"
        },
    );
    c.ok(&[
        "get",
        "pod",
        "-n",
        ns,
        name,
        "-o",
        "jsonpath={.status.podIP}",
    ])
}

/// Whether pod `from` gets an HTTP answer from `addr` (`ip` or `ip:port`).
fn reaches(c: &Cluster, from: (&str, &str), addr: &str) -> bool {
    let (ip, port) = addr.split_once(':').unwrap_or((addr, "80"));
    let script = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {ip} {port} 2>&1; true");
    let out = c.ok(&["exec", "-n", from.0, from.1, "--", "sh", "-c", &script]);
    if !out.contains("200 OK") {
        eprintln!("{from:?} -> {addr}: {out}");
        return false;
    }
    true
}

/// Waits until `from` reaching `addr` is `allowed` (policies take a moment to be programmed).
fn settle(c: &Cluster, from: (&str, &str), addr: &str, allowed: bool) {
    c.wait_for(
        &format!("{from:?} -> {addr} allowed={allowed}"),
        Duration::from_secs(30),
        |c| reaches(c, from, addr) == allowed,
    );
}

fn namespaces(c: &Cluster) {
    c.apply("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n");
    c.apply("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: b\n  labels: {team: b}\n");
}

#[test]
fn policies_isolate_open_exactly_what_they_name_and_go_away() {
    let c = Cluster::start();
    isolate_and_open(&c, |c, remote, server| {
        let rules = c.in_node("nft", &["list", "table", "ip", "nanokube-netpol"]);
        assert!(rules.status.success());
        let text = String::from_utf8_lossy(&rules.stdout);
        assert!(text.contains(remote), "{text}");
        assert!(!text.contains(server), "{text}");
    });
}

/// The same policies with the iptables backend (`--proxy-mode iptables`): the same traffic
/// passes and stops, through `NKNP-` chains, and no nftables table of policies exists.
#[test]
fn with_the_iptables_backend_policies_hold_the_same() {
    let c = Cluster::start_with(&["--proxy-mode", "iptables"]);
    isolate_and_open(&c, |c, remote, server| {
        let save = c.in_node("iptables-save", &["-t", "filter"]);
        assert!(save.status.success());
        let text = String::from_utf8_lossy(&save.stdout);
        assert!(text.contains("-A FORWARD -j NKNP-FORWARD"), "{text}");
        assert!(
            text.contains(&format!("-s {remote}/32 -j NKNP-SEL-")),
            "{text}"
        );
        assert!(!text.contains(server), "{text}");
        let nft = c.in_node("nft", &["list", "table", "ip", "nanokube-netpol"]);
        assert!(!nft.status.success(), "no nftables table in iptables mode");
    });
}

/// Policies come and go between pods of one node; `check_rules(cluster, remote, server)`
/// looks at the rules while only `remote`'s egress policy is left.
fn isolate_and_open(c: &Cluster, check_rules: impl Fn(&Cluster, &str, &str)) {
    namespaces(c);
    c.apply(&pod("server", "a", "app: web", "node1"));
    c.apply(&pod("client", "a", "app: client", "node1"));
    c.apply(&pod("other", "a", "app: other", "node1"));
    c.apply(&pod("remote", "b", "app: client", "node1"));
    let server = ip_of(c, "a", "server");
    let client = ip_of(c, "a", "client");
    let other = ip_of(c, "a", "other");
    let remote = ip_of(c, "b", "remote");
    let s80 = server.clone();
    let s8080 = format!("{server}:8080");
    // Running comes before httpd listens.
    settle(c, ("a", "client"), &s80, true);
    settle(c, ("b", "remote"), &s8080, true);

    // Default deny: an empty podSelector isolates every pod of namespace a for ingress.
    c.apply("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: deny\n  namespace: a\nspec:\n  podSelector: {}\n  policyTypes: [Ingress]\n");
    settle(c, ("a", "client"), &s80, false);
    assert!(!reaches(c, ("b", "remote"), &s8080));
    assert!(!reaches(c, ("a", "server"), &client));
    // Ingress only: the isolated pods still reach out.
    assert!(reaches(c, ("a", "client"), &remote));

    // Allow by podSelector on the named port: exactly client -> server:80.
    c.apply("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: web\n  namespace: a\nspec:\n  podSelector: {matchLabels: {app: web}}\n  ingress:\n  - from: [{podSelector: {matchLabels: {app: client}}}]\n    ports: [{port: http}]\n");
    settle(c, ("a", "client"), &s80, true);
    assert!(!reaches(c, ("a", "client"), &s8080), "other port");
    assert!(!reaches(c, ("a", "other"), &s80), "other pod");
    assert!(
        !reaches(c, ("b", "remote"), &s80),
        "same labels, other namespace"
    );

    // Through a ClusterIP: the policy sees the pod the proxy picked.
    c.apply("apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: a\nspec:\n  clusterIP: 10.43.0.60\n  selector: {app: web}\n  ports: [{port: 80, targetPort: 80}]\n");
    settle(c, ("a", "client"), "10.43.0.60", true);
    assert!(!reaches(c, ("a", "other"), "10.43.0.60"));

    // namespaceSelector: namespace b may use 8080, nothing else.
    c.apply("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: from-b\n  namespace: a\nspec:\n  podSelector: {matchLabels: {app: web}}\n  ingress:\n  - from: [{namespaceSelector: {matchLabels: {team: b}}}]\n    ports: [{port: 8000, endPort: 8090, protocol: TCP}]\n");
    settle(c, ("b", "remote"), &s8080, true);
    assert!(!reaches(c, ("b", "remote"), &s80));
    assert!(!reaches(c, ("a", "other"), &s8080));

    // ipBlock with except: the pod range but `other` may reach 8080.
    c.apply(&format!("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: block\n  namespace: a\nspec:\n  podSelector: {{matchLabels: {{app: web}}}}\n  ingress:\n  - from: [{{ipBlock: {{cidr: 10.42.0.0/16, except: [{other}/32]}}}}]\n    ports: [{{port: 8080}}]\n"));
    settle(c, ("a", "client"), &s8080, true);
    assert!(!reaches(c, ("a", "other"), &s8080));

    // Egress listed without rules: `remote` may send nothing, even to an unisolated pod.
    c.apply("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: no-egress\n  namespace: b\nspec:\n  podSelector: {}\n  policyTypes: [Egress]\n");
    settle(c, ("b", "remote"), &s8080, false);
    // Its ingress is not isolated by an Egress-only policy; its replies are allowed.
    c.ok(&[
        "delete",
        "networkpolicy",
        "-n",
        "a",
        "deny",
        "web",
        "from-b",
        "block",
    ]);
    settle(c, ("a", "client"), &remote, true);

    check_rules(c, &remote, &server);

    c.ok(&["delete", "networkpolicy", "-n", "b", "no-egress"]);
    settle(c, ("b", "remote"), &s8080, true);
    assert!(reaches(c, ("a", "other"), &s80));
}

#[test]
fn policies_hold_between_pods_of_two_nodes() {
    let c = Cluster::start_nodes(2);
    namespaces(&c);
    c.apply(&pod("server", "a", "app: web", "node2"));
    c.apply(&pod("client", "a", "app: client", "node1"));
    c.apply(&pod("other", "b", "app: other", "node1"));
    let server = ip_of(&c, "a", "server");
    ip_of(&c, "a", "client");
    ip_of(&c, "b", "other");
    settle(&c, ("b", "other"), &server, true);
    c.apply("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: web\n  namespace: a\nspec:\n  podSelector: {matchLabels: {app: web}}\n  ingress:\n  - from: [{podSelector: {matchLabels: {app: client}}}]\n");
    settle(&c, ("b", "other"), &server, false);
    assert!(reaches(&c, ("a", "client"), &server));
    // Egress enforced on the sending node: client may only reach namespace b.
    c.apply("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: out\n  namespace: a\nspec:\n  podSelector: {matchLabels: {app: client}}\n  policyTypes: [Egress]\n  egress:\n  - to: [{namespaceSelector: {matchLabels: {team: b}}}]\n");
    settle(&c, ("a", "client"), &server, false);
    c.ok(&["delete", "networkpolicy", "-n", "a", "web", "out"]);
    settle(&c, ("b", "other"), &server, true);
    assert!(reaches(&c, ("a", "client"), &server));
}
