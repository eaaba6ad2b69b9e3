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
    put(api, "", "v1", "services", service, false).await?;
    let endpoints = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": NAME, "namespace": "default",
            // Upstream's label: the mirroring controller does not copy this one into a slice.
            "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": address}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}],
    });
    put(api, "", "v1", "endpoints", endpoints, true).await?;
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": NAME, "namespace": "default",
            "labels": {"kubernetes.io/service-name": NAME}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [address], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    });
    put(api, "discovery.k8s.io", "v1", "endpointslices", slice, true).await?;
    tracing::info!(address, port, cluster_ip = %super::allocation::ranges().ips.first(),
        "service default/kubernetes");
    Ok(())
}

/// Creates `obj`, or when it exists and `replace` is set, writes `obj`'s content over it.
async fn put(
    api: &Arc<Api>,
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
    let r = internal_request(info.clone(), Some("default"), NAME, identity::apiserver());
    if api
        .get_object(&info, Some("default"), NAME)
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
