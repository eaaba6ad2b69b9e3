//! The `kubernetes` Service in `default`: how pods reach the API server. It holds the first
//! address of --service-cidr (10.43.0.1) and port 443 (`https`); its Endpoints and EndpointSlice,
//! both named `kubernetes`, point at the address and port the server serves on. kube-apiserver's
//! endpoint reconciler keeps them; here the server writes them at every start (the address or
//! port may have changed), as `system:apiserver`. The Service has no selector, so the endpoint
//! controllers leave them alone.

use super::handler::Api;
use super::identity;
use super::lifecycle::internal_request;
use super::resources::{meta_mut, Mode};
use super::status::ApiError;
use serde_json::{json, Value};
use std::sync::Arc;

pub const NAME: &str = "kubernetes";

/// Makes sure the Service exists and its endpoints name `address:port`.
pub async fn ensure(api: &Arc<Api>, address: &str, port: u16) -> Result<(), ApiError> {
    let cluster_ip = super::allocation::ranges().ips.first().to_string();
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": NAME, "namespace": "default",
            "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "clusterIP": cluster_ip, "sessionAffinity": "None",
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]},
    });
    put(api, "default", "", "v1", "services", service, false).await?;
    let endpoints = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": NAME, "namespace": "default",
            // Upstream's label: the mirroring controller does not copy this one into a slice.
            "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": address}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}],
    });
    put(api, "default", "", "v1", "endpoints", endpoints, true).await?;
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": NAME, "namespace": "default",
            "labels": {"kubernetes.io/service-name": NAME}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [address], "conditions": {"ready": true}}],
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
    tracing::info!(address, port, cluster_ip = %super::allocation::ranges().ips.first(),
        "service default/kubernetes");
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
