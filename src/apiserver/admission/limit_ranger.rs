//! LimitRanger: the namespace's LimitRanges applied to new pods and PersistentVolumeClaims.
//! Mutating phase: a container without a request or limit for a resource gets the `Container`
//! item's `defaultRequest` / `default` (so they are in the stored pod). Validating phase: each
//! container's (`Container`) and the pod's summed (`Pod`) requests and limits are held to
//! min, max and maxLimitRequestRatio, a claim's storage request to its `PersistentVolumeClaim`
//! min and max, with upstream's messages. The ranges are watched, not read on every create.

use super::watched::Watched;
use super::{Attributes, Operation, Outcome, Plugin};
use crate::apiserver::defaults::parse_quantity;
use crate::apiserver::handler::Api;
use crate::apiserver::status::ApiError;
use serde_json::{Map, Value};

pub struct LimitRanger(Watched<Vec<Value>>);

impl Default for LimitRanger {
    fn default() -> Self {
        LimitRanger(Watched::new("", "limitranges", |all| all))
    }
}

/// The items of type `kind` in the namespace's LimitRanges.
async fn items(
    w: &Watched<Vec<Value>>,
    api: &Api,
    ns: &str,
    kind: &str,
) -> Result<Vec<Value>, ApiError> {
    let all = w.get(api).await?;
    Ok(all
        .iter()
        .filter(|lr| lr["metadata"]["namespace"] == ns)
        .flat_map(|lr| lr["spec"]["limits"].as_array().cloned().unwrap_or_default())
        .filter(|item| item["type"] == kind)
        .collect())
}

fn containers_mut(spec: &mut Value) -> impl Iterator<Item = &mut Value> {
    let Value::Object(spec) = spec else {
        return Vec::new().into_iter();
    };
    let mut out = Vec::new();
    for (k, v) in spec.iter_mut() {
        if k == "initContainers" || k == "containers" {
            if let Some(cs) = v.as_array_mut() {
                out.extend(cs.iter_mut());
            }
        }
    }
    out.into_iter()
}

/// Sets `resources.<field>[res]` from `defaults` where the container has none.
fn fill(c: &mut Value, field: &str, defaults: &Value) {
    let Some(defaults) = defaults.as_object() else {
        return;
    };
    if !c["resources"].is_object() {
        c["resources"] = Value::Object(Map::new());
    }
    if !c["resources"][field].is_object() {
        c["resources"][field] = Value::Object(Map::new());
    }
    let target = c["resources"][field].as_object_mut().expect("made above");
    for (res, q) in defaults {
        target.entry(res.clone()).or_insert_with(|| q.clone());
    }
}

/// Upstream's formatting of a ratio (`%f`).
fn ratio_text(r: f64) -> String {
    format!("{r:.6}")
}

/// Quantity text of a summed value: cpu in cores or millicores, others as an integer.
fn quantity_text(res: &str, v: f64) -> String {
    if res == "cpu" && v.fract() != 0.0 {
        format!("{}m", (v * 1000.0).round() as i64)
    } else {
        format!("{}", v.round() as i64)
    }
}

/// Checks one object's (container's, pod's, claim's) requests and limits against one item.
/// `request` / `limit` are (text, value) per resource.
fn check_item(
    item: &Value,
    what: &str,
    request: &dyn Fn(&str) -> Option<(String, f64)>,
    limit: &dyn Fn(&str) -> Option<(String, f64)>,
    errs: &mut Vec<String>,
) {
    let map = |k: &str| item[k].as_object().cloned().unwrap_or_default();
    for (res, min) in map("min") {
        let Some(m) = parse_quantity(&min) else {
            continue;
        };
        let min_s = min.as_str().map(String::from).unwrap_or(min.to_string());
        match request(&res) {
            None => errs.push(format!(
                "minimum {res} usage per {what} is {min_s}.  No request is specified"
            )),
            Some((text, v)) if v < m => errs.push(format!(
                "minimum {res} usage per {what} is {min_s}, but request is {text}"
            )),
            _ => {}
        }
        if let Some((text, v)) = limit(&res).filter(|(_, v)| *v < m) {
            let _ = v;
            errs.push(format!(
                "minimum {res} usage per {what} is {min_s}, but limit is {text}"
            ));
        }
    }
    for (res, max) in map("max") {
        let Some(m) = parse_quantity(&max) else {
            continue;
        };
        let max_s = max.as_str().map(String::from).unwrap_or(max.to_string());
        match limit(&res) {
            None if what != "PersistentVolumeClaim" => errs.push(format!(
                "maximum {res} usage per {what} is {max_s}.  No limit is specified"
            )),
            Some((text, v)) if v > m => errs.push(format!(
                "maximum {res} usage per {what} is {max_s}, but limit is {text}"
            )),
            _ => {}
        }
        if what == "PersistentVolumeClaim" {
            if let Some((text, _)) = request(&res).filter(|(_, v)| *v > m) {
                errs.push(format!(
                    "maximum {res} usage per {what} is {max_s}, but request is {text}"
                ));
            }
        }
    }
    for (res, ratio) in map("maxLimitRequestRatio") {
        let Some(max_ratio) = parse_quantity(&ratio) else {
            continue;
        };
        let ratio_s = ratio
            .as_str()
            .map(String::from)
            .unwrap_or(ratio.to_string());
        let (Some((_, l)), Some((_, r))) = (limit(&res), request(&res)) else {
            if limit(&res).is_none() {
                errs.push(format!(
                    "{res} max limit to request ratio per {what} is {ratio_s}, but no limit is specified"
                ));
            } else {
                errs.push(format!(
                    "{res} max limit to request ratio per {what} is {ratio_s}, but no request is specified or request is 0"
                ));
            }
            continue;
        };
        if r == 0.0 {
            errs.push(format!(
                "{res} max limit to request ratio per {what} is {ratio_s}, but no request is specified or request is 0"
            ));
        } else if l / r > max_ratio {
            errs.push(format!(
                "{res} max limit to request ratio per {what} is {ratio_s}, but provided ratio is {}",
                ratio_text(l / r)
            ));
        }
    }
}

