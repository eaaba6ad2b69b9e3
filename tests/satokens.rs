//! Service account tokens with the real kubectl and real pods, on a one-node cluster in a
//! network namespace of the test's own: `kubectl create token` gives a JWT that authenticates
//! as the account and that the published JWKS verifies; TokenReview agrees; a bad token is
//! 401; a pod gets its token, CA and namespace at the in-cluster path and reaches the API server
//! with them as its account; deleting the pod ends its token; automount false mounts nothing.

mod node_support;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use node_support::{Cluster, IMAGE};
use serde_json::Value;
use std::process::Output;
use std::time::Duration;

const MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Waits for the controllers to give `ns` its default account and CA ConfigMap.
fn wait_account(c: &Cluster, ns: &str) {
    c.wait_for(
        "the default service account",
        Duration::from_secs(30),
        |c| {
            c.kubectl(&["-n", ns, "get", "serviceaccount", "default"])
                .status
                .success()
                && c.kubectl(&["-n", ns, "get", "configmap", "kube-root-ca.crt"])
                    .status
                    .success()
        },
    );
}

/// `kubectl auth whoami` with only `token` as the credential: the username, or the error.
fn whoami(c: &Cluster, token: &str) -> Result<String, String> {
    let out = c.kubectl(&["--token", token, "auth", "whoami", "-o", "json"]);
    if !out.status.success() {
        return Err(text(&out));
    }
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    Ok(v["status"]["userInfo"]["username"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

fn pod_yaml(name: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  terminationGracePeriodSeconds: 1\n{extra_spec}  containers:\n  - name: main\n    image: {IMAGE}\n    imagePullPolicy: IfNotPresent\n    command: [\"sleep\", \"3600\"]\n"
    )
}

#[test]
fn created_tokens_authenticate_and_verify_against_the_jwks() {
    let c = Cluster::start();
    wait_account(&c, "default");
    let token = c.ok(&["create", "token", "default"]).trim().to_string();
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "not a JWT: {token}");
    assert_eq!(
        whoami(&c, &token).unwrap(),
        "system:serviceaccount:default:default"
    );
    // The admin's client certificate stays out of it: the account may do only what RBAC
    // grants it (nothing, until bound), and a bad token is refused outright.
    let out = c.kubectl(&["--token", &token, "get", "pods"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains(r#"pods is forbidden: User "system:serviceaccount:default:default" cannot list resource "pods" in API group "" in the namespace "default""#),
        "{}",
        text(&out)
    );
    c.ok(&[
        "create",
        "rolebinding",
        "default-view",
        "--clusterrole=view",
        "--serviceaccount=default:default",
    ]);
    c.wait_for("the binding to take", Duration::from_secs(10), |c| {
        c.kubectl(&["--token", &token, "get", "pods"])
            .status
            .success()
    });
    let mut garbled = token.clone();
    garbled.truncate(token.len() - 6);
    garbled.push_str("AAAAAA");
    let out = c.kubectl(&["--token", &garbled, "get", "pods"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("Unauthorized"), "{}", text(&out));

    // The claims name the account as upstream's do.
    let claims: Value = serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
    let sa = c.json(&["get", "serviceaccount", "default"]).unwrap();
    assert_eq!(
        claims["iss"],
        "https://kubernetes.default.svc.cluster.local"
    );
    assert_eq!(
        claims["aud"],
        serde_json::json!(["https://kubernetes.default.svc.cluster.local"])
    );
    assert_eq!(claims["sub"], "system:serviceaccount:default:default");
    assert_eq!(
        claims["kubernetes.io"]["serviceaccount"]["uid"],
        sa["metadata"]["uid"]
    );
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );

    // The published key verifies the token.
    let jwks: Value = serde_json::from_str(&c.ok(&["get", "--raw", "/openid/v1/jwks"])).unwrap();
    let header: Value = serde_json::from_slice(&B64.decode(parts[0]).unwrap()).unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(key["kid"], header["kid"], "{jwks}");
    assert_eq!(header["alg"], "ES256");
    let mut point = vec![4u8];
    point.extend(B64.decode(key["x"].as_str().unwrap()).unwrap());
    point.extend(B64.decode(key["y"].as_str().unwrap()).unwrap());
    let public =
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, &point);
    let signed = format!("{}.{}", parts[0], parts[1]);
    let sig = B64.decode(parts[2]).unwrap();
    public
        .verify(signed.as_bytes(), &sig)
        .expect("the JWKS key verifies the token");
    assert!(public.verify(b"something else", &sig).is_err());
    let discovery: Value =
        serde_json::from_str(&c.ok(&["get", "--raw", "/.well-known/openid-configuration"]))
            .unwrap();
    assert_eq!(
        discovery["issuer"],
        "https://kubernetes.default.svc.cluster.local"
    );
    assert!(discovery["jwks_uri"]
        .as_str()
        .unwrap()
        .ends_with("/openid/v1/jwks"));

    // TokenReview answers for the token, and refuses the garbled one.
    let review = |t: &str| -> Value {
        let file = c.dir.path().join("review.json");
        std::fs::write(
            &file,
            serde_json::json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                "spec": {"token": t}})
            .to_string(),
        )
        .unwrap();
        let out = c.ok(&[
            "create",
            "--raw",
            "/apis/authentication.k8s.io/v1/tokenreviews",
            "-f",
            file.to_str().unwrap(),
        ]);
        serde_json::from_str(&out).unwrap()
    };
    let good = review(&token);
    assert_eq!(good["status"]["authenticated"], true, "{good}");
    assert_eq!(
        good["status"]["user"]["username"],
        "system:serviceaccount:default:default"
    );
    assert_eq!(good["status"]["user"]["uid"], sa["metadata"]["uid"]);
    let groups = good["status"]["user"]["groups"].to_string();
    for g in [
        "system:serviceaccounts",
        "system:serviceaccounts:default",
        "system:authenticated",
    ] {
        assert!(groups.contains(&format!("\"{g}\"")), "{groups}");
    }
    assert_eq!(
        good["status"]["audiences"],
        serde_json::json!(["https://kubernetes.default.svc.cluster.local"])
    );
    let bad = review(&garbled);
    assert_ne!(bad["status"]["authenticated"], true, "{bad}");
    assert!(bad["status"]["error"].is_string(), "{bad}");

    // A token for another audience is not one the API server takes.
    let other = c
        .ok(&["create", "token", "default", "--audience", "vault"])
        .trim()
        .to_string();
    assert!(whoami(&c, &other).unwrap_err().contains("Unauthorized"));

    // Upstream's validation and lookups.
    let out = c.kubectl(&["create", "token", "default", "--duration", "5m"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("may not specify a duration less than 10 minutes"),
        "{}",
        text(&out)
    );
    let out = c.kubectl(&["create", "token", "ghost"]);
    assert!(
        text(&out).contains(r#"serviceaccounts "ghost" not found"#),
        "{}",
        text(&out)
    );

    // A token bound to a pod lives as long as the pod.
    c.apply(&pod_yaml("holder", ""));
    let bound = c
        .ok(&[
            "create",
            "token",
            "default",
            "--bound-object-kind",
            "Pod",
            "--bound-object-name",
            "holder",
        ])
        .trim()
        .to_string();
    let claims: Value =
        serde_json::from_slice(&B64.decode(bound.split('.').nth(1).unwrap()).unwrap()).unwrap();
    assert_eq!(claims["kubernetes.io"]["pod"]["name"], "holder");
    assert_eq!(
        whoami(&c, &bound).unwrap(),
        "system:serviceaccount:default:default"
    );
    c.ok(&["delete", "pod", "holder", "--wait=true", "--timeout=60s"]);
    let e = whoami(&c, &bound).unwrap_err();
    assert!(e.contains("Unauthorized"), "{e}");
    // The account's own token is untouched.
    assert!(whoami(&c, &token).is_ok());

    // Every namespace gets its account and CA, from the controllers.
    c.ok(&["create", "namespace", "team"]);
    wait_account(&c, "team");
    let cm = c
        .json(&["-n", "team", "get", "configmap", "kube-root-ca.crt"])
        .unwrap();
    let ca = std::fs::read_to_string(c.data_dir().join("server/tls/ca.crt")).unwrap();
    assert_eq!(cm["data"]["ca.crt"], ca.as_str());
}

#[test]
fn pods_reach_the_api_server_with_their_mounted_token() {
    let c = Cluster::start_reachable();
    wait_account(&c, "default");
    c.apply(&pod_yaml("inside", ""));
    c.apply(&pod_yaml(
        "sealed",
        "  automountServiceAccountToken: false\n",
    ));
    c.wait_phase("inside", "Running");
    c.wait_phase("sealed", "Running");

    let pod = c.pod("inside");
    let vols = pod["spec"]["volumes"].as_array().expect("volumes");
    let vol = vols
        .iter()
        .find(|v| {
            v["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("kube-api-access-"))
        })
        .unwrap_or_else(|| panic!("no kube-api-access volume: {vols:?}"));
    let mount = &pod["spec"]["containers"][0]["volumeMounts"][0];
    assert_eq!(mount["mountPath"], MOUNT);
    assert_eq!(mount["readOnly"], true);
    assert_eq!(mount["name"], vol["name"]);

    let exec = |pod: &str, args: &[&str]| {
        let mut a = vec!["exec", pod, "--"];
        a.extend_from_slice(args);
        c.kubectl(&a)
    };
    let ls = text(&exec("inside", &["ls", MOUNT]));
    for f in ["ca.crt", "namespace", "token"] {
        assert!(ls.split_whitespace().any(|x| x == f), "{ls}");
    }
    assert_eq!(
        text(&exec("inside", &["cat", &format!("{MOUNT}/namespace")])),
        "default"
    );
    let ca = std::fs::read_to_string(c.data_dir().join("server/tls/ca.crt")).unwrap();
    assert_eq!(
        text(&exec("inside", &["cat", &format!("{MOUNT}/ca.crt")])),
        ca
    );
    // Read-only, as upstream mounts it.
    let out = exec("inside", &["sh", "-c", &format!("echo x > {MOUNT}/token")]);
    assert!(!out.status.success(), "{}", text(&out));

    // From inside: the in-cluster address, the CA and the token reach the API server, as the
    // pod's account, which may do what its role grants and nothing else.
    let list_pods = || {
        text(&exec(
            "inside",
            &["/bin/probe", "api", "/api/v1/namespaces/default/pods"],
        ))
    };
    let got = list_pods();
    assert!(got.starts_with("status 403"), "{got}");
    assert!(
        got.contains(
            r#"User \"system:serviceaccount:default:default\" cannot list resource \"pods\""#
        ),
        "{got}"
    );
    c.ok(&[
        "create",
        "rolebinding",
        "default-view",
        "--clusterrole=view",
        "--serviceaccount=default:default",
    ]);
    c.wait_for("the binding to take", Duration::from_secs(10), |_| {
        list_pods().starts_with("status 200")
    });
    let got = list_pods();
    assert!(got.contains("\"PodList\""), "{got}");
    let secrets = text(&exec(
        "inside",
        &["/bin/probe", "api", "/api/v1/namespaces/default/secrets"],
    ));
    assert!(
        secrets.starts_with("status 403"),
        "view reads no Secrets: {secrets}"
    );
    let out = exec(
        "inside",
        &[
            "/bin/probe",
            "api",
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            r#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#,
        ],
    );
    let got = text(&out);
    assert!(got.starts_with("status 201"), "{got}");
    let body: Value = serde_json::from_str(got.lines().nth(1).unwrap()).unwrap();
    let user = &body["status"]["userInfo"];
    assert_eq!(user["username"], "system:serviceaccount:default:default");
    assert_eq!(
        user["extra"]["authentication.kubernetes.io/pod-name"],
        serde_json::json!(["inside"])
    );
    assert_eq!(
        user["extra"]["authentication.kubernetes.io/pod-uid"],
        serde_json::json!([pod["metadata"]["uid"]])
    );
    assert_eq!(
        user["extra"]["authentication.kubernetes.io/node-name"],
        serde_json::json!(["node1"])
    );

    // No token without automount.
    let sealed = c.pod("sealed");
    assert!(sealed["spec"]["volumes"].is_null(), "{}", sealed["spec"]);
    assert!(!exec("sealed", &["ls", MOUNT]).status.success());
    assert!(!exec("sealed", &["/bin/probe", "api", "/api"])
        .status
        .success());

    // The pod's token ends with the pod.
    let token = text(&exec("inside", &["cat", &format!("{MOUNT}/token")]));
    assert_eq!(
        whoami(&c, &token).unwrap(),
        "system:serviceaccount:default:default"
    );
    c.ok(&["delete", "pod", "inside", "--wait=true", "--timeout=60s"]);
    let e = whoami(&c, &token).unwrap_err();
    assert!(e.contains("Unauthorized"), "{e}");

    // A pod naming an account that does not exist is refused as upstream refuses it.
    let yaml = pod_yaml("stranger", "  serviceAccountName: ghost\n");
    let file = c.dir.path().join("stranger.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out = c.kubectl(&["create", "-f", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains(r#"pods "stranger" is forbidden: error looking up service account default/ghost: serviceaccount "ghost" not found"#),
        "{}",
        text(&out)
    );
}

const LOADER: &str = "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2";

/// What the Python client, run in a pod, prints of its in-cluster calls.
const PYTHON_CLIENT: &str = r#"
from kubernetes import client, config
config.load_incluster_config()
v1 = client.CoreV1Api()
names = sorted(p.metadata.name for p in v1.list_namespaced_pod("default").items)
print("pods:", " ".join(names))
for what, call in [
    ("secrets", lambda: v1.list_namespaced_secret("default")),
    ("kube-system", lambda: v1.list_namespaced_pod("kube-system")),
]:
    try:
        call()
        print(what + ": allowed")
    except client.exceptions.ApiException as e:
        print(what + ":", e.status)
        print(what + " says:", e.body)
"#;

/// The Python client (Debian's python3-kubernetes) inside a pod, with the pod's own token
/// through `load_incluster_config`: it may list pods, as its ServiceAccount's Role says, and
/// is refused Secrets and other namespaces with upstream's message. The pod runs the host's
/// Python from a read-only hostPath of /usr (the test image is busybox).
#[test]
fn the_python_client_in_a_pod_does_what_its_account_may_and_nothing_else() {
    assert!(
        std::path::Path::new("/usr/lib/python3/dist-packages/kubernetes").is_dir(),
        "the Python client is missing: ./scripts/deps.sh installs python3-kubernetes"
    );
    let c = Cluster::start_reachable();
    wait_account(&c, "default");
    c.ok(&["create", "serviceaccount", "lister"]);
    c.ok(&[
        "create",
        "role",
        "pod-lister",
        "--verb=get,list",
        "--resource=pods",
    ]);
    c.ok(&[
        "create",
        "rolebinding",
        "lister",
        "--role=pod-lister",
        "--serviceaccount=default:lister",
    ]);
    let pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "py"},
        "spec": {
            "serviceAccountName": "lister", "restartPolicy": "Never",
            "volumes": [{"name": "usr", "hostPath": {"path": "/usr", "type": "Directory"}}],
            "containers": [{
                "name": "main", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                // Through the host's dynamic loader: the image has no /lib64 of its own.
                "command": [LOADER, "/usr/bin/python3", "-c", PYTHON_CLIENT],
                "volumeMounts": [{"name": "usr", "mountPath": "/usr", "readOnly": true}],
            }],
        },
    });
    c.apply(&pod.to_string());
    c.wait_for(
        "the Python client to finish",
        Duration::from_secs(120),
        |c| {
            let phase = c.pod("py")["status"]["phase"].clone();
            assert_ne!(phase, "Failed", "{}", text(&c.kubectl(&["logs", "py"])));
            phase == "Succeeded"
        },
    );
    let out = text(&c.kubectl(&["logs", "py"]));
    assert!(out.contains("pods: py\n"), "{out}");
    assert!(out.contains("secrets: 403\n"), "{out}");
    assert!(
        out.contains(r#"User \"system:serviceaccount:default:lister\" cannot list resource \"secrets\" in API group \"\" in the namespace \"default\""#),
        "{out}"
    );
    assert!(out.contains("kube-system: 403\n"), "{out}");
}
