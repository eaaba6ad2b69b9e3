//! The service proxy on a real node: pods running busybox httpd behind Services with an
//! explicit clusterIP and nodePort and EndpointSlices written by the test (Services without a
//! selector, which keep user-managed slices), reached from a pod and from the node itself. The
//! rules are read back with `nft -j` inside the node's namespace.
//!
//! Run as root: `cargo test --test services`.

mod node_support;

use node_support::{Cluster, IMAGE, NANOKUBE, NODE_IP};
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

const VIP: &str = "10.43.0.50";
const NODE_PORT: u16 = 30080;

fn web_pod(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{app: web}}\nspec:\n  nodeName: node1\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: web\n    image: {IMAGE}\n    imagePullPolicy: IfNotPresent\n    command: [sh, -c, 'mkdir -p /www; echo {name} > /www/index.html; exec httpd -f -p 80 -h /www']\n"
    )
}

fn client_pod() -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: client\nspec:\n  nodeName: node1\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {IMAGE}\n    imagePullPolicy: IfNotPresent\n    command: [sleep, '3600']\n"
    )
}

fn service(extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  type: NodePort\n  clusterIP: {VIP}\n  ports:\n  - {{name: http, port: 80, targetPort: 80, nodePort: {NODE_PORT}, protocol: TCP}}\n{extra}"
    )
}

/// The slice of service `web` holding `ips` (all ready, on node1).
fn slice(ips: &[&str]) -> String {
    let mut eps = String::new();
    for ip in ips {
        eps.push_str(&format!(
            "- addresses: [\"{ip}\"]\n  conditions: {{ready: true}}\n  nodeName: node1\n"
        ));
    }
    if ips.is_empty() {
        eps.push_str("[]\n");
    }
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-manual\n  labels:\n    kubernetes.io/service-name: web\naddressType: IPv4\nports:\n- {{name: http, port: 80, protocol: TCP}}\nendpoints:{}{eps}",
        if ips.is_empty() { " " } else { "\n" }
    )
}

fn pod_ip(c: &Cluster, name: &str) -> String {
    c.wait_phase(name, "Running")["status"]["podIP"]
        .as_str()
        .expect("a pod IP")
        .to_string()
}

/// `n` requests to `url` from inside pod `from`, one wget each; the answers in order (an
/// error line for a failed request).
fn requests_from_pod(c: &Cluster, from: &str, url: &str, n: usize) -> Vec<String> {
    let script =
        format!("for i in $(seq {n}); do timeout 5 wget -qO- {url} 2>&1 || echo FAILED; done");
    c.ok(&["exec", from, "--", "sh", "-c", &script])
        .lines()
        .map(str::to_string)
        .collect()
}

/// One request from the node's own network namespace (GNU wget): Ok(body) or Err(message).
fn request_from_node(c: &Cluster, url: &str) -> Result<String, String> {
    let out = c.in_node("wget", &["-O-", "-q", "-t", "1", "-T", "5", url]);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        let out = c.in_node("wget", &["-O", "/dev/null", "-t", "1", "-T", "5", url]);
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn counts(answers: &[String]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for a in answers {
        *m.entry(a.clone()).or_insert(0) += 1;
    }
    m
}

/// The proxy's table inside the node, as `nft -j` prints it (None: no table).
fn table(c: &Cluster) -> Option<Value> {
    let out = c.in_node("nft", &["-j", "list", "table", "ip", "nanokube-proxy"]);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).expect("nft JSON"))
}

/// Chain names and the text of every element of the table.
fn chains_and_elements(t: &Value) -> (Vec<String>, Vec<String>) {
    let mut chains = Vec::new();
    let mut elements = Vec::new();
    for obj in t["nftables"].as_array().into_iter().flatten() {
        if let Some(name) = obj["chain"]["name"].as_str() {
            chains.push(name.to_string());
        }
        for kind in ["map", "set"] {
            for e in obj[kind]["elem"].as_array().into_iter().flatten() {
                elements.push(e.to_string());
            }
        }
    }
    (chains, elements)
}

fn service_chains(chains: &[String]) -> Vec<String> {
    chains
        .iter()
        .filter(|c| {
            ["svc-", "ext-", "ep-", "cl-", "lo-"]
                .iter()
                .any(|p| c.starts_with(p))
        })
        .cloned()
        .collect()
}

