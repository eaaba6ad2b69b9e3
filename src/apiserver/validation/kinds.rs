//! Per-kind rules for every kind but pods: workloads, services, config, storage, networking,
//! RBAC and the rest, each with its update-time immutability.

use super::names::{self, port_num_error};
use super::pods::{validate_pod_template, validate_protocol};
use super::{
    duplicate, forbidden, invalid, not_supported, one_of, required, too_long, validate_labels,
    FieldError,
};
use serde_json::{json, Value};

pub(crate) type Errs = Vec<FieldError>;

pub(crate) fn arr(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

pub(crate) fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

pub(crate) fn non_negative(v: &Value, path: &str, errs: &mut Errs) {
    if let Some(n) = v.as_i64() {
        if n < 0 {
            errs.push(invalid(path, v, "must be greater than or equal to 0"));
        }
    }
}

pub(crate) fn immutable(new: &Value, old: Option<&Value>, path: &str, errs: &mut Errs) {
    if let Some(old) = old {
        if new != old {
            errs.push(invalid(path, new, "field is immutable"));
        }
    }
}

/// Go's `%#v` of a labels map, as Kubernetes prints it in selector errors.
pub(crate) fn go_map(v: &Value) -> String {
    let mut pairs: Vec<(String, String)> = v
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), s(v).to_string()))
                .collect()
        })
        .unwrap_or_default();
    pairs.sort();
    let inner: Vec<String> = pairs.iter().map(|(k, v)| format!("{k:?}:{v:?}")).collect();
    format!("map[string]string{{{}}}", inner.join(", "))
}

