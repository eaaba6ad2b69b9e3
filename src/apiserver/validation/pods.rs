//! Pod specs, shared by pods and every pod template, and the pod update rule.

use super::names::{self, port_num_error};
use super::{
    duplicate, forbidden, invalid, not_found, not_supported, one_of, required, validate_labels,
    FieldError,
};
use crate::apiserver::defaults::parse_quantity;
use serde_json::{json, Value};

pub(crate) fn arr(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

pub(crate) fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// The volume sources a Volume may name; exactly one must be set.
pub(crate) const VOLUME_SOURCES: &[&str] = &[
    "emptyDir",
    "hostPath",
    "gitRepo",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "flexVolume",
    "persistentVolumeClaim",
    "rbd",
    "cinder",
    "cephfs",
    "flocker",
    "downwardAPI",
    "fc",
    "azureFile",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "portworxVolume",
    "scaleIO",
    "configMap",
    "projected",
    "csi",
    "ephemeral",
    "image",
];

pub(crate) fn validate_volumes(
    spec: &Value,
    path: &str,
    errs: &mut Vec<FieldError>,
) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for (i, v) in arr(&spec["volumes"]).iter().enumerate() {
        let vpath = format!("{path}.volumes[{i}]");
        let name = s(&v["name"]);
        if name.is_empty() {
            errs.push(required(&format!("{vpath}.name"), ""));
        } else {
            for msg in names::dns1123_label(name) {
                errs.push(invalid(&format!("{vpath}.name"), &v["name"], &msg));
            }
            if seen.iter().any(|n| n == name) {
                errs.push(duplicate(&format!("{vpath}.name"), &v["name"]));
            }
            seen.push(name.to_string());
        }
        let sources: Vec<&str> = VOLUME_SOURCES
            .iter()
            .copied()
            .filter(|src| !v[*src].is_null())
            .collect();
        match sources.as_slice() {
            [] => errs.push(required(&vpath, "must specify a volume type")),
            [_] => {}
            [_, rest @ ..] => {
                for extra in rest {
                    errs.push(forbidden(
                        &format!("{vpath}.{extra}"),
                        "may not specify more than 1 volume type",
                    ));
                }
            }
        }
        if let Some(cm) = v["configMap"].as_object() {
            if cm
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
            {
                errs.push(required(&format!("{vpath}.configMap.name"), ""));
            }
        }
        if v["persistentVolumeClaim"].is_object()
            && s(&v["persistentVolumeClaim"]["claimName"]).is_empty()
        {
            errs.push(required(
                &format!("{vpath}.persistentVolumeClaim.claimName"),
                "",
            ));
        }
        if v["hostPath"].is_object() && s(&v["hostPath"]["path"]).is_empty() {
            errs.push(required(&format!("{vpath}.hostPath.path"), ""));
        }
    }
    seen
}

pub(crate) fn validate_resources(res: &Value, path: &str, errs: &mut Vec<FieldError>) {
    for part in ["limits", "requests"] {
        if let Some(m) = res[part].as_object() {
            for (k, q) in m {
                if parse_quantity(q).is_none() {
                    errs.push(invalid(
                        &format!("{path}.{part}[{k}]"),
                        q,
                        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
                    ));
                }
            }
        }
    }
    let (Some(reqs), Some(lims)) = (res["requests"].as_object(), res["limits"].as_object()) else {
        return;
    };
    for (k, r) in reqs {
        let Some(l) = lims.get(k) else { continue };
        if let (Some(rq), Some(lq)) = (parse_quantity(r), parse_quantity(l)) {
            if rq > lq {
                errs.push(invalid(
                    &format!("{path}.requests[{k}]"),
                    r,
                    &format!("must be less than or equal to {k} limit of {}", s(l)),
                ));
            }
        }
    }
}

pub(crate) fn validate_probe(p: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if !p.is_object() {
        return;
    }
    let handlers: Vec<&str> = ["exec", "httpGet", "tcpSocket", "grpc"]
        .into_iter()
        .filter(|h| !p[*h].is_null())
        .collect();
    if handlers.is_empty() {
        errs.push(required(path, "must specify a handler type"));
    } else if handlers.len() > 1 {
        errs.push(forbidden(
            &format!("{path}.{}", handlers[1]),
            "may not specify more than 1 handler type",
        ));
    }
    for f in [
        "initialDelaySeconds",
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
    ] {
        if let Some(n) = p[f].as_i64() {
            if n < 0 {
                errs.push(invalid(
                    &format!("{path}.{f}"),
                    &p[f],
                    "must be greater than or equal to 0",
                ));
            }
        }
    }
}