#[test]
fn cluster_ip_round_robin_affinity_hairpin_node_port_and_removal() {
    let mut c = Cluster::start();
    let names = ["web-0", "web-1", "web-2"];
    for n in names {
        c.apply(&web_pod(n));
    }
    c.apply(&client_pod());
    let ips: Vec<String> = names.iter().map(|n| pod_ip(&c, n)).collect();
    pod_ip(&c, "client");
    c.wait_for(
        "httpd answering on its pod IP",
        Duration::from_secs(20),
        |c| {
            ips.iter()
                .all(|ip| request_from_node(c, &format!("http://{ip}/")).is_ok())
        },
    );
    c.apply(&service(""));
    let ip_refs: Vec<&str> = ips.iter().map(String::as_str).collect();
    c.apply(&slice(&ip_refs));
    let url = format!("http://{VIP}/");
    c.wait_for(
        "the service answering from the node",
        Duration::from_secs(20),
        |c| request_from_node(c, &url).is_ok(),
    );

    // Round-robin from a pod: each endpoint within +-20% of an even share of 300.
    let answers = requests_from_pod(&c, "client", &url, 300);
    let seen = counts(&answers);
    assert_eq!(
        seen.keys().cloned().collect::<Vec<_>>(),
        names.to_vec(),
        "every answer from one of the three pods: {seen:?}"
    );
    for (name, n) in &seen {
        assert!(
            (80..=120).contains(n),
            "{name} answered {n} of 300: {seen:?}"
        );
    }

    // From the node itself (output hook, masqueraded): every request answered, spread too.
    let from_node: Vec<String> = (0..9)
        .map(|_| request_from_node(&c, &url).expect("the node reaches the cluster IP"))
        .collect();
    assert_eq!(counts(&from_node).len(), 3, "{from_node:?}");

    // Hairpin: a pod reaching its own service lands on itself in its turn.
    let hairpin = requests_from_pod(&c, "web-0", &url, 6);
    assert!(
        hairpin.iter().all(|a| names.contains(&a.as_str())),
        "{hairpin:?}"
    );
    assert!(
        hairpin.iter().any(|a| a == "web-0"),
        "web-0 reached itself through its service: {hairpin:?}"
    );

    // NodePort on the node's address, from the node and from a pod.
    let np = format!("http://{NODE_IP}:{NODE_PORT}/");
    let body = request_from_node(&c, &np).expect("the node port answers on the node");
    assert!(names.contains(&body.as_str()), "{body}");
    let via_pod = requests_from_pod(&c, "client", &np, 3);
    assert!(
        via_pod.iter().all(|a| names.contains(&a.as_str())),
        "{via_pod:?}"
    );

    // Session affinity: one client sticks to one endpoint.
    c.apply(&service(
        "  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 300}}\n",
    ));
    c.wait_for("affinity rules", Duration::from_secs(20), |c| {
        table(c).is_some_and(|t| {
            chains_and_elements(&t)
                .0
                .iter()
                .any(|n| n.starts_with("aff-"))
                || t.to_string().contains("aff-")
        })
    });
    let sticky = counts(&requests_from_pod(&c, "client", &url, 30));
    assert_eq!(sticky.len(), 1, "one endpoint for one client: {sticky:?}");
    assert!(names.contains(&sticky.keys().next().unwrap().as_str()));
    c.apply(&service(""));
    c.wait_for("affinity gone", Duration::from_secs(20), |c| {
        table(c).is_some_and(|t| !t.to_string().contains("aff-"))
    });

    // An endpoint removed from the slice leaves the rotation.
    c.apply(&slice(&ip_refs[1..]));
    c.wait_for("web-0 out of rotation", Duration::from_secs(20), |c| {
        !requests_from_pod(c, "client", &url, 3).contains(&"web-0".to_string())
    });
    let rest = counts(&requests_from_pod(&c, "client", &url, 30));
    assert_eq!(
        rest.keys().cloned().collect::<Vec<_>>(),
        vec!["web-1".to_string(), "web-2".to_string()],
        "{rest:?}"
    );

    // No endpoints: refused at once, from a pod and from the node.
    c.apply(&slice(&[]));
    c.wait_for("the service refusing", Duration::from_secs(20), |c| {
        request_from_node(c, &url).is_err()
    });
    let refused = requests_from_pod(&c, "client", &url, 1);
    assert!(
        refused[0].contains("Connection refused"),
        "a pod is refused, not left to time out: {refused:?}"
    );
    let err = request_from_node(&c, &url).unwrap_err();
    assert!(err.contains("Connection refused"), "{err}");
    let err = request_from_node(&c, &np).unwrap_err();
    assert!(err.contains("Connection refused"), "node port: {err}");

    // An address of the service range that no service holds is dropped at the node.
    // Dropped, not refused: the client hears nothing.
    let err = request_from_node(&c, "http://10.43.0.99/").unwrap_err();
    assert!(err.contains("timed out"), "{err}");

    // Deleting the service removes its rules; the table's skeleton stays.
    c.apply(&slice(&ip_refs));
    c.wait_for("endpoints back", Duration::from_secs(20), |c| {
        request_from_node(c, &url).is_ok()
    });
    let (chains, _) = chains_and_elements(&table(&c).unwrap());
    assert!(!service_chains(&chains).is_empty(), "{chains:?}");
    c.ok(&["delete", "service", "web"]);
    c.wait_for("the service's rules gone", Duration::from_secs(20), |c| {
        let (chains, elements) = chains_and_elements(&table(c).unwrap());
        service_chains(&chains).is_empty() && !elements.iter().any(|e| e.contains(VIP))
    });
    let (chains, _) = chains_and_elements(&table(&c).unwrap());
    assert!(chains.contains(&"services".to_string()), "{chains:?}");

    // killall removes the table.
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
    assert!(table(&c).is_none(), "killall left the proxy's table");
}
