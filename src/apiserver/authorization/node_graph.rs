//! What each node may read, as upstream's node authorizer graph: a pod bound to a node links
//! that node to the Secrets, ConfigMaps, PersistentVolumeClaims and ServiceAccount the pod
//! names, and a claim links on to the PersistentVolume it is bound to. The graph is built from
//! the server's own store (a list, then every change of the watch applied as it comes, so a
//! pod event costs the pod's own references, not a rebuild), and asked synchronously by the
//! `node` authorizer on every request a kubelet makes.

use crate::apiserver::handler::Api;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

/// The kinds of object a pod can lead a node to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Secret,
    ConfigMap,
    Claim,
    ServiceAccount,
}

/// An object in a namespace.
type Named = (String, String);

/// What one bound pod references.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodEdges {
    pub node: String,
    pub namespace: String,
    pub refs: BTreeSet<(Kind, String)>,
}

#[derive(Debug, Default)]
pub struct Graph {
    /// Bound pods by (namespace, name).
    pods: HashMap<Named, PodEdges>,
    /// (kind, namespace, name) -> node -> how many of its pods reference it.
    reached: HashMap<(Kind, String, String), HashMap<String, usize>>,
    /// PersistentVolume name -> the claims bound to it.
    volume_claims: HashMap<String, BTreeSet<Named>>,
    /// Claim -> the volume it is bound to.
    claim_volume: HashMap<Named, String>,
}

impl Graph {
    /// Records a pod as stored now (replacing what was known of it); unbound pods reach nothing.
    pub fn put_pod(&mut self, pod: &Value) {
        let Some(key) = object_key(pod) else { return };
        self.remove_pod(&key);
        if let Some(edges) = pod_edges(pod) {
            for (kind, name) in &edges.refs {
                *self
                    .reached
                    .entry((*kind, edges.namespace.clone(), name.clone()))
                    .or_default()
                    .entry(edges.node.clone())
                    .or_default() += 1;
            }
            self.pods.insert(key, edges);
        }
    }

    pub fn delete_pod(&mut self, pod: &Value) {
        if let Some(key) = object_key(pod) {
            self.remove_pod(&key);
        }
    }

    fn remove_pod(&mut self, key: &Named) {
        let Some(old) = self.pods.remove(key) else {
            return;
        };
        for (kind, name) in old.refs {
            let k = (kind, old.namespace.clone(), name);
            if let Some(nodes) = self.reached.get_mut(&k) {
                if let Some(n) = nodes.get_mut(&old.node) {
                    *n -= 1;
                    if *n == 0 {
                        nodes.remove(&old.node);
                    }
                }
                if nodes.is_empty() {
                    self.reached.remove(&k);
                }
            }
        }
    }

    /// Records a claim's binding to its volume (spec.volumeName).
    pub fn put_claim(&mut self, claim: &Value) {
        let Some(key) = object_key(claim) else { return };
        self.delete_claim_key(&key);
        if let Some(volume) = claim["spec"]["volumeName"]
            .as_str()
            .filter(|v| !v.is_empty())
        {
            self.volume_claims
                .entry(volume.to_string())
                .or_default()
                .insert(key.clone());
            self.claim_volume.insert(key, volume.to_string());
        }
    }

    pub fn delete_claim(&mut self, claim: &Value) {
        if let Some(key) = object_key(claim) {
            self.delete_claim_key(&key);
        }
    }

    fn delete_claim_key(&mut self, key: &Named) {
        if let Some(volume) = self.claim_volume.remove(key) {
            if let Some(claims) = self.volume_claims.get_mut(&volume) {
                claims.remove(key);
                if claims.is_empty() {
                    self.volume_claims.remove(&volume);
                }
            }
        }
    }

    /// Whether a pod bound to `node` references this namespaced object.
    pub fn reaches(&self, node: &str, kind: Kind, namespace: &str, name: &str) -> bool {
        self.reached
            .get(&(kind, namespace.to_string(), name.to_string()))
            .is_some_and(|nodes| nodes.contains_key(node))
    }

    /// Whether a claim used by a pod on `node` is bound to this PersistentVolume.
    pub fn reaches_volume(&self, node: &str, volume: &str) -> bool {
        self.volume_claims.get(volume).is_some_and(|claims| {
            claims
                .iter()
                .any(|(ns, claim)| self.reaches(node, Kind::Claim, ns, claim))
        })
    }

