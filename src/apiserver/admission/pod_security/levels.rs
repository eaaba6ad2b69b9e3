//! The Pod Security Standards' checks (baseline and restricted, version "latest"), on a pod's
//! metadata and spec as JSON. Each check gives a reason and a detail worded as upstream's
//! pod-security-admission, and the checks run in the order of upstream's check IDs, so a
//! message lists its violations in the same order as kube-apiserver's.

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    pub fn parse(s: &str) -> Option<Level> {
        match s {
            "privileged" => Some(Level::Privileged),
            "baseline" => Some(Level::Baseline),
            "restricted" => Some(Level::Restricted),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

/// One failed check: upstream's ForbiddenReason and ForbiddenDetail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub reason: &'static str,
    pub detail: String,
}

/// The violations of `level` by a pod (metadata and spec), in upstream's order.
pub fn evaluate(level: Level, meta: &Value, spec: &Value) -> Vec<Violation> {
    if level == Level::Privileged {
        return Vec::new();
    }
    let restricted = level == Level::Restricted;
    let p = Pod { meta, spec };
    // Sorted by upstream's check ID; the restricted variants replace their baseline ones.
    let mut out = Vec::new();
    let mut run = |v: Option<Violation>| out.extend(v);
    if restricted {
        run(allow_privilege_escalation(&p));
    }
    run(app_armor(&p));
    if restricted {
        run(capabilities_restricted(&p));
    } else {
        run(capabilities_baseline(&p));
    }
    run(host_namespaces(&p));
    if !restricted {
        run(host_path_volumes(&p));
    }
    run(host_ports(&p));
    run(host_process(&p));
    run(privileged(&p));
    run(proc_mount(&p));
    if restricted {
        run(restricted_volumes(&p));
        run(run_as_non_root(&p));
        run(run_as_user(&p));
    }
    run(se_linux_options(&p));
    if restricted {
        run(seccomp_restricted(&p));
    } else {
        run(seccomp_baseline(&p));
    }
    run(sysctls(&p));
    out
}

struct Pod<'a> {
    meta: &'a Value,
    spec: &'a Value,
}

