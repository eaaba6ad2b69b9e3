//! Static pods: pod manifests in `<data-dir>/agent/pod-manifests/` (k3s's directory) run on
//! this node. Each becomes a mirror pod in the API named `<name>-<node>`, bound to this node and
//! annotated as upstream marks mirror pods, which the normal pod worker then runs; removing the
//! file removes the pod. (Unlike upstream's, they need the API server to start: the mirror pod
//! is what drives them here.)

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

pub const DIR: &str = "agent/pod-manifests";
pub const SOURCE: &str = "kubernetes.io/config.source";
pub const MIRROR: &str = "kubernetes.io/config.mirror";
pub const HASH: &str = "kubernetes.io/config.hash";

/// The mirror pods the manifests in `dir` ask for, by namespace/name.
pub fn manifests(dir: &Path, node: &str) -> BTreeMap<(String, String), Pod> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = e.path();
        let ext = path.extension().and_then(|x| x.to_str()).unwrap_or("");
        if !matches!(ext, "yaml" | "yml" | "json") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let mut pod: Pod = match serde_yaml::from_str(&text) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "static pod manifest");
                continue;
            }
        };
        let hash = {
            use sha2::Digest;
            hex::encode(&sha2::Sha256::digest(text.as_bytes())[..16])
        };
        let name = format!("{}-{node}", pod.metadata.name.clone().unwrap_or_default());
        let ns = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        pod.metadata.name = Some(name.clone());
        pod.metadata.namespace = Some(ns.clone());
        let ann = pod
            .metadata
            .annotations
            .get_or_insert_with(Default::default);
        ann.insert(SOURCE.into(), "file".into());
        ann.insert(MIRROR.into(), hash.clone());
        ann.insert(HASH.into(), hash);
        if let Some(spec) = pod.spec.as_mut() {
            spec.node_name = Some(node.to_string());
        }
        out.insert((ns, name), pod);
    }
    out
}

/// Every five seconds: creates the mirror pods of new manifests, replaces those whose file
/// changed, deletes those whose file went.
pub async fn run(client: kube::Client, data_dir: std::path::PathBuf, node: String) {
    let dir = data_dir.join(DIR);
    loop {
        let want = manifests(&dir, &node);
        let all: Api<Pod> = Api::all(client.clone());
        let lp = ListParams::default().fields(&format!("spec.nodeName={node}"));
        if let Ok(have) = all.list(&lp).await {
            let mirrors: BTreeMap<(String, String), Pod> = have
                .items
                .into_iter()
                .filter(|p| {
                    p.metadata
                        .annotations
                        .as_ref()
                        .is_some_and(|a| a.get(SOURCE).map(String::as_str) == Some("file"))
                })
                .map(|p| {
                    (
                        (
                            p.metadata.namespace.clone().unwrap_or_default(),
                            p.metadata.name.clone().unwrap_or_default(),
                        ),
                        p,
                    )
                })
                .collect();
            for (key, pod) in &want {
                let api: Api<Pod> = Api::namespaced(client.clone(), &key.0);
                let hash = |p: &Pod| {
                    p.metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(HASH).cloned())
                };
                match mirrors.get(key) {
                    Some(m) if hash(m) == hash(pod) => {}
                    Some(_) => {
                        let _ = api.delete(&key.1, &DeleteParams::default()).await;
                    }
                    None => {
                        if let Err(e) = api.create(&PostParams::default(), pod).await {
                            tracing::warn!(pod = %key.1, error = %e, "creating a mirror pod");
                        }
                    }
                }
            }
            for (key, m) in &mirrors {
                if !want.contains_key(key) && m.metadata.deletion_timestamp.is_none() {
                    let api: Api<Pod> = Api::namespaced(client.clone(), &key.0);
                    let _ = api.delete(&key.1, &DeleteParams::default()).await;
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}
