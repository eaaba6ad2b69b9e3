//! Kubernetes' defaulting, per kind (restartPolicy, dnsPolicy, imagePullPolicy from the tag, ...).
//!
//! These are the `SetDefaults_*` functions of each API group. What upstream does in admission
//! plugins (ServiceAccount's `serviceAccountName: default`, Priority's `priority`,
//! DefaultTolerationSeconds' not-ready/unreachable tolerations) is in `admission/`, and runs on
//! creates only. Allocation (cluster IPs, node ports) and the service-account token volume are
//! the server's business, not here.
//!
//! Every default only fills a field that is absent or null, so applying them twice is harmless;
//! the server calls `apply_defaults` on create and on update. Jobs get their generated selector
//! (`batch.kubernetes.io/controller-uid`) only once `metadata.uid` is set, so the server should
//! assign the uid first.

use serde_json::{json, Map, Value};

/// Fills in the defaults of a built-in kind, as the real API server does on create and update.
/// `group` is "" for core. The request path calls the kind's `Strategy` instead.
pub fn apply_defaults(group: &str, kind: &str, obj: &mut Value) {
    let info = crate::apiserver::registry::builtin_snapshot()
        .all()
        .iter()
        .find(|r| r.group == group && r.kind == kind)
        .cloned();
    if let Some(info) = info {
        info.strategy.defaults(obj);
    }
}

/// Sets `path` to `value` when it is absent or null, creating the objects on the way.
pub(crate) fn set(obj: &mut Value, path: &[&str], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for p in parents {
        if !cur.is_object() {
            if !cur.is_null() {
                return;
            }
            *cur = Value::Object(Map::new());
        }
        cur = cur
            .as_object_mut()
            .expect("just made an object")
            .entry(p.to_string())
            .or_insert(Value::Null);
    }
    if cur.is_null() {
        *cur = Value::Object(Map::new());
    }
    if let Some(m) = cur.as_object_mut() {
        let slot = m.entry(last.to_string()).or_insert(Value::Null);
        if slot.is_null() {
            *slot = value;
        }
    }
}

/// The value at a path of object keys, without creating anything (IndexMut would insert nulls).
pub(crate) fn at<'a>(v: &'a mut Value, path: &[&str]) -> Option<&'a mut Value> {
    let mut cur = v;
    for key in path {
        cur = cur.as_object_mut()?.get_mut(*key)?;
    }
    Some(cur)
}

/// The elements of a list field, none when absent or not a list.
pub(crate) fn items_mut(v: Option<&mut Value>) -> impl Iterator<Item = &mut Value> {
    v.and_then(Value::as_array_mut).into_iter().flatten()
}

pub(crate) fn is_unset(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_i64() == Some(0),
        _ => false,
    }
}

/// The pull policy Kubernetes derives from an image reference: Always for `:latest` or no tag
/// (and no digest), IfNotPresent otherwise.
pub fn default_pull_policy(image: &str) -> &'static str {
    let (name, digest) = match image.split_once('@') {
        Some((n, _)) => (n, true),
        None => (image, false),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    let tag = last.split_once(':').map(|(_, t)| t);
    match tag {
        Some("latest") => "Always",
        Some(_) => "IfNotPresent",
        None if digest || image.is_empty() => "IfNotPresent",
        None => "Always",
    }
}

pub(crate) fn probe(p: Option<&mut Value>) {
    let Some(p) = p.filter(|p| p.is_object()) else {
        return;
    };
    set(p, &["timeoutSeconds"], json!(1));
    set(p, &["periodSeconds"], json!(10));
    set(p, &["successThreshold"], json!(1));
    set(p, &["failureThreshold"], json!(3));
    http_get(at(p, &["httpGet"]));
}

pub(crate) fn http_get(h: Option<&mut Value>) {
    if let Some(h) = h.filter(|h| h.is_object()) {
        set(h, &["path"], json!("/"));
        set(h, &["scheme"], json!("HTTP"));
    }
}

