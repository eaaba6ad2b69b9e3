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
    services_end_to_end(Cluster::start(), "nftables");
}

/// The same service behaviour with `--proxy-mode iptables`.
#[test]
fn the_iptables_backend_end_to_end() {
    services_end_to_end(
        Cluster::start_with(&["--proxy-mode", "iptables"]),
        "iptables",
    );
}

/// The proxy's rules for one service as the backend shows them: chain names and element (or
/// rule) texts.
fn rules_of(c: &Cluster, mode: &str) -> Option<(Vec<String>, Vec<String>)> {
    if mode == "nftables" {
        return table(c).map(|t| chains_and_elements(&t));
    }
    let out = c.in_node("iptables-save", &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    let chains: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix(":NK-"))
        .map(|l| {
            let name = l.split(' ').next().unwrap();
            // Named as the nft chains are, for one check of both.
            let lower = name.to_lowercase();
            if lower.starts_with("sep-") {
                lower.replacen("sep-", "ep-", 1)
            } else {
                lower
            }
        })
        .collect();
    (!chains.is_empty()).then(|| {
        let rules = text
            .lines()
            .filter(|l| l.starts_with("-A "))
            .map(str::to_string)
            .collect();
        (chains, rules)
    })
}

fn services_end_to_end(mut c: Cluster, mode: &str) {
    let names = ["web-0", "web-1", "web-2"];
    for n in names {
        c.apply(&web_pod(n));
    }
    c.apply(&client_pod());
    let ips: Vec<String> = names.iter().map(|n| pod_ip(&c, n)).collect();
    let client_ip = pod_ip(&c, "client");
    c.wait_for(
        "httpd answering on its pod IP",
        Duration::from_secs(20),
        |c| {
            ips.iter()
                .all(|ip| request_from_node(c, &format!("http://{ip}/")).is_ok())
        },
    );
    // What the proxy holds before web exists (the `kubernetes` service's chains, once the
    // agent has programmed them), so web's own can be told apart at the end.
    c.wait_for(
        "the kubernetes service programmed",
        Duration::from_secs(20),
        |c| rules_of(c, mode).is_some_and(|(chains, _)| !service_chains(&chains).is_empty()),
    );
    let baseline: std::collections::BTreeSet<String> =
        service_chains(&rules_of(&c, mode).unwrap().0)
            .into_iter()
            .collect();
    c.apply(&service(""));
    let ip_refs: Vec<&str> = ips.iter().map(String::as_str).collect();
    c.apply(&slice(&ip_refs));
    let url = format!("http://{VIP}/");
    c.wait_for(
        "the service answering from the node",
        Duration::from_secs(20),
        |c| request_from_node(c, &url).is_ok(),
    );

    // Only the chosen backend's rules are there.
    let other = if mode == "nftables" {
        "iptables"
    } else {
        "nftables"
    };
    assert!(rules_of(&c, mode).is_some() && rules_of(&c, other).is_none());

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

    // LoadBalancer (servicelb): the node's address in the status, the port answered there.
    c.apply(
        &service("")
            .replace("type: NodePort", "type: LoadBalancer")
            .replace("port: 80,", "port: 8081,"),
    );
    c.wait_for("load balancer status", Duration::from_secs(20), |c| {
        c.json(&["get", "service", "web"])
            .is_some_and(|s| s["status"]["loadBalancer"]["ingress"][0]["ip"] == NODE_IP)
    });
    let lb = format!("http://{NODE_IP}:8081/");
    c.wait_for(
        "the load balancer port answering",
        Duration::from_secs(20),
        |c| request_from_node(c, &lb).is_ok_and(|b| names.contains(&b.as_str())),
    );
    // loadBalancerSourceRanges: only the client pod may use the load-balancer address; the
    // node (its own address as the source) is dropped there, yet still served on the node
    // port, which the ranges do not guard.
    c.apply(
        &service(&format!(
            "  loadBalancerSourceRanges: [\"{client_ip}/32\"]\n"
        ))
        .replace("type: NodePort", "type: LoadBalancer")
        .replace("port: 80,", "port: 8081,"),
    );
    c.wait_for("the node kept out", Duration::from_secs(20), |c| {
        request_from_node(c, &lb).is_err()
    });
    let via_pod = requests_from_pod(&c, "client", &lb, 3);
    assert!(
        via_pod.iter().all(|a| names.contains(&a.as_str())),
        "the allowed client: {via_pod:?}"
    );
    let body = request_from_node(&c, &np).expect("the node port is not filtered");
    assert!(names.contains(&body.as_str()), "{body}");
    c.apply(&service(""));

    // externalIPs: an address routed to the node answers the service's port, from the node
    // and from a pod; it goes when the field does.
    c.apply(&service("  externalIPs: [10.99.0.7]\n"));
    let ext = "http://10.99.0.7/";
    c.wait_for("the external IP answering", Duration::from_secs(20), |c| {
        request_from_node(c, ext).is_ok_and(|b| names.contains(&b.as_str()))
    });
    let via_pod = requests_from_pod(&c, "client", ext, 3);
    assert!(
        via_pod.iter().all(|a| names.contains(&a.as_str())),
        "{via_pod:?}"
    );
    c.apply(&service(""));
    c.wait_for("the external IP gone", Duration::from_secs(20), |c| {
        rules_of(c, mode).is_some_and(|(chains, elements)| {
            !chains
                .iter()
                .chain(&elements)
                .any(|t| t.contains("10.99.0.7"))
        })
    });

    // Session affinity: one client sticks to one endpoint.
    c.apply(&service(
        "  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 300}}\n",
    ));
    let affinity = |c: &Cluster| {
        let (_, rules) = rules_of(c, mode).expect("the proxy's rules");
        match mode {
            // The affinity sets are named aff-<endpoint>.
            "nftables" => table(c).is_some_and(|t| t.to_string().contains("aff-")),
            _ => rules.iter().any(|r| r.contains("-m recent")),
        }
    };
    c.wait_for("affinity rules", Duration::from_secs(20), affinity);
    let sticky = counts(&requests_from_pod(&c, "client", &url, 30));
    assert_eq!(sticky.len(), 1, "one endpoint for one client: {sticky:?}");
    assert!(names.contains(&sticky.keys().next().unwrap().as_str()));
    c.apply(&service(""));
    c.wait_for("affinity gone", Duration::from_secs(20), |c| !affinity(c));

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
    let (chains, _) = rules_of(&c, mode).unwrap();
    assert!(service_chains(&chains).len() > baseline.len(), "{chains:?}");
    c.ok(&["delete", "service", "web"]);
    // Only web's chains go: the `kubernetes` service (the API server's) keeps its own.
    c.wait_for("the service's rules gone", Duration::from_secs(20), |c| {
        let (chains, elements) = rules_of(c, mode).unwrap();
        service_chains(&chains)
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>()
            == baseline
            && !elements.iter().any(|e| e.contains(VIP))
            // Nor any trace of its pods (the hairpin pairs, the DNATs).
            && !elements.iter().any(|e| {
                ips.iter().any(|ip| {
                    [format!("\"{ip}\""), format!("{ip}:"), format!("{ip}/32")]
                        .iter()
                        .any(|t| e.contains(t))
                })
            })
    });
    let (chains, _) = rules_of(&c, mode).unwrap();
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
    assert!(
        rules_of(&c, "iptables").is_none(),
        "killall left iptables chains"
    );
}

