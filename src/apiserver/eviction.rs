//! POST pods/<name>/eviction (policy/v1 Eviction): a delete that first asks the pod's
//! PodDisruptionBudget, as `kubectl drain` uses it. The budget's status (kept by the disruption
//! controller) says how many disruptions are allowed now; an eviction spends one, recording the
//! pod in `status.disruptedPods` so the controller does not count it healthy while it goes, and
//! is refused with 429 when none are left, in upstream's words, so drain retries.

use super::handler::{json, Api, ResourceRequest, Resp};
use super::resources::{meta_mut, meta_str, now_rfc3339, DeleteOptions, Mode};
use super::selectors::LabelSelector;
use super::status::{self, ApiError, Cause};
use super::{admission, conversion, encoding};
use http::StatusCode;
use serde_json::{json, Value};

/// What one budget says about evicting one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed, and one disruption is spent.
    Spend,
    /// Allowed without spending (an unhealthy pod whose budget is met, as upstream's default
    /// unhealthyPodEvictionPolicy IfHealthyBudget allows).
    Free,
    /// Refused: 429 with this cause.
    Refuse(String),
    /// The budget's status is behind its spec: 429, try again.
    Stale(String),
}

/// Decides from the budget (as JSON) whether `pod_ready` may be evicted now.
pub fn verdict(pdb: &Value, pod_ready: bool) -> Verdict {
    let name = meta_str(pdb, "name").unwrap_or_default();
    let st = &pdb["status"];
    let generation = pdb["metadata"]["generation"].as_i64().unwrap_or(0);
    if st["observedGeneration"].as_i64().unwrap_or(0) < generation {
        return Verdict::Stale(format!(
            "The disruption budget {name} is still being processed by the server."
        ));
    }
    let healthy = st["currentHealthy"].as_i64().unwrap_or(0);
    let desired = st["desiredHealthy"].as_i64().unwrap_or(0);
    if !pod_ready {
        let policy = pdb["spec"]["unhealthyPodEvictionPolicy"]
            .as_str()
            .unwrap_or("IfHealthyBudget");
        if policy == "AlwaysAllow" || healthy >= desired {
            return Verdict::Free;
        }
    }
    if st["disruptionsAllowed"].as_i64().unwrap_or(0) > 0 {
        Verdict::Spend
    } else {
        Verdict::Refuse(format!(
            "The disruption budget {name} needs {desired} healthy pods and has {healthy} currently"
        ))
    }
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// A budget's selector matches the pod (an empty selector matches every pod of the namespace
/// in policy/v1; a missing one matches none).
fn selects(pdb: &Value, pod: &Value) -> bool {
    let sel = &pdb["spec"]["selector"];
    if sel.is_null() {
        return false;
    }
    LabelSelector::parse(&super::table::label_selector_string(sel)).is_ok_and(|s| s.matches(pod))
}

impl Api {
    pub async fn evict(&self, r: &ResourceRequest) -> Result<Resp, ApiError> {
        let name = r.name.clone().unwrap_or_default();
        let ns = r.namespace.clone().unwrap_or_default();
        let body = encoding::parse_body(
            &r.body,
            encoding::body_format(&r.content_type).unwrap_or(encoding::BodyFormat::Json),
        )
        .map_err(|e| {
            ApiError::BadRequest(format!("the body of the request could not be decoded: {e}"))
        })?;
        if body["kind"] != "Eviction" {
            return Err(ApiError::BadRequest(format!(
                "the body of an eviction must be a policy/v1 Eviction, not {}",
                body["kind"].as_str().unwrap_or("an untyped object")
            )));
        }
        let named = meta_str(&body, "name").unwrap_or_default();
        if !named.is_empty() && named != name {
            return Err(ApiError::BadRequest(format!(
                "name in URL does not match name in Eviction object: {name} vs {named}"
            )));
        }
        let mut attrs = admission::Attributes {
            user: r.user.clone(),
            operation: admission::Operation::Create,
            kind: admission::Kind::new("policy", "v1", "Eviction"),
            resource: r.info.clone(),
            subresource: "eviction".into(),
            namespace: ns.clone(),
            name: name.clone(),
            object: Some(body.clone()),
            old_object: None,
            dry_run: r.dry_run(),
        };
        self.pipeline.admission.admit(self, &mut attrs).await?;
        self.pipeline.admission.validate(self, &attrs).await?;
        let options = delete_options(&body, r);

        let Some((pod, _)) = self.get_object(&r.info, Some(&ns), &name).await? else {
            return Err(ApiError::not_found("", "pods", &name));
        };
        // A pod that is done, not yet running, or already going spends nothing, as upstream.
        let phase = pod["status"]["phase"].as_str().unwrap_or("");
        let exempt = matches!(phase, "Succeeded" | "Failed" | "Pending")
            || pod["metadata"]["deletionTimestamp"].is_string();
        if !exempt {
            self.check_budget(r, &ns, &name, &pod).await?;
        }
        self.delete_object(&r.info, Some(&ns), &name, &options)
            .await?;
        Ok(json(StatusCode::CREATED, &status::success_plain()))
    }

    /// Finds the pod's one budget and spends a disruption from it, or refuses.
    async fn check_budget(
        &self,
        r: &ResourceRequest,
        ns: &str,
        pod_name: &str,
        pod: &Value,
    ) -> Result<(), ApiError> {
        let Some(info) = self.registry.lookup("policy", "v1", "poddisruptionbudgets") else {
            return Ok(());
        };
        let page = self
            .store
            .list(&info.list_prefix(Some(ns)), None, 0, None)
            .await?;
        let mut budgets = Vec::new();
        for kv in page.items {
            let v = conversion::decode(&info, &kv.value, kv.mod_revision)
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            if selects(&v, pod) {
                budgets.push(v);
            }
        }
        let pdb = match budgets.len() {
            0 => return Ok(()),
            1 => budgets.remove(0),
            _ => {
                return Err(ApiError::Internal(
                    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.".into(),
                ))
            }
        };
        let pdb_name = meta_str(&pdb, "name").unwrap_or_default().to_string();
        let req = ResourceRequest {
            info: info.clone(),
            name: Some(pdb_name),
            subresource: Some("status".into()),
            body: Default::default(),
            ..r.clone()
        };
        let ready = is_ready(pod);
        let pod_name = pod_name.to_string();
        let mut spent = false;
        self.write_update(&req, Mode::Status, |cur| {
            match verdict(cur, ready) {
                Verdict::Free => {
                    spent = false;
                    let mut same = cur.clone();
                    meta_mut(&mut same).remove("resourceVersion");
                    Ok(same)
                }
                Verdict::Spend => {
                    spent = true;
                    let mut new = cur.clone();
                    let left = cur["status"]["disruptionsAllowed"].as_i64().unwrap_or(0) - 1;
                    new["status"]["disruptionsAllowed"] = json!(left);
                    if !new["status"]["disruptedPods"].is_object() {
                        new["status"]["disruptedPods"] = json!({});
                    }
                    new["status"]["disruptedPods"][&pod_name] = json!(now_rfc3339());
                    // No resourceVersion: each attempt decides again on the budget as it
                    // is then, so two evictions at once both get a fair answer.
                    meta_mut(&mut new).remove("resourceVersion");
                    Ok(new)
                }
                Verdict::Refuse(cause) => Err(ApiError::Throttled {
                    message: "Cannot evict pod as it would violate the pod's disruption budget."
                        .into(),
                    causes: vec![Cause {
                        reason: "DisruptionBudget".into(),
                        message: cause,
                        field: String::new(),
                    }],
                }),
                Verdict::Stale(msg) => Err(ApiError::Throttled {
                    message: msg.clone(),
                    causes: vec![Cause {
                        reason: "DisruptionBudget".into(),
                        message: msg,
                        field: String::new(),
                    }],
                }),
            }
        })
        .await?;
        tracing::debug!(pod = %pod_name, spent, "eviction admitted by its disruption budget");
        Ok(())
    }
}

/// The Eviction's deleteOptions as the delete's options.
fn delete_options(body: &Value, r: &ResourceRequest) -> DeleteOptions {
    let o = &body["deleteOptions"];
    DeleteOptions {
        dry_run: r.dry_run() || o["dryRun"].as_array().is_some_and(|a| !a.is_empty()),
        user: r.user.clone(),
        grace_period: o["gracePeriodSeconds"].as_i64(),
        propagation: o["propagationPolicy"].as_str().map(str::to_string),
        uid: o["preconditions"]["uid"].as_str().map(str::to_string),
        resource_version: o["preconditions"]["resourceVersion"]
            .as_str()
            .map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pdb(allowed: i64, healthy: i64, desired: i64) -> Value {
        json!({"metadata": {"name": "web", "generation": 1},
               "spec": {"selector": {"matchLabels": {"app": "web"}}},
               "status": {"observedGeneration": 1, "disruptionsAllowed": allowed,
                          "currentHealthy": healthy, "desiredHealthy": desired}})
    }

    #[test]
    fn a_budget_spends_refuses_or_lets_unhealthy_pods_go() {
        assert_eq!(verdict(&pdb(1, 3, 2), true), Verdict::Spend);
        assert_eq!(
            verdict(&pdb(0, 2, 2), true),
            Verdict::Refuse(
                "The disruption budget web needs 2 healthy pods and has 2 currently".into()
            )
        );
        // An unready pod goes free while the budget holds, and not when it does not.
        assert_eq!(verdict(&pdb(0, 2, 2), false), Verdict::Free);
        assert!(matches!(verdict(&pdb(0, 1, 2), false), Verdict::Refuse(_)));
        let mut always = pdb(0, 1, 2);
        always["spec"]["unhealthyPodEvictionPolicy"] = json!("AlwaysAllow");
        assert_eq!(verdict(&always, false), Verdict::Free);
        let mut stale = pdb(5, 5, 0);
        stale["metadata"]["generation"] = json!(2);
        assert!(matches!(verdict(&stale, true), Verdict::Stale(_)));
    }

    #[test]
    fn selectors_as_policy_v1() {
        let pod = json!({"metadata": {"labels": {"app": "web"}}});
        assert!(selects(&pdb(0, 0, 0), &pod));
        let other = json!({"metadata": {"labels": {"app": "db"}}});
        assert!(!selects(&pdb(0, 0, 0), &other));
        assert!(selects(&json!({"spec": {"selector": {}}}), &other));
        assert!(!selects(&json!({"spec": {}}), &other));
    }
}
