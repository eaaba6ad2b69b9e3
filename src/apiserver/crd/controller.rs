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

use super::definition::{condition, set_condition};
use super::entries::entries;
use super::names::{accept_names, Names};
use super::{FINALIZER, GROUP};
use crate::apiserver::conversion::{self, Converted};
use crate::apiserver::handler::Api;
use crate::apiserver::lifecycle::internal_request;
use crate::apiserver::registry::ResourceInfo;
use crate::apiserver::resources::{DeleteOptions, Mode};
use crate::apiserver::status::ApiError;
use futures::StreamExt;
use serde_json::Value;
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
            // Served until its objects are gone (their deletes go through it), also when a
            // restarted server finds the CRD terminating.
            let names = Names::of(&crd["status"]["acceptedNames"]);
            if !names.plural.is_empty() && !names.kind.is_empty() {
                serve(api, &name, crd, &names, state);
            }
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
    let mut r = internal_request(
        info.clone(),
        None,
        name,
        crate::apiserver::identity::apiserver(),
    );
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
    let mut r = internal_request(
        info.clone(),
        None,
        &name,
        crate::apiserver::identity::apiserver(),
    );
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
