//! Admission policies against a real server process and the real kubectl: PodSecurity by
//! namespace labels (enforce refuses with upstream's message, warn and workloads get Warning
//! headers kubectl prints) and LimitRanger (defaults land in the stored pod, max is refused).

mod api_support;

use api_support::Server;

const PRIVILEGED_POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: p
  namespace: NS
spec:
  containers:
  - name: c
    image: nanokube/busybox:latest
    securityContext:
      privileged: true
";

fn labelled(s: &Server, ns: &str, label: &str) {
    s.namespace(ns);
    s.ok(&["label", "namespace", ns, label]);
}

#[test]
fn restricted_enforce_refuses_a_privileged_pod_with_upstreams_message() {
    let s = Server::start();
    labelled(
        &s,
        "strict",
        "pod-security.kubernetes.io/enforce=restricted",
    );
    let out = s.apply(&PRIVILEGED_POD.replace("NS", "strict"), &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "pods \"p\" is forbidden: violates PodSecurity \"restricted:latest\": \
allowPrivilegeEscalation != false (container \"c\" must set securityContext.allowPrivilegeEscalation=false), \
unrestricted capabilities (container \"c\" must set securityContext.capabilities.drop=[\"ALL\"]), \
privileged (container \"c\" must not set securityContext.privileged=true), \
runAsNonRoot != true (pod or container \"c\" must set securityContext.runAsNonRoot=true), \
seccompProfile (pod or container \"c\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"
        ),
        "{err}"
    );
    assert!(!s
        .kubectl(&["get", "pod", "p", "-n", "strict"])
        .status
        .success());
}

#[test]
fn warn_mode_creates_the_pod_and_kubectl_prints_the_warning() {
    let s = Server::start();
    labelled(&s, "lenient", "pod-security.kubernetes.io/warn=baseline");
    let out = s.apply(&PRIVILEGED_POD.replace("NS", "lenient"), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Warning: would violate PodSecurity \"baseline:latest\": privileged (container \"c\" must not set securityContext.privileged=true)"),
        "{err}"
    );
    s.ok(&["get", "pod", "p", "-n", "lenient"]);
    // Enforcing now warns about the pod already there.
    let out = s.kubectl(&[
        "label",
        "namespace",
        "lenient",
        "pod-security.kubernetes.io/enforce=baseline",
    ]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("existing pods in namespace \"lenient\" violate the new PodSecurity enforce level \"baseline:latest\"")
            && err.contains("p: privileged"),
        "{err}"
    );
}

#[test]
fn a_deployment_in_an_enforce_namespace_is_created_with_a_warning() {
    let s = Server::start();
    labelled(&s, "strict", "pod-security.kubernetes.io/enforce=baseline");
    let out = s.apply(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: d
  namespace: strict
spec:
  selector:
    matchLabels: {app: d}
  template:
    metadata:
      labels: {app: d}
    spec:
      hostNetwork: true
      containers:
      - name: c
        image: nanokube/busybox:latest
",
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "Warning: would violate PodSecurity \"baseline:latest\": host namespaces (hostNetwork=true)"
        ),
        "{err}"
    );
    s.ok(&["get", "deployment", "d", "-n", "strict"]);
}

