//! The serviceaccount controller: every namespace has a `default` ServiceAccount, the account
//! its pods run as when they name none (as kube-controller-manager's serviceaccount-controller).
//! It is made again if deleted; one a user made first is left as it is.

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use std::sync::Arc;
use std::time::Duration;

/// The account every namespace gets.
pub const DEFAULT: &str = "default";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kube: {0}")]
    Kube(#[from] kube::Error),
}

/// Runs the controller until the process ends.
pub async fn run(client: kube::Client) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let accounts: Api<ServiceAccount> = Api::all(client.clone());
    Controller::new(namespaces, watcher::Config::default())
        // A deleted `default` account wakes its namespace.
        .watches(accounts, watcher::Config::default(), |sa| {
            let ns = sa.metadata.namespace.as_deref()?;
            (sa.metadata.name.as_deref() == Some(DEFAULT)).then(|| ObjectRef::new(ns))
        })
        .run(reconcile, error_policy, Arc::new(client))
        .for_each(|_| async {})
        .await;
}

fn error_policy(ns: Arc<Namespace>, e: &Error, _c: Arc<kube::Client>) -> Action {
    tracing::warn!(namespace = ?ns.metadata.name, error = %e, "default service account");
    Action::requeue(Duration::from_secs(5))
}

/// Whether the namespace is going away (nothing new may be made in it).
pub(crate) fn terminating(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_some()
        || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating")
}

async fn reconcile(ns: Arc<Namespace>, client: Arc<kube::Client>) -> Result<Action, Error> {
    let name = ns.metadata.name.clone().unwrap_or_default();
    if terminating(&ns) {
        return Ok(Action::await_change());
    }
    let api: Api<ServiceAccount> = Api::namespaced((*client).clone(), &name);
    if api.get_opt(DEFAULT).await?.is_some() {
        return Ok(Action::await_change());
    }
    let sa = ServiceAccount {
        metadata: kube::api::ObjectMeta {
            name: Some(DEFAULT.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    match api.create(&PostParams::default(), &sa).await {
        Ok(_) => tracing::debug!(namespace = %name, "default service account created"),
        // Made meanwhile, or the namespace began terminating: nothing left to do.
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 403 => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Action::await_change())
}
