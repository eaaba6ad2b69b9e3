//! The `kubernetes` Service in `default`: how pods reach the API server. It holds the first
//! address of --service-cidr (10.43.0.1) and port 443 (`https`); its Endpoints and EndpointSlice,
//! both named `kubernetes`, point at every live API server of the cluster. The Service has no
//! selector, so the endpoint controllers leave them alone.
//!
//! Which servers are live is kube-apiserver's lease endpoint reconciler's question: each
//! server holds an identity Lease `kube-system/apiserver-<id>` (labelled
//! `apiserver.kubernetes.io/identity: kube-apiserver`, as upstream's) naming the address it
//! serves on and renewed every [`RENEW`]; every server, every [`RENEW`], writes the
//! endpoints of the leases renewed within [`STALE`], so a server that dies drops out of the
//! Service within about half a minute and one that stops cleanly at once. All servers
//! compute the same set, and nothing is written when it has not changed.

use super::handler::Api;
use super::identity;
use super::lifecycle::internal_request;
use super::resources::{meta_mut, Mode};
use super::status::ApiError;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

pub const NAME: &str = "kubernetes";

/// How often a server renews its identity lease and rewrites the endpoints.
pub const RENEW: Duration = Duration::from_secs(10);
/// A lease not renewed for this long is a server that is gone.
pub const STALE: Duration = Duration::from_secs(30);
/// A lease not renewed for its whole duration (3600 s, as upstream's) is deleted.
const EXPIRED: Duration = Duration::from_secs(3600);
/// The annotation of an identity lease naming its server's `address:port`.
pub const ENDPOINT_ANNOTATION: &str = "nanokube.io/apiserver-endpoint";
const IDENTITY_LABEL: &str = "apiserver.kubernetes.io/identity";

/// This server in the reconciler: its lease and the endpoint it serves on.
#[derive(Debug, Clone)]
pub struct Me {
    pub lease: String,
    pub address: String,
    pub port: u16,
    holder: String,
}

impl Me {
    pub fn new(address: &str, port: u16) -> Me {
        use sha2::Digest;
        let id = hex::encode(sha2::Sha256::digest(format!("{address}:{port}").as_bytes()));
        let lease = format!("apiserver-{}", &id[..16]);
        let holder = format!("{lease}_{}", uuid::Uuid::new_v4());
        Me {
            lease,
            address: address.to_string(),
            port,
            holder,
        }
    }
}

/// Makes sure the Service exists, this server's lease is held and the endpoints name every
/// live server.
pub async fn ensure(api: &Arc<Api>, me: &Me) -> Result<(), ApiError> {
    let cluster_ip = super::allocation::ranges().ips.first().to_string();
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": NAME, "namespace": "default",
            "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "clusterIP": cluster_ip, "sessionAffinity": "None",
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": me.port}]},
    });
    put(api, "default", "", "v1", "services", service, false).await?;
    reconcile(api, me).await?;
    tracing::info!(address = %me.address, port = me.port, cluster_ip = %super::allocation::ranges().ips.first(),
        lease = %me.lease, "service default/kubernetes");
    Ok(())
}

/// Renews this server's lease and rewrites the endpoints when the live set changed, every
/// [`RENEW`], until `stop`; then gives up the lease and takes this server out.
pub async fn run(api: Arc<Api>, me: Me, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(RENEW) => {}
            _ = stop.changed() => break,
        }
        if let Err(e) = reconcile(&api, &me).await {
            tracing::warn!(error = %e, "kubernetes service endpoints");
        }
    }
}

/// Gives up this server's lease and writes the endpoints without it (a clean stop).
pub async fn withdraw(api: &Arc<Api>, me: &Me) -> Result<(), ApiError> {
    let info = lease_info(api)?;
    match api
        .delete_object(&info, Some("kube-system"), &me.lease, &Default::default())
        .await
    {
        Ok(_) | Err(ApiError::NotFound { .. }) => {}
        Err(e) => return Err(e),
    }
    let live = live_endpoints(api, None).await?;
    write_endpoints(api, &live).await
}

fn lease_info(api: &Api) -> Result<Arc<super::registry::ResourceInfo>, ApiError> {
    api.registry
        .lookup("coordination.k8s.io", "v1", "leases")
        .ok_or_else(|| ApiError::Internal("leases are not registered".into()))
}

