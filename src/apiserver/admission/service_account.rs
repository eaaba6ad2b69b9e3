//! ServiceAccount (its defaulting part): a pod created without a service account runs as the
//! namespace's `default` one. The deprecated `serviceAccount` field mirrors it, as the v1 API
//! does. Mounting the account's token is the node agent's business and not done here.

use super::{created_pod_spec, Attributes, Outcome, Plugin};
use crate::apiserver::defaults::set;
use crate::apiserver::handler::Api;
use serde_json::{json, Value};

pub struct ServiceAccount;

impl Plugin for ServiceAccount {
    fn name(&self) -> &'static str {
        "ServiceAccount"
    }

    fn admit<'a>(&'a self, _api: &'a Api, a: &'a mut Attributes) -> Outcome<'a> {
        // A mirror pod's spec is the kubelet's manifest, which it compares with what it
        // wrote; it runs as no service account (NodeRestriction refuses one), as upstream.
        let mirror = a.object.as_ref().is_some_and(|o| {
            !o["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_null()
        });
        if let Some(spec) = created_pod_spec(a).filter(|_| !mirror) {
            default_account(spec);
        }
        Box::pin(async { Ok(()) })
    }
}

pub(crate) fn default_account(spec: &mut Value) {
    let given = spec["serviceAccountName"]
        .as_str()
        .filter(|s| !s.is_empty())
        .or_else(|| spec["serviceAccount"].as_str().filter(|s| !s.is_empty()))
        .unwrap_or("default")
        .to_string();
    spec["serviceAccountName"] = json!(given);
    set(spec, &["serviceAccount"], json!(given));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_run_as_default_unless_they_say() {
        let mut spec = json!({"containers": [{"name": "c", "image": "x"}]});
        default_account(&mut spec);
        assert_eq!(spec["serviceAccountName"], "default");
        assert_eq!(spec["serviceAccount"], "default");
        let mut named = json!({"serviceAccountName": "builder", "containers": []});
        default_account(&mut named);
        assert_eq!(named["serviceAccount"], "builder");
    }
}