impl<'a> Pod<'a> {
    /// Every container: init, regular, ephemeral.
    fn containers(&self) -> impl Iterator<Item = &'a Value> {
        ["initContainers", "containers", "ephemeralContainers"]
            .into_iter()
            .flat_map(|k| self.spec[k].as_array().into_iter().flatten())
    }

    fn psc(&self) -> &Value {
        &self.spec["securityContext"]
    }

    /// Names of the containers for which `bad` holds.
    fn names(&self, bad: impl Fn(&Value) -> bool) -> Vec<String> {
        self.containers()
            .filter(|c| bad(c))
            .map(|c| c["name"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

/// `container "a"` or `containers "a", "b"`.
fn containers_phrase(names: &[String]) -> String {
    let quoted = quote_all(names);
    if names.len() == 1 {
        format!("container {quoted}")
    } else {
        format!("containers {quoted}")
    }
}

fn quote_all(items: &[String]) -> String {
    items
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// singular or plural by count.
fn pl<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 {
        one
    } else {
        many
    }
}

fn violation(reason: &'static str, detail: String) -> Option<Violation> {
    Some(Violation { reason, detail })
}

fn allow_privilege_escalation(p: &Pod) -> Option<Violation> {
    let bad = p.names(|c| c["securityContext"]["allowPrivilegeEscalation"] != false);
    if bad.is_empty() {
        return None;
    }
    violation(
        "allowPrivilegeEscalation != false",
        format!(
            "{} must set securityContext.allowPrivilegeEscalation=false",
            containers_phrase(&bad)
        ),
    )
}

fn app_armor(p: &Pod) -> Option<Violation> {
    let allowed = |t: &Value| t.is_null() || t == "RuntimeDefault" || t == "Localhost";
    let mut bad = Vec::new();
    if let Some(annotations) = p.meta["annotations"].as_object() {
        for (k, v) in annotations {
            let Some(_) = k.strip_prefix("container.apparmor.security.beta.kubernetes.io/") else {
                continue;
            };
            let s = v.as_str().unwrap_or_default();
            if s != "runtime/default" && !s.starts_with("localhost/") {
                bad.push(format!("{k}={s:?}"));
            }
        }
    }
    let pod_type = &p.psc()["appArmorProfile"]["type"];
    if !allowed(pod_type) {
        bad.push(format!(
            "pod must not set appArmorProfile.type to {pod_type}"
        ));
    }
    for c in p.containers() {
        let t = &c["securityContext"]["appArmorProfile"]["type"];
        if !allowed(t) {
            bad.push(format!(
                "container {:?} must not set appArmorProfile.type to {t}",
                c["name"].as_str().unwrap_or_default()
            ));
        }
    }
    if bad.is_empty() {
        return None;
    }
    let reason = if bad.len() == 1 {
        "forbidden AppArmor profile"
    } else {
        "forbidden AppArmor profiles"
    };
    violation(reason, bad.join(", "))
}

/// The capabilities a baseline container may add (the container runtimes' defaults).
const BASELINE_CAPS: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

fn added_caps(c: &Value) -> Vec<String> {
    c["securityContext"]["capabilities"]["add"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(String::from))
        .collect()
}

/// Containers adding capabilities outside `allowed`, and the capabilities they add.
fn forbidden_adds(p: &Pod, allowed: &[&str]) -> Option<String> {
    let mut names = Vec::new();
    let mut caps: Vec<String> = Vec::new();
    for c in p.containers() {
        let extra: Vec<String> = added_caps(c)
            .into_iter()
            .filter(|a| !allowed.contains(&a.as_str()))
            .collect();
        if extra.is_empty() {
            continue;
        }
        names.push(c["name"].as_str().unwrap_or_default().to_string());
        for e in extra {
            if !caps.contains(&e) {
                caps.push(e);
            }
        }
    }
    if names.is_empty() {
        return None;
    }
    Some(format!(
        "{} must not include {} in securityContext.capabilities.add",
        containers_phrase(&names),
        quote_all(&caps)
    ))
}

fn capabilities_baseline(p: &Pod) -> Option<Violation> {
    violation(
        "non-default capabilities",
        forbidden_adds(p, BASELINE_CAPS)?,
    )
}

fn capabilities_restricted(p: &Pod) -> Option<Violation> {
    let no_drop_all = p.names(|c| {
        !c["securityContext"]["capabilities"]["drop"]
            .as_array()
            .is_some_and(|d| d.iter().any(|x| x == "ALL"))
    });
    let mut parts = Vec::new();
    if !no_drop_all.is_empty() {
        parts.push(format!(
            "{} must set securityContext.capabilities.drop=[\"ALL\"]",
            containers_phrase(&no_drop_all)
        ));
    }
    parts.extend(forbidden_adds(p, &["NET_BIND_SERVICE"]));
    if parts.is_empty() {
        return None;
    }
    violation("unrestricted capabilities", parts.join("; "))
}

fn host_namespaces(p: &Pod) -> Option<Violation> {
    let set: Vec<String> = ["hostNetwork", "hostPID", "hostIPC"]
        .into_iter()
        .filter(|k| p.spec[*k] == true)
        .map(|k| format!("{k}=true"))
        .collect();
    if set.is_empty() {
        return None;
    }
    violation("host namespaces", set.join(", "))
}

fn volumes<'a>(p: &Pod<'a>) -> impl Iterator<Item = &'a Value> {
    p.spec["volumes"].as_array().into_iter().flatten()
}

fn host_path_volumes(p: &Pod) -> Option<Violation> {
    let names: Vec<String> = volumes(p)
        .filter(|v| v.get("hostPath").is_some_and(|h| !h.is_null()))
        .map(|v| v["name"].as_str().unwrap_or_default().to_string())
        .collect();
    if names.is_empty() {
        return None;
    }
    violation(
        "hostPath volumes",
        format!(
            "{} {}",
            pl(names.len(), "volume", "volumes"),
            quote_all(&names)
        ),
    )
}

fn host_ports(p: &Pod) -> Option<Violation> {
    let mut names = Vec::new();
    let mut ports: Vec<String> = Vec::new();
    for c in p.containers() {
        let used: Vec<String> = c["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|port| port["hostPort"].as_i64().filter(|h| *h != 0))
            .map(|h| h.to_string())
            .collect();
        if used.is_empty() {
            continue;
        }
        names.push(c["name"].as_str().unwrap_or_default().to_string());
        for u in used {
            if !ports.contains(&u) {
                ports.push(u);
            }
        }
    }
    if names.is_empty() {
        return None;
    }
    violation(
        "hostPort",
        format!(
            "{} {} {} {}",
            containers_phrase(&names),
            pl(names.len(), "uses", "use"),
            pl(ports.len(), "hostPort", "hostPorts"),
            ports.join(", ")
        ),
    )
}

fn host_process(p: &Pod) -> Option<Violation> {
    let pod = p.psc()["windowsOptions"]["hostProcess"] == true;
    let names = p.names(|c| c["securityContext"]["windowsOptions"]["hostProcess"] == true);
    let who = match (pod, names.is_empty()) {
        (false, true) => return None,
        (true, true) => "pod".to_string(),
        (true, false) => format!("pod and {}", containers_phrase(&names)),
        (false, false) => containers_phrase(&names),
    };
    violation(
        "hostProcess",
        format!("{who} must not set securityContext.windowsOptions.hostProcess=true"),
    )
}

fn privileged(p: &Pod) -> Option<Violation> {
    let names = p.names(|c| c["securityContext"]["privileged"] == true);
    if names.is_empty() {
        return None;
    }
    violation(
        "privileged",
        format!(
            "{} must not set securityContext.privileged=true",
            containers_phrase(&names)
        ),
    )
}

fn proc_mount(p: &Pod) -> Option<Violation> {
    let names = p.names(|c| {
        let m = &c["securityContext"]["procMount"];
        !m.is_null() && m != "Default"
    });
    if names.is_empty() {
        return None;
    }
    violation(
        "procMount",
        format!(
            "{} must not set securityContext.procMount to \"Unmasked\"",
            containers_phrase(&names)
        ),
    )
}

/// The volume sources a restricted pod may use.
const RESTRICTED_VOLUMES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

fn restricted_volumes(p: &Pod) -> Option<Violation> {
    let mut names = Vec::new();
    let mut kinds: Vec<String> = Vec::new();
    for v in volumes(p) {
        let Some(obj) = v.as_object() else { continue };
        let bad: Vec<&String> = obj
            .iter()
            .filter(|(k, val)| {
                k.as_str() != "name" && !val.is_null() && !RESTRICTED_VOLUMES.contains(&k.as_str())
            })
            .map(|(k, _)| k)
            .collect();
        if bad.is_empty() {
            continue;
        }
        names.push(v["name"].as_str().unwrap_or_default().to_string());
        for b in bad {
            if !kinds.contains(b) {
                kinds.push(b.clone());
            }
        }
    }
    if names.is_empty() {
        return None;
    }
    violation(
        "restricted volume types",
        format!(
            "{} {} {} {}",
            pl(names.len(), "volume", "volumes"),
            quote_all(&names),
            pl(
                names.len(),
                "uses restricted volume type",
                "use restricted volume types"
            ),
            quote_all(&kinds)
        ),
    )
}

fn run_as_non_root(p: &Pod) -> Option<Violation> {
    let pod = &p.psc()["runAsNonRoot"];
    let mut parts = Vec::new();
    if pod == false {
        parts.push("pod must not set securityContext.runAsNonRoot=false".to_string());
    }
    let explicit_false = p.names(|c| c["securityContext"]["runAsNonRoot"] == false);
    if !explicit_false.is_empty() {
        parts.push(format!(
            "{} must not set securityContext.runAsNonRoot=false",
            containers_phrase(&explicit_false)
        ));
    }
    // Containers that inherit an unset pod value.
    if pod.is_null() {
        let unset = p.names(|c| c["securityContext"]["runAsNonRoot"].is_null());
        if !unset.is_empty() {
            parts.push(format!(
                "pod or {} must set securityContext.runAsNonRoot=true",
                containers_phrase(&unset)
            ));
        }
    }
    if parts.is_empty() {
        return None;
    }
    violation("runAsNonRoot != true", parts.join("; "))
}

fn run_as_user(p: &Pod) -> Option<Violation> {
    let mut who = Vec::new();
    if p.psc()["runAsUser"] == 0 {
        who.push("pod".to_string());
    }
    let names = p.names(|c| c["securityContext"]["runAsUser"] == 0);
    if !names.is_empty() {
        who.push(containers_phrase(&names));
    }
    if who.is_empty() {
        return None;
    }
    violation(
        "runAsUser=0",
        format!("{} must not set runAsUser=0", who.join(" and ")),
    )
}

fn se_linux_options(p: &Pod) -> Option<Violation> {
    const TYPES: &[&str] = &[
        "",
        "container_t",
        "container_init_t",
        "container_kvm_t",
        "container_engine_t",
    ];
    let mut who = Vec::new();
    let mut bad: Vec<String> = Vec::new();
    let mut check = |opts: &Value| -> bool {
        let mut found = false;
        let t = opts["type"].as_str().unwrap_or_default();
        if !TYPES.contains(&t) {
            bad.push(format!("type {t:?}"));
            found = true;
        }
        for k in ["user", "role"] {
            if let Some(s) = opts[k].as_str().filter(|s| !s.is_empty()) {
                bad.push(format!("{k} {s:?}"));
                found = true;
            }
        }
        found
    };
    if check(&p.psc()["seLinuxOptions"]) {
        who.push("pod".to_string());
    }
    let mut names = Vec::new();
    for c in p.containers() {
        if check(&c["securityContext"]["seLinuxOptions"]) {
            names.push(c["name"].as_str().unwrap_or_default().to_string());
        }
    }
    if !names.is_empty() {
        who.push(containers_phrase(&names));
    }
    if who.is_empty() {
        return None;
    }
    bad.dedup();
    violation(
        "seLinuxOptions",
        format!(
            "{} set forbidden securityContext.seLinuxOptions: {}",
            who.join(" and "),
            bad.join("; ")
        ),
    )
}

fn seccomp_baseline(p: &Pod) -> Option<Violation> {
    let mut parts = Vec::new();
    if p.psc()["seccompProfile"]["type"] == "Unconfined" {
        parts.push("pod".to_string());
    }
    let names = p.names(|c| c["securityContext"]["seccompProfile"]["type"] == "Unconfined");
    if !names.is_empty() {
        parts.push(containers_phrase(&names));
    }
    if parts.is_empty() {
        return None;
    }
    violation(
        "seccompProfile",
        format!(
            "{} must not set securityContext.seccompProfile.type to \"Unconfined\"",
            parts.join(" and ")
        ),
    )
}

fn seccomp_restricted(p: &Pod) -> Option<Violation> {
    let ok = |t: &Value| t == "RuntimeDefault" || t == "Localhost";
    let pod_type = &p.psc()["seccompProfile"]["type"];
    let mut parts = Vec::new();
    if !pod_type.is_null() && !ok(pod_type) {
        parts.push(format!(
            "pod must not set securityContext.seccompProfile.type to {pod_type}"
        ));
    }
    let explicit = p.names(|c| {
        let t = &c["securityContext"]["seccompProfile"]["type"];
        !t.is_null() && !ok(t)
    });
    if !explicit.is_empty() {
        parts.push(format!(
            "{} must not set securityContext.seccompProfile.type to \"Unconfined\"",
            containers_phrase(&explicit)
        ));
    }
    if pod_type.is_null() {
        let unset = p.names(|c| c["securityContext"]["seccompProfile"]["type"].is_null());
        if !unset.is_empty() {
            parts.push(format!(
                "pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
                containers_phrase(&unset)
            ));
        }
    }
    if parts.is_empty() {
        return None;
    }
    violation("seccompProfile", parts.join("; "))
}

/// The namespaced sysctls every pod may set.
const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
];

fn sysctls(p: &Pod) -> Option<Violation> {
    let bad: Vec<String> = p.psc()["sysctls"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["name"].as_str())
        .filter(|n| !SAFE_SYSCTLS.contains(n))
        .map(String::from)
        .collect();
    if bad.is_empty() {
        return None;
    }
    violation("forbidden sysctls", bad.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn restricted_ok() -> Value {
        json!({
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "c", "image": "i", "securityContext": {
                "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]
        })
    }

    fn reasons(level: Level, spec: &Value) -> Vec<&'static str> {
        evaluate(level, &json!({}), spec)
            .into_iter()
            .map(|v| v.reason)
            .collect()
    }

    /// `spec` with container c's securityContext field `k` set to `v`.
    fn with_container(k: &str, v: Value) -> Value {
        let mut s = restricted_ok();
        s["containers"][0]["securityContext"][k] = v;
        s
    }

    #[test]
    fn good_pods_pass() {
        assert!(reasons(Level::Restricted, &restricted_ok()).is_empty());
        let plain = json!({"containers": [{"name": "c"}]});
        assert!(reasons(Level::Baseline, &plain).is_empty());
        assert!(reasons(
            Level::Privileged,
            &with_container("privileged", json!(true))
        )
        .is_empty());
    }

    #[test]
    fn plain_pod_fails_restricted_in_upstream_order_and_words() {
        let plain = json!({"containers": [{"name": "c"}]});
        let v = evaluate(Level::Restricted, &json!({}), &plain);
        let text: Vec<String> = v
            .iter()
            .map(|v| format!("{} ({})", v.reason, v.detail))
            .collect();
        assert_eq!(
            text.join(", "),
            "allowPrivilegeEscalation != false (container \"c\" must set securityContext.allowPrivilegeEscalation=false), \
unrestricted capabilities (container \"c\" must set securityContext.capabilities.drop=[\"ALL\"]), \
runAsNonRoot != true (pod or container \"c\" must set securityContext.runAsNonRoot=true), \
seccompProfile (pod or container \"c\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"
        );
    }

    #[test]
    fn privileged_fails_baseline() {
        let s = with_container("privileged", json!(true));
        assert_eq!(reasons(Level::Baseline, &s), ["privileged"]);
    }

    #[test]
    fn host_process_fails_baseline() {
        let s = with_container("windowsOptions", json!({"hostProcess": true}));
        assert_eq!(reasons(Level::Baseline, &s), ["hostProcess"]);
    }

    #[test]
    fn host_namespaces_fail_baseline() {
        let mut s = restricted_ok();
        s["hostNetwork"] = json!(true);
        s["hostPID"] = json!(true);
        let v = evaluate(Level::Baseline, &json!({}), &s);
        assert_eq!(v[0].reason, "host namespaces");
        assert_eq!(v[0].detail, "hostNetwork=true, hostPID=true");
    }

    #[test]
    fn capabilities_beyond_baseline_fail() {
        let ok = with_container("capabilities", json!({"add": ["CHOWN"]}));
        assert!(reasons(Level::Baseline, &ok).is_empty());
        let bad = with_container("capabilities", json!({"add": ["NET_ADMIN"]}));
        let v = evaluate(Level::Baseline, &json!({}), &bad);
        assert_eq!(v[0].reason, "non-default capabilities");
        assert_eq!(
            v[0].detail,
            "container \"c\" must not include \"NET_ADMIN\" in securityContext.capabilities.add"
        );
    }

    #[test]
    fn host_path_fails_baseline_and_restricted_volume_types() {
        let mut s = restricted_ok();
        s["volumes"] = json!([{"name": "h", "hostPath": {"path": "/"}}]);
        let v = evaluate(Level::Baseline, &json!({}), &s);
        assert_eq!(
            (v[0].reason, v[0].detail.as_str()),
            ("hostPath volumes", "volume \"h\"")
        );
        let v = evaluate(Level::Restricted, &json!({}), &s);
        assert_eq!(v[0].reason, "restricted volume types");
        assert_eq!(
            v[0].detail,
            "volume \"h\" uses restricted volume type \"hostPath\""
        );
        s["volumes"] = json!([{"name": "e", "emptyDir": {}}]);
        assert!(reasons(Level::Restricted, &s).is_empty());
    }

    #[test]
    fn host_ports_fail_baseline() {
        let mut s = restricted_ok();
        s["containers"][0]["ports"] = json!([{"containerPort": 80, "hostPort": 8080}]);
        let v = evaluate(Level::Baseline, &json!({}), &s);
        assert_eq!(v[0].detail, "container \"c\" uses hostPort 8080");
    }

    #[test]
    fn app_armor_unconfined_fails_baseline() {
        let s = with_container("appArmorProfile", json!({"type": "Unconfined"}));
        assert_eq!(reasons(Level::Baseline, &s), ["forbidden AppArmor profile"]);
        let meta = json!({"annotations": {"container.apparmor.security.beta.kubernetes.io/c": "runtime/default"}});
        assert!(evaluate(Level::Baseline, &meta, &restricted_ok()).is_empty());
    }

    #[test]
    fn se_linux_fails_baseline() {
        let ok = with_container("seLinuxOptions", json!({"level": "s0:c1"}));
        assert!(reasons(Level::Baseline, &ok).is_empty());
        let bad = with_container("seLinuxOptions", json!({"type": "spc_t"}));
        assert_eq!(reasons(Level::Baseline, &bad), ["seLinuxOptions"]);
    }

    #[test]
    fn unmasked_proc_mount_fails_baseline() {
        let s = with_container("procMount", json!("Unmasked"));
        assert_eq!(reasons(Level::Baseline, &s), ["procMount"]);
    }

    #[test]
    fn seccomp_unconfined_fails_baseline() {
        let mut s = restricted_ok();
        s["securityContext"]["seccompProfile"]["type"] = json!("Unconfined");
        assert_eq!(reasons(Level::Baseline, &s), ["seccompProfile"]);
        s["securityContext"]["seccompProfile"]["type"] = json!("Localhost");
        assert!(reasons(Level::Restricted, &s).is_empty());
    }

    #[test]
    fn unsafe_sysctls_fail_baseline() {
        let mut s = restricted_ok();
        s["securityContext"]["sysctls"] =
            json!([{"name": "net.ipv4.tcp_syncookies", "value": "1"}]);
        assert!(reasons(Level::Baseline, &s).is_empty());
        s["securityContext"]["sysctls"] = json!([{"name": "kernel.msgmax", "value": "1"}]);
        assert_eq!(reasons(Level::Baseline, &s), ["forbidden sysctls"]);
    }

    #[test]
    fn privilege_escalation_fails_restricted() {
        let s = with_container("allowPrivilegeEscalation", json!(true));
        assert_eq!(
            reasons(Level::Restricted, &s),
            ["allowPrivilegeEscalation != false"]
        );
        assert!(reasons(Level::Baseline, &s).is_empty());
    }

    #[test]
    fn run_as_root_fails_restricted() {
        let mut s = restricted_ok();
        s["securityContext"]["runAsNonRoot"] = json!(false);
        assert_eq!(reasons(Level::Restricted, &s), ["runAsNonRoot != true"]);
        let s = with_container("runAsUser", json!(0));
        assert_eq!(reasons(Level::Restricted, &s), ["runAsUser=0"]);
    }

    #[test]
    fn restricted_capabilities_allow_only_net_bind_service() {
        let ok = with_container(
            "capabilities",
            json!({"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}),
        );
        assert!(reasons(Level::Restricted, &ok).is_empty());
        let bad = with_container("capabilities", json!({"drop": ["ALL"], "add": ["CHOWN"]}));
        assert_eq!(
            reasons(Level::Restricted, &bad),
            ["unrestricted capabilities"]
        );
    }
}
