//! DefaultTolerationSeconds: a new pod tolerates its node being not-ready or unreachable for
//! 300 s (then it is evicted), unless it already says something about those taints.

use super::{created_pod_spec, Attributes, Outcome, Plugin};
use crate::apiserver::defaults::set;
use crate::apiserver::handler::Api;
use serde_json::{json, Value};

pub struct DefaultTolerationSeconds;

/// The taints a node gets when its agent stops reporting, and the 300 s upstream waits.
const TAINTS: &[&str] = &[
    "node.kubernetes.io/not-ready",
    "node.kubernetes.io/unreachable",
];
const SECONDS: i64 = 300;

pub(crate) fn add_tolerations(spec: &mut Value) {
    set(spec, &["tolerations"], json!([]));
    let Some(list) = spec["tolerations"].as_array_mut() else {
        return;
    };
    for key in TAINTS {
        let covered = list.iter().any(|t| {
            let effect = t["effect"].as_str().unwrap_or("");
            (effect.is_empty() || effect == "NoExecute")
                && (t["key"].as_str() == Some(key)
                    || (t["key"].as_str().unwrap_or("").is_empty()
                        && t["operator"].as_str() == Some("Exists")))
        });
        if !covered {
            list.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": SECONDS}));
        }
    }
}

impl Plugin for DefaultTolerationSeconds {
    fn name(&self) -> &'static str {
        "DefaultTolerationSeconds"
    }

    fn admit<'a>(&'a self, _api: &'a Api, a: &'a mut Attributes) -> Outcome<'a> {
        if let Some(spec) = created_pod_spec(a) {
            add_tolerations(spec);
        }
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_ready_and_unreachable_unless_covered() {
        let mut spec = json!({"containers": []});
        add_tolerations(&mut spec);
        let t = spec["tolerations"].as_array().unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0]["key"], "node.kubernetes.io/not-ready");
        assert_eq!(t[1]["tolerationSeconds"], 300);
        let mut all = json!({"tolerations": [{"operator": "Exists"}]});
        add_tolerations(&mut all);
        assert_eq!(all["tolerations"].as_array().unwrap().len(), 1);
    }
}