/// `ValidateLabelSelector`.
pub(crate) fn label_selector(sel: &Value, path: &str, errs: &mut Errs) {
    validate_labels(&sel["matchLabels"], &format!("{path}.matchLabels"), errs);
    for (i, e) in arr(&sel["matchExpressions"]).iter().enumerate() {
        let epath = format!("{path}.matchExpressions[{i}]");
        let values = arr(&e["values"]);
        match s(&e["operator"]) {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errs.push(required(
                        &format!("{epath}.values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errs.push(forbidden(
                        &format!("{epath}.values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            _ => errs.push(invalid(
                &format!("{epath}.operator"),
                &e["operator"],
                "not a valid selector operator",
            )),
        }
        for msg in names::qualified_name(s(&e["key"])) {
            errs.push(invalid(&format!("{epath}.key"), &e["key"], &msg));
        }
    }
}

/// Whether a label selector selects a set of labels.
pub(crate) fn selector_matches(sel: &Value, labels: &Value) -> bool {
    let get = |k: &str| labels.get(k).and_then(Value::as_str);
    if let Some(m) = sel["matchLabels"].as_object() {
        if !m.iter().all(|(k, v)| get(k) == v.as_str()) {
            return false;
        }
    }
    arr(&sel["matchExpressions"]).iter().all(|e| {
        let key = s(&e["key"]);
        let values: Vec<&str> = arr(&e["values"]).iter().map(s).collect();
        match s(&e["operator"]) {
            "In" => get(key).is_some_and(|v| values.contains(&v)),
            "NotIn" => get(key).is_none_or(|v| !values.contains(&v)),
            "Exists" => get(key).is_some(),
            "DoesNotExist" => get(key).is_none(),
            _ => false,
        }
    })
}

pub(crate) fn selector_is_empty(sel: &Value) -> bool {
    sel["matchLabels"].as_object().is_none_or(|m| m.is_empty())
        && arr(&sel["matchExpressions"]).is_empty()
}

/// Selector present, not empty, matching the template's labels; the template valid.
pub(crate) fn selector_and_template(spec: &Value, what: &str, errs: &mut Errs) {
    let sel = &spec["selector"];
    if !sel.is_object() {
        errs.push(required("spec.selector", ""));
    } else {
        label_selector(sel, "spec.selector", errs);
        if selector_is_empty(sel) {
            errs.push(invalid(
                "spec.selector",
                sel,
                &format!("empty selector is invalid for {what}"),
            ));
        }
    }
    let template = &spec["template"];
    if template.is_object() && sel.is_object() && !selector_is_empty(sel) {
        let labels = &template["metadata"]["labels"];
        if !selector_matches(sel, labels) {
            errs.push(super::FieldError {
                reason: "FieldValueInvalid".into(),
                field: "spec.template.metadata.labels".into(),
                message: format!(
                    "Invalid value: {}: `selector` does not match template `labels`",
                    go_map(labels)
                ),
            });
        }
    }
    validate_pod_template(template, "spec.template", errs);
}

pub(crate) fn restart_always(spec: &Value, errs: &mut Errs) {
    let rp = &spec["template"]["spec"]["restartPolicy"];
    if !rp.is_null() && s(rp) != "Always" {
        errs.push(not_supported(
            "spec.template.spec.restartPolicy",
            rp,
            &["Always"],
        ));
    }
}

pub(crate) fn replicated(obj: &Value, old: Option<&Value>, what: &str, errs: &mut Errs) {
    let spec = &obj["spec"];
    non_negative(&spec["replicas"], "spec.replicas", errs);
    non_negative(&spec["minReadySeconds"], "spec.minReadySeconds", errs);
    selector_and_template(spec, what, errs);
    restart_always(spec, errs);
    if let Some(old) = old {
        immutable(
            &spec["selector"],
            Some(&old["spec"]["selector"]),
            "spec.selector",
            errs,
        );
    }
}

/// An IntOrString that must be a non-negative int or a percentage.
pub(crate) fn int_or_percent(v: &Value, path: &str, errs: &mut Errs) -> Option<f64> {
    match v {
        Value::Null => None,
        Value::Number(n) => {
            let n = n.as_f64().unwrap_or(0.0);
            if n < 0.0 {
                errs.push(invalid(path, v, "must be greater than or equal to 0"));
            }
            Some(n)
        }
        Value::String(st) => match st.strip_suffix('%').and_then(|p| p.parse::<f64>().ok()) {
            Some(p) => {
                if p < 0.0 {
                    errs.push(invalid(path, v, "must be greater than or equal to 0"));
                } else if p > 100.0 {
                    errs.push(invalid(path, v, "must not be greater than 100%"));
                }
                Some(p)
            }
            None => {
                errs.push(invalid(
                    path,
                    v,
                    "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                ));
                None
            }
        },
        _ => None,
    }
}

pub(crate) const STS_UPDATE_MSG: &str = "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden";

pub(crate) fn statefulset(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let spec = &obj["spec"];
    non_negative(&spec["replicas"], "spec.replicas", errs);
    selector_and_template(spec, "statefulset", errs);
    restart_always(spec, errs);
    match s(&spec["podManagementPolicy"]) {
        "OrderedReady" | "Parallel" | "" => {}
        _ => errs.push(not_supported(
            "spec.podManagementPolicy",
            &spec["podManagementPolicy"],
            &["OrderedReady", "Parallel"],
        )),
    }
    match s(&spec["updateStrategy"]["type"]) {
        "OnDelete" | "RollingUpdate" | "" => {}
        _ => errs.push(not_supported(
            "spec.updateStrategy.type",
            &spec["updateStrategy"]["type"],
            &["OnDelete", "RollingUpdate"],
        )),
    }
    non_negative(
        &spec["updateStrategy"]["rollingUpdate"]["partition"],
        "spec.updateStrategy.rollingUpdate.partition",
        errs,
    );
    if let Some(old) = old {
        let mut a = spec.clone();
        let mut b = old["spec"].clone();
        for f in [
            "replicas",
            "ordinals",
            "template",
            "updateStrategy",
            "persistentVolumeClaimRetentionPolicy",
            "minReadySeconds",
            "revisionHistoryLimit",
        ] {
            if let Some(m) = a.as_object_mut() {
                m.remove(f);
            }
            if let Some(m) = b.as_object_mut() {
                m.remove(f);
            }
        }
        if a != b {
            errs.push(forbidden("spec", STS_UPDATE_MSG));
        }
    }
}

pub(crate) fn daemonset(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let spec = &obj["spec"];
    selector_and_template(spec, "daemonset", errs);
    restart_always(spec, errs);
    match s(&spec["updateStrategy"]["type"]) {
        "OnDelete" | "RollingUpdate" | "" => {}
        _ => errs.push(not_supported(
            "spec.updateStrategy.type",
            &spec["updateStrategy"]["type"],
            &["OnDelete", "RollingUpdate"],
        )),
    }
    non_negative(
        &spec["revisionHistoryLimit"],
        "spec.revisionHistoryLimit",
        errs,
    );
    if let Some(old) = old {
        immutable(
            &spec["selector"],
            Some(&old["spec"]["selector"]),
            "spec.selector",
            errs,
        );
    }
}

pub(crate) fn job_restart_policy(template: &Value, path: &str, errs: &mut Errs) {
    let rp = &template["spec"]["restartPolicy"];
    if !matches!(s(rp), "OnFailure" | "Never") {
        errs.push(not_supported(path, rp, &["OnFailure", "Never"]));
    }
}

pub(crate) fn job(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let spec = &obj["spec"];
    for f in ["parallelism", "completions", "backoffLimit"] {
        non_negative(&spec[f], &format!("spec.{f}"), errs);
    }
    if let Some(n) = spec["activeDeadlineSeconds"].as_i64() {
        if n <= 0 {
            errs.push(invalid(
                "spec.activeDeadlineSeconds",
                &spec["activeDeadlineSeconds"],
                "must be greater than or equal to 1",
            ));
        }
    }
    match s(&spec["completionMode"]) {
        "NonIndexed" | "Indexed" | "" => {}
        _ => errs.push(not_supported(
            "spec.completionMode",
            &spec["completionMode"],
            &["NonIndexed", "Indexed"],
        )),
    }
    if spec["completionMode"] == "Indexed" && spec["completions"].is_null() {
        errs.push(required(
            "spec.completions",
            "when completion mode is Indexed",
        ));
    }
    // The server generates the selector from the uid unless manualSelector is set.
    let sel = &spec["selector"];
    if sel.is_object() {
        label_selector(sel, "spec.selector", errs);
        let labels = &spec["template"]["metadata"]["labels"];
        if !selector_is_empty(sel) && !selector_matches(sel, labels) {
            errs.push(FieldError {
                reason: "FieldValueInvalid".into(),
                field: "spec.template.metadata.labels".into(),
                message: format!(
                    "Invalid value: {}: `selector` does not match template `labels`",
                    go_map(labels)
                ),
            });
        }
    } else if spec["manualSelector"].as_bool() == Some(true) {
        errs.push(required("spec.selector", ""));
    }
    validate_pod_template(&spec["template"], "spec.template", errs);
    job_restart_policy(&spec["template"], "spec.template.spec.restartPolicy", errs);
    if let Some(old) = old {
        let os = &old["spec"];
        immutable(
            &spec["selector"],
            Some(&os["selector"]),
            "spec.selector",
            errs,
        );
        immutable(
            &spec["completionMode"],
            Some(&os["completionMode"]),
            "spec.completionMode",
            errs,
        );
        if spec["completionMode"] != "Indexed" {
            immutable(
                &spec["completions"],
                Some(&os["completions"]),
                "spec.completions",
                errs,
            );
        }
        // A suspended job's template may still be adjusted before it starts.
        if os["suspend"].as_bool() != Some(true) {
            immutable(
                &spec["template"],
                Some(&os["template"]),
                "spec.template",
                errs,
            );
        }
    }
}

pub(crate) fn valid_cron(schedule: &str) -> Result<(), String> {
    if schedule.contains("TZ") {
        return Err("cannot use TZ or CRON_TZ in schedule, use timeZone field instead".into());
    }
    if let Some(rest) = schedule.strip_prefix('@') {
        return match rest {
            "yearly" | "annually" | "monthly" | "weekly" | "daily" | "midnight" | "hourly" => {
                Ok(())
            }
            r if r.starts_with("every ") => Ok(()),
            _ => Err(format!("unrecognized descriptor: {schedule}")),
        };
    }
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: {schedule}",
            fields.len()
        ));
    }
    let ok = fields.iter().all(|f| {
        f.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '*' | '/' | ',' | '-' | '?'))
    });
    if ok {
        Ok(())
    } else {
        Err(format!("failed to parse schedule: {schedule}"))
    }
}