    /// The node a pod is bound to, if the graph knows the pod.
    pub fn node_of_pod(&self, namespace: &str, name: &str) -> Option<&str> {
        self.pods
            .get(&(namespace.to_string(), name.to_string()))
            .map(|p| p.node.as_str())
    }

    fn clear(&mut self) {
        *self = Graph::default();
    }
}

fn object_key(o: &Value) -> Option<Named> {
    let m = &o["metadata"];
    Some((
        m["namespace"].as_str().unwrap_or_default().to_string(),
        m["name"].as_str()?.to_string(),
    ))
}

/// What a pod bound to a node references: every Secret and ConfigMap of its volumes
/// (projected sources included), env and envFrom, image pull secrets, its claims (generic
/// ephemeral volumes name theirs `<pod>-<volume>`) and its service account.
pub fn pod_edges(pod: &Value) -> Option<PodEdges> {
    let spec = &pod["spec"];
    let node = spec["nodeName"].as_str().filter(|n| !n.is_empty())?;
    let (namespace, pod_name) = object_key(pod)?;
    let mut refs = BTreeSet::new();
    let mut add = |kind: Kind, name: Option<&str>| {
        if let Some(n) = name.filter(|n| !n.is_empty()) {
            refs.insert((kind, n.to_string()));
        }
    };
    add(
        Kind::ServiceAccount,
        spec["serviceAccountName"]
            .as_str()
            .or_else(|| spec["serviceAccount"].as_str()),
    );
    for s in spec["imagePullSecrets"].as_array().into_iter().flatten() {
        add(Kind::Secret, s["name"].as_str());
    }
    for v in spec["volumes"].as_array().into_iter().flatten() {
        add(Kind::Secret, v["secret"]["secretName"].as_str());
        add(Kind::ConfigMap, v["configMap"]["name"].as_str());
        add(
            Kind::Claim,
            v["persistentVolumeClaim"]["claimName"].as_str(),
        );
        if v["ephemeral"].is_object() {
            if let Some(vol) = v["name"].as_str() {
                add(Kind::Claim, Some(&format!("{pod_name}-{vol}")));
            }
        }
        for src in v["projected"]["sources"].as_array().into_iter().flatten() {
            add(Kind::Secret, src["secret"]["name"].as_str());
            add(Kind::ConfigMap, src["configMap"]["name"].as_str());
        }
        // Volume plugins that carry credentials name them in one of these.
        for plugin in [
            "cephfs",
            "rbd",
            "flexVolume",
            "iscsi",
            "scaleIO",
            "storageos",
        ] {
            add(Kind::Secret, v[plugin]["secretRef"]["name"].as_str());
        }
        add(
            Kind::Secret,
            v["csi"]["nodePublishSecretRef"]["name"].as_str(),
        );
        add(Kind::Secret, v["azureFile"]["secretName"].as_str());
    }
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for c in spec[list].as_array().into_iter().flatten() {
            for e in c["envFrom"].as_array().into_iter().flatten() {
                add(Kind::Secret, e["secretRef"]["name"].as_str());
                add(Kind::ConfigMap, e["configMapRef"]["name"].as_str());
            }
            for e in c["env"].as_array().into_iter().flatten() {
                let from = &e["valueFrom"];
                add(Kind::Secret, from["secretKeyRef"]["name"].as_str());
                add(Kind::ConfigMap, from["configMapKeyRef"]["name"].as_str());
            }
        }
    }
    Some(PodEdges {
        node: node.to_string(),
        namespace,
        refs,
    })
}

/// The graph, shared by the authorizer (reads) and the feed (the one writer).
#[derive(Clone, Default)]
pub struct Shared(pub Arc<RwLock<Graph>>);

impl Shared {
    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, Graph> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Graph> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Fills the graph from the store before returning (so kubelets are answered from the
    /// server's first request), then follows pods and claims until the server stops.
    pub async fn start(&self, api: &Arc<Api>) {
        let Some(pods) = api.registry.lookup("", "v1", "pods") else {
            return;
        };
        let Some(claims) = api.registry.lookup("", "v1", "persistentvolumeclaims") else {
            return;
        };
        let prefixes = vec![pods.list_prefix(None), claims.list_prefix(None)];
        super::store_feed::start(api, prefixes, Arc::new(self.clone())).await;
    }
}

/// Fed pods (prefix 0) and claims (prefix 1).
impl super::store_feed::Index for Shared {
    fn reset(&self, lists: Vec<Vec<Value>>) {
        let mut g = self.write();
        g.clear();
        let mut lists = lists.into_iter();
        for p in lists.next().unwrap_or_default() {
            g.put_pod(&p);
        }
        for c in lists.next().unwrap_or_default() {
            g.put_claim(&c);
        }
    }