async fn reconcile(api: &Arc<Api>, me: &Me) -> Result<(), ApiError> {
    renew(api, me).await?;
    let live = live_endpoints(api, Some(me)).await?;
    write_endpoints(api, &live).await
}

fn micro_time(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()
}

async fn renew(api: &Arc<Api>, me: &Me) -> Result<(), ApiError> {
    let now = micro_time(jiff::Timestamp::now());
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": me.lease, "namespace": "kube-system",
            "labels": {IDENTITY_LABEL: "kube-apiserver"},
            "annotations": {ENDPOINT_ANNOTATION: format!("{}:{}", me.address, me.port)}},
        "spec": {"holderIdentity": me.holder, "leaseDurationSeconds": 3600,
            "acquireTime": now, "renewTime": now},
    });
    let info = lease_info(api)?;
    let r = internal_request(
        info.clone(),
        Some("kube-system"),
        &me.lease,
        identity::apiserver(),
    );
    if api
        .get_object(&info, Some("kube-system"), &me.lease)
        .await?
        .is_none()
    {
        match api.create_object(&r, lease.clone()).await {
            Ok(_) => return Ok(()),
            Err(ApiError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    api.write_update(&r, Mode::Main, |cur| {
        let mut new = cur.clone();
        new["spec"]["holderIdentity"] = json!(me.holder);
        new["spec"]["renewTime"] = json!(now);
        new["metadata"]["annotations"][ENDPOINT_ANNOTATION] =
            json!(format!("{}:{}", me.address, me.port));
        Ok(new)
    })
    .await?;
    Ok(())
}

/// `(address, port)` of every server whose lease is fresh (and `me` in any case), sorted.
async fn live_endpoints(api: &Arc<Api>, me: Option<&Me>) -> Result<Vec<(String, u16)>, ApiError> {
    let info = lease_info(api)?;
    let prefix = info.key(Some("kube-system"), "");
    let page = api.store.list(&prefix, None, 0, None).await?;
    let now = jiff::Timestamp::now();
    let mut out = Vec::new();
    let mut expired = Vec::new();
    for kv in page.items {
        let Ok(lease) = super::conversion::decode(&info, &kv.value, kv.mod_revision) else {
            continue;
        };
        if lease["metadata"]["labels"][IDENTITY_LABEL] != "kube-apiserver" {
            continue;
        }
        if me.is_some_and(|m| lease["metadata"]["name"] == m.lease.as_str()) {
            continue;
        }
        let age = lease["spec"]["renewTime"]
            .as_str()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .map(|t| now.duration_since(t).unsigned_abs());
        let fresh = age.is_some_and(|a| a < STALE);
        // Gone for longer than its lease lasts: upstream's identity lease GC removes it.
        if age.is_some_and(|a| a > EXPIRED) {
            if let Some(name) = lease["metadata"]["name"].as_str() {
                expired.push(name.to_string());
            }
        }
        // Only an address and a port reach the endpoints, whatever the annotation says.
        let endpoint = lease["metadata"]["annotations"][ENDPOINT_ANNOTATION]
            .as_str()
            .and_then(|e| e.rsplit_once(':'))
            .and_then(|(a, p)| {
                let ip: std::net::IpAddr = a.trim_matches(['[', ']']).parse().ok()?;
                Some((ip.to_string(), p.parse::<u16>().ok()?))
            });
        if let (true, Some(endpoint)) = (fresh, endpoint) {
            out.push(endpoint);
        }
    }
    for name in expired {
        let _ = api
            .delete_object(&info, Some("kube-system"), &name, &Default::default())
            .await;
    }
    if let Some(m) = me {
        out.push((m.address.clone(), m.port));
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The `(address, port)` pairs the stored Endpoints name.
fn named(endpoints: &Value) -> Vec<(String, u16)> {
    let mut out = Vec::new();
    for subset in endpoints["subsets"].as_array().into_iter().flatten() {
        let port = subset["ports"][0]["port"].as_u64().unwrap_or(0) as u16;
        for a in subset["addresses"].as_array().into_iter().flatten() {
            if let Some(ip) = a["ip"].as_str() {
                out.push((ip.to_string(), port));
            }
        }
    }
    out.sort();
    out
}

async fn write_endpoints(api: &Arc<Api>, live: &[(String, u16)]) -> Result<(), ApiError> {
    let info = api
        .registry
        .lookup("", "v1", "endpoints")
        .ok_or_else(|| ApiError::Internal("endpoints are not registered".into()))?;
    if let Some((cur, _)) = api.get_object(&info, Some("default"), NAME).await? {
        if named(&cur) == live {
            return Ok(());
        }
    }
    // One subset (and one slice) per port: servers of one cluster normally share theirs.
    let mut ports: Vec<u16> = live.iter().map(|(_, p)| *p).collect();
    ports.sort_unstable();
    ports.dedup();
    let subsets: Vec<Value> = ports
        .iter()
        .map(|port| {
            let addresses: Vec<Value> = live
                .iter()
                .filter(|(_, p)| p == port)
                .map(|(a, _)| json!({"ip": a}))
                .collect();
            json!({"addresses": addresses,
                "ports": [{"name": "https", "port": port, "protocol": "TCP"}]})
        })
        .collect();
    let endpoints = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": NAME, "namespace": "default",
            // Upstream's label: the mirroring controller does not copy this one into a slice.
            "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": subsets,
    });
    put(api, "default", "", "v1", "endpoints", endpoints, true).await?;
    let port = ports.first().copied().unwrap_or(443);
    let addresses: Vec<Value> = live
        .iter()
        .filter(|(_, p)| *p == port)
        .map(|(a, _)| json!({"addresses": [a], "conditions": {"ready": true}}))
        .collect();
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": NAME, "namespace": "default",
            "labels": {"kubernetes.io/service-name": NAME}},
        "addressType": "IPv4",
        "endpoints": addresses,
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    });
    put(
        api,
        "default",
        "discovery.k8s.io",
        "v1",
        "endpointslices",
        slice,
        true,
    )
    .await?;
    tracing::info!(?live, "service default/kubernetes endpoints");
    Ok(())
}

