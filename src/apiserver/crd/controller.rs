//! The CRD controller: watches CustomResourceDefinitions and makes the registry match them.
//!
//! For every CRD, in creation order (so the first claimant of a name keeps it): the naming step
//! of apiextensions-apiserver's NamingConditionController (a plural, singular, short name or
//! kind already accepted for another CRD of the group, or served by a built-in kind of the
//! group, is refused with NamesAccepted=False and upstream's reason and message), then the
//! served versions are swapped into the registry as one change, and only then is the CRD marked
//! Established, so a client that waits for the condition finds the resource served. A CRD being
//! deleted is Terminating: creates are refused, every object is deleted, the resource stops being
//! served, and the cleanup finalizer is removed, which lets the CRD go.
//!
//! The controller reacts to the store's watch of the CRD prefix (a change is served within
//! milliseconds), re-reads every CRD on each change (there are few) and writes a status only when
//! it differs, so its own writes settle.

use super::definition::{condition, set_condition, storage_version};
use super::strategy::{field_path, Column, CustomResource, ScalePaths};
use super::{jsonpath, openapi, FINALIZER, GROUP};
use crate::apiserver::conversion::{self, Converted};
use crate::apiserver::handler::Api;
use crate::apiserver::kinds;
use crate::apiserver::lifecycle::internal_request;
use crate::apiserver::registry::ResourceInfo;
use crate::apiserver::resources::{DeleteOptions, Mode};
use crate::apiserver::status::ApiError;
use futures::StreamExt;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What the controller has registered for one CRD.
struct Served {
    /// The spec and accepted names the entries were built from.
    fingerprint: String,
    group: String,
    plural: String,
    terminating: Arc<AtomicBool>,
}

#[derive(Default)]
struct State {
    served: HashMap<String, Served>,
    /// CRDs whose deletion waits for objects to go: the loop comes back to them.
    pending: bool,
}

/// Serves the CRDs already stored (so a restarted server answers for their resources from its
/// first request), then keeps following them on the server's runtime until it shuts down.
pub async fn start(api: &Arc<Api>) {
    let info = crd_info(api);
    let mut state = State::default();
    let first = match reconcile(api, &info, &mut state).await {
        Ok(rev) => Some(rev),
        Err(e) => {
            tracing::warn!(error = %e, "CRD controller: first reconcile failed; retrying");
            None
        }
    };
    let api = api.clone();
    tokio::spawn(async move { run(api, state, first).await });
}

fn crd_info(api: &Api) -> Arc<ResourceInfo> {
    api.registry
        .lookup(GROUP, "v1", "customresourcedefinitions")
        .expect("the CRD kind is built in")
}