pub(crate) fn cronjob(obj: &Value, errs: &mut Errs) {
    let spec = &obj["spec"];
    let name = s(&obj["metadata"]["name"]);
    if name.len() > 52 {
        errs.push(invalid(
            "metadata.name",
            &obj["metadata"]["name"],
            "must be no more than 52 characters",
        ));
    }
    match spec["schedule"].as_str() {
        None | Some("") => errs.push(required("spec.schedule", "")),
        Some(sch) => {
            if let Err(msg) = valid_cron(sch) {
                errs.push(invalid("spec.schedule", &spec["schedule"], &msg));
            }
        }
    }
    one_of(
        "spec.concurrencyPolicy",
        &spec["concurrencyPolicy"],
        &["Allow", "Forbid", "Replace"],
        errs,
    );
    for f in [
        "startingDeadlineSeconds",
        "successfulJobsHistoryLimit",
        "failedJobsHistoryLimit",
    ] {
        non_negative(&spec[f], &format!("spec.{f}"), errs);
    }
    let template = &spec["jobTemplate"]["spec"]["template"];
    validate_pod_template(template, "spec.jobTemplate.spec.template", errs);
    job_restart_policy(
        template,
        "spec.jobTemplate.spec.template.spec.restartPolicy",
        errs,
    );
}

pub(crate) fn is_ip(v: &str) -> bool {
    v.parse::<std::net::IpAddr>().is_ok()
}

