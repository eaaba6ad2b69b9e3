//! ServiceAccount, as upstream's plugin: a pod created without a service account runs as the
//! namespace's `default` one (the deprecated `serviceAccount` field mirrors it, as the v1 API
//! does); the account must exist, else the pod is refused; and unless the pod or the account
//! says `automountServiceAccountToken: false`, the pod gets the `kube-api-access-<random>`
//! projected volume (a token the kubelet requests for the pod, the cluster CA from the
//! `kube-root-ca.crt` ConfigMap, the namespace) mounted read-only at
//! /var/run/secrets/kubernetes.io/serviceaccount in every container, where in-cluster clients
//! look. Mirror pods (a kubelet's static pods) get none of it: the API cannot vouch for them.

use super::{created_pod_spec, Attributes, Outcome, Plugin};
use crate::apiserver::defaults::set;
use crate::apiserver::handler::Api;
use crate::apiserver::status::ApiError;
use serde_json::{json, Value};

pub struct ServiceAccount;

/// Where in-cluster clients read the token, CA and namespace.
pub const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The lifetime the kubelet asks for the pod's token, as upstream's plugin sets it (an hour and
/// a few seconds, so that it can be told apart from tokens asked for by hand).
pub const TOKEN_EXPIRATION_SECONDS: i64 = 3607;
/// The ConfigMap every namespace has with the cluster's CA (see controllers::root_ca).
pub const ROOT_CA_CONFIGMAP: &str = "kube-root-ca.crt";
const VOLUME_PREFIX: &str = "kube-api-access-";
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

impl Plugin for ServiceAccount {
    fn name(&self) -> &'static str {
        "ServiceAccount"
    }

    fn admit<'a>(&'a self, api: &'a Api, a: &'a mut Attributes) -> Outcome<'a> {
        Box::pin(async move {
            let mirror = a
                .object
                .as_ref()
                .is_some_and(|o| !o["metadata"]["annotations"][MIRROR_ANNOTATION].is_null());
            let ns = a.namespace.clone();
            if mirror {
                return Ok(());
            }
            let Some(spec) = created_pod_spec(a) else {
                return Ok(());
            };
            let account = default_account(spec);
            let Some(sa) = find_account(api, &ns, &account).await? else {
                return Err(a.forbidden(&format!(
                    "error looking up service account {ns}/{account}: serviceaccount \"{account}\" not found"
                )));
            };
            let spec = created_pod_spec(a).expect("checked above");
            if automount(spec, &sa) {
                mount_token(spec);
            }
            Ok(())
        })
    }
}

/// How long a pod waits for its namespace's `default` account. The serviceaccount controller
/// makes it moments after the namespace; upstream refuses a pod created in between and lets the
/// client retry, which `kubectl apply` of a namespace and its pods in one go does not do.
const DEFAULT_ACCOUNT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

async fn find_account(api: &Api, ns: &str, name: &str) -> Result<Option<Value>, ApiError> {
    let Some(info) = api.registry.lookup("", "v1", "serviceaccounts") else {
        return Ok(None);
    };
    let deadline = tokio::time::Instant::now() + DEFAULT_ACCOUNT_WAIT;
    loop {
        if let Some((sa, _)) = api.get_object(&info, Some(ns), name).await? {
            return Ok(Some(sa));
        }
        if name != "default" || tokio::time::Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Sets the pod's account (`default` when none is named) and gives its name.
pub(crate) fn default_account(spec: &mut Value) -> String {
    let given = spec["serviceAccountName"]
        .as_str()
        .filter(|s| !s.is_empty())
        .or_else(|| spec["serviceAccount"].as_str().filter(|s| !s.is_empty()))
        .unwrap_or("default")
        .to_string();
    spec["serviceAccountName"] = json!(given);
    set(spec, &["serviceAccount"], json!(given));
    given
}

/// The pod's own choice wins, then the account's; mounting is the default.
fn automount(spec: &Value, sa: &Value) -> bool {
    spec["automountServiceAccountToken"]
        .as_bool()
        .or_else(|| sa["automountServiceAccountToken"].as_bool())
        .unwrap_or(true)
}

/// Five characters as upstream's rand.String (no vowels, no look-alikes).
fn suffix() -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

/// The projected volume, in its defaulted form (what the stored pod shows).
fn volume(name: &str) -> Value {
    json!({
        "name": name,
        "projected": {
            "defaultMode": 0o644,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}},
                {"configMap": {"name": ROOT_CA_CONFIGMAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace",
                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
        },
    })
}

/// Adds the volume and mounts it in every container that has nothing at the mount path yet.
fn mount_token(spec: &mut Value) {
    let taken: Vec<String> = spec["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str().map(str::to_string))
        .collect();
    let name = loop {
        let n = format!("{VOLUME_PREFIX}{}", suffix());
        if !taken.contains(&n) {
            break n;
        }
    };
    let mut mounted = false;
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for c in spec[list].as_array_mut().into_iter().flatten() {
            let has = c["volumeMounts"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|m| m["mountPath"] == MOUNT_PATH);
            if has {
                continue;
            }
            if !c["volumeMounts"].is_array() {
                c["volumeMounts"] = json!([]);
            }
            c["volumeMounts"]
                .as_array_mut()
                .expect("made an array")
                .push(json!({"name": name, "readOnly": true, "mountPath": MOUNT_PATH}));
            mounted = true;
        }
    }
    if !mounted {
        return;
    }
    if !spec["volumes"].is_array() {
        spec["volumes"] = json!([]);
    }
    spec["volumes"]
        .as_array_mut()
        .expect("made an array")
        .push(volume(&name));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_run_as_default_unless_they_say() {
        let mut spec = json!({"containers": [{"name": "c", "image": "x"}]});
        assert_eq!(default_account(&mut spec), "default");
        assert_eq!(spec["serviceAccountName"], "default");
        assert_eq!(spec["serviceAccount"], "default");
        let mut named = json!({"serviceAccountName": "builder", "containers": []});
        default_account(&mut named);
        assert_eq!(named["serviceAccount"], "builder");
    }

    #[test]
    fn every_container_mounts_the_token_unless_told_not_to() {
        let mut spec = json!({
            "initContainers": [{"name": "i", "image": "x"}],
            "containers": [{"name": "c", "image": "x",
                "volumeMounts": [{"name": "d", "mountPath": "/d"}]}],
            "volumes": [{"name": "d", "emptyDir": {}}],
        });
        assert!(automount(&spec, &json!({})));
        mount_token(&mut spec);
        let vol = &spec["volumes"][1];
        let name = vol["name"].as_str().unwrap();
        assert!(name.starts_with(VOLUME_PREFIX) && name.len() == VOLUME_PREFIX.len() + 5);
        assert_eq!(
            vol["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"],
            3607
        );
        for c in ["initContainers", "containers"] {
            let m = spec[c][0]["volumeMounts"]
                .as_array()
                .unwrap()
                .last()
                .unwrap()
                .clone();
            assert_eq!(
                m,
                json!({"name": name, "readOnly": true, "mountPath": MOUNT_PATH})
            );
        }
        let off = json!({"automountServiceAccountToken": false});
        assert!(!automount(&json!({}), &off));
        assert!(automount(
            &json!({"automountServiceAccountToken": true}),
            &off
        ));
    }
}