async fn run(api: Arc<Api>, mut state: State, mut listed: Option<i64>) {
    let info = crd_info(&api);
    let prefix = info.list_prefix(None);
    let mut shutdown = api.shutdown.clone();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let done = match listed.take() {
            Some(rev) => Ok(rev),
            None => reconcile(&api, &info, &mut state).await,
        };
        let rev = match done {
            Ok(rev) => rev,
            Err(e) => {
                tracing::warn!(error = %e, "CRD controller: reconcile failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let mut events = match api.store.watch(&prefix, rev).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "CRD controller: watch failed; relisting");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        loop {
            let pending = state.pending;
            tokio::select! {
                _ = shutdown.changed() => return,
                ev = events.next() => match ev {
                    Some(Ok(_)) => {}
                    // Compacted or the store went away: list again.
                    _ => break,
                },
                _ = tokio::time::sleep(Duration::from_millis(250)), if pending => {}
            }
            if let Err(e) = reconcile(&api, &info, &mut state).await {
                tracing::warn!(error = %e, "CRD controller: reconcile failed; relisting");
                break;
            }
        }
    }
}

/// Names a CRD asks for or holds (spec.names or status.acceptedNames).
#[derive(Debug, Clone, Default, PartialEq)]
struct Names {
    plural: String,
    singular: String,
    short: Vec<String>,
    kind: String,
    list_kind: String,
    categories: Vec<String>,
}

impl Names {
    fn of(v: &Value) -> Names {
        let s = |f: &str| v[f].as_str().unwrap_or("").to_string();
        let list = |f: &str| -> Vec<String> {
            v[f].as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        };
        Names {
            plural: s("plural"),
            singular: s("singular"),
            short: list("shortNames"),
            kind: s("kind"),
            list_kind: s("listKind"),
            categories: list("categories"),
        }
    }

    fn to_json(&self) -> Value {
        let mut v = json!({"plural": self.plural, "kind": self.kind});
        if !self.singular.is_empty() {
            v["singular"] = json!(self.singular);
        }
        if !self.short.is_empty() {
            v["shortNames"] = json!(self.short);
        }
        if !self.list_kind.is_empty() {
            v["listKind"] = json!(self.list_kind);
        }
        if !self.categories.is_empty() {
            v["categories"] = json!(self.categories);
        }
        v
    }
}

/// `equalToAcceptedOrFresh`.
fn fresh(requested: &str, accepted: &str, used: &BTreeSet<String>) -> Result<(), String> {
    if requested == accepted || !used.contains(requested) {
        Ok(())
    } else {
        Err(format!("{requested:?} is already in use"))
    }
}

/// The naming step: the names this CRD gets and its NamesAccepted (status, reason, message).
fn accept_names(
    requested: &Names,
    accepted: &Names,
    resources: &BTreeSet<String>,
    kinds: &BTreeSet<String>,
) -> (Names, (&'static str, &'static str, String)) {
    let mut out = accepted.clone();
    let mut cond: Option<(&'static str, String)> = None;
    match fresh(&requested.plural, &accepted.plural, resources) {
        Ok(()) => out.plural = requested.plural.clone(),
        Err(e) => cond = Some(("PluralConflict", e)),
    }
    match fresh(&requested.singular, &accepted.singular, resources) {
        Ok(()) => out.singular = requested.singular.clone(),
        Err(e) => cond = Some(("SingularConflict", e)),
    }
    if requested.short != accepted.short {
        let errs: Vec<String> = requested
            .short
            .iter()
            .filter(|s| !accepted.short.contains(s))
            .filter_map(|s| fresh(s, "", resources).err())
            .collect();
        if errs.is_empty() {
            out.short = requested.short.clone();
        } else if errs.len() == 1 {
            cond = Some(("ShortNamesConflict", errs[0].clone()));
        } else {
            // utilerrors.NewAggregate's text for several errors.
            cond = Some(("ShortNamesConflict", format!("[{}]", errs.join(", "))));
        }
    }
    match fresh(&requested.kind, &accepted.kind, kinds) {
        Ok(()) => out.kind = requested.kind.clone(),
        Err(e) => cond = Some(("KindConflict", e)),
    }
    match fresh(&requested.list_kind, &accepted.list_kind, kinds) {
        Ok(()) => out.list_kind = requested.list_kind.clone(),
        Err(e) => cond = Some(("ListKindConflict", e)),
    }
    out.categories = requested.categories.clone();
    let cond = match cond {
        None => ("True", "NoConflicts", "no conflicts found".to_string()),
        Some((reason, message)) => ("False", reason, message),
    };
    (out, cond)
}

/// Kubernetes' version priority (`CompareKubeAwareVersionStrings`): GA before beta before
/// alpha, higher numbers first, then anything else by name.
pub fn version_order(a: &str, b: &str) -> std::cmp::Ordering {
    fn parse(v: &str) -> Option<(u8, u64, u64)> {
        let rest = v.strip_prefix('v')?;
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let major: u64 = rest[..digits].parse().ok()?;
        let tail = &rest[digits..];
        if tail.is_empty() {
            return Some((2, major, 0));
        }
        let (level, num) = if let Some(n) = tail.strip_prefix("beta") {
            (1, n)
        } else if let Some(n) = tail.strip_prefix("alpha") {
            (0, n)
        } else {
            return None;
        };
        Some((level, major, num.parse().ok()?))
    }
    match (parse(a), parse(b)) {
        (Some(x), Some(y)) => y.cmp(&x),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

/// Upstream's `defaultDeprecationWarning`.
fn deprecation_text(group: &str, version: &str, kind: &str, versions: &[Value]) -> String {
    let mut msg = format!("{group}/{version} {kind} is deprecated");
    let mut newer: Vec<&str> = versions
        .iter()
        .filter(|v| v["served"] == true && v["deprecated"] != true)
        .filter_map(|v| v["name"].as_str())
        .filter(|n| version_order(version, n) == std::cmp::Ordering::Greater)
        .collect();
    newer.sort_by(|a, b| version_order(a, b));
    if let Some(best) = newer.first() {
        msg.push_str(&format!("; use {group}/{best} {kind}"));
    }
    msg
}

/// The registry entries of a CRD's served versions, the preferred (highest) version first.
fn entries(crd: &Value, names: &Names, terminating: &Arc<AtomicBool>) -> Vec<ResourceInfo> {
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or("");
    let namespaced = spec["scope"] != "Cluster";
    let all_versions = spec["versions"].as_array().cloned().unwrap_or_default();
    let mut versions: Vec<&Value> = all_versions
        .iter()
        .filter(|v| v["served"] == true)
        .collect();
    versions.sort_by(|a, b| {
        version_order(
            a["name"].as_str().unwrap_or(""),
            b["name"].as_str().unwrap_or(""),
        )
    });
    let storage = storage_version(crd).unwrap_or("").to_string();
    let storage_schema = all_versions
        .iter()
        .find(|v| v["name"] == storage.as_str())
        .map(|v| v["schema"]["openAPIV3Schema"].clone())
        .unwrap_or(Value::Null);
    // Namespace cleanup and the garbage collector walk one entry: the storage version's, or the
    // first served one when storage is not served.
    let listed = if versions.iter().any(|v| v["name"] == storage.as_str()) {
        storage.clone()
    } else {
        versions
            .first()
            .and_then(|v| v["name"].as_str())
            .unwrap_or("")
            .to_string()
    };
    let mut out = Vec::new();
    for v in versions {
        let version = v["name"].as_str().unwrap_or("");
        let schema = v["schema"]["openAPIV3Schema"].clone();
        let columns = v["additionalPrinterColumns"]
            .as_array()
            .filter(|c| !c.is_empty())
            .cloned()
            .unwrap_or_else(|| {
                vec![
                    json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp",
                    "description": crate::apiserver::table::AGE_DESC}),
                ]
            });
        let columns = columns
            .iter()
            .filter_map(|c| {
                let jp = c["jsonPath"].as_str()?;
                Some(Column {
                    name: c["name"].as_str().unwrap_or("").to_string(),
                    ty: c["type"].as_str().unwrap_or("string").to_string(),
                    format: c["format"].as_str().unwrap_or("").to_string(),
                    description: c["description"]
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| {
                            format!("Custom resource definition column (in JSONPath format): {jp}")
                        }),
                    priority: c["priority"].as_u64().unwrap_or(0).min(255) as u8,
                    path: jsonpath::Path::parse(jp).ok()?,
                })
            })
            .collect();
        let scale = v["subresources"]["scale"].as_object().and_then(|s| {
            Some(ScalePaths {
                spec: field_path(s.get("specReplicasPath")?.as_str()?)?,
                status: field_path(s.get("statusReplicasPath")?.as_str()?)?,
                selector: s
                    .get("labelSelectorPath")
                    .and_then(Value::as_str)
                    .and_then(field_path),
            })
        });
        let warning = (v["deprecated"] == true).then(|| match v["deprecationWarning"].as_str() {
            Some(w) => w.to_string(),
            None => deprecation_text(group, version, &names.kind, &all_versions),
        });
        let strategy = CustomResource {
            group: group.to_string(),
            version: version.to_string(),
            kind: names.kind.clone(),
            storage_version: storage.clone(),
            schema: schema.clone(),
            storage_schema: storage_schema.clone(),
            columns,
            scale,
            warning,
            terminating: terminating.clone(),
        };
        let mut info = kinds::custom(
            group,
            version,
            &names.kind,
            &names.plural,
            namespaced,
            openapi::definition(&schema),
            Arc::new(strategy),
        );
        info.singular = names.singular.clone();
        if !names.list_kind.is_empty() {
            info.list_kind = names.list_kind.clone();
        }
        info.short_names = names.short.clone();
        info.categories = names.categories.clone();
        info.status = v["subresources"]["status"].is_object();
        info.scale = v["subresources"]["scale"].is_object();
        info.decode = super::strategy::decode;
        info.converted = Some(Converted::Custom {
            listed: version == listed,
        });
        out.push(info);
    }
    out
}

/// One pass over every CRD; answers the revision the CRDs were read at.
async fn reconcile(
    api: &Arc<Api>,
    info: &Arc<ResourceInfo>,
    state: &mut State,
) -> Result<i64, ApiError> {
    let page = api
        .store
        .list(&info.list_prefix(None), None, 0, None)
        .await?;
    let mut crds: Vec<Value> = page
        .items
        .iter()
        .filter_map(|kv| conversion::decode(info, &kv.value, kv.mod_revision).ok())
        .collect();
    crds.sort_by(|a, b| {
        let key = |c: &Value| {
            (
                c["metadata"]["creationTimestamp"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                c["metadata"]["name"].as_str().unwrap_or("").to_string(),
            )
        };
        key(a).cmp(&key(b))
    });
    // Names held by the built-in kinds of each group (entries not made from a CRD).
    let snap = api.registry.snapshot();
    let builtin: Vec<&Arc<ResourceInfo>> = snap
        .all()
        .iter()
        .filter(|r| !matches!(r.converted, Some(Converted::Custom { .. })))
        .collect();
    let mut accepted: HashMap<String, (String, Names)> = crds
        .iter()
        .map(|c| {
            (
                c["metadata"]["name"].as_str().unwrap_or("").to_string(),
                (
                    c["spec"]["group"].as_str().unwrap_or("").to_string(),
                    Names::of(&c["status"]["acceptedNames"]),
                ),
            )
        })
        .collect();
    state.pending = false;
    let mut live = BTreeSet::new();
    for crd in &crds {
        let name = crd["metadata"]["name"].as_str().unwrap_or("").to_string();
        live.insert(name.clone());
        let group = crd["spec"]["group"].as_str().unwrap_or("").to_string();
        if crd["metadata"]["deletionTimestamp"].is_string() {
            if !terminate(api, info, crd, state).await? {
                state.pending = true;
            }
            continue;
        }
        let mut resources = BTreeSet::new();
        let mut kinds_used = BTreeSet::new();
        for r in builtin.iter().filter(|r| r.group == group) {
            resources.insert(r.plural.clone());
            resources.insert(r.singular.clone());
            resources.extend(r.short_names.iter().cloned());
            kinds_used.insert(r.kind.clone());
            kinds_used.insert(r.list_kind.clone());
        }
        for (g, n) in accepted.values() {
            if *g == group {
                resources.insert(n.plural.clone());
                resources.insert(n.singular.clone());
                resources.extend(n.short.iter().cloned());
                kinds_used.insert(n.kind.clone());
                kinds_used.insert(n.list_kind.clone());
            }
        }
        let mine = accepted
            .get(&name)
            .map(|(_, n)| n.clone())
            .unwrap_or_default();
        let requested = Names::of(&crd["spec"]["names"]);
        let (names, (status, reason, message)) =
            accept_names(&requested, &mine, &resources, &kinds_used);
        accepted.insert(name.clone(), (group.clone(), names.clone()));

        let servable = !names.plural.is_empty() && !names.kind.is_empty();
        if servable {
            serve(api, &name, crd, &names, state);
        }
        let was_established = condition(crd, "Established").is_some_and(|c| c["status"] == "True");
        let established = if servable && (status == "True" || was_established) {
            (
                "True",
                "InitialNamesAccepted",
                "the initial names have been accepted",
            )
        } else {
            ("False", "NotAccepted", "not all names are accepted")
        };
        let names_json = names.to_json();
        let message = message.clone();
        let wanted = move |cur: &Value| {
            let mut new = cur.clone();
            new["status"]["acceptedNames"] = names_json.clone();
            set_condition(&mut new, "NamesAccepted", status, reason, &message);
            set_condition(
                &mut new,
                "Established",
                established.0,
                established.1,
                established.2,
            );
            new
        };
        write_status_if_changed(api, info, crd, wanted).await?;
    }
    // CRDs that are gone (deleted without the controller seeing the finalizer go).
    let gone: Vec<String> = state
        .served
        .keys()
        .filter(|n| !live.contains(*n))
        .cloned()
        .collect();
    for name in gone {
        stop_serving(api, &name, state);
    }
    Ok(page.revision)
}

/// Swaps the CRD's entries into the registry when what they are built from changed.
fn serve(api: &Api, name: &str, crd: &Value, names: &Names, state: &mut State) {
    let fingerprint = format!("{}|{:?}", crd["spec"], names);
    if state
        .served
        .get(name)
        .is_some_and(|s| s.fingerprint == fingerprint)
    {
        return;
    }
    let terminating = state
        .served
        .get(name)
        .map(|s| s.terminating.clone())
        .unwrap_or_default();
    let (old_group, old_plural) = state
        .served
        .get(name)
        .map(|s| (s.group.clone(), s.plural.clone()))
        .unwrap_or_default();
    let add = entries(crd, names, &terminating);
    let group = crd["spec"]["group"].as_str().unwrap_or("").to_string();
    let drop = |r: &ResourceInfo| {
        matches!(r.converted, Some(Converted::Custom { .. }))
            && r.group == old_group
            && r.plural == old_plural
    };
    match api.registry.replace(drop, add) {
        Ok(()) => {
            tracing::info!(crd = name, "serving custom resource");
            if crd["spec"]
                .to_string()
                .contains("\"x-kubernetes-validations\"")
            {
                tracing::warn!(
                    crd = name,
                    "x-kubernetes-validations (CEL) rules are not evaluated by nanokube"
                );
            }
            state.served.insert(
                name.to_string(),
                Served {
                    fingerprint,
                    group,
                    plural: names.plural.clone(),
                    terminating,
                },
            );
        }
        Err(e) => tracing::warn!(crd = name, error = %e, "custom resource not served"),
    }
}

fn stop_serving(api: &Api, name: &str, state: &mut State) {
    if let Some(s) = state.served.remove(name) {
        let _ = api.registry.replace(
            |r| {
                matches!(r.converted, Some(Converted::Custom { .. }))
                    && r.group == s.group
                    && r.plural == s.plural
            },
            Vec::new(),
        );
        tracing::info!(crd = name, "custom resource no longer served");
    }
}

/// Writes the status `wanted` makes of the stored CRD, unless it is what is stored already.
async fn write_status_if_changed<F>(
    api: &Api,
    info: &Arc<ResourceInfo>,
    crd: &Value,
    wanted: F,
) -> Result<(), ApiError>
where
    F: Fn(&Value) -> Value,
{
    if wanted(crd)["status"] == crd["status"] {
        return Ok(());
    }
    let name = crd["metadata"]["name"].as_str().unwrap_or("");
    let mut r = internal_request(info.clone(), None, name);
    r.subresource = Some("status".into());
    r.field_manager = "nanokube-crd-controller".into();
    match api
        .write_update(&r, Mode::Status, |cur| {
            let mut new = wanted(cur);
            if let Some(m) = new["metadata"].as_object_mut() {
                m.remove("resourceVersion");
            }
            Ok(new)
        })
        .await
    {
        Ok(_) | Err(ApiError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// One step of a CRD's deletion; true once the CRD is gone (or let go).
async fn terminate(
    api: &Arc<Api>,
    info: &Arc<ResourceInfo>,
    crd: &Value,
    state: &mut State,
) -> Result<bool, ApiError> {
    let name = crd["metadata"]["name"].as_str().unwrap_or("").to_string();
    if let Some(s) = state.served.get(&name) {
        s.terminating.store(true, Ordering::Relaxed);
    }
    let has_finalizer = crd["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == FINALIZER));
    if !has_finalizer {
        return Ok(true);
    }
    write_status_if_changed(api, info, crd, |cur| {
        let mut new = cur.clone();
        set_condition(
            &mut new,
            "Terminating",
            "True",
            "InstanceDeletionInProgress",
            "CustomResource deletion is in progress",
        );
        new
    })
    .await?;
    // The objects, through the entry that lists them.
    let group = crd["spec"]["group"].as_str().unwrap_or("");
    let plural = crd["status"]["acceptedNames"]["plural"]
        .as_str()
        .unwrap_or("");
    let listed = api
        .registry
        .snapshot()
        .all()
        .iter()
        .find(|r| {
            r.group == group
                && r.plural == plural
                && r.converted == Some(Converted::Custom { listed: true })
        })
        .cloned();
    if let Some(res) = listed {
        let page = api
            .store
            .list(&res.list_prefix(None), None, 0, None)
            .await?;
        for kv in &page.items {
            let Ok(obj) = conversion::decode(&res, &kv.value, kv.mod_revision) else {
                continue;
            };
            if obj["metadata"]["deletionTimestamp"].is_string() {
                continue;
            }
            let ns = obj["metadata"]["namespace"]
                .as_str()
                .filter(|_| res.namespaced);
            let oname = obj["metadata"]["name"].as_str().unwrap_or("");
            match api
                .delete_object(&res, ns, oname, &DeleteOptions::default())
                .await
            {
                Ok(_) | Err(ApiError::NotFound { .. }) => {}
                Err(e) => {
                    let msg = format!("could not issue all deletes: {e}");
                    write_status_if_changed(api, info, crd, |cur| {
                        let mut new = cur.clone();
                        set_condition(
                            &mut new,
                            "Terminating",
                            "True",
                            "InstanceDeletionFailed",
                            &msg,
                        );
                        new
                    })
                    .await?;
                    return Ok(false);
                }
            }
        }
        if api.store.count(&res.list_prefix(None)).await? > 0 {
            // Objects with finalizers of their own: come back when they are gone.
            return Ok(false);
        }
    }
    stop_serving(api, &name, state);
    write_status_if_changed(api, info, crd, |cur| {
        let mut new = cur.clone();
        set_condition(
            &mut new,
            "Terminating",
            "False",
            "InstanceDeletionCompleted",
            "removed all instances",
        );
        new
    })
    .await?;
    let mut r = internal_request(info.clone(), None, &name);
    r.field_manager = "nanokube-crd-controller".into();
    let removed = api
        .write_update(&r, Mode::Main, |cur| {
            let mut new = cur.clone();
            if let Some(f) = new["metadata"]["finalizers"].as_array_mut() {
                f.retain(|x| x != FINALIZER);
            }
            if let Some(m) = new["metadata"].as_object_mut() {
                m.remove("resourceVersion");
            }
            Ok(new)
        })
        .await;
    match removed {
        Ok(_) | Err(ApiError::NotFound { .. }) => Ok(true),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn names_in_use_are_refused_with_upstreams_reasons() {
        let req = Names {
            plural: "dbs".into(),
            singular: "db".into(),
            short: vec!["d".into()],
            kind: "Db".into(),
            list_kind: "DbList".into(),
            categories: vec!["all".into()],
        };
        let (names, cond) = accept_names(&req, &Names::default(), &set(&[]), &set(&[]));
        assert_eq!(names, req);
        assert_eq!(cond, ("True", "NoConflicts", "no conflicts found".into()));
        let (names, cond) = accept_names(&req, &Names::default(), &set(&["dbs"]), &set(&[]));
        assert_eq!(
            cond,
            (
                "False",
                "PluralConflict",
                "\"dbs\" is already in use".into()
            )
        );
        assert_eq!(names.plural, "");
        let (_, cond) = accept_names(&req, &Names::default(), &set(&["d"]), &set(&[]));
        assert_eq!(cond.1, "ShortNamesConflict");
        let (_, cond) = accept_names(&req, &Names::default(), &set(&[]), &set(&["Db"]));
        assert_eq!(
            cond,
            ("False", "KindConflict", "\"Db\" is already in use".into())
        );
        // Its own accepted names are no conflict.
        let (_, cond) = accept_names(
            &req,
            &req,
            &set(&["dbs", "db", "d"]),
            &set(&["Db", "DbList"]),
        );
        assert_eq!(cond.0, "True");
    }

    #[test]
    fn versions_sort_as_kubernetes_and_deprecations_name_the_successor() {
        let mut v = vec!["v1alpha1", "v1", "v2beta1", "v1beta2", "foo", "v2"];
        v.sort_by(|a, b| version_order(a, b));
        assert_eq!(v, vec!["v2", "v1", "v2beta1", "v1beta2", "v1alpha1", "foo"]);
        let versions = vec![
            json!({"name": "v1beta1", "served": true, "deprecated": true}),
            json!({"name": "v1", "served": true}),
        ];
        assert_eq!(
            deprecation_text("example.com", "v1beta1", "Widget", &versions),
            "example.com/v1beta1 Widget is deprecated; use example.com/v1 Widget"
        );
    }
}