pub(crate) fn service(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let spec = &obj["spec"];
    let ty = s(&spec["type"]);
    one_of(
        "spec.type",
        &spec["type"],
        &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        errs,
    );
    let cluster_ip = s(&spec["clusterIP"]);
    let headless = cluster_ip == "None";
    if ty == "ExternalName" {
        // No address of any family: what ClusterIP services held is dropped on the way here.
        for field in ["clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
            let set = match &spec[field] {
                Value::Array(a) => !a.is_empty(),
                Value::Null => false,
                _ => true,
            };
            if set {
                errs.push(forbidden(
                    &format!("spec.{field}"),
                    "may not be set for ExternalName services",
                ));
            }
        }
        let en = s(&spec["externalName"]).trim_end_matches('.');
        if en.is_empty() {
            errs.push(required("spec.externalName", ""));
        } else {
            for msg in names::dns1123_subdomain(en) {
                errs.push(invalid("spec.externalName", &spec["externalName"], &msg));
            }
        }
    } else if !cluster_ip.is_empty() && !headless && !is_ip(cluster_ip) {
        errs.push(invalid(
            "spec.clusterIPs[0]",
            &spec["clusterIP"],
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        ));
    }
    let ports = arr(&spec["ports"]);
    if ports.is_empty() && ty != "ExternalName" && !headless {
        errs.push(required("spec.ports", ""));
    }
    let mut names_seen: Vec<&str> = Vec::new();
    let mut port_protos: Vec<(i64, &str)> = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let path = format!("spec.ports[{i}]");
        let name = s(&p["name"]);
        if name.is_empty() {
            if ports.len() > 1 {
                errs.push(required(&format!("{path}.name"), ""));
            }
        } else {
            for msg in names::dns1123_label(name) {
                errs.push(invalid(&format!("{path}.name"), &p["name"], &msg));
            }
            if names_seen.contains(&name) {
                errs.push(duplicate(&format!("{path}.name"), &p["name"]));
            }
            names_seen.push(name);
        }
        let port = p["port"].as_i64().unwrap_or(0);
        if !(1..=65535).contains(&port) {
            errs.push(invalid(
                &format!("{path}.port"),
                &p["port"],
                port_num_error(),
            ));
        }
        validate_protocol(&p["protocol"], &format!("{path}.protocol"), errs);
        let proto = s(&p["protocol"]);
        if port_protos.contains(&(port, proto)) {
            errs.push(duplicate(&path, &json!({"port": port, "protocol": proto})));
        }
        port_protos.push((port, proto));
        match &p["targetPort"] {
            Value::Number(n) if !(1..=65535).contains(&n.as_i64().unwrap_or(0)) => {
                errs.push(invalid(
                    &format!("{path}.targetPort"),
                    &p["targetPort"],
                    port_num_error(),
                ));
            }
            Value::String(tp) => {
                for msg in names::port_name(tp) {
                    errs.push(invalid(
                        &format!("{path}.targetPort"),
                        &p["targetPort"],
                        &msg,
                    ));
                }
            }
            _ => {}
        }
        if let Some(np) = p["nodePort"].as_i64() {
            if np != 0 {
                if ty == "ClusterIP" || ty == "ExternalName" {
                    errs.push(forbidden(
                        &format!("{path}.nodePort"),
                        &format!("may not be used when `type` is '{ty}'"),
                    ));
                } else if !(1..=65535).contains(&np) {
                    errs.push(invalid(
                        &format!("{path}.nodePort"),
                        &p["nodePort"],
                        port_num_error(),
                    ));
                }
            }
        }
    }
    match s(&spec["sessionAffinity"]) {
        "None" | "ClientIP" | "" => {}
        _ => errs.push(not_supported(
            "spec.sessionAffinity",
            &spec["sessionAffinity"],
            &["ClientIP", "None"],
        )),
    }
    let etp = &spec["externalTrafficPolicy"];
    if !s(etp).is_empty() {
        if ty != "NodePort" && ty != "LoadBalancer" {
            errs.push(invalid(
                "spec.externalTrafficPolicy",
                etp,
                "may only be set when `type` is 'NodePort' or 'LoadBalancer'",
            ));
        } else if !matches!(s(etp), "Cluster" | "Local") {
            errs.push(not_supported(
                "spec.externalTrafficPolicy",
                etp,
                &["Cluster", "Local"],
            ));
        }
    }
    if !matches!(s(&spec["internalTrafficPolicy"]), "" | "Cluster" | "Local") {
        errs.push(not_supported(
            "spec.internalTrafficPolicy",
            &spec["internalTrafficPolicy"],
            &["Cluster", "Local"],
        ));
    }
    validate_labels(&spec["selector"], "spec.selector", errs);
    for (i, ip) in arr(&spec["externalIPs"]).iter().enumerate() {
        non_special_ip(ip, &format!("spec.externalIPs[{i}]"), errs);
    }
    // Upstream's field path keeps the Go field's capital L here.
    let ranges = arr(&spec["loadBalancerSourceRanges"]);
    if !ranges.is_empty() && ty != "LoadBalancer" {
        errs.push(forbidden(
            "spec.LoadBalancerSourceRanges",
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }
    for (i, r) in ranges.iter().enumerate() {
        // Space around a range is tolerated (a leftover of the annotation it came from).
        if !is_cidr(s(r).trim()) {
            errs.push(invalid(
                &format!("spec.LoadBalancerSourceRanges[{i}]"),
                r,
                "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
            ));
        }
    }
    if let Some(old) = old {
        let old_ip = s(&old["spec"]["clusterIP"]);
        let old_ty = s(&old["spec"]["type"]);
        if old_ty != "ExternalName"
            && ty != "ExternalName"
            && !old_ip.is_empty()
            && !cluster_ip.is_empty()
            && old_ip != cluster_ip
        {
            errs.push(invalid(
                "spec.clusterIPs[0]",
                &spec["clusterIP"],
                "may not change once set",
            ));
        }
    }
}

/// `a.b.c.d/n` or an IPv6 prefix.
fn is_cidr(text: &str) -> bool {
    let Some((ip, bits)) = text.split_once('/') else {
        return false;
    };
    let max = match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => 32,
        Ok(std::net::IpAddr::V6(_)) => 128,
        Err(_) => return false,
    };
    bits.parse::<u8>().is_ok_and(|b| b <= max) && !bits.starts_with('+')
}

/// An address a node may be asked to answer on: a valid IP, and none of the ranges that mean
/// "this host" or "this link" (upstream's ValidateNonSpecialIP, in its words).
fn non_special_ip(value: &Value, path: &str, errs: &mut Errs) {
    let Ok(ip) = s(value).parse::<std::net::IpAddr>() else {
        errs.push(invalid(
            path,
            value,
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        ));
        return;
    };
    let (link_local, link_local_multicast) = match ip {
        std::net::IpAddr::V4(v4) => (v4.is_link_local(), v4.octets()[..3] == [224, 0, 0]),
        std::net::IpAddr::V6(v6) => (
            v6.segments()[0] & 0xffc0 == 0xfe80,
            v6.segments()[0] & 0xff0f == 0xff02,
        ),
    };
    let msg = if ip.is_unspecified() {
        format!("may not be unspecified ({ip})")
    } else if ip.is_loopback() {
        "may not be in the loopback range (127.0.0.0/8, ::1/128)".into()
    } else if link_local {
        "may not be in the link-local range (169.254.0.0/16, fe80::/10)".into()
    } else if link_local_multicast {
        "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)".into()
    } else {
        return;
    };
    errs.push(invalid(path, value, &msg));
}

pub(crate) fn namespace(obj: &Value, errs: &mut Errs) {
    for (i, f) in arr(&obj["spec"]["finalizers"]).iter().enumerate() {
        for msg in names::qualified_name(s(f)) {
            errs.push(invalid(&format!("spec.finalizers[{i}]"), f, &msg));
        }
    }
}

pub(crate) const MAX_DATA_SIZE: usize = 1024 * 1024;