/// Runs `f` on a thread inside network namespace `ns` (nft, a child, inherits it).
fn in_netns<T: Send>(ns: &node_support::Netns, f: impl FnOnce() -> T + Send) -> T {
    let file = std::fs::File::open(format!("/run/netns/{}", ns.name)).unwrap();
    std::thread::scope(|s| {
        s.spawn(move || {
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            f()
        })
        .join()
        .unwrap()
    })
}

/// The table's objects without their handles, sorted: equal for equal tables whatever order
/// the objects were made in.
fn normalized(ns: &node_support::Netns) -> Vec<String> {
    let out = ns
        .command("nft")
        .args(["-j", "list", "table", "ip", "nanokube-proxy"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut objs: Vec<String> = v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o.get("metainfo").is_none())
        .map(|o| {
            let mut o = o.clone();
            for inner in o.as_object_mut().unwrap().values_mut() {
                if let Some(m) = inner.as_object_mut() {
                    m.remove("handle");
                    if let Some(Value::Array(elems)) = m.get_mut("elem") {
                        elems.sort_by_key(|e| e.to_string());
                    }
                }
            }
            o.to_string()
        })
        .collect();
    objs.sort();
    objs
}

#[test]
fn every_delta_leaves_the_table_a_full_sync_would() {
    use nanokube::network::proxy::{nft, Endpoint, Model, Params, Protocol, Proxy, ServicePort};
    use std::net::Ipv4Addr;

    let params = Params {
        cluster_cidr: "10.42.0.0/16".parse().unwrap(),
        service_cidr: "10.43.0.0/16".parse().unwrap(),
    };
    let ep = |last: u8, ready: bool, local: bool| Endpoint {
        ip: Ipv4Addr::new(10, 42, 0, last),
        port: 8080,
        ready,
        serving: true,
        terminating: !ready,
        local,
    };
    let port = |name: &str, vip: u8, endpoints: Vec<Endpoint>| ServicePort {
        key: format!("default/{name}:p/tcp"),
        cluster_ip: Ipv4Addr::new(10, 43, 0, vip),
        protocol: Protocol::Tcp,
        port: 80,
        node_port: None,
        external_ips: vec![],
        source_ranges: vec![],
        firewalled: vec![],
        affinity_seconds: None,
        external_local: false,
        internal_local: false,
        endpoints,
    };
    let mut steps: Vec<Model> = Vec::new();
    let mut m = Model::default();
    let mut a = port(
        "a",
        1,
        vec![ep(1, true, true), ep(2, true, false), ep(3, false, false)],
    );
    a.node_port = Some(30001);
    let mut b = port("b", 2, vec![ep(4, true, false)]);
    b.affinity_seconds = Some(60);
    b.external_ips = vec![Ipv4Addr::new(10, 99, 0, 2)];
    let mut c = port("c", 3, vec![ep(5, true, true), ep(6, true, false)]);
    c.protocol = Protocol::Udp;
    c.port = 53;
    c.node_port = Some(30053);
    c.external_local = true;
    c.internal_local = true;
    let d = port("d", 4, vec![]);
    for p in [a.clone(), b.clone(), c.clone(), d.clone()] {
        m.insert(p);
    }
    steps.push(m.clone());
    // Endpoints come and go, the affinity timeout changes, a port loses its last endpoint,
    // one without endpoints gets some, a service goes and another comes.
    a.endpoints.remove(1);
    a.endpoints.push(ep(7, true, false));
    b.affinity_seconds = Some(120);
    b.endpoints.push(ep(8, true, true));
    c.endpoints.retain(|e| !e.local);
    let mut d2 = d.clone();
    d2.endpoints.push(ep(9, true, true));
    m.insert(a.clone());
    m.insert(b.clone());
    m.insert(c.clone());
    m.insert(d2);
    m.services.remove(&b.key);
    m.insert(port("e", 5, vec![ep(10, true, true)]));
    steps.push(m.clone());
    a.endpoints.clear();
    m.insert(a);
    m.insert(b);
    steps.push(m.clone());
    steps.push(Model::default());

    let (live, fresh) = (node_support::Netns::new(), node_support::Netns::new());
    let mut proxy = Proxy::new();
    for (i, step) in steps.iter().enumerate() {
        let done = in_netns(&live, || proxy.sync(params, step.clone())).unwrap();
        assert_eq!(
            done.full,
            i == 0,
            "step {i}: only the first sync replaces the table"
        );
        let text = nft::full(&params, step);
        let st = fresh
            .command("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .and_then(|mut ch| {
                use std::io::Write;
                ch.stdin.take().unwrap().write_all(text.as_bytes())?;
                ch.wait()
            })
            .unwrap();
        assert!(st.success(), "step {i}: full sync refused");
        assert_eq!(normalized(&live), normalized(&fresh), "step {i}");
    }
}

