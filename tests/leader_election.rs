//! The controller manager and the scheduler act only while they hold their leader Lease in
//! kube-system: taken away, they stop; given back, they resume. Watched through node IPAM,
//! which gives every new Node a pod range only while its controller runs.

mod api_support;

use api_support::{eventually, Server};
use serde_json::Value;
use std::time::Duration;

fn pod_cidr(s: &Server, node: &str) -> Option<String> {
    let out = s.ok(&["get", "node", node, "-o", "jsonpath={.spec.podCIDR}"]);
    (!out.is_empty()).then_some(out)
}

fn lease(s: &Server, name: &str) -> Value {
    serde_json::from_str(&s.ok(&["get", "lease", "-n", "kube-system", name, "-o", "json"])).unwrap()
}

fn node(s: &Server, name: &str) {
    s.apply_ok(&format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n"
    ));
}

#[test]
fn controllers_act_only_while_they_hold_the_lease() {
    let s = Server::start();
    for name in ["kube-controller-manager", "kube-scheduler"] {
        let holder = eventually(20, || {
            let l = lease(&s, name);
            l["spec"]["holderIdentity"].as_str().map(str::to_string)
        });
        assert!(
            holder.contains('_'),
            "upstream's <host>_<id> form: {holder}"
        );
        assert_eq!(lease(&s, name)["spec"]["leaseDurationSeconds"], 15);
    }
    node(&s, "fake1");
    eventually(20, || pod_cidr(&s, "fake1"));

    // Someone else holds it now, for an hour: our controllers must stop.
    let renewed = s.ok(&[
        "get",
        "lease",
        "-n",
        "kube-system",
        "kube-controller-manager",
        "-o",
        "jsonpath={.spec.renewTime}",
    ]);
    assert!(!renewed.is_empty(), "the holder renews");
    let patch = format!(
        r#"{{"spec":{{"holderIdentity":"intruder","leaseDurationSeconds":3600,"renewTime":"{}"}}}}"#,
        chrono_now()
    );
    s.ok(&[
        "patch",
        "lease",
        "-n",
        "kube-system",
        "kube-controller-manager",
        "--type",
        "merge",
        "-p",
        &patch,
    ]);
    eventually(20, || {
        s.log()
            .lines()
            .any(|l| l.contains("leadership lost") && l.contains("kube-controller-manager"))
            .then_some(())
    });
    node(&s, "fake2");
    // Long enough for a running node IPAM to act many times over (it takes milliseconds).
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        pod_cidr(&s, "fake2"),
        None,
        "a controller acted without the lease"
    );
    assert_eq!(
        lease(&s, "kube-controller-manager")["spec"]["holderIdentity"],
        "intruder"
    );

    // The intruder lets go: the lease is taken again and the work resumes.
    s.ok(&[
        "delete",
        "lease",
        "-n",
        "kube-system",
        "kube-controller-manager",
    ]);
    eventually(20, || pod_cidr(&s, "fake2"));
    let l = lease(&s, "kube-controller-manager");
    assert_ne!(l["spec"]["holderIdentity"], "intruder");
}

/// Now as RFC 3339 with microseconds, the form a Lease's MicroTime takes.
fn chrono_now() -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%S.%6NZ"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
