//! Priority: a new pod's `spec.priority` comes from its PriorityClass (or the class marked
//! `globalDefault`, or 0 when there is none); a class that does not exist, or a priority the pod
//! sets itself that differs from its class's, is refused (403) with upstream's messages. The two
//! system classes are known even before they are stored. The classes are watched, not read on
//! every pod create (`watched`).

use super::watched::Watched;
use super::{Attributes, Operation, Outcome, Plugin};
use crate::apiserver::handler::Api;
use crate::apiserver::status::ApiError;
use serde_json::{json, Value};

/// kube-apiserver's built-in classes and their values.
const SYSTEM: &[(&str, i64)] = &[
    ("system-node-critical", 2_000_001_000),
    ("system-cluster-critical", 2_000_000_000),
];

/// A stored class: name, value, preemptionPolicy, globalDefault.
struct Class {
    name: String,
    value: i64,
    policy: Value,
    global_default: bool,
}

fn classes(objects: Vec<Value>) -> Vec<Class> {
    objects
        .into_iter()
        .map(|pc| Class {
            name: pc["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            value: pc["value"].as_i64().unwrap_or(0),
            policy: pc["preemptionPolicy"].clone(),
            global_default: pc["globalDefault"] == true,
        })
        .collect()
}

pub struct Priority(Watched<Vec<Class>>);

impl Default for Priority {
    fn default() -> Self {
        Priority(Watched::new(
            "scheduling.k8s.io",
            "priorityclasses",
            classes,
        ))
    }
}

impl Priority {
    /// A class's (value, preemptionPolicy) by name.
    async fn class(&self, api: &Api, name: &str) -> Result<Option<(i64, Value)>, ApiError> {
        let stored = self.0.get(api).await?;
        if let Some(c) = stored.iter().find(|c| c.name == name) {
            return Ok(Some((c.value, c.policy.clone())));
        }
        Ok(SYSTEM
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| (*v, Value::Null)))
    }

    /// The class marked globalDefault, if any: (name, value, preemptionPolicy).
    async fn global_default(&self, api: &Api) -> Result<Option<(String, i64, Value)>, ApiError> {
        let stored = self.0.get(api).await?;
        Ok(stored
            .iter()
            .find(|c| c.global_default)
            .map(|c| (c.name.clone(), c.value, c.policy.clone())))
    }
}

impl Plugin for Priority {
    fn name(&self) -> &'static str {
        "Priority"
    }

    fn admit<'a>(&'a self, api: &'a Api, a: &'a mut Attributes) -> Outcome<'a> {
        Box::pin(async move {
            if a.operation != Operation::Create || !a.is("", "pods") {
                return Ok(());
            }
            let Some(spec) = a
                .object
                .as_ref()
                .map(|o| &o["spec"])
                .filter(|s| s.is_object())
            else {
                return Ok(());
            };
            let class_name = spec["priorityClassName"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let (name, value, policy) = if class_name.is_empty() {
                match self.global_default(api).await? {
                    Some(d) => d,
                    None => (String::new(), 0, Value::Null),
                }
            } else {
                match self.class(api, &class_name).await? {
                    Some((v, p)) => (class_name.clone(), v, p),
                    None => {
                        return Err(a.forbidden(&format!(
                            "no PriorityClass with name {class_name} was found"
                        )))
                    }
                }
            };
            if let Some(given) = spec["priority"].as_i64().filter(|g| *g != value) {
                return Err(a.forbidden(&format!(
                    "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {value} from the given PriorityClass name"
                )));
            }
            let spec = &mut a.object.as_mut().expect("checked above")["spec"];
            spec["priority"] = json!(value);
            if !name.is_empty() {
                spec["priorityClassName"] = json!(name);
            }
            if policy.is_string() {
                spec["preemptionPolicy"] = policy;
            }
            Ok(())
        })
    }

    /// Only one PriorityClass may be the global default, as upstream's plugin checks.
    fn validate<'a>(&'a self, api: &'a Api, a: &'a Attributes) -> Outcome<'a> {
        Box::pin(async move {
            let writes_class = matches!(a.operation, Operation::Create | Operation::Update)
                && a.is("scheduling.k8s.io", "priorityclasses");
            let Some(obj) = a.object.as_ref().filter(|_| writes_class) else {
                return Ok(());
            };
            if obj["globalDefault"] != true {
                return Ok(());
            }
            if let Some(other) = self.global_default(api).await?.filter(|d| d.0 != a.name) {
                return Err(a.forbidden(&format!(
                    "PriorityClass {} is already marked as default. Only one default can exist",
                    other.0
                )));
            }
            Ok(())
        })
    }
}
