//! Service cluster IPs and node ports through the real kubectl against a `nanokube server`:
//! assignment, requested values and upstream's refusals, release on delete and on type
//! changes, many creates at once, a full range and a restart; the `kubernetes` service.

mod api_support;

use api_support::{eventually, Server};
use serde_json::Value;
use std::collections::BTreeSet;

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

fn get(s: &Server, what: &[&str]) -> Value {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    args.extend_from_slice(&["-o", "json"]);
    json(&s.ok(&args))
}

/// A ClusterIP service of one port, with extra spec lines (YAML, two-space indented).
fn service(name: &str, ns: &str, spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  selector: {{app: {name}}}\n{spec}\n"
    )
}

fn refused(s: &Server, yaml: &str) -> String {
    let out = s.apply(yaml, &[]);
    assert!(
        !out.status.success(),
        "should be refused: {yaml}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn cluster_ip(s: &Server, name: &str, ns: &str) -> String {
    get(s, &["svc", name, "-n", ns])["spec"]["clusterIP"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn kubernetes_service_points_at_the_server() {
    let s = Server::start();
    let svc = get(&s, &["svc", "kubernetes"]);
    assert_eq!(svc["spec"]["clusterIP"], "10.43.0.1");
    assert_eq!(svc["spec"]["clusterIPs"], serde_json::json!(["10.43.0.1"]));
    assert_eq!(svc["spec"]["ports"][0]["name"], "https");
    assert_eq!(svc["spec"]["ports"][0]["port"], 443);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], s.port);
    let ep = get(&s, &["endpoints", "kubernetes"]);
    assert_eq!(ep["subsets"][0]["addresses"][0]["ip"], "127.0.0.1");
    assert_eq!(ep["subsets"][0]["ports"][0]["port"], s.port);
    let slice = get(&s, &["endpointslices", "kubernetes"]);
    assert_eq!(slice["addressType"], "IPv4");
    assert_eq!(
        slice["metadata"]["labels"]["kubernetes.io/service-name"],
        "kubernetes"
    );
    assert_eq!(slice["endpoints"][0]["addresses"][0], "127.0.0.1");
    assert_eq!(slice["ports"][0]["port"], s.port);
    let ips = s.ok(&["get", "ipaddresses"]);
    assert!(
        ips.lines()
            .any(|l| l.starts_with("10.43.0.1 ") && l.contains("services/default/kubernetes")),
        "{ips}"
    );
}

#[test]
fn cluster_ips_assigned_requested_refused_and_released() {
    let s = Server::start();
    s.ok(&["create", "service", "clusterip", "web", "--tcp=80:8080"]);
    let web = get(&s, &["svc", "web"]);
    let ip: std::net::Ipv4Addr = web["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        web["spec"]["clusterIPs"],
        serde_json::json!([ip.to_string()])
    );
    assert_eq!(web["spec"]["ipFamilies"], serde_json::json!(["IPv4"]));
    assert_eq!(web["spec"]["ipFamilyPolicy"], "SingleStack");
    // Dynamic addresses come from above the static band (10.43.0.1 - 10.43.1.0).
    assert!(
        ip.octets()[..2] == [10, 43] && ip > std::net::Ipv4Addr::new(10, 43, 1, 0),
        "{ip}"
    );
    let ipaddr = get(&s, &["ipaddress", &ip.to_string()]);
    assert_eq!(
        ipaddr["spec"]["parentRef"],
        serde_json::json!({"group": "", "resource": "services", "namespace": "default", "name": "web"})
    );

    // The cluster DNS address is given when asked for.
    s.apply_ok(&service(
        "kube-dns",
        "kube-system",
        "  clusterIP: 10.43.0.10\n  ports:\n  - {name: dns, port: 53, protocol: UDP}\n  - {name: dns-tcp, port: 53, protocol: TCP}",
    ));
    assert_eq!(cluster_ip(&s, "kube-dns", "kube-system"), "10.43.0.10");
    let err = refused(
        &s,
        &service(
            "dup",
            "default",
            "  clusterIP: 10.43.0.10\n  ports: [{port: 80}]",
        ),
    );
    assert!(
        err.contains(r#"The Service "dup" is invalid: spec.clusterIPs: Invalid value: []string{"10.43.0.10"}: failed to allocate IP 10.43.0.10: provided IP is already allocated"#),
        "{err}"
    );
    let err = refused(
        &s,
        &service(
            "far",
            "default",
            "  clusterIP: 1.1.1.1\n  ports: [{port: 80}]",
        ),
    );
    assert!(
        err.contains(r#"spec.clusterIPs: Invalid value: []string{"1.1.1.1"}: failed to allocate IP 1.1.1.1: the provided IP (1.1.1.1) is not in the valid range. The range of valid IPs is 10.43.0.0/16"#),
        "{err}"
    );
    let err = refused(
        &s,
        &service(
            "dual",
            "default",
            "  ipFamilyPolicy: RequireDualStack\n  ports: [{port: 80}]",
        ),
    );
    assert!(
        err.contains(r#"spec.ipFamilyPolicy: Invalid value: "RequireDualStack": this cluster is not configured for dual-stack services"#),
        "{err}"
    );
    s.apply_ok(&service(
        "prefer",
        "default",
        "  ipFamilyPolicy: PreferDualStack\n  ports: [{port: 80}]",
    ));
    let prefer = get(&s, &["svc", "prefer"]);
    assert_eq!(prefer["spec"]["ipFamilies"], serde_json::json!(["IPv4"]));
    assert_eq!(prefer["spec"]["clusterIPs"].as_array().unwrap().len(), 1);

    // Headless and ExternalName services hold no address.
    s.apply_ok(&service(
        "db",
        "default",
        "  clusterIP: None\n  ports: [{port: 5432}]",
    ));
    let db = get(&s, &["svc", "db"]);
    assert_eq!(db["spec"]["clusterIP"], "None");
    assert_eq!(db["spec"]["clusterIPs"], serde_json::json!(["None"]));
    s.ok(&[
        "create",
        "service",
        "externalname",
        "ext",
        "--external-name",
        "db.example.com",
    ]);
    assert!(get(&s, &["svc", "ext"])["spec"]["clusterIP"].is_null());
    let err = refused(
        &s,
        "apiVersion: v1\nkind: Service\nmetadata: {name: ext2}\nspec: {type: ExternalName, externalName: a.example, clusterIP: 10.43.3.3}\n",
    );
    assert!(
        err.contains("spec.clusterIPs: Forbidden: may not be set for ExternalName services"),
        "{err}"
    );
    let held = s.ok(&["get", "ipaddresses", "-o", "name"]);
    assert_eq!(
        held.lines().count(),
        4,
        "kubernetes, web, kube-dns, prefer: {held}"
    );

    // A PUT without the address keeps it.
    s.ok(&["get", "svc", "web", "-o", "json"]);
    let mut replaced = get(&s, &["svc", "web"]);
    let spec = replaced["spec"].as_object_mut().unwrap();
    spec.remove("clusterIP");
    spec.remove("clusterIPs");
    let path = s.file("web.json", &replaced.to_string());
    s.ok(&["replace", "-f", path.to_str().unwrap()]);
    assert_eq!(cluster_ip(&s, "web", "default"), ip.to_string());

    // Deleting frees the address at once; so does becoming an ExternalName.
    s.ok(&["delete", "svc", "kube-dns", "-n", "kube-system"]);
    s.apply_ok(&service(
        "dns2",
        "default",
        "  clusterIP: 10.43.0.10\n  ports: [{port: 53}]",
    ));
    s.ok(&[
        "patch",
        "svc",
        "dns2",
        "--type=merge",
        "-p",
        r#"{"spec":{"type":"ExternalName","externalName":"dns.example.com"}}"#,
    ]);
    let dns2 = get(&s, &["svc", "dns2"]);
    assert!(dns2["spec"]["clusterIP"].is_null(), "{dns2}");
    assert!(dns2["spec"]["clusterIPs"].is_null(), "{dns2}");
    s.apply_ok(&service(
        "dns3",
        "default",
        "  clusterIP: 10.43.0.10\n  ports: [{port: 53}]",
    ));
    // Back from ExternalName: a new address.
    s.ok(&[
        "patch",
        "svc",
        "dns2",
        "--type=merge",
        "-p",
        r#"{"spec":{"type":"ClusterIP","externalName":null,"ports":[{"port":53}]}}"#,
    ]);
    let back = cluster_ip(&s, "dns2", "default");
    assert!(!back.is_empty() && back != "10.43.0.10", "{back}");
    // The address cannot change once set.
    let err = String::from_utf8_lossy(
        &s.kubectl(&[
            "patch",
            "svc",
            "web",
            "--type=merge",
            "-p",
            r#"{"spec":{"clusterIP":"10.43.9.9","clusterIPs":["10.43.9.9"]}}"#,
        ])
        .stderr,
    )
    .into_owned();
    assert!(err.contains("may not change once set"), "{err}");
    assert_eq!(cluster_ip(&s, "web", "default"), ip.to_string());
    // ... and the refused change left nothing taken.
    s.apply_ok(&service(
        "nine",
        "default",
        "  clusterIP: 10.43.9.9\n  ports: [{port: 80}]",
    ));
}

#[test]
fn external_ips_are_checked_as_upstream_checks_them() {
    let s = Server::start();
    for (ip, why) in [
        (
            "nope",
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        ),
        ("0.0.0.0", "may not be unspecified (0.0.0.0)"),
        (
            "127.0.0.2",
            "may not be in the loopback range (127.0.0.0/8, ::1/128)",
        ),
        (
            "169.254.169.254",
            "may not be in the link-local range (169.254.0.0/16, fe80::/10)",
        ),
        (
            "224.0.0.9",
            "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)",
        ),
    ] {
        let err = refused(
            &s,
            &service(
                "ext",
                "default",
                &format!("  externalIPs: [10.99.0.7, \"{ip}\"]\n  ports: [{{port: 80}}]"),
            ),
        );
        assert!(
            err.contains(&format!(
                r#"The Service "ext" is invalid: spec.externalIPs[1]: Invalid value: "{ip}": {why}"#
            )),
            "{err}"
        );
    }
    s.apply_ok(&service(
        "ext",
        "default",
        "  externalIPs: [10.99.0.7, 192.0.2.10]\n  ports: [{port: 80}]",
    ));
    let row = s.ok(&["get", "svc", "ext", "--no-headers"]);
    assert!(row.contains("10.99.0.7,192.0.2.10"), "{row}");
    // loadBalancerSourceRanges: LoadBalancer only, CIDRs only (space around them allowed).
    let err = refused(
        &s,
        &service(
            "ranges",
            "default",
            "  loadBalancerSourceRanges: [10.0.0.0/8]\n  ports: [{port: 80}]",
        ),
    );
    assert!(
        err.contains("spec.LoadBalancerSourceRanges: Forbidden: may only be used when `type` is 'LoadBalancer'"),
        "{err}"
    );
    let err = refused(
        &s,
        &service(
            "ranges",
            "default",
            "  type: LoadBalancer\n  loadBalancerSourceRanges: [10.0.0.0/33]\n  ports: [{port: 80}]",
        ),
    );
    assert!(
        err.contains(r#"spec.LoadBalancerSourceRanges[0]: Invalid value: "10.0.0.0/33": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"#),
        "{err}"
    );
    s.apply_ok(&service(
        "ranges",
        "default",
        "  type: LoadBalancer\n  loadBalancerSourceRanges: [\" 10.42.0.0/16 \"]\n  ports: [{port: 80}]",
    ));
}

#[test]
fn parallel_creates_fill_a_small_range_without_duplicates_and_survive_a_restart() {
    // 10.96.0.0/26: hosts .1 - .62, .1 the kubernetes service's: 61 to hand out.
    let mut s = Server::start_with(&["--service-cidr", "10.96.0.0/26"]);
    assert_eq!(cluster_ip(&s, "kubernetes", "default"), "10.96.0.1");
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let mut create = s.kubectl_command(api_support::KUBECTL);
            create.args(["create", "-f", "-"]);
            let docs: Vec<String> = (0..8)
                .filter(|i| t * 8 + i < 61)
                .map(|i| {
                    service(
                        &format!("s{}", t * 8 + i),
                        "default",
                        "  ports: [{port: 80}]",
                    )
                })
                .collect();
            std::thread::spawn(move || {
                use std::io::Write;
                let mut child = create
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(docs.join("---\n").as_bytes())
                    .unwrap();
                child.wait_with_output().unwrap()
            })
        })
        .collect();
    for t in threads {
        let out = t.join().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let list = get(&s, &["svc"]);
    let ips: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["spec"]["clusterIP"].as_str().unwrap())
        .collect();
    let distinct: BTreeSet<&str> = ips.iter().copied().collect();
    assert_eq!(ips.len(), 62, "{ips:?}");
    assert_eq!(distinct.len(), 62, "duplicates: {ips:?}");
    assert!(ips.iter().all(|ip| ip.starts_with("10.96.0.")));

    let full = service("extra", "default", "  ports: [{port: 80}]");
    let err = refused(&s, &full);
    assert!(
        err.contains("Internal error occurred: failed to allocate a serviceIP: range is full"),
        "{err}"
    );
    // What is taken is in the store: still full after a restart.
    s.restart();
    let err = refused(&s, &full);
    assert!(err.contains("range is full"), "{err}");
    let freed = cluster_ip(&s, "s17", "default");
    s.ok(&["delete", "svc", "s17"]);
    s.apply_ok(&full);
    assert_eq!(cluster_ip(&s, "extra", "default"), freed);
}

#[test]
fn node_ports_assigned_requested_refused_and_released() {
    let s = Server::start_with(&["--service-node-port-range", "31000-31099"]);
    s.ok(&["create", "service", "nodeport", "np", "--tcp=80:8080"]);
    let np = get(&s, &["svc", "np"]);
    let port = np["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
    assert!((31000..=31099).contains(&port), "{port}");
    let asked = "  type: NodePort\n  ports:\n  - {name: http, port: 80, nodePort: 31050}";
    s.apply_ok(&service("fixed", "default", asked));
    let err = refused(&s, &service("clash", "default", asked));
    assert!(
        err.contains(r#"The Service "clash" is invalid: spec.ports[0].nodePort: Invalid value: 31050: provided port is already allocated"#),
        "{err}"
    );
    let err = refused(
        &s,
        &service(
            "low",
            "default",
            "  type: NodePort\n  ports: [{port: 80, nodePort: 30080}]",
        ),
    );
    assert!(
        err.contains("spec.ports[0].nodePort: Invalid value: 30080: provided port is not in the valid range. The range of valid ports is 31000-31099"),
        "{err}"
    );
    // Ports of one number share a node port (DNS over UDP and TCP).
    s.apply_ok(&service(
        "dns",
        "default",
        "  type: NodePort\n  ports:\n  - {name: udp, port: 53, protocol: UDP}\n  - {name: tcp, port: 53, protocol: TCP}",
    ));
    let dns = get(&s, &["svc", "dns"]);
    assert_eq!(
        dns["spec"]["ports"][0]["nodePort"],
        dns["spec"]["ports"][1]["nodePort"]
    );
    assert!(dns["spec"]["ports"][0]["nodePort"].as_i64().is_some());

    // LoadBalancers: node ports unless turned off; a health-check port for Local.
    s.apply_ok(&service(
        "lb",
        "default",
        "  type: LoadBalancer\n  externalTrafficPolicy: Local\n  ports: [{port: 443}]",
    ));
    let lb = get(&s, &["svc", "lb"]);
    assert!(
        lb["spec"]["ports"][0]["nodePort"].as_i64().is_some(),
        "{lb}"
    );
    let hc = lb["spec"]["healthCheckNodePort"].as_i64().unwrap();
    assert!((31000..=31099).contains(&hc));
    assert_eq!(lb["spec"]["allocateLoadBalancerNodePorts"], true);
    s.apply_ok(&service(
        "lb2",
        "default",
        "  type: LoadBalancer\n  allocateLoadBalancerNodePorts: false\n  ports: [{port: 443}]",
    ));
    let lb2 = get(&s, &["svc", "lb2"]);
    assert!(lb2["spec"]["ports"][0]["nodePort"].is_null(), "{lb2}");
    assert!(lb2["spec"]["healthCheckNodePort"].is_null(), "{lb2}");
    // Cluster traffic policy: the health-check port goes back.
    s.ok(&[
        "patch",
        "svc",
        "lb",
        "--type=merge",
        "-p",
        r#"{"spec":{"externalTrafficPolicy":"Cluster"}}"#,
    ]);
    assert!(get(&s, &["svc", "lb"])["spec"]["healthCheckNodePort"].is_null());
    s.apply_ok(&service(
        "hc",
        "default",
        &format!("  type: NodePort\n  ports: [{{port: 80, nodePort: {hc}}}]"),
    ));

    // Becoming a ClusterIP service frees the node port; so does a delete.
    s.ok(&[
        "patch",
        "svc",
        "fixed",
        "--type=merge",
        "-p",
        r#"{"spec":{"type":"ClusterIP"}}"#,
    ]);
    let fixed = get(&s, &["svc", "fixed"]);
    assert!(fixed["spec"]["ports"][0]["nodePort"].is_null(), "{fixed}");
    assert!(fixed["spec"]["externalTrafficPolicy"].is_null(), "{fixed}");
    s.apply_ok(&service("clash", "default", asked));
    s.ok(&["delete", "svc", "clash"]);
    s.apply_ok(&service("clash2", "default", asked));
    // A re-apply of the same manifest keeps the node ports chosen before.
    s.apply_ok(&service("dns", "default", "  type: NodePort\n  ports:\n  - {name: udp, port: 53, protocol: UDP}\n  - {name: tcp, port: 53, protocol: TCP}"));
    assert_eq!(
        get(&s, &["svc", "dns"])["spec"]["ports"],
        dns["spec"]["ports"]
    );
}

fn pod_yaml(name: &str, port_name: &str, port: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{app: web}}\nspec:\n  containers:\n  - name: c\n    image: nanokube/busybox\n    ports: [{{name: {port_name}, containerPort: {port}}}]\n"
    )
}

/// Writes a pod's status as its kubelet would: an address, Running, Ready or not.
fn set_status(s: &Server, name: &str, ip: &str, ready: bool) {
    let status = serde_json::json!({"status": {"phase": "Running", "podIP": ip,
        "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}});
    s.ok(&[
        "patch",
        "pod",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        &status.to_string(),
    ]);
}

fn managed_slices(s: &Server, service: &str) -> Vec<Value> {
    let list = get(
        s,
        &[
            "endpointslices",
            "-l",
            &format!("kubernetes.io/service-name={service}"),
        ],
    );
    list["items"].as_array().cloned().unwrap_or_default()
}

/// (pod name, ready, serving, terminating) of every endpoint in the service's slices.
fn endpoints_of(slices: &[Value]) -> BTreeSet<(String, bool, bool, bool)> {
    slices
        .iter()
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .map(|e| {
            let c = &e["conditions"];
            (
                e["targetRef"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                c["ready"] == true,
                c["serving"] == true,
                c["terminating"] == true,
            )
        })
        .collect()
}

#[test]
fn endpoint_controllers_follow_pods_in_slices_of_at_most_100() {
    let s = Server::start();
    // A service without a selector and the slice its user keeps: left alone.
    s.apply_ok("apiVersion: v1\nkind: Service\nmetadata: {name: ext}\nspec:\n  ports: [{port: 5432}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: ext-1\n  labels: {kubernetes.io/service-name: ext}\naddressType: IPv4\nendpoints: [{addresses: [192.0.2.7]}]\nports: [{port: 5432}]\n");
    let ext_before = get(&s, &["endpointslice", "ext-1"]);

    s.apply_ok(&service(
        "web",
        "default",
        "  ports: [{name: http, port: 80, targetPort: http}]",
    ));
    // No pods yet: one empty placeholder slice, owned by the service.
    let placeholder = eventually(20, || {
        let sl = managed_slices(&s, "web");
        (sl.len() == 1).then(|| sl[0].clone())
    });
    assert!(
        placeholder["endpoints"]
            .as_array()
            .is_none_or(|e| e.is_empty()),
        "{placeholder}"
    );
    let web_uid = get(&s, &["svc", "web"])["metadata"]["uid"].clone();
    assert_eq!(
        placeholder["metadata"]["ownerReferences"][0]["uid"],
        web_uid
    );
    assert_eq!(
        placeholder["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );

    let pods: Vec<String> = (0..105).map(|i| format!("web-{i:03}")).collect();
    let docs: Vec<String> = pods.iter().map(|p| pod_yaml(p, "http", 8080)).collect();
    s.apply_ok(&docs.join("---\n"));
    // One pod names its port differently: it gets a slice of its own ports.
    s.apply_ok(&pod_yaml("odd", "http", 9090));
    for (i, p) in pods.iter().enumerate() {
        set_status(&s, p, &format!("10.42.{}.{}", i / 200, i % 200 + 10), true);
    }
    set_status(&s, "odd", "10.42.9.9", true);
    let slices = eventually(60, || {
        let sl = managed_slices(&s, "web");
        (endpoints_of(&sl).len() == 106).then_some(sl)
    });
    for sl in &slices {
        let n = sl["endpoints"].as_array().map_or(0, Vec::len);
        assert!(n <= 100, "{n} endpoints in one slice");
        assert_eq!(sl["addressType"], "IPv4");
        let port = sl["ports"][0]["port"].as_i64().unwrap();
        let odd = sl["endpoints"][0]["targetRef"]["name"] == "odd";
        assert_eq!(port, if odd { 9090 } else { 8080 }, "{sl}");
    }
    assert_eq!(slices.len(), 3, "100 + 5 on port 8080, 1 on 9090");
    assert!(endpoints_of(&slices)
        .iter()
        .all(|(_, r, sv, t)| *r && *sv && !*t));

    // Not ready: serving and ready go false; the Endpoints moves it to notReadyAddresses.
    set_status(&s, "web-000", "10.42.0.10", false);
    eventually(20, || {
        endpoints_of(&managed_slices(&s, "web"))
            .contains(&("web-000".to_string(), false, false, false))
            .then_some(())
    });
    let ep = eventually(20, || {
        let ep = get(&s, &["endpoints", "web"]);
        let not_ready = ep["subsets"]
            .as_array()?
            .iter()
            .flat_map(|ss| {
                ss["notReadyAddresses"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .any(|a| a["targetRef"]["name"] == "web-000");
        not_ready.then_some(ep)
    });
    let ready: usize = ep["subsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ss| ss["addresses"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(ready, 105);
    // A pod whose labels no longer match leaves both.
    s.ok(&["label", "pod", "web-104", "app=other", "--overwrite"]);
    eventually(20, || {
        (!endpoints_of(&managed_slices(&s, "web"))
            .iter()
            .any(|e| e.0 == "web-104"))
        .then_some(())
    });

    let out = s.ok(&["get", "endpoints", "web"]);
    // 104 ready addresses: 103 on 8080 (web-000 not ready, web-104 gone), odd's on 9090.
    assert!(
        out.contains("10.42.0.100:8080,10.42.0.101:8080,10.42.0.102:8080 + 101 more..."),
        "{out}"
    );
    assert_eq!(get(&s, &["endpointslice", "ext-1"]), ext_before);
    assert_eq!(managed_slices(&s, "ext").len(), 1, "only the user's slice");

    // The slices and the Endpoints go with the service.
    s.ok(&["delete", "svc", "web"]);
    eventually(20, || {
        let gone = managed_slices(&s, "web").is_empty()
            && !s.kubectl(&["get", "endpoints", "web"]).status.success();
        gone.then_some(())
    });
}

#[test]
fn records_no_service_holds_are_released_at_start() {
    let mut s = Server::start();
    // What a server killed between taking an address and writing its Service leaves behind.
    s.apply_ok("apiVersion: networking.k8s.io/v1\nkind: IPAddress\nmetadata: {name: 10.43.5.5}\nspec:\n  parentRef: {group: \"\", resource: services, namespace: default, name: ghost}\n");
    let wanted = service(
        "real",
        "default",
        "  clusterIP: 10.43.5.5\n  ports: [{port: 80}]",
    );
    let err = refused(&s, &wanted);
    assert!(err.contains("provided IP is already allocated"), "{err}");
    // Records younger than 10 s may be another server's create in flight: left alone.
    std::thread::sleep(std::time::Duration::from_secs(11));
    s.restart();
    s.apply_ok(&wanted);
    assert_eq!(cluster_ip(&s, "real", "default"), "10.43.5.5");
    let rec = get(&s, &["ipaddress", "10.43.5.5"]);
    assert_eq!(rec["spec"]["parentRef"]["name"], "real");
    // Records that are held survive it: the kubernetes service's, older than 10 s.
    assert_eq!(
        get(&s, &["ipaddress", "10.43.0.1"])["spec"]["parentRef"]["name"],
        "kubernetes"
    );
}

#[test]
fn headless_statefulset_pods_get_hostnames_and_unready_ones_are_published() {
    let s = Server::start();
    s.apply_ok("apiVersion: v1\nkind: Service\nmetadata: {name: db}\nspec:\n  clusterIP: None\n  publishNotReadyAddresses: true\n  selector: {app: db}\n  ports: [{name: pg, port: 5432}]\n");
    s.apply_ok("apiVersion: v1\nkind: Pod\nmetadata:\n  name: db-0\n  labels: {app: db}\nspec:\n  hostname: db-0\n  subdomain: db\n  containers: [{name: c, image: nanokube/busybox}]\n");
    set_status(&s, "db-0", "10.42.0.50", false);
    let slice = eventually(20, || {
        let sl = managed_slices(&s, "db");
        sl.into_iter()
            .find(|x| x["endpoints"][0]["hostname"] == "db-0")
    });
    assert_eq!(
        slice["metadata"]["labels"]["service.kubernetes.io/headless"],
        ""
    );
    let e = &slice["endpoints"][0];
    // Published although not ready: ready, not serving.
    assert_eq!(e["conditions"]["ready"], true);
    assert_eq!(e["conditions"]["serving"], false);
    assert_eq!(e["addresses"][0], "10.42.0.50");
    assert_eq!(slice["ports"][0]["port"], 5432);
    let ep = eventually(20, || {
        let ep = get(&s, &["endpoints", "db"]);
        ep["subsets"][0]["addresses"][0]["hostname"]
            .is_string()
            .then_some(ep)
    });
    let a = &ep["subsets"][0]["addresses"][0];
    assert_eq!(
        (a["ip"].as_str(), a["hostname"].as_str()),
        (Some("10.42.0.50"), Some("db-0"))
    );
    assert!(ep["subsets"][0]["notReadyAddresses"].is_null(), "{ep}");
}