pub(crate) fn container(c: &mut Value, host_network: bool) {
    if !c.is_object() {
        return;
    }
    let image = c["image"].as_str().unwrap_or("").to_string();
    set(c, &["imagePullPolicy"], json!(default_pull_policy(&image)));
    set(
        c,
        &["terminationMessagePath"],
        json!("/dev/termination-log"),
    );
    set(c, &["terminationMessagePolicy"], json!("File"));
    set(c, &["resources"], json!({}));
    for port in items_mut(at(c, &["ports"])) {
        set(port, &["protocol"], json!("TCP"));
        if host_network && port.is_object() && is_unset(&port["hostPort"]) {
            port["hostPort"] = port["containerPort"].clone();
        }
    }
    for env in items_mut(at(c, &["env"])) {
        if env["valueFrom"]["fieldRef"].is_object() {
            set(
                &mut env["valueFrom"]["fieldRef"],
                &["apiVersion"],
                json!("v1"),
            );
        }
    }
    for p in ["livenessProbe", "readinessProbe", "startupProbe"] {
        probe(at(c, &[p]));
    }
    if c["lifecycle"].is_object() {
        for hook in ["postStart", "preStop"] {
            http_get(at(c, &["lifecycle", hook, "httpGet"]));
        }
    }
}

pub(crate) fn volume(v: &mut Value) {
    let Some(m) = v.as_object() else { return };
    // A volume naming no source is an emptyDir, as SetDefaults_Volume decides.
    if m.keys().all(|k| k == "name") {
        v["emptyDir"] = json!({});
    }
    for src in ["configMap", "secret", "projected", "downwardAPI"] {
        if v[src].is_object() {
            set(&mut v[src], &["defaultMode"], json!(420));
        }
    }
    if v["hostPath"].is_object() {
        set(&mut v["hostPath"], &["type"], json!(""));
    }
    if v["downwardAPI"].is_object() {
        for item in items_mut(at(v, &["downwardAPI", "items"])) {
            if item["fieldRef"].is_object() {
                set(&mut item["fieldRef"], &["apiVersion"], json!("v1"));
            }
        }
    }
}

/// SetDefaults_PodSpec and everything nested in a PodSpec; shared by pods and pod templates.
pub(crate) fn pod_spec(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    set(spec, &["dnsPolicy"], json!("ClusterFirst"));
    set(spec, &["restartPolicy"], json!("Always"));
    set(spec, &["securityContext"], json!({}));
    set(spec, &["terminationGracePeriodSeconds"], json!(30));
    set(spec, &["schedulerName"], json!("default-scheduler"));
    let host_network = spec["hostNetwork"].as_bool() == Some(true);
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for c in items_mut(at(spec, &[list])) {
            container(c, host_network);
        }
    }
    for v in items_mut(at(spec, &["volumes"])) {
        volume(v);
    }
}

pub(crate) fn pod_template(t: Option<&mut Value>) {
    if let Some(spec) = t.and_then(|t| at(t, &["spec"])) {
        pod_spec(spec);
    }
}

/// Requests copied from limits where only limits are given (SetDefaults_Pod).
pub(crate) fn requests_from_limits(c: &mut Value) {
    let Some(limits) = c["resources"]["limits"].as_object().cloned() else {
        return;
    };
    for (k, v) in limits {
        set(c, &["resources", "requests", &k], v);
    }
}

pub(crate) fn pod(obj: &mut Value) {
    set(obj, &["spec"], json!({}));
    if !obj["spec"].is_object() {
        return;
    }
    let spec = &mut obj["spec"];
    for list in ["initContainers", "containers"] {
        for c in items_mut(at(spec, &[list])) {
            requests_from_limits(c);
        }
    }
    pod_spec(spec);
    set(spec, &["enableServiceLinks"], json!(true));
    // The deprecated `serviceAccount` mirrors `serviceAccountName` in v1 (the name itself is
    // the ServiceAccount admission plugin's).
    if let Some(sa) = spec["serviceAccountName"].as_str().map(str::to_string) {
        set(spec, &["serviceAccount"], json!(sa));
    }
    set(spec, &["preemptionPolicy"], json!("PreemptLowerPriority"));
    let qos = qos_class(spec);
    set(obj, &["status", "phase"], json!("Pending"));
    set(obj, &["status", "qosClass"], json!(qos));
}

/// A resource quantity ("100m", "64Mi", "1e3") as a number, for comparisons only.
pub fn parse_quantity(q: &Value) -> Option<f64> {
    let s = match q {
        Value::String(s) => s.trim(),
        Value::Number(n) => return n.as_f64(),
        _ => return None,
    };
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        e if e.starts_with(['e', 'E']) => 10f64.powi(e[1..].parse().ok()?),
        _ => return None,
    };
    Some(n * mult)
}

