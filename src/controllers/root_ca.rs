//! The root CA publisher: every namespace has the ConfigMap `kube-root-ca.crt` holding the
//! cluster CA under `ca.crt`, so a pod can verify the API server it reaches through the
//! `kubernetes` Service (its service account volume projects that key). As upstream's
//! root-ca-cert-publisher, the ConfigMap is put back when deleted or edited.

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::apiserver::admission::service_account::ROOT_CA_CONFIGMAP;

const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver \
when using internal endpoints such as the internal service IP or kubernetes.default.svc. No \
other usage is guaranteed across distributions of Kubernetes clusters.";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kube: {0}")]
    Kube(#[from] kube::Error),
}

struct Ctx {
    client: kube::Client,
    ca_pem: String,
}

/// Runs the publisher until the process ends; `ca_pem` is the cluster CA certificate.
pub async fn run(client: kube::Client, ca_pem: String) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let maps: Api<ConfigMap> = Api::all(client.clone());
    let selector = format!("metadata.name={ROOT_CA_CONFIGMAP}");
    Controller::new(namespaces, watcher::Config::default())
        .watches(maps, watcher::Config::default().fields(&selector), |cm| {
            Some(ObjectRef::new(cm.metadata.namespace.as_deref()?))
        })
        .run(reconcile, error_policy, Arc::new(Ctx { client, ca_pem }))
        .for_each(|_| async {})
        .await;
}

fn error_policy(ns: Arc<Namespace>, e: &Error, _c: Arc<Ctx>) -> Action {
    tracing::warn!(namespace = ?ns.metadata.name, error = %e, "publishing the root CA");
    Action::requeue(Duration::from_secs(5))
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let name = ns.metadata.name.clone().unwrap_or_default();
    if super::service_account::terminating(&ns) {
        return Ok(Action::await_change());
    }
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &name);
    let data = BTreeMap::from([("ca.crt".to_string(), ctx.ca_pem.clone())]);
    match api.get_opt(ROOT_CA_CONFIGMAP).await? {
        Some(cm) if cm.data.as_ref() == Some(&data) => {}
        Some(_) => {
            let patch = serde_json::json!({"data": data});
            api.patch(
                ROOT_CA_CONFIGMAP,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        }
        None => {
            let cm = ConfigMap {
                metadata: kube::api::ObjectMeta {
                    name: Some(ROOT_CA_CONFIGMAP.into()),
                    annotations: Some(BTreeMap::from([(
                        "kubernetes.io/description".to_string(),
                        DESCRIPTION.to_string(),
                    )])),
                    ..Default::default()
                },
                data: Some(data),
                ..Default::default()
            };
            match api.create(&PostParams::default(), &cm).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 || e.code == 403 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(Action::await_change())
}