    fn apply(&self, which: usize, obj: &Value, deleted: bool) {
        let mut g = self.write();
        match (which, deleted) {
            (0, false) => g.put_pod(obj),
            (0, true) => g.delete_pod(obj),
            (_, false) => g.put_claim(obj),
            (_, true) => g.delete_claim(obj),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, node: &str, volumes: Value) -> Value {
        json!({
            "metadata": {"namespace": "ns", "name": name},
            "spec": {
                "nodeName": node,
                "serviceAccountName": "runner",
                "volumes": volumes,
                "imagePullSecrets": [{"name": "pull"}],
                "containers": [{
                    "name": "c",
                    "env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "env-secret", "key": "k"}}}],
                    "envFrom": [{"configMapRef": {"name": "env-cm"}}]
                }]
            }
        })
    }

    #[test]
    fn a_bound_pod_leads_its_node_to_what_it_names() {
        let mut g = Graph::default();
        g.put_pod(&pod(
            "p",
            "n1",
            json!([
                {"name": "s", "secret": {"secretName": "vol-secret"}},
                {"name": "d", "persistentVolumeClaim": {"claimName": "data"}},
                {"name": "e", "ephemeral": {"volumeClaimTemplate": {}}},
                {"name": "pr", "projected": {"sources": [{"configMap": {"name": "proj-cm"}}]}}
            ]),
        ));
        g.put_claim(&json!({"metadata": {"namespace": "ns", "name": "data"}, "spec": {"volumeName": "pv-1"}}));
        for (kind, name) in [
            (Kind::Secret, "vol-secret"),
            (Kind::Secret, "pull"),
            (Kind::Secret, "env-secret"),
            (Kind::ConfigMap, "env-cm"),
            (Kind::ConfigMap, "proj-cm"),
            (Kind::Claim, "data"),
            (Kind::Claim, "p-e"),
            (Kind::ServiceAccount, "runner"),
        ] {
            assert!(g.reaches("n1", kind, "ns", name), "{kind:?} {name}");
            assert!(!g.reaches("n2", kind, "ns", name), "{kind:?} {name} on n2");
            assert!(!g.reaches("n1", kind, "other", name));
        }
        assert!(!g.reaches("n1", Kind::Secret, "ns", "env-cm"));
        assert!(g.reaches_volume("n1", "pv-1"));
        assert!(!g.reaches_volume("n2", "pv-1"));
        assert_eq!(g.node_of_pod("ns", "p"), Some("n1"));
    }

    #[test]
    fn references_end_with_the_last_pod_that_holds_them() {
        let vols = json!([{"name": "s", "secret": {"secretName": "shared"}}]);
        let mut g = Graph::default();
        g.put_pod(&pod("a", "n1", vols.clone()));
        g.put_pod(&pod("b", "n1", vols.clone()));
        g.delete_pod(&pod("a", "n1", vols.clone()));
        assert!(g.reaches("n1", Kind::Secret, "ns", "shared"));
        g.delete_pod(&pod("b", "n1", vols.clone()));
        assert!(!g.reaches("n1", Kind::Secret, "ns", "shared"));
        // Moving a pod (an update) moves its references.
        g.put_pod(&pod("c", "n1", vols.clone()));
        g.put_pod(&pod("c", "n2", vols));
        assert!(!g.reaches("n1", Kind::Secret, "ns", "shared"));
        assert!(g.reaches("n2", Kind::Secret, "ns", "shared"));
        assert!(!g.reached.is_empty());
    }

    #[test]
    fn unbound_pods_reach_nothing() {
        let mut g = Graph::default();
        g.put_pod(&pod(
            "p",
            "",
            json!([{"name": "s", "secret": {"secretName": "x"}}]),
        ));
        assert!(g.pods.is_empty());
        assert!(g.reached.is_empty());
    }
}