#[test]
fn limit_range_defaults_are_stored_and_max_is_refused() {
    let s = Server::start();
    s.namespace("lr");
    s.apply_ok(
        "apiVersion: v1
kind: LimitRange
metadata:
  name: l
  namespace: lr
spec:
  limits:
  - type: Container
    default: {cpu: 500m, memory: 128Mi}
    defaultRequest: {cpu: 100m, memory: 64Mi}
    max: {cpu: \"1\"}
",
    );
    s.apply_ok(
        "apiVersion: v1
kind: Pod
metadata: {name: plain, namespace: lr}
spec:
  containers:
  - {name: c, image: nanokube/busybox:latest}
",
    );
    let res = s.ok(&[
        "get",
        "pod",
        "plain",
        "-n",
        "lr",
        "-o",
        "jsonpath={.spec.containers[0].resources}",
    ]);
    let res: serde_json::Value = serde_json::from_str(&res).unwrap();
    assert_eq!(res["limits"]["cpu"], "500m", "{res}");
    assert_eq!(res["limits"]["memory"], "128Mi", "{res}");
    assert_eq!(res["requests"]["cpu"], "100m", "{res}");
    assert_eq!(res["requests"]["memory"], "64Mi", "{res}");

    let out = s.apply(
        "apiVersion: v1
kind: Pod
metadata: {name: big, namespace: lr}
spec:
  containers:
  - name: c
    image: nanokube/busybox:latest
    resources:
      limits: {cpu: \"2\"}
",
        &[],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "pods \"big\" is forbidden: maximum cpu usage per Container is 1, but limit is 2"
        ),
        "{err}"
    );
}

fn pods_used(s: &Server, ns: &str, quota: &str) -> String {
    s.ok(&[
        "get",
        "resourcequota",
        quota,
        "-n",
        ns,
        "-o",
        "jsonpath={.status.used.pods}",
    ])
}

#[test]
fn resource_quota_holds_under_50_concurrent_creates_and_recounts_after_deletes() {
    let s = Server::start();
    s.namespace("q");
    s.apply_ok(
        "apiVersion: v1
kind: ResourceQuota
metadata: {name: q, namespace: q}
spec:
  hard: {pods: \"10\"}
",
    );
    api_support::eventually(30, || (pods_used(&s, "q", "q") == "0").then_some(()));
    let outcomes: Vec<(bool, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..50)
            .map(|i| {
                let s = &s;
                scope.spawn(move || {
                    let name = format!("p{i}");
                    let out =
                        s.kubectl(&["run", &name, "-n", "q", "--image=nanokube/busybox:latest"]);
                    (
                        out.status.success(),
                        String::from_utf8_lossy(&out.stderr).into_owned(),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let created = outcomes.iter().filter(|(ok, _)| *ok).count();
    assert_eq!(created, 10, "{outcomes:?}");
    for (_, err) in outcomes.iter().filter(|(ok, _)| !*ok) {
        assert!(
            err.contains("is forbidden: exceeded quota: q, requested: pods=1, used: pods=10, limited: pods=10"),
            "{err}"
        );
    }
    let listed = s.ok(&["get", "pods", "-n", "q", "-o", "name"]);
    assert_eq!(listed.lines().count(), 10, "{listed}");
    assert_eq!(pods_used(&s, "q", "q"), "10");

    // Deletes are not charged back by admission; the controller recounts.
    let names: Vec<&str> = listed.lines().take(3).collect();
    let mut args = vec![
        "delete",
        "-n",
        "q",
        "--grace-period=0",
        "--force",
        "--wait=false",
    ];
    args.extend(names.iter().copied());
    s.ok(&args);
    api_support::eventually(60, || (pods_used(&s, "q", "q") == "7").then_some(()));
    s.ok(&["run", "again", "-n", "q", "--image=nanokube/busybox:latest"]);
}

#[test]
fn resource_quota_requires_the_limits_it_constrains() {
    let s = Server::start();
    s.namespace("cq");
    s.apply_ok(
        "apiVersion: v1
kind: ResourceQuota
metadata: {name: cq, namespace: cq}
spec:
  hard: {limits.cpu: \"1\"}
",
    );
    let err = s.fails(&["run", "x", "-n", "cq", "--image=nanokube/busybox:latest"]);
    assert!(
        err.contains("pods \"x\" is forbidden: failed quota: cq: must specify limits.cpu for: x"),
        "{err}"
    );
}

const REPLICA_POLICY: &str = r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: max-replicas
spec:
  paramKind: {apiVersion: v1, kind: ConfigMap}
  matchConstraints:
    resourceRules:
    - apiGroups: [apps]
      apiVersions: [v1]
      operations: [CREATE, UPDATE]
      resources: [deployments]
  matchConditions:
  - name: not-exempt
    expression: "!has(object.metadata.labels) || !('exempt' in object.metadata.labels)"
  variables:
  - name: replicas
    expression: object.spec.replicas
  validations:
  - expression: variables.replicas <= int(params.data.maxReplicas)
    messageExpression: "'replicas ' + string(variables.replicas) + ' is above ' + params.data.maxReplicas"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: max-replicas-prod
spec:
  policyName: max-replicas
  validationActions: [Deny]
  paramRef:
    name: limits
    parameterNotFoundAction: Deny
  matchResources:
    namespaceSelector:
      matchLabels: {env: prod}
    resourceRules:
    - apiGroups: [apps]
      apiVersions: [v1]
      operations: [CREATE, UPDATE]
      resources: [deployments]
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: web-names
spec:
  matchConstraints:
    resourceRules:
    - apiGroups: [""]
      apiVersions: [v1]
      operations: [CREATE]
      resources: [configmaps]
  validations:
  - expression: object.metadata.name.startsWith('web') || request.namespace != 'dev'
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: web-names-warn
spec:
  policyName: web-names
  validationActions: [Warn, Audit]
"#;

#[test]
fn validating_admission_policies_deny_and_warn_with_params_variables_and_conditions() {
    let s = Server::start();
    for ns in ["prod", "prod2", "dev"] {
        s.namespace(ns);
    }
    s.ok(&["label", "namespace", "prod", "prod2", "env=prod"]);
    s.ok(&[
        "create",
        "configmap",
        "limits",
        "-n",
        "prod",
        "--from-literal=maxReplicas=3",
    ]);
    s.apply_ok(REPLICA_POLICY);
    let stderr = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).to_string();

    // Above the limit in a bound namespace: refused, with the messageExpression's words.
    let deploy = |ns: &str, name: &str, replicas: &str| {
        s.kubectl(&[
            "create",
            "deployment",
            name,
            "--image=nanokube/busybox:latest",
            "--replicas",
            replicas,
            "-n",
            ns,
        ])
    };
    // The policy reaches the plugin through a watch: the first refusal may take a moment.
    let mut out = deploy("prod", "big", "5");
    for _ in 0..50 {
        if !out.status.success() {
            break;
        }
        s.ok(&["delete", "deployment", "big", "-n", "prod"]);
        std::thread::sleep(std::time::Duration::from_millis(100));
        out = deploy("prod", "big", "5");
    }
    assert!(!out.status.success(), "a deployment of 5 was let into prod");
    assert!(
        stderr(&out).contains("ValidatingAdmissionPolicy 'max-replicas' with binding 'max-replicas-prod' denied request: replicas 5 is above 3"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("\"big\" is invalid: : ValidatingAdmissionPolicy"),
        "a 422 with a field-less cause: {}",
        stderr(&out)
    );
    assert!(deploy("prod", "small", "2").status.success());
    // Raising it past the limit is an update the policy refuses too. (`kubectl scale` writes
    // deployments/scale, which a rule naming `deployments` does not match, as upstream.)
    let out = s.kubectl(&[
        "patch",
        "deployment",
        "small",
        "-n",
        "prod",
        "-p",
        r#"{"spec":{"replicas":9}}"#,
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("replicas 9 is above 3"),
        "{}",
        stderr(&out)
    );
    // Not bound outside prod; not applied to what the match condition exempts.
    assert!(deploy("dev", "big", "5").status.success());
    let exempt = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: exempt\n  namespace: prod\n  labels: {exempt: \"yes\"}\nspec:\n  replicas: 7\n  selector: {matchLabels: {app: x}}\n  template:\n    metadata: {labels: {app: x}}\n    spec: {containers: [{name: c, image: nanokube/busybox:latest}]}\n";
    s.apply_ok(exempt);
    // No params object where the binding looks for it: Deny, as parameterNotFoundAction says.
    let out = deploy("prod2", "any", "1");
    assert!(!out.status.success());
    assert!(
        stderr(&out)
            .contains("no params found for policy binding with `Deny` parameterNotFoundAction"),
        "{}",
        stderr(&out)
    );

    // Warn: the request goes through and kubectl prints the warning.
    let out = s.kubectl(&["create", "configmap", "other", "-n", "dev"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Warning: Validation failed for ValidatingAdmissionPolicy 'web-names' with binding 'web-names-warn': failed expression: object.metadata.name.startsWith('web') || request.namespace != 'dev'"),
        "{}",
        stderr(&out)
    );
    let out = s.kubectl(&["create", "configmap", "web-a", "-n", "dev"]);
    assert!(
        out.status.success() && !stderr(&out).contains("Warning"),
        "{}",
        stderr(&out)
    );

    // Policies and bindings that could never run are refused when written.
    let out = s.apply("apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicy\nmetadata:\n  name: broken\nspec:\n  matchConstraints:\n    resourceRules: [{apiGroups: [\"\"], apiVersions: [v1], operations: [CREATE], resources: [pods]}]\n  validations:\n  - expression: object.spec ==\n", &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(
            "spec.validations[0].expression: Invalid value: \"object.spec ==\": compilation failed"
        ),
        "{}",
        stderr(&out)
    );
    let out = s.apply("apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicyBinding\nmetadata:\n  name: loud\nspec:\n  policyName: web-names\n  validationActions: [Deny, Warn]\n", &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("must not contain both Deny and Warn"),
        "{}",
        stderr(&out)
    );
}