/// The pod's QoS class from its containers' cpu/memory requests and limits.
pub(crate) fn qos_class(spec: &Value) -> &'static str {
    let mut any = false;
    let mut guaranteed = true;
    let containers = ["initContainers", "containers"]
        .iter()
        .flat_map(|l| spec[*l].as_array().into_iter().flatten());
    for c in containers {
        let req = &c["resources"]["requests"];
        let lim = &c["resources"]["limits"];
        for res in ["cpu", "memory"] {
            let r = parse_quantity(&req[res]).filter(|v| *v != 0.0);
            let l = parse_quantity(&lim[res]).filter(|v| *v != 0.0);
            any |= r.is_some() || l.is_some();
            match (r, l) {
                (Some(r), Some(l)) if r == l => {}
                (None, Some(_)) => {}
                _ => guaranteed = false,
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

pub(crate) fn statefulset(obj: &mut Value) {
    set(obj, &["spec", "podManagementPolicy"], json!("OrderedReady"));
    set(
        obj,
        &["spec", "updateStrategy", "type"],
        json!("RollingUpdate"),
    );
    if obj["spec"]["updateStrategy"]["type"] == "RollingUpdate" {
        set(
            obj,
            &["spec", "updateStrategy", "rollingUpdate", "partition"],
            json!(0),
        );
    }
    set(obj, &["spec", "replicas"], json!(1));
    set(obj, &["spec", "revisionHistoryLimit"], json!(10));
    let policy = ["spec", "persistentVolumeClaimRetentionPolicy"];
    set(obj, &[policy[0], policy[1], "whenDeleted"], json!("Retain"));
    set(obj, &[policy[0], policy[1], "whenScaled"], json!("Retain"));
    for pvc in items_mut(at(obj, &["spec", "volumeClaimTemplates"])) {
        set(pvc, &["spec", "volumeMode"], json!("Filesystem"));
        set(pvc, &["status", "phase"], json!("Pending"));
    }
    pod_template(at(obj, &["spec", "template"]));
}

pub(crate) fn daemonset(obj: &mut Value) {
    set(
        obj,
        &["spec", "updateStrategy", "type"],
        json!("RollingUpdate"),
    );
    if obj["spec"]["updateStrategy"]["type"] == "RollingUpdate" {
        set(
            obj,
            &["spec", "updateStrategy", "rollingUpdate", "maxUnavailable"],
            json!(1),
        );
        set(
            obj,
            &["spec", "updateStrategy", "rollingUpdate", "maxSurge"],
            json!(0),
        );
    }
    set(obj, &["spec", "revisionHistoryLimit"], json!(10));
    pod_template(at(obj, &["spec", "template"]));
}

pub(crate) fn job(obj: &mut Value) {
    set(obj, &["spec"], json!({}));
    if !obj["spec"].is_object() {
        return;
    }
    let spec = &mut obj["spec"];
    if spec["completions"].is_null() && spec["parallelism"].is_null() {
        spec["completions"] = json!(1);
        spec["parallelism"] = json!(1);
    }
    set(spec, &["parallelism"], json!(1));
    let backoff = if spec["backoffLimitPerIndex"].is_null() {
        6
    } else {
        i64::from(i32::MAX)
    };
    set(spec, &["backoffLimit"], json!(backoff));
    set(spec, &["completionMode"], json!("NonIndexed"));
    set(spec, &["suspend"], json!(false));
    let replacement = if spec["podFailurePolicy"].is_object() {
        "Failed"
    } else {
        "TerminatingOrFailed"
    };
    set(spec, &["podReplacementPolicy"], json!(replacement));
    generate_job_selector(obj);
    let template_labels = obj["spec"]["template"]["metadata"]["labels"].clone();
    let has_labels = obj["metadata"]["labels"]
        .as_object()
        .is_some_and(|m| !m.is_empty());
    let meta_ok = obj["metadata"].is_object() || obj["metadata"].is_null();
    if template_labels.is_object() && !has_labels && meta_ok {
        obj["metadata"]["labels"] = template_labels;
    }
    pod_template(at(obj, &["spec", "template"]));
}

/// The job strategy's generated selector: the job's uid as label on the template and as the
/// selector, unless the user asked for `manualSelector`.
pub(crate) fn generate_job_selector(obj: &mut Value) {
    let Some(uid) = obj["metadata"]["uid"].as_str().map(str::to_string) else {
        return;
    };
    if obj["spec"]["manualSelector"].as_bool() == Some(true) || obj["spec"]["selector"].is_object()
    {
        return;
    }
    let name = obj["metadata"]["name"].clone();
    for (k, v) in [
        ("batch.kubernetes.io/controller-uid", json!(uid)),
        ("batch.kubernetes.io/job-name", name.clone()),
        ("controller-uid", json!(uid)),
        ("job-name", name),
    ] {
        set(obj, &["spec", "template", "metadata", "labels", k], v);
    }
    obj["spec"]["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
}

pub(crate) fn cronjob(obj: &mut Value) {
    set(obj, &["spec", "concurrencyPolicy"], json!("Allow"));
    set(obj, &["spec", "suspend"], json!(false));
    set(obj, &["spec", "successfulJobsHistoryLimit"], json!(3));
    set(obj, &["spec", "failedJobsHistoryLimit"], json!(1));
    pod_template(at(obj, &["spec", "jobTemplate", "spec", "template"]));
}

pub(crate) fn service(obj: &mut Value) {
    set(obj, &["spec", "type"], json!("ClusterIP"));
    set(obj, &["spec", "sessionAffinity"], json!("None"));
    let spec = &mut obj["spec"];
    if spec["sessionAffinity"] == "ClientIP" {
        set(
            spec,
            &["sessionAffinityConfig", "clientIP", "timeoutSeconds"],
            json!(10800),
        );
    }
    for port in items_mut(at(spec, &["ports"])) {
        set(port, &["protocol"], json!("TCP"));
        if port.is_object() && is_unset(&port["targetPort"]) {
            port["targetPort"] = port["port"].clone();
        }
    }
    let ty = spec["type"].as_str().unwrap_or("ClusterIP").to_string();
    if ty == "NodePort" || ty == "LoadBalancer" {
        set(spec, &["externalTrafficPolicy"], json!("Cluster"));
    }
    if ty == "LoadBalancer" {
        set(spec, &["allocateLoadBalancerNodePorts"], json!(true));
    }
    if ty != "ExternalName" {
        set(spec, &["internalTrafficPolicy"], json!("Cluster"));
        set(spec, &["ipFamilyPolicy"], json!("SingleStack"));
        set(spec, &["ipFamilies"], json!(["IPv4"]));
    }
}

pub(crate) fn namespace(obj: &mut Value) {
    if let Some(name) = obj["metadata"]["name"].as_str().map(str::to_string) {
        set(
            obj,
            &["metadata", "labels", "kubernetes.io/metadata.name"],
            json!(name),
        );
    }
    set(obj, &["spec", "finalizers"], json!(["kubernetes"]));
    set(obj, &["status", "phase"], json!("Active"));
}

pub(crate) fn node(obj: &mut Value) {
    // v1 carries the range twice; the internal form has only the list, so each fills the other.
    let spec = &obj["spec"];
    let single = spec["podCIDR"]
        .as_str()
        .filter(|c| !c.is_empty())
        .map(str::to_string);
    let first = spec["podCIDRs"][0].as_str().map(str::to_string);
    match (single, first) {
        (Some(c), None) => set(obj, &["spec", "podCIDRs"], serde_json::json!([c])),
        (None, Some(c)) => set(obj, &["spec", "podCIDR"], Value::String(c)),
        _ => {}
    }
    if let Some(cap) = obj["status"]["capacity"].as_object().cloned() {
        set(obj, &["status", "allocatable"], Value::Object(cap));
    }
}

pub(crate) fn limitrange(obj: &mut Value) {
    for item in items_mut(at(obj, &["spec", "limits"])) {
        if item["type"] != "Container" {
            continue;
        }
        for (from, to) in [
            ("max", "default"),
            ("default", "defaultRequest"),
            ("min", "defaultRequest"),
        ] {
            if let Some(src) = item[from].as_object().cloned() {
                for (k, v) in src {
                    set(item, &[to, &k], v);
                }
            }
        }
    }
}

pub(crate) fn networkpolicy(obj: &mut Value) {
    let Some(spec) = at(obj, &["spec"]).filter(|s| s.is_object()) else {
        return;
    };
    for dir in ["ingress", "egress"] {
        for rule in items_mut(at(spec, &[dir])) {
            for port in items_mut(at(rule, &["ports"])) {
                set(port, &["protocol"], json!("TCP"));
            }
        }
    }
    if spec["policyTypes"].as_array().is_none_or(|a| a.is_empty()) {
        let mut types = vec![json!("Ingress")];
        if spec["egress"].as_array().is_some_and(|a| !a.is_empty()) {
            types.push(json!("Egress"));
        }
        spec["policyTypes"] = Value::Array(types);
    }
}

pub(crate) fn hpa(obj: &mut Value) {
    set(obj, &["spec", "minReplicas"], json!(1));
    if obj["apiVersion"] == "autoscaling/v1" {
        return;
    }
    let Some(spec) = at(obj, &["spec"]).filter(|s| s.is_object()) else {
        return;
    };
    if spec["metrics"].as_array().is_none_or(|a| a.is_empty()) {
        spec["metrics"] = json!([{"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": 80}}}]);
    }
    if spec["behavior"].is_object() {
        let b = &mut spec["behavior"];
        set(b, &["scaleUp", "stabilizationWindowSeconds"], json!(0));
        set(b, &["scaleUp", "selectPolicy"], json!("Max"));
        set(
            b,
            &["scaleUp", "policies"],
            json!([{"type": "Pods", "value": 4, "periodSeconds": 15}, {"type": "Percent", "value": 100, "periodSeconds": 15}]),
        );
        set(b, &["scaleDown", "stabilizationWindowSeconds"], json!(300));
        set(b, &["scaleDown", "selectPolicy"], json!("Max"));
        set(
            b,
            &["scaleDown", "policies"],
            json!([{"type": "Percent", "value": 100, "periodSeconds": 15}]),
        );
    }
}

pub(crate) fn rolebinding(obj: &mut Value) {
    set(
        obj,
        &["roleRef", "apiGroup"],
        json!("rbac.authorization.k8s.io"),
    );
    for subj in items_mut(at(obj, &["subjects"])) {
        let group = match subj["kind"].as_str() {
            Some("User") | Some("Group") => "rbac.authorization.k8s.io",
            _ => "",
        };
        set(subj, &["apiGroup"], json!(group));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaulted(group: &str, kind: &str, mut v: Value) -> Value {
        apply_defaults(group, kind, &mut v);
        v
    }

    #[test]
    fn pull_policy_follows_the_tag() {
        assert_eq!(default_pull_policy("nginx"), "Always");
        assert_eq!(default_pull_policy("nginx:latest"), "Always");
        assert_eq!(default_pull_policy("nginx:1.25"), "IfNotPresent");
        assert_eq!(default_pull_policy("localhost:5000/app"), "Always");
        assert_eq!(default_pull_policy("localhost:5000/app:v1"), "IfNotPresent");
        assert_eq!(default_pull_policy("busybox@sha256:abcd"), "IfNotPresent");
    }

    #[test]
    fn pod_gets_the_real_servers_defaults() {
        let p = defaulted(
            "",
            "Pod",
            json!({"metadata": {"name": "p"}, "spec": {"containers": [
                {"name": "c", "image": "nginx:1.25", "ports": [{"containerPort": 80}],
                 "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}},
                 "livenessProbe": {"httpGet": {"port": 80}}},
            ], "volumes": [{"name": "scratch"}, {"name": "cfg", "configMap": {"name": "x"}}]}}),
        );
        let spec = &p["spec"];
        assert_eq!(spec["restartPolicy"], "Always");
        assert_eq!(spec["dnsPolicy"], "ClusterFirst");
        assert_eq!(spec["schedulerName"], "default-scheduler");
        assert_eq!(spec["terminationGracePeriodSeconds"], 30);
        assert_eq!(spec["securityContext"], json!({}));
        assert_eq!(spec["enableServiceLinks"], true);
        // Admission's, not defaulting's (see admission/).
        assert!(spec["serviceAccountName"].is_null());
        assert!(spec["priority"].is_null());
        assert!(spec["tolerations"].is_null());
        assert_eq!(spec["preemptionPolicy"], "PreemptLowerPriority");
        let c = &spec["containers"][0];
        assert_eq!(c["imagePullPolicy"], "IfNotPresent");
        assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(c["terminationMessagePolicy"], "File");
        assert_eq!(c["ports"][0]["protocol"], "TCP");
        assert_eq!(
            c["resources"]["requests"],
            json!({"cpu": "500m", "memory": "64Mi"})
        );
        assert_eq!(
            c["livenessProbe"],
            json!({"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1,
                   "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3})
        );
        assert_eq!(spec["volumes"][0]["emptyDir"], json!({}));
        assert_eq!(spec["volumes"][1]["configMap"]["defaultMode"], 420);
        assert_eq!(p["status"]["phase"], "Pending");
        assert_eq!(p["status"]["qosClass"], "Guaranteed");
    }

    #[test]
    fn explicit_values_are_kept() {
        let p = defaulted(
            "",
            "Pod",
            json!({"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x", "imagePullPolicy": "Never"}]}}),
        );
        assert_eq!(p["spec"]["restartPolicy"], "Never");
        assert_eq!(p["spec"]["containers"][0]["imagePullPolicy"], "Never");
        assert_eq!(p["status"]["qosClass"], "BestEffort");
        let again = defaulted("", "Pod", p.clone());
        assert_eq!(again, p, "defaulting is idempotent");
    }

    #[test]
    fn deployment_defaults_and_template() {
        let d = defaulted(
            "apps",
            "Deployment",
            json!({"spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}},
                   "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}),
        );
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(
            d["spec"]["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(d["spec"]["progressDeadlineSeconds"], 600);
        let t = &d["spec"]["template"]["spec"];
        assert_eq!(t["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(t["restartPolicy"], "Always");
        // Pod-only admission defaults do not land in templates.
        assert!(t["serviceAccountName"].is_null());
        assert!(t["enableServiceLinks"].is_null());
        let recreate = defaulted(
            "apps",
            "Deployment",
            json!({"spec": {"strategy": {"type": "Recreate"}}}),
        );
        assert_eq!(recreate["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn statefulset_daemonset_job_cronjob() {
        let s = defaulted("apps", "StatefulSet", json!({"spec": {}}));
        assert_eq!(s["spec"]["podManagementPolicy"], "OrderedReady");
        assert_eq!(
            s["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        );
        assert_eq!(
            s["spec"]["persistentVolumeClaimRetentionPolicy"],
            json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
        );
        let ds = defaulted("apps", "DaemonSet", json!({"spec": {}}));
        assert_eq!(
            ds["spec"]["updateStrategy"]["rollingUpdate"],
            json!({"maxUnavailable": 1, "maxSurge": 0})
        );
        let j = defaulted(
            "batch",
            "Job",
            json!({"metadata": {"name": "pi", "uid": "u-1"}, "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "perl:5"}]}}}}),
        );
        assert_eq!(j["spec"]["completions"], 1);
        assert_eq!(j["spec"]["parallelism"], 1);
        assert_eq!(j["spec"]["backoffLimit"], 6);
        assert_eq!(j["spec"]["completionMode"], "NonIndexed");
        assert_eq!(j["spec"]["suspend"], false);
        assert_eq!(j["spec"]["podReplacementPolicy"], "TerminatingOrFailed");
        assert_eq!(
            j["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
            "u-1"
        );
        assert_eq!(
            j["spec"]["template"]["metadata"]["labels"]["job-name"],
            "pi"
        );
        assert_eq!(
            j["metadata"]["labels"]["batch.kubernetes.io/job-name"],
            "pi"
        );
        let par = defaulted("batch", "Job", json!({"spec": {"parallelism": 3}}));
        assert!(par["spec"]["completions"].is_null());
        let cj = defaulted(
            "batch",
            "CronJob",
            json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x:1"}]}}}}}}),
        );
        assert_eq!(cj["spec"]["concurrencyPolicy"], "Allow");
        assert_eq!(cj["spec"]["successfulJobsHistoryLimit"], 3);
        assert_eq!(cj["spec"]["failedJobsHistoryLimit"], 1);
        assert!(cj["spec"]["jobTemplate"]["spec"]["backoffLimit"].is_null());
        assert_eq!(
            cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["dnsPolicy"],
            "ClusterFirst"
        );
    }

    #[test]
    fn service_namespace_secret_pvc() {
        let s = defaulted(
            "",
            "Service",
            json!({"spec": {"ports": [{"port": 80}, {"port": 53, "protocol": "UDP", "targetPort": "dns"}]}}),
        );
        assert_eq!(s["spec"]["type"], "ClusterIP");
        assert_eq!(s["spec"]["sessionAffinity"], "None");
        assert_eq!(
            s["spec"]["ports"][0],
            json!({"port": 80, "protocol": "TCP", "targetPort": 80})
        );
        assert_eq!(s["spec"]["ports"][1]["targetPort"], "dns");
        assert_eq!(s["spec"]["internalTrafficPolicy"], "Cluster");
        assert_eq!(s["spec"]["ipFamilyPolicy"], "SingleStack");
        assert_eq!(s["spec"]["ipFamilies"], json!(["IPv4"]));
        assert!(s["spec"]["externalTrafficPolicy"].is_null());
        let ext = defaulted(
            "",
            "Service",
            json!({"spec": {"type": "ExternalName", "externalName": "x.example"}}),
        );
        assert!(ext["spec"]["ipFamilies"].is_null());
        let ns = defaulted("", "Namespace", json!({"metadata": {"name": "dev"}}));
        assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
        assert_eq!(ns["status"]["phase"], "Active");
        assert_eq!(
            ns["metadata"]["labels"]["kubernetes.io/metadata.name"],
            "dev"
        );
        assert_eq!(defaulted("", "Secret", json!({}))["type"], "Opaque");
        let sec = defaulted(
            "",
            "Secret",
            json!({"data": {"a": "eA==", "user": "b2xk"}, "stringData": {"user": "admin"}}),
        );
        assert_eq!(sec["data"], json!({"a": "eA==", "user": "YWRtaW4="}));
        assert!(sec.get("stringData").is_none());
        assert_eq!(
            defaulted("", "PersistentVolumeClaim", json!({"spec": {}}))["spec"]["volumeMode"],
            "Filesystem"
        );
        let hpa = defaulted(
            "autoscaling",
            "HorizontalPodAutoscaler",
            json!({"apiVersion": "autoscaling/v2", "spec": {"maxReplicas": 3}}),
        );
        assert_eq!(hpa["spec"]["minReplicas"], 1);
        assert_eq!(
            hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            80
        );
    }

    fn has_null(v: &Value) -> bool {
        match v {
            Value::Null => true,
            Value::Object(m) => m.values().any(has_null),
            Value::Array(a) => a.iter().any(has_null),
            _ => false,
        }
    }

    /// Odd shapes must not panic (IndexMut on a string would) nor leave nulls behind.
    #[test]
    fn malformed_shapes_are_left_alone() {
        let kinds = [
            ("", "Pod"),
            ("apps", "Deployment"),
            ("apps", "StatefulSet"),
            ("apps", "DaemonSet"),
            ("apps", "ReplicaSet"),
            ("batch", "Job"),
            ("batch", "CronJob"),
            ("", "Service"),
            ("", "Namespace"),
            ("", "Secret"),
            ("", "PersistentVolumeClaim"),
            ("", "PersistentVolume"),
            ("", "Node"),
            ("", "Endpoints"),
            ("", "LimitRange"),
            ("discovery.k8s.io", "EndpointSlice"),
            ("networking.k8s.io", "NetworkPolicy"),
            ("autoscaling", "HorizontalPodAutoscaler"),
            ("rbac.authorization.k8s.io", "RoleBinding"),
            ("storage.k8s.io", "StorageClass"),
            ("scheduling.k8s.io", "PriorityClass"),
            ("", "PodTemplate"),
            ("", "ReplicationController"),
        ];
        let shapes = [
            json!({}),
            json!({"metadata": 5, "spec": "x", "subsets": 3, "ports": "p", "subjects": [1]}),
            json!({"spec": {"template": 3, "jobTemplate": [], "containers": [1, "x", {"ports": [2]}],
                   "ports": [1, {"port": 80}], "ingress": [1], "limits": [2], "behavior": 1,
                   "volumes": [3], "strategy": "x", "updateStrategy": 1}}),
            json!({"spec": {"template": {"spec": {"containers": [{"env": [1], "ports": "x", "livenessProbe": 3}]}}}}),
        ];
        for (g, k) in kinds {
            for shape in &shapes {
                let mut v = shape.clone();
                apply_defaults(g, k, &mut v);
                assert!(!has_null(&v), "{g}/{k} left a null in {v}");
            }
        }
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity(&json!("100m")), Some(0.1));
        assert_eq!(parse_quantity(&json!("64Mi")), Some(64.0 * 1024.0 * 1024.0));
        assert_eq!(parse_quantity(&json!("1e3")), Some(1000.0));
        assert_eq!(parse_quantity(&json!(2)), Some(2.0));
        assert_eq!(parse_quantity(&json!("abc")), None);
    }
}