pub(crate) fn validate_ports(c: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let mut names_seen: Vec<&str> = Vec::new();
    for (i, p) in arr(&c["ports"]).iter().enumerate() {
        let ppath = format!("{path}.ports[{i}]");
        let name = s(&p["name"]);
        if !name.is_empty() {
            for msg in names::port_name(name) {
                errs.push(invalid(&format!("{ppath}.name"), &p["name"], &msg));
            }
            if names_seen.contains(&name) {
                errs.push(duplicate(&format!("{ppath}.name"), &p["name"]));
            }
            names_seen.push(name);
        }
        match p["containerPort"].as_i64() {
            None => errs.push(required(&format!("{ppath}.containerPort"), "")),
            Some(n) if !(1..=65535).contains(&n) => errs.push(invalid(
                &format!("{ppath}.containerPort"),
                &p["containerPort"],
                port_num_error(),
            )),
            _ => {}
        }
        if let Some(n) = p["hostPort"].as_i64() {
            if n != 0 && !(1..=65535).contains(&n) {
                errs.push(invalid(
                    &format!("{ppath}.hostPort"),
                    &p["hostPort"],
                    port_num_error(),
                ));
            }
        }
        validate_protocol(&p["protocol"], &format!("{ppath}.protocol"), errs);
    }
}

pub(crate) fn validate_protocol(v: &Value, path: &str, errs: &mut Vec<FieldError>) {
    one_of(path, v, &["SCTP", "TCP", "UDP"], errs);
}

pub(crate) fn validate_container(
    c: &Value,
    path: &str,
    volumes: &[String],
    errs: &mut Vec<FieldError>,
) {
    let name = s(&c["name"]);
    if name.is_empty() {
        errs.push(required(&format!("{path}.name"), ""));
    } else {
        for msg in names::dns1123_label(name) {
            errs.push(invalid(&format!("{path}.name"), &c["name"], &msg));
        }
    }
    if s(&c["image"]).is_empty() {
        errs.push(required(&format!("{path}.image"), ""));
    }
    match s(&c["imagePullPolicy"]) {
        "Always" | "IfNotPresent" | "Never" | "" => {}
        _ => errs.push(not_supported(
            &format!("{path}.imagePullPolicy"),
            &c["imagePullPolicy"],
            &["Always", "IfNotPresent", "Never"],
        )),
    }
    match s(&c["terminationMessagePolicy"]) {
        "File" | "FallbackToLogsOnError" | "" => {}
        _ => errs.push(not_supported(
            &format!("{path}.terminationMessagePolicy"),
            &c["terminationMessagePolicy"],
            &["File", "FallbackToLogsOnError"],
        )),
    }
    validate_ports(c, path, errs);
    for (i, e) in arr(&c["env"]).iter().enumerate() {
        let epath = format!("{path}.env[{i}]");
        let n = s(&e["name"]);
        if n.is_empty() {
            errs.push(required(&format!("{epath}.name"), ""));
        } else if n.contains('=') || !n.chars().all(|ch| ch.is_ascii_graphic() || ch == ' ') {
            errs.push(invalid(
                &format!("{epath}.name"),
                &e["name"],
                "a valid environment variable name must consist only of printable ASCII characters other than '='",
            ));
        }
        if !e["value"].is_null() && !e["valueFrom"].is_null() && !s(&e["value"]).is_empty() {
            errs.push(invalid(
                &format!("{epath}.valueFrom"),
                &json!(""),
                "may not be specified when `value` is not empty",
            ));
        }
    }
    let mut mount_paths: Vec<&str> = Vec::new();
    for (i, m) in arr(&c["volumeMounts"]).iter().enumerate() {
        let mpath = format!("{path}.volumeMounts[{i}]");
        let vname = s(&m["name"]);
        if vname.is_empty() {
            errs.push(required(&format!("{mpath}.name"), ""));
        } else if !volumes.iter().any(|v| v == vname) {
            errs.push(not_found(&format!("{mpath}.name"), &m["name"]));
        }
        let mount = s(&m["mountPath"]);
        if mount.is_empty() {
            errs.push(required(&format!("{mpath}.mountPath"), ""));
        } else if mount_paths.contains(&mount) {
            errs.push(invalid(
                &format!("{mpath}.mountPath"),
                &m["mountPath"],
                "must be unique",
            ));
        }
        mount_paths.push(mount);
    }
    validate_resources(&c["resources"], &format!("{path}.resources"), errs);
    for p in ["livenessProbe", "readinessProbe", "startupProbe"] {
        validate_probe(&c[p], &format!("{path}.{p}"), errs);
    }
}