/// A container's `resources.<field>[res]` as (text, value).
fn of(c: &Value, field: &str, res: &str) -> Option<(String, f64)> {
    let q = &c["resources"][field][res];
    let v = parse_quantity(q)?;
    Some((q.as_str().map(String::from).unwrap_or(q.to_string()), v))
}

/// Upstream's aggregate of errors: one alone, several in brackets.
fn aggregate(errs: &[String]) -> String {
    if errs.len() == 1 {
        errs[0].clone()
    } else {
        format!("[{}]", errs.join(", "))
    }
}

impl Plugin for LimitRanger {
    fn name(&self) -> &'static str {
        "LimitRanger"
    }

    fn admit<'a>(&'a self, api: &'a Api, a: &'a mut Attributes) -> Outcome<'a> {
        Box::pin(async move {
            if a.operation != Operation::Create || !a.is("", "pods") {
                return Ok(());
            }
            let ranges = items(&self.0, api, &a.namespace, "Container").await?;
            if ranges.is_empty() {
                return Ok(());
            }
            let Some(spec) = a.object.as_mut().map(|o| &mut o["spec"]) else {
                return Ok(());
            };
            for c in containers_mut(spec) {
                for item in &ranges {
                    fill(c, "limits", &item["default"]);
                    fill(c, "requests", &item["defaultRequest"]);
                }
            }
            Ok(())
        })
    }

    fn validate<'a>(&'a self, api: &'a Api, a: &'a Attributes) -> Outcome<'a> {
        Box::pin(async move {
            if a.operation != Operation::Create {
                return Ok(());
            }
            let Some(obj) = a.object.as_ref() else {
                return Ok(());
            };
            let mut errs = Vec::new();
            if a.is("", "pods") {
                let containers: Vec<&Value> = ["initContainers", "containers"]
                    .iter()
                    .flat_map(|k| obj["spec"][*k].as_array().into_iter().flatten())
                    .collect();
                for item in items(&self.0, api, &a.namespace, "Container").await? {
                    for c in &containers {
                        check_item(
                            &item,
                            "Container",
                            &|r| of(c, "requests", r),
                            &|r| of(c, "limits", r),
                            &mut errs,
                        );
                    }
                }
                // A pod's total: the sum over its regular containers (every one must set it).
                let sum = |field: &str, res: &str| -> Option<(String, f64)> {
                    let mut total = 0.0;
                    for c in obj["spec"]["containers"].as_array().into_iter().flatten() {
                        total += of(c, field, res)?.1;
                    }
                    Some((quantity_text(res, total), total))
                };
                for item in items(&self.0, api, &a.namespace, "Pod").await? {
                    check_item(
                        &item,
                        "Pod",
                        &|r| sum("requests", r),
                        &|r| sum("limits", r),
                        &mut errs,
                    );
                }
            } else if a.is("", "persistentvolumeclaims") {
                for item in items(&self.0, api, &a.namespace, "PersistentVolumeClaim").await? {
                    let field = |f: &str, r: &str| {
                        let q = &obj["spec"]["resources"][f][r];
                        parse_quantity(q)
                            .map(|v| (q.as_str().map(String::from).unwrap_or(q.to_string()), v))
                    };
                    check_item(
                        &item,
                        "PersistentVolumeClaim",
                        &|r| field("requests", r),
                        &|r| field("limits", r),
                        &mut errs,
                    );
                }
            } else {
                return Ok(());
            }
            if errs.is_empty() {
                return Ok(());
            }
            Err(a.forbidden(&aggregate(&errs)))
        })
    }
}