/// Keys of ConfigMap/Secret data (and binaryData), total size, and `immutable: true`.
pub(crate) fn data_keys(obj: &Value, old: Option<&Value>, secret: bool, errs: &mut Errs) {
    let mut total = 0;
    let maps: &[&str] = if secret {
        &["data", "stringData"]
    } else {
        &["data", "binaryData"]
    };
    for field in maps {
        if let Some(m) = obj[*field].as_object() {
            for (k, v) in m {
                for msg in names::config_key(k) {
                    errs.push(invalid(&format!("{field}[{k}]"), &json!(k), &msg));
                }
                total += v.as_str().map(str::len).unwrap_or(0);
            }
        }
    }
    if !secret {
        if let (Some(d), Some(b)) = (obj["data"].as_object(), obj["binaryData"].as_object()) {
            for k in d.keys().filter(|k| b.contains_key(*k)) {
                errs.push(invalid(
                    &format!("data[{k}]"),
                    &json!(k),
                    "duplicate of key present in binaryData",
                ));
            }
        }
    }
    if total > MAX_DATA_SIZE * 4 / 3 + 4 || (!secret && total > MAX_DATA_SIZE) {
        errs.push(too_long(if secret { "data" } else { "" }, MAX_DATA_SIZE));
    }
    let Some(old) = old else { return };
    if old["immutable"].as_bool() == Some(true) {
        if obj["immutable"].as_bool() != Some(true) {
            errs.push(forbidden(
                "immutable",
                "field is immutable when `immutable` is set",
            ));
        }
        for f in ["data", "binaryData"] {
            if obj[f] != old[f] {
                errs.push(forbidden(f, "field is immutable when `immutable` is set"));
            }
        }
    }
}

pub(crate) const ACCESS_MODES: &[&str] = &[
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];

pub(crate) fn access_modes(modes: &Value, path: &str, errs: &mut Errs) {
    let list = arr(modes);
    if list.is_empty() {
        errs.push(required(path, "at least 1 access mode is required"));
    }
    for m in list {
        if !ACCESS_MODES.contains(&s(m)) {
            errs.push(not_supported(path, m, ACCESS_MODES));
        }
    }
}

pub(crate) const PV_SOURCES: &[&str] = &[
    "hostPath",
    "local",
    "nfs",
    "csi",
    "iscsi",
    "fc",
    "rbd",
    "cephfs",
    "glusterfs",
    "cinder",
    "flexVolume",
    "azureFile",
    "azureDisk",
    "awsElasticBlockStore",
    "gcePersistentDisk",
    "vsphereVolume",
    "quobyte",
    "photonPersistentDisk",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "flocker",
];

pub(crate) fn limitrange(obj: &Value, errs: &mut Errs) {
    for (i, item) in arr(&obj["spec"]["limits"]).iter().enumerate() {
        one_of(
            &format!("spec.limits[{i}].type"),
            &item["type"],
            &["Container", "PersistentVolumeClaim", "Pod"],
            errs,
        );
    }
}

pub(crate) fn node(obj: &Value, errs: &mut Errs) {
    for (i, t) in arr(&obj["spec"]["taints"]).iter().enumerate() {
        let path = format!("spec.taints[{i}]");
        for msg in names::qualified_name(s(&t["key"])) {
            errs.push(invalid(&format!("{path}.key"), &t["key"], &msg));
        }
        one_of(
            &format!("{path}.effect"),
            &t["effect"],
            &["NoExecute", "NoSchedule", "PreferNoSchedule"],
            errs,
        );
    }
}

pub(crate) fn new_event(obj: &Value, errs: &mut Errs) {
    for f in [
        "eventTime",
        "reportingController",
        "reportingInstance",
        "action",
        "reason",
    ] {
        if s(&obj[f]).is_empty() {
            errs.push(required(f, ""));
        }
    }
    match s(&obj["type"]) {
        "Normal" | "Warning" => {}
        _ => errs.push(not_supported("type", &obj["type"], &["Normal", "Warning"])),
    }
    if s(&obj["note"]).len() > 1024 {
        errs.push(too_long("note", 1024));
    }
}

pub(crate) fn ingress_backend(b: &Value, path: &str, errs: &mut Errs) {
    let svc = &b["service"];
    match (svc.is_object(), b["resource"].is_object()) {
        (true, true) => errs.push(invalid(
            path,
            &json!(""),
            "cannot set both resource and service backends",
        )),
        (false, false) => errs.push(invalid(
            path,
            &json!(""),
            "resource or service backend is required",
        )),
        (true, false) => {
            let n = s(&svc["name"]);
            if n.is_empty() {
                errs.push(required(&format!("{path}.service.name"), ""));
            } else {
                for msg in names::dns1035_label(n) {
                    errs.push(invalid(&format!("{path}.service.name"), &svc["name"], &msg));
                }
            }
            let port = &svc["port"];
            let has_name = !s(&port["name"]).is_empty();
            let has_num = port["number"].as_i64().is_some_and(|n| n != 0);
            if has_name && has_num {
                errs.push(invalid(
                    &format!("{path}.service.port"),
                    port,
                    "cannot set both port name & port number",
                ));
            } else if !has_name && !has_num {
                errs.push(invalid(
                    &format!("{path}.service.port"),
                    port,
                    "port name or number is required",
                ));
            } else if has_num && !(1..=65535).contains(&port["number"].as_i64().unwrap_or(0)) {
                errs.push(invalid(
                    &format!("{path}.service.port.number"),
                    &port["number"],
                    port_num_error(),
                ));
            }
        }
        (false, true) => {}
    }
}