/// The `kube-dns` Service in `kube-system` at the cluster DNS address, as clusters that run
/// CoreDNS have it, so `kubectl get svc -A` and tools looking for it find it. Every agent
/// answers DNS at that address on its own node, so the Service has no selector and no
/// endpoints, and the proxies leave its address alone. Created once; later changes are the
/// user's.
pub async fn ensure_dns(api: &Arc<Api>, cluster_dns: std::net::Ipv4Addr) -> Result<(), ApiError> {
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kube-dns", "namespace": "kube-system",
            "labels": {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true",
                "kubernetes.io/name": "nanokube-dns"}},
        "spec": {"type": "ClusterIP", "clusterIP": cluster_dns.to_string(),
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53}]},
    });
    put(api, "kube-system", "", "v1", "services", service, false).await
}

/// Creates `obj`, or when it exists and `replace` is set, writes `obj`'s content over it.
async fn put(
    api: &Arc<Api>,
    namespace: &str,
    group: &str,
    version: &str,
    plural: &str,
    obj: Value,
    replace: bool,
) -> Result<(), ApiError> {
    let info = api
        .registry
        .lookup(group, version, plural)
        .ok_or_else(|| ApiError::Internal(format!("{plural} are not registered")))?;
    let name = obj["metadata"]["name"].as_str().unwrap_or(NAME).to_string();
    let r = internal_request(info.clone(), Some(namespace), &name, identity::apiserver());
    if api
        .get_object(&info, Some(namespace), &name)
        .await?
        .is_none()
    {
        match api.create_object(&r, obj.clone()).await {
            Ok(_) => return Ok(()),
            Err(ApiError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    if !replace {
        return Ok(());
    }
    api.write_update(&r, Mode::Main, |cur| {
        let mut new = obj.clone();
        let keep = cur["metadata"].clone();
        let m = meta_mut(&mut new);
        for (k, v) in keep.as_object().into_iter().flatten() {
            // The stored metadata, but for the labels this module owns.
            if k != "labels" && k != "resourceVersion" {
                m.insert(k.clone(), v.clone());
            }
        }
        Ok(new)
    })
    .await?;
    Ok(())
}