/// One request with GNU wget through `run` (a node's `in_node`): Ok(body) or Err(message).
fn request_with(
    run: impl Fn(&str, &[&str]) -> std::process::Output,
    url: &str,
) -> Result<String, String> {
    let out = run("wget", &["-O-", "-q", "-t", "1", "-T", "3", url]);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        let out = run("wget", &["-O", "/dev/null", "-t", "1", "-T", "3", url]);
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn local_traffic_policies_on_two_nodes() {
    let c = Cluster::start_nodes(2);
    let node2 = c.agent("node2");
    c.apply(&web_pod("web-0"));
    c.apply(&client_pod());
    c.apply(
        &client_pod()
            .replace("name: client", "name: client2")
            .replace("nodeName: node1", "nodeName: node2"),
    );
    let ip = pod_ip(&c, "web-0");
    pod_ip(&c, "client");
    pod_ip(&c, "client2");
    c.apply(&service(
        "  externalTrafficPolicy: Local\n  internalTrafficPolicy: Local\n  healthCheckNodePort: 30900\n",
    ));
    c.apply(&slice(&[&ip]));
    let np1 = format!("http://{NODE_IP}:{NODE_PORT}/");
    let np2 = format!("http://{}:{NODE_PORT}/", node2.ip);
    let url = format!("http://{VIP}/");
    // node2 reaching node1's node port is outside traffic for node1, which has the pod.
    c.wait_for("node1's node port", Duration::from_secs(30), |_| {
        request_with(|p, a| node2.in_node(p, a), &np1).is_ok()
    });
    assert_eq!(
        request_with(|p, a| node2.in_node(p, a), &np1).unwrap(),
        "web-0"
    );
    // node2 has no endpoint of its own: outside traffic to its node port goes nowhere.
    let err = request_with(|p, a| c.in_node(p, a), &np2).unwrap_err();
    assert!(
        err.contains("timed out"),
        "externalTrafficPolicy Local on node2: {err}"
    );
    // The health-check node port tells a load balancer which node has an endpoint.
    let health1 = request_with(
        |p, a| node2.in_node(p, a),
        &format!("http://{NODE_IP}:30900/"),
    )
    .expect("node1 healthy");
    assert!(health1.contains(r#""localEndpoints":1"#), "{health1}");
    let health2 = request_with(
        |p, a| c.in_node(p, a),
        &format!("http://{}:30900/", node2.ip),
    )
    .unwrap_err();
    assert!(health2.contains("503"), "node2 has no endpoint: {health2}");
    // internalTrafficPolicy Local: node1's pod is served, node2's pod is refused.
    assert_eq!(requests_from_pod(&c, "client", &url, 3), vec!["web-0"; 3]);
    let refused = requests_from_pod(&c, "client2", &url, 1);
    assert!(refused[0].contains("Connection refused"), "{refused:?}");

    // Cluster policies: node2 forwards to node1's pod, and node2's pods reach it too.
    c.apply(&service(""));
    c.wait_for("node2's node port", Duration::from_secs(30), |c| {
        request_with(|p, a| c.in_node(p, a), &np2).is_ok()
    });
    assert_eq!(request_with(|p, a| c.in_node(p, a), &np2).unwrap(), "web-0");
    assert_eq!(requests_from_pod(&c, "client2", &url, 3), vec!["web-0"; 3]);
}

#[test]
fn a_restarted_agent_resyncs_and_keeps_established_connections() {
    use std::io::{BufRead, BufReader, Write};
    let mut c = Cluster::start();
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: echo\nspec:\n  nodeName: node1\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: echo\n    image: {IMAGE}\n    imagePullPolicy: IfNotPresent\n    command: [nc, -ll, -p, '9000', -e, cat]\n"
    ));
    let ip = pod_ip(&c, "echo");
    c.apply(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: echo\nspec:\n  clusterIP: 10.43.0.60\n  ports:\n  - {name: tcp, port: 9000, protocol: TCP}\n",
    );
    c.apply(&format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: echo-manual\n  labels:\n    kubernetes.io/service-name: echo\naddressType: IPv4\nports:\n- {{name: tcp, port: 9000, protocol: TCP}}\nendpoints:\n- addresses: [\"{ip}\"]\n  nodeName: node1\n"
    ));
    // A connection from the node's namespace, opened by a thread that entered it.
    let connect = |c: &Cluster| {
        in_netns(&c.ns, || {
            std::net::TcpStream::connect_timeout(
                &"10.43.0.60:9000".parse().unwrap(),
                Duration::from_secs(2),
            )
        })
    };
    let mut conn = None;
    c.wait_for("the echo service", Duration::from_secs(30), |c| {
        conn = connect(c).ok();
        conn.is_some()
    });
    let conn = conn.unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut echo = |text: &str| {
        (&conn).write_all(format!("{text}\n").as_bytes()).unwrap();
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        line.trim().to_string()
    };
    assert_eq!(echo("before"), "before");

    let full_syncs = |c: &Cluster| c.log().matches("full=true").count();
    assert_eq!(full_syncs(&c), 1, "one cold start so far");
    c.kill9();
    c.start_again();
    c.wait_for(
        "the restarted proxy's cold sync",
        Duration::from_secs(60),
        |c| full_syncs(c) == 2,
    );
    assert_eq!(
        echo("after"),
        "after",
        "the established connection survived the resync"
    );
    assert!(connect(&c).is_ok(), "new connections after the restart");
}

#[test]
fn udp_flows_to_a_removed_endpoint_are_flushed() {
    use nanokube::network::proxy::{
        conntrack, Endpoint, Model, Params, Protocol, Proxy, ServicePort,
    };
    use std::net::{Ipv4Addr, UdpSocket};

    let ns = node_support::Netns::new();
    // Two "endpoints": addresses of this namespace, each with a UDP server.
    for cmd in [
        "addr add 10.42.0.9/32 dev lo",
        "addr add 10.42.0.10/32 dev lo",
    ] {
        let mut args = vec!["-n", ns.name.as_str()];
        args.extend(cmd.split(' '));
        assert!(std::process::Command::new("ip")
            .args(&args)
            .status()
            .unwrap()
            .success());
    }
    let params = Params {
        cluster_cidr: "10.42.0.0/16".parse().unwrap(),
        service_cidr: "10.43.0.0/16".parse().unwrap(),
    };
    let service = |last: u8| {
        let mut m = Model::default();
        m.insert(ServicePort {
            key: "default/dns:dns/udp".into(),
            cluster_ip: Ipv4Addr::new(10, 43, 0, 70),
            protocol: Protocol::Udp,
            port: 53,
            node_port: None,
            external_ips: vec![],
            source_ranges: vec![],
            firewalled: vec![],
            affinity_seconds: None,
            external_local: false,
            internal_local: false,
            endpoints: vec![Endpoint {
                ip: Ipv4Addr::new(10, 42, 0, last),
                port: 5353,
                ready: true,
                serving: true,
                terminating: false,
                local: true,
            }],
        });
        m
    };
    let bind = |addr: &str| {
        let s = in_netns(&ns, || UdpSocket::bind(addr)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    };
    let (old_ep, new_ep) = (bind("10.42.0.9:5353"), bind("10.42.0.10:5353"));
    let client = bind("10.99.0.2:0");
    let mut proxy = Proxy::new();
    in_netns(&ns, || proxy.sync(params, service(9))).unwrap();

    let mut buf = [0u8; 16];
    client.send_to(b"one", "10.43.0.70:53").unwrap();
    let (n, _) = old_ep
        .recv_from(&mut buf)
        .expect("the first endpoint gets the datagram");
    assert_eq!(&buf[..n], b"one");
    let to_old = |f: &conntrack::Flow| f.reply.src == Some(Ipv4Addr::new(10, 42, 0, 9));
    let flows = in_netns(&ns, conntrack::list).unwrap();
    assert!(
        flows.iter().any(to_old),
        "a conntrack entry to the endpoint: {flows:?}"
    );

    // The endpoint is replaced: its entry is deleted, so the same client's next datagram is
    // translated afresh and reaches the new endpoint.
    let done = in_netns(&ns, || proxy.sync(params, service(10))).unwrap();
    assert_eq!(done.flushed, 1, "{done:?}");
    let flows = in_netns(&ns, conntrack::list).unwrap();
    assert!(!flows.iter().any(to_old), "{flows:?}");
    client.send_to(b"two", "10.43.0.70:53").unwrap();
    let (n, _) = new_ep
        .recv_from(&mut buf)
        .expect("the new endpoint gets the next datagram");
    assert_eq!(&buf[..n], b"two");
    in_netns(&ns, nanokube::network::proxy::remove).unwrap();
}