pub(crate) fn networkpolicy(obj: &Value, errs: &mut Errs) {
    let spec = &obj["spec"];
    label_selector(&spec["podSelector"], "spec.podSelector", errs);
    for (i, t) in arr(&spec["policyTypes"]).iter().enumerate() {
        if !matches!(s(t), "Ingress" | "Egress") {
            errs.push(not_supported(
                &format!("spec.policyTypes[{i}]"),
                t,
                &["Egress", "Ingress"],
            ));
        }
    }
    for dir in ["ingress", "egress"] {
        for (i, rule) in arr(&spec[dir]).iter().enumerate() {
            for (j, p) in arr(&rule["ports"]).iter().enumerate() {
                let path = format!("spec.{dir}[{i}].ports[{j}]");
                if !p["protocol"].is_null() {
                    validate_protocol(&p["protocol"], &format!("{path}.protocol"), errs);
                }
                if let Some(n) = p["port"].as_i64() {
                    if !(1..=65535).contains(&n) {
                        errs.push(invalid(
                            &format!("{path}.port"),
                            &p["port"],
                            port_num_error(),
                        ));
                    }
                }
            }
        }
    }
}

pub(crate) fn hpa(obj: &Value, errs: &mut Errs) {
    let spec = &obj["spec"];
    let r = &spec["scaleTargetRef"];
    if s(&r["kind"]).is_empty() {
        errs.push(required("spec.scaleTargetRef.kind", ""));
    }
    let name = s(&r["name"]);
    if name.is_empty() {
        errs.push(required("spec.scaleTargetRef.name", ""));
    } else {
        for msg in names::path_segment_name(name) {
            errs.push(invalid("spec.scaleTargetRef.name", &r["name"], &msg));
        }
    }
    let min = spec["minReplicas"].as_i64();
    let max = spec["maxReplicas"].as_i64().unwrap_or(0);
    if let Some(m) = min {
        if m < 1 {
            errs.push(invalid(
                "spec.minReplicas",
                &spec["minReplicas"],
                "must be greater than or equal to 1",
            ));
        }
    }
    if max < 1 {
        errs.push(invalid(
            "spec.maxReplicas",
            &spec["maxReplicas"],
            "must be greater than 0",
        ));
    }
    if let Some(m) = min {
        if max >= 1 && m > max {
            errs.push(invalid(
                "spec.minReplicas",
                &spec["minReplicas"],
                "must be less than or equal to maxReplicas",
            ));
        }
    }
    if let Some(t) = spec["targetCPUUtilizationPercentage"].as_i64() {
        if t < 1 {
            errs.push(invalid(
                "spec.targetCPUUtilizationPercentage",
                &spec["targetCPUUtilizationPercentage"],
                "must be greater than 0",
            ));
        }
    }
    for (i, m) in arr(&spec["metrics"]).iter().enumerate() {
        one_of(
            &format!("spec.metrics[{i}].type"),
            &m["type"],
            &[
                "ContainerResource",
                "External",
                "Object",
                "Pods",
                "Resource",
            ],
            errs,
        );
    }
}

pub(crate) fn rules(obj: &Value, namespaced: bool, errs: &mut Errs) {
    for (i, r) in arr(&obj["rules"]).iter().enumerate() {
        let path = format!("rules[{i}]");
        if arr(&r["verbs"]).is_empty() {
            errs.push(required(
                &format!("{path}.verbs"),
                "verbs must contain at least one value",
            ));
        }
        let urls = arr(&r["nonResourceURLs"]);
        if !urls.is_empty() {
            if namespaced {
                errs.push(invalid(
                    &format!("{path}.nonResourceURLs"),
                    &r["nonResourceURLs"],
                    "namespaced rules cannot apply to non-resource URLs",
                ));
            }
            if !arr(&r["apiGroups"]).is_empty() || !arr(&r["resources"]).is_empty() {
                errs.push(invalid(
                    &format!("{path}.nonResourceURLs"),
                    &r["nonResourceURLs"],
                    "rules cannot apply to both regular resources and non-resource URLs",
                ));
            }
            continue;
        }
        if arr(&r["apiGroups"]).is_empty() {
            errs.push(required(
                &format!("{path}.apiGroups"),
                "resource rules must supply at least one api group",
            ));
        }
        if arr(&r["resources"]).is_empty() {
            errs.push(required(
                &format!("{path}.resources"),
                "resource rules must supply at least one resource",
            ));
        }
    }
}

pub(crate) fn binding(obj: &Value, old: Option<&Value>, namespaced: bool, errs: &mut Errs) {
    let r = &obj["roleRef"];
    if s(&r["apiGroup"]) != "rbac.authorization.k8s.io" {
        errs.push(not_supported(
            "roleRef.apiGroup",
            &r["apiGroup"],
            &["rbac.authorization.k8s.io"],
        ));
    }
    let kinds: &[&str] = if namespaced {
        &["ClusterRole", "Role"]
    } else {
        &["ClusterRole"]
    };
    if !kinds.contains(&s(&r["kind"])) {
        errs.push(not_supported("roleRef.kind", &r["kind"], kinds));
    }
    let name = s(&r["name"]);
    if name.is_empty() {
        errs.push(required("roleRef.name", ""));
    } else {
        for msg in names::path_segment_name(name) {
            errs.push(invalid("roleRef.name", &r["name"], &msg));
        }
    }
    for (i, sub) in arr(&obj["subjects"]).iter().enumerate() {
        let path = format!("subjects[{i}]");
        if s(&sub["name"]).is_empty() {
            errs.push(required(&format!("{path}.name"), ""));
        }
        match s(&sub["kind"]) {
            "ServiceAccount" => {
                if !s(&sub["apiGroup"]).is_empty() {
                    errs.push(not_supported(
                        &format!("{path}.apiGroup"),
                        &sub["apiGroup"],
                        &[""],
                    ));
                }
                if !namespaced && s(&sub["namespace"]).is_empty() {
                    errs.push(required(&format!("{path}.namespace"), ""));
                }
            }
            "User" | "Group" => {
                if s(&sub["apiGroup"]) != "rbac.authorization.k8s.io" {
                    errs.push(not_supported(
                        &format!("{path}.apiGroup"),
                        &sub["apiGroup"],
                        &["rbac.authorization.k8s.io"],
                    ));
                }
            }
            _ => errs.push(not_supported(
                &format!("{path}.kind"),
                &sub["kind"],
                &["ServiceAccount", "User", "Group"],
            )),
        }
    }
    if let Some(old) = old {
        if r != &old["roleRef"] {
            errs.push(invalid("roleRef", r, "cannot change roleRef"));
        }
    }
}