/// `ValidatePodSpec`, `path` being "spec" or "spec.template.spec".
pub(crate) fn validate_pod_spec(spec: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let volumes = validate_volumes(spec, path, errs);
    let containers = arr(&spec["containers"]);
    if containers.is_empty() {
        errs.push(required(&format!("{path}.containers"), ""));
    }
    let mut all_names: Vec<String> = Vec::new();
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for (i, c) in arr(&spec[list]).iter().enumerate() {
            let cpath = format!("{path}.{list}[{i}]");
            validate_container(c, &cpath, &volumes, errs);
            let name = s(&c["name"]);
            if !name.is_empty() {
                if all_names.iter().any(|n| n == name) {
                    errs.push(duplicate(&format!("{cpath}.name"), &c["name"]));
                }
                all_names.push(name.to_string());
            }
        }
    }
    one_of(
        &format!("{path}.restartPolicy"),
        &spec["restartPolicy"],
        &["Always", "OnFailure", "Never"],
        errs,
    );
    match s(&spec["dnsPolicy"]) {
        "ClusterFirstWithHostNet" | "ClusterFirst" | "Default" | "None" | "" => {}
        _ => errs.push(not_supported(
            &format!("{path}.dnsPolicy"),
            &spec["dnsPolicy"],
            &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        )),
    }
    if let Some(n) = spec["activeDeadlineSeconds"].as_i64() {
        if n <= 0 {
            errs.push(invalid(
                &format!("{path}.activeDeadlineSeconds"),
                &spec["activeDeadlineSeconds"],
                "must be between 1 and 2147483647, inclusive",
            ));
        }
    }
    if let Some(n) = spec["terminationGracePeriodSeconds"].as_i64() {
        if n < 0 {
            errs.push(invalid(
                &format!("{path}.terminationGracePeriodSeconds"),
                &spec["terminationGracePeriodSeconds"],
                "must be greater than or equal to 0",
            ));
        }
    }
    validate_labels(&spec["nodeSelector"], &format!("{path}.nodeSelector"), errs);
    let sa = s(&spec["serviceAccountName"]);
    if !sa.is_empty() {
        for msg in names::dns1123_subdomain(sa) {
            errs.push(invalid(
                &format!("{path}.serviceAccountName"),
                &spec["serviceAccountName"],
                &msg,
            ));
        }
    }
    for (i, t) in arr(&spec["tolerations"]).iter().enumerate() {
        let tpath = format!("{path}.tolerations[{i}]");
        match s(&t["operator"]) {
            "" | "Equal" => {
                if s(&t["key"]).is_empty() {
                    errs.push(invalid(
                        &format!("{tpath}.operator"),
                        &t["operator"],
                        "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
                    ));
                }
            }
            "Exists" => {
                if !s(&t["value"]).is_empty() {
                    errs.push(invalid(
                        &format!("{tpath}.operator"),
                        &t["value"],
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            _ => errs.push(not_supported(
                &format!("{tpath}.operator"),
                &t["operator"],
                &["Equal", "Exists"],
            )),
        }
        match s(&t["effect"]) {
            "" | "NoSchedule" | "PreferNoSchedule" | "NoExecute" => {}
            _ => errs.push(not_supported(
                &format!("{tpath}.effect"),
                &t["effect"],
                &["NoExecute", "NoSchedule", "PreferNoSchedule"],
            )),
        }
    }
}

/// A PodTemplateSpec: its metadata's labels and annotations, and its spec.
pub(crate) fn validate_pod_template(t: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if !t.is_object() {
        errs.push(required(path, ""));
        return;
    }
    let meta = &t["metadata"];
    validate_labels(&meta["labels"], &format!("{path}.metadata.labels"), errs);
    validate_pod_spec(&t["spec"], &format!("{path}.spec"), errs);
}

/// The fields of a container an ephemeral one may not have (upstream allows a list; these
/// are what it leaves out).
const EPHEMERAL_FORBIDDEN: &[&str] = &[
    "ports",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "lifecycle",
    "resources",
    "resizePolicy",
    "restartPolicy",
];

/// What an ephemeral container may not be: one with ports, probes, hooks or resources, or one
/// aimed at a container the pod does not have.
fn validate_ephemeral_containers(spec: &Value, errs: &mut Vec<FieldError>) {
    let targets: Vec<&str> = ["containers", "initContainers"]
        .iter()
        .flat_map(|l| arr(&spec[*l]))
        .map(|c| s(&c["name"]))
        .collect();
    for (i, c) in arr(&spec["ephemeralContainers"]).iter().enumerate() {
        let path = format!("spec.ephemeralContainers[{i}]");
        for f in EPHEMERAL_FORBIDDEN {
            // As upstream compares with the zero value: `resources: {}` is not set.
            let set = c.get(*f).is_some_and(|v| match v {
                Value::Null => false,
                Value::Object(o) => !o.is_empty(),
                Value::Array(a) => !a.is_empty(),
                _ => true,
            });
            if set {
                errs.push(forbidden(
                    &format!("{path}.{f}"),
                    "cannot be set for an Ephemeral Container",
                ));
            }
        }
        let target = s(&c["targetContainerName"]);
        if !target.is_empty() && !targets.contains(&target) {
            errs.push(not_found(
                &format!("{path}.targetContainerName"),
                &c["targetContainerName"],
            ));
        }
    }
}

/// `ValidatePodEphemeralContainersUpdate`: a write through pods/ephemeralcontainers may only
/// add ephemeral containers; those already there stay exactly as they are.
pub(crate) fn validate_ephemeral_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_pod_spec(&new["spec"], "spec", &mut errs);
    validate_ephemeral_containers(&new["spec"], &mut errs);
    let added = arr(&new["spec"]["ephemeralContainers"]);
    for (i, o) in arr(&old["spec"]["ephemeralContainers"]).iter().enumerate() {
        let name = s(&o["name"]);
        match added.iter().find(|n| s(&n["name"]) == name) {
            None => errs.push(forbidden(
                "spec.ephemeralContainers",
                &format!("existing ephemeral containers {name:?} may not be removed"),
            )),
            Some(n) if n != o => errs.push(forbidden(
                &format!("spec.ephemeralContainers[{i}]"),
                &format!("existing ephemeral containers {name:?} may not be changed"),
            )),
            Some(_) => {}
        }
    }
    errs
}

pub(crate) const POD_UPDATE_MSG: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

pub(crate) fn validate_pod(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    validate_pod_spec(&obj["spec"], "spec", errs);
    validate_ephemeral_containers(&obj["spec"], errs);
    let Some(old) = old else {
        // They are added to a running pod (pods/ephemeralcontainers), never created with it.
        if !arr(&obj["spec"]["ephemeralContainers"]).is_empty() {
            errs.push(forbidden(
                "spec.ephemeralContainers",
                "cannot be set on create",
            ));
        }
        return;
    };
    let (new_spec, old_spec) = (&obj["spec"], &old["spec"]);
    if !new_spec.is_object() || !old_spec.is_object() {
        return;
    }
    // Apply the allowed changes to the old spec; whatever still differs was not allowed.
    let mut munged = old_spec.clone();
    for list in ["containers", "initContainers"] {
        let new_list = arr(&new_spec[list]);
        if let Some(old_list) = munged[list].as_array_mut() {
            if old_list.len() == new_list.len() {
                for (o, n) in old_list.iter_mut().zip(new_list) {
                    if let Some(o) = o.as_object_mut() {
                        o.insert("image".into(), n["image"].clone());
                    }
                }
            }
        }
    }
    munged["activeDeadlineSeconds"] = new_spec["activeDeadlineSeconds"].clone();
    let old_tol = arr(&old_spec["tolerations"]);
    let new_tol = arr(&new_spec["tolerations"]);
    if old_tol.iter().all(|t| new_tol.contains(t)) {
        munged["tolerations"] = new_spec["tolerations"].clone();
    }
    if old_spec["terminationGracePeriodSeconds"]
        .as_i64()
        .is_some_and(|n| n < 0)
        && new_spec["terminationGracePeriodSeconds"] == json!(1)
    {
        munged["terminationGracePeriodSeconds"] = json!(1);
    }
    // Binding a pod to a node and removing scheduling gates are how the scheduler updates it.
    if s(&old_spec["nodeName"]).is_empty() {
        munged["nodeName"] = new_spec["nodeName"].clone();
    }
    if arr(&new_spec["schedulingGates"])
        .iter()
        .all(|g| arr(&old_spec["schedulingGates"]).contains(g))
    {
        munged["schedulingGates"] = new_spec["schedulingGates"].clone();
    }
    let changed = changed_fields(&munged, new_spec);
    if !changed.is_empty() {
        errs.push(forbidden(
            "spec",
            &format!("{POD_UPDATE_MSG}\n  changed: {}", changed.join(", ")),
        ));
    }
    for (i, c) in arr(&new_spec["containers"]).iter().enumerate() {
        if c["image"].is_null() || s(&c["image"]).is_empty() {
            errs.push(required(&format!("spec.containers[{i}].image"), ""));
        }
    }
}

/// The top-level keys of two objects whose values differ (null and absent are the same).
pub(crate) fn changed_fields(a: &Value, b: &Value) -> Vec<String> {
    let empty = serde_json::Map::new();
    let am = a.as_object().unwrap_or(&empty);
    let bm = b.as_object().unwrap_or(&empty);
    let mut keys: Vec<&String> = am.keys().chain(bm.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| {
            let x = am.get(*k).unwrap_or(&Value::Null);
            let y = bm.get(*k).unwrap_or(&Value::Null);
            x != y
        })
        .map(|k| format!("spec.{k}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::apiserver::defaults::apply_defaults;
    use crate::apiserver::validation::validate;
    use serde_json::{json, Value};

    fn pod(spec: Value) -> Value {
        let mut p = json!({"metadata": {"name": "p"}, "spec": spec});
        apply_defaults("", "Pod", &mut p);
        p
    }

    fn fields(errs: &[super::FieldError]) -> Vec<String> {
        errs.iter()
            .map(|e| format!("{} {}", e.reason, e.field))
            .collect()
    }

    #[test]
    fn valid_pod_passes() {
        let p = pod(
            json!({"containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80, "name": "http"}],
            "volumeMounts": [{"name": "data", "mountPath": "/data"}]}], "volumes": [{"name": "data", "emptyDir": {}}]}),
        );
        assert_eq!(validate("", "Pod", &p, None), vec![]);
    }

    #[test]
    fn pod_spec_errors_have_paths() {
        let p = pod(json!({"restartPolicy": "Sometimes", "containers": [
            {"name": "Web", "image": "nginx", "ports": [{"containerPort": 70000}]},
            {"name": "b", "imagee": "x", "ports": [{"containerPort": 80, "protocol": "ICMP"}],
             "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}},
             "volumeMounts": [{"name": "missing", "mountPath": "/m"}]},
            {"name": "b", "image": "x"}
        ], "volumes": [{"name": "v", "emptyDir": {}, "hostPath": {"path": "/x"}}]}));
        let errs = validate("", "Pod", &p, None);
        assert_eq!(
            fields(&errs),
            [
                "FieldValueForbidden spec.volumes[0].hostPath",
                "FieldValueInvalid spec.containers[0].name",
                "FieldValueInvalid spec.containers[0].ports[0].containerPort",
                "FieldValueRequired spec.containers[1].image",
                "FieldValueNotSupported spec.containers[1].ports[0].protocol",
                "FieldValueNotFound spec.containers[1].volumeMounts[0].name",
                "FieldValueInvalid spec.containers[1].resources.requests[cpu]",
                "FieldValueDuplicate spec.containers[2].name",
                "FieldValueNotSupported spec.restartPolicy",
            ]
        );
        let by_field = |f: &str| errs.iter().find(|e| e.field == f).unwrap().message.clone();
        assert_eq!(
            by_field("spec.restartPolicy"),
            "Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""
        );
        assert_eq!(
            by_field("spec.containers[0].ports[0].containerPort"),
            "Invalid value: 70000: must be between 1 and 65535, inclusive"
        );
        assert_eq!(
            by_field("spec.containers[1].resources.requests[cpu]"),
            "Invalid value: \"2\": must be less than or equal to cpu limit of 1"
        );
        assert_eq!(
            by_field("spec.containers[2].name"),
            "Duplicate value: \"b\""
        );
        assert_eq!(by_field("spec.containers[1].image"), "Required value");
    }

    #[test]
    fn containers_required() {
        let errs = validate("", "Pod", &pod(json!({})), None);
        assert_eq!(fields(&errs), ["FieldValueRequired spec.containers"]);
    }

    #[test]
    fn pod_update_allows_image_and_forbids_the_rest() {
        let old = pod(json!({"containers": [{"name": "c", "image": "nginx:1"}]}));
        let mut new = old.clone();
        new["spec"]["containers"][0]["image"] = json!("nginx:2");
        new["spec"]["nodeName"] = json!("n1");
        assert_eq!(validate("", "Pod", &new, Some(&old)), vec![]);
        new["spec"]["restartPolicy"] = json!("Never");
        let errs = validate("", "Pod", &new, Some(&old));
        assert_eq!(fields(&errs), ["FieldValueForbidden spec"]);
        assert!(errs[0].message.starts_with(
            "Forbidden: pod updates may not change fields other than `spec.containers[*].image`"
        ));
        assert!(errs[0].message.contains("spec.restartPolicy"));
    }
}