pub(crate) const HIGHEST_USER_PRIORITY: i64 = 1_000_000_000;

#[cfg(test)]
mod tests {
    use crate::apiserver::defaults::apply_defaults;
    use crate::apiserver::validation::{validate, FieldError};
    use serde_json::{json, Value};

    fn check(group: &str, kind: &str, mut obj: Value, old: Option<Value>) -> Vec<FieldError> {
        apply_defaults(group, kind, &mut obj);
        let old = old.map(|mut o| {
            apply_defaults(group, kind, &mut o);
            o
        });
        validate(group, kind, &obj, old.as_ref())
    }

    fn fields(errs: &[FieldError]) -> Vec<String> {
        errs.iter()
            .map(|e| format!("{} {}", e.reason, e.field))
            .collect()
    }

    fn deploy(selector: Value, labels: Value) -> Value {
        json!({"metadata": {"name": "web"}, "spec": {"selector": selector, "template": {
            "metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}})
    }

    #[test]
    fn deployment_selector_rules() {
        let ok = deploy(
            json!({"matchLabels": {"app": "web"}}),
            json!({"app": "web", "x": "y"}),
        );
        assert_eq!(check("apps", "Deployment", ok.clone(), None), vec![]);
        let mismatch = deploy(
            json!({"matchLabels": {"app": "web"}}),
            json!({"app": "api"}),
        );
        let errs = check("apps", "Deployment", mismatch, None);
        assert_eq!(
            fields(&errs),
            ["FieldValueInvalid spec.template.metadata.labels"]
        );
        assert_eq!(
            errs[0].message,
            "Invalid value: map[string]string{\"app\":\"api\"}: `selector` does not match template `labels`"
        );
        let mut none = deploy(json!(null), json!({"app": "web"}));
        none["spec"].as_object_mut().unwrap().remove("selector");
        assert_eq!(
            fields(&check("apps", "Deployment", none, None)),
            ["FieldValueRequired spec.selector"]
        );
        let mut neg = ok.clone();
        neg["spec"]["replicas"] = json!(-1);
        let errs = check("apps", "Deployment", neg, None);
        assert_eq!(
            errs[0].full(),
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0"
        );
        let mut changed = ok.clone();
        changed["spec"]["selector"] = json!({"matchLabels": {"app": "web", "x": "y"}});
        let errs = check("apps", "Deployment", changed, Some(ok));
        assert_eq!(fields(&errs), ["FieldValueInvalid spec.selector"]);
        assert!(errs[0].message.ends_with("field is immutable"));
    }

    #[test]
    fn deployment_restart_policy_and_strategy() {
        let mut d = deploy(json!({"matchLabels": {"a": "b"}}), json!({"a": "b"}));
        d["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
        d["spec"]["strategy"] =
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}});
        let errs = check("apps", "Deployment", d, None);
        assert_eq!(
            fields(&errs),
            [
                "FieldValueNotSupported spec.template.spec.restartPolicy",
                "FieldValueInvalid spec.strategy.rollingUpdate.maxUnavailable"
            ]
        );
        assert_eq!(
            errs[0].message,
            "Unsupported value: \"Never\": supported values: \"Always\""
        );
    }

    #[test]
    fn job_and_cronjob() {
        let job = json!({"metadata": {"name": "pi", "uid": "u1"}, "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "perl"}]}}}});
        let errs = check("batch", "Job", job.clone(), None);
        assert_eq!(
            fields(&errs),
            ["FieldValueNotSupported spec.template.spec.restartPolicy"]
        );
        let mut ok = job.clone();
        ok["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
        assert_eq!(check("batch", "Job", ok.clone(), None), vec![]);
        let mut changed = ok.clone();
        changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("perl:2");
        assert_eq!(
            fields(&check("batch", "Job", changed, Some(ok))),
            ["FieldValueInvalid spec.template"]
        );
        let cj = json!({"metadata": {"name": "c"}, "spec": {"schedule": "* * *", "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "x"}]}}}}}});
        let errs = check("batch", "CronJob", cj, None);
        assert_eq!(
            errs[0].full(),
            "spec.schedule: Invalid value: \"* * *\": expected exactly 5 fields, found 3: * * *"
        );
    }

    #[test]
    fn service_rules() {
        let svc = |spec: Value| json!({"metadata": {"name": "web"}, "spec": spec});
        assert_eq!(
            check(
                "",
                "Service",
                svc(json!({"ports": [{"port": 80}], "selector": {"app": "web"}})),
                None
            ),
            vec![]
        );
        assert_eq!(
            fields(&check("", "Service", svc(json!({})), None)),
            ["FieldValueRequired spec.ports"]
        );
        assert_eq!(
            check("", "Service", svc(json!({"clusterIP": "None"})), None),
            vec![]
        );
        assert_eq!(
            check(
                "",
                "Service",
                svc(json!({"type": "ExternalName", "externalName": "db.example.com"})),
                None
            ),
            vec![]
        );
        let with_ip = svc(
            json!({"type": "ExternalName", "externalName": "db.example.com",
            "clusterIP": "10.43.0.5", "clusterIPs": ["10.43.0.5"]}),
        );
        assert_eq!(
            check("", "Service", with_ip, None)[0].full(),
            "spec.clusterIPs: Forbidden: may not be set for ExternalName services"
        );
        let errs = check(
            "",
            "Service",
            svc(
                json!({"type": "Weird", "ports": [{"port": 0, "name": "a"}, {"port": 81, "name": "a"}, {"port": 82}]}),
            ),
            None,
        );
        assert_eq!(
            fields(&errs),
            [
                "FieldValueNotSupported spec.type",
                "FieldValueInvalid spec.ports[0].port",
                "FieldValueInvalid spec.ports[0].targetPort",
                "FieldValueDuplicate spec.ports[1].name",
                "FieldValueRequired spec.ports[2].name"
            ]
        );
        assert_eq!(
            errs[0].message,
            "Unsupported value: \"Weird\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""
        );
        let old = svc(json!({"clusterIP": "10.43.0.5", "ports": [{"port": 80}]}));
        let new = svc(json!({"clusterIP": "10.43.0.6", "ports": [{"port": 80}]}));
        assert_eq!(
            fields(&check("", "Service", new, Some(old.clone()))),
            ["FieldValueInvalid spec.clusterIPs[0]"]
        );
        let omitted = svc(json!({"ports": [{"port": 8080}]}));
        assert_eq!(check("", "Service", omitted, Some(old)), vec![]);
    }

    #[test]
    fn configmap_secret_keys_and_immutability() {
        let cm = json!({"metadata": {"name": "c"}, "data": {"ok.key": "1", "bad/key": "2"}});
        let errs = check("", "ConfigMap", cm, None);
        assert_eq!(fields(&errs), ["FieldValueInvalid data[bad/key]"]);
        assert!(errs[0]
            .message
            .contains("a valid config key must consist of alphanumeric characters"));
        let old = json!({"metadata": {"name": "c"}, "immutable": true, "data": {"a": "1"}});
        let new = json!({"metadata": {"name": "c"}, "immutable": true, "data": {"a": "2"}});
        let errs = check("", "ConfigMap", new, Some(old));
        assert_eq!(
            errs[0].full(),
            "data: Forbidden: field is immutable when `immutable` is set"
        );
        let tls = json!({"metadata": {"name": "s"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "eA=="}});
        assert_eq!(
            fields(&check("", "Secret", tls, None)),
            ["FieldValueRequired data[tls.key]"]
        );
        let old = json!({"metadata": {"name": "s"}});
        let new = json!({"metadata": {"name": "s"}, "type": "kubernetes.io/basic-auth", "data": {"username": "dQ=="}});
        assert_eq!(
            fields(&check("", "Secret", new, Some(old))),
            ["FieldValueInvalid type"]
        );
    }

    #[test]
    fn pvc_and_rbac_and_misc() {
        let pvc = json!({"metadata": {"name": "d"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
        assert_eq!(
            check("", "PersistentVolumeClaim", pvc.clone(), None),
            vec![]
        );
        let mut bigger = pvc.clone();
        bigger["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
        bigger["spec"]["volumeName"] = json!("pv-1");
        assert_eq!(
            check("", "PersistentVolumeClaim", bigger, Some(pvc.clone())),
            vec![]
        );
        let mut other = pvc.clone();
        other["spec"]["accessModes"] = json!(["ReadWriteMany"]);
        assert_eq!(
            fields(&check("", "PersistentVolumeClaim", other, Some(pvc))),
            ["FieldValueForbidden spec"]
        );
        let rb = json!({"metadata": {"name": "rb"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
                        "subjects": [{"kind": "User", "name": "jane"}, {"kind": "Robot", "name": "x"}]});
        assert_eq!(
            fields(&check(
                "rbac.authorization.k8s.io",
                "RoleBinding",
                rb.clone(),
                None
            )),
            ["FieldValueNotSupported subjects[1].kind"]
        );
        let mut rb2 = rb.clone();
        rb2["roleRef"]["name"] = json!("other");
        rb2["subjects"] = json!([]);
        let errs = check("rbac.authorization.k8s.io", "RoleBinding", rb2, Some(rb));
        assert_eq!(fields(&errs), ["FieldValueInvalid roleRef"]);
        let role =
            json!({"metadata": {"name": "r"}, "rules": [{"resources": ["pods"], "verbs": []}]});
        assert_eq!(
            fields(&check("rbac.authorization.k8s.io", "Role", role, None)),
            [
                "FieldValueRequired rules[0].verbs",
                "FieldValueRequired rules[0].apiGroups"
            ]
        );
        let hpa = json!({"metadata": {"name": "h"}, "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 5, "maxReplicas": 2}});
        assert_eq!(
            fields(&check("autoscaling", "HorizontalPodAutoscaler", hpa, None)),
            ["FieldValueInvalid spec.minReplicas"]
        );
        let sc = json!({"metadata": {"name": "local"}, "provisioner": "x"});
        let mut sc2 = sc.clone();
        sc2["provisioner"] = json!("y");
        assert_eq!(
            fields(&check("storage.k8s.io", "StorageClass", sc2, Some(sc))),
            ["FieldValueForbidden provisioner"]
        );
        let ing = json!({"metadata": {"name": "i"}, "spec": {"rules": [{"host": "*.example.com", "http": {"paths": [
            {"path": "/", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}});
        assert_eq!(
            fields(&check("networking.k8s.io", "Ingress", ing, None)),
            ["FieldValueRequired spec.rules[0].http.paths[0].pathType"]
        );
    }
}
