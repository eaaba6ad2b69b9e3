//! What a container needs from the API before it can start: its environment (the `kubernetes`
//! Service's variables, values, configMap/secret keys, the pod's own fields) and its pod's
//! volumes written to disk, projected ones included (a service account token the kubelet asks
//! for the pod, with configMap, secret and downward-API files beside it). Failures carry the
//! messages kubectl users know from the kubelet (CreateContainerConfigError, FailedMount).

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, KeyToPath, Pod, Secret, Service, ServiceAccountTokenProjection, Volume,
};
use kube::api::Api;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::spec::expand;

/// A configMap or secret's data as bytes, or why it is missing.
async fn source(
    client: &kube::Client,
    ns: &str,
    kind: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, String> {
    if kind == "configmap" {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        match api.get_opt(name).await {
            Ok(Some(cm)) => {
                let mut out: BTreeMap<String, Vec<u8>> = cm
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.into_bytes()))
                    .collect();
                out.extend(
                    cm.binary_data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0)),
                );
                Ok(Some(out))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    } else {
        let api: Api<Secret> = Api::namespaced(client.clone(), ns);
        match api.get_opt(name).await {
            Ok(Some(s)) => {
                let mut out: BTreeMap<String, Vec<u8>> = s
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect();
                out.extend(
                    s.string_data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.into_bytes())),
                );
                Ok(Some(out))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// The value of a downward-API field path of `pod`.
pub fn field(pod: &Pod, path: &str, pod_ip: Option<&str>, host_ip: &str) -> Option<String> {
    let m = &pod.metadata;
    let spec = pod.spec.as_ref();
    let from_map = |map: &Option<BTreeMap<String, String>>, rest: &str| {
        let key = rest.strip_prefix("['")?.strip_suffix("']")?;
        map.as_ref()?.get(key).cloned()
    };
    Some(match path {
        "metadata.name" => m.name.clone()?,
        "metadata.namespace" => m.namespace.clone()?,
        "metadata.uid" => m.uid.clone()?,
        "spec.nodeName" => spec?.node_name.clone()?,
        "spec.serviceAccountName" => spec?.service_account_name.clone().unwrap_or_default(),
        "status.podIP" | "status.podIPs" => pod_ip.unwrap_or_default().to_string(),
        "status.hostIP" | "status.hostIPs" => host_ip.to_string(),
        p if p.starts_with("metadata.labels[") => {
            from_map(&m.labels, &p["metadata.labels".len()..])?
        }
        p if p.starts_with("metadata.annotations[") => {
            from_map(&m.annotations, &p["metadata.annotations".len()..])?
        }
        _ => return None,
    })
}

/// The container's environment, in the order Kubernetes builds it: envFrom sources first, then
/// env entries (each able to refer to the ones before it with $(VAR)).
pub async fn env(
    client: &kube::Client,
    pod: &Pod,
    c: &Container,
    pod_ip: Option<&str>,
    host_ip: &str,
) -> Result<Vec<(String, String)>, String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    // As upstream's kubelet, every pod knows where the API server is, whatever its namespace.
    let mut out: Vec<(String, String)> = api_server_env(client).await;
    let set = |out: &mut Vec<(String, String)>, k: String, v: String| {
        out.retain(|(x, _)| *x != k);
        out.push((k, v));
    };
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let (kind, name, optional) = if let Some(r) = &from.config_map_ref {
            ("configmap", r.name.clone(), r.optional.unwrap_or(false))
        } else if let Some(r) = &from.secret_ref {
            ("secret", r.name.clone(), r.optional.unwrap_or(false))
        } else {
            continue;
        };
        match source(client, ns, kind, &name).await? {
            Some(data) => {
                for (k, v) in data {
                    set(
                        &mut out,
                        format!("{prefix}{k}"),
                        String::from_utf8_lossy(&v).into_owned(),
                    );
                }
            }
            None if optional => {}
            None => return Err(format!("{kind} \"{name}\" not found")),
        }
    }
    for e in c.env.iter().flatten() {
        let value = if let Some(v) = &e.value {
            Some(expand(v, &out))
        } else if let Some(from) = &e.value_from {
            if let Some(r) = &from.config_map_key_ref {
                keyed(
                    client,
                    ns,
                    "configmap",
                    "ConfigMap",
                    &r.name,
                    &r.key,
                    r.optional,
                )
                .await?
            } else if let Some(r) = &from.secret_key_ref {
                keyed(client, ns, "secret", "Secret", &r.name, &r.key, r.optional).await?
            } else if let Some(f) = &from.field_ref {
                Some(field(pod, &f.field_path, pod_ip, host_ip).unwrap_or_default())
            } else {
                from.resource_field_ref
                    .as_ref()
                    .map(|r| resource_field(c, &r.resource))
            }
        } else {
            Some(String::new())
        };
        if let Some(v) = value {
            set(&mut out, e.name.clone(), v);
        }
    }
    Ok(out)
}

/// The docker-link variables of the `kubernetes` Service in `default` (KUBERNETES_SERVICE_HOST,
/// KUBERNETES_SERVICE_PORT, ...), which in-cluster clients use to find the API server; none
/// when the Service is not there.
async fn api_server_env(client: &kube::Client) -> Vec<(String, String)> {
    let api: Api<Service> = Api::namespaced(client.clone(), "default");
    let Ok(Some(svc)) = api.get_opt("kubernetes").await else {
        return Vec::new();
    };
    let spec = svc.spec.unwrap_or_default();
    let Some(ip) = spec.cluster_ip.filter(|ip| !ip.is_empty() && ip != "None") else {
        return Vec::new();
    };
    service_env("kubernetes", &ip, &spec.ports.unwrap_or_default())
}

/// The docker-link variables of one Service, as the kubelet makes them.
pub fn service_env(
    name: &str,
    ip: &str,
    ports: &[k8s_openapi::api::core::v1::ServicePort],
) -> Vec<(String, String)> {
    let prefix = name.to_ascii_uppercase().replace('-', "_");
    let mut out = vec![(format!("{prefix}_SERVICE_HOST"), ip.to_string())];
    for (i, p) in ports.iter().enumerate() {
        let proto = p.protocol.as_deref().unwrap_or("TCP");
        let port = p.port.to_string();
        let url = format!("{}://{ip}:{port}", proto.to_ascii_lowercase());
        let base = format!("{prefix}_PORT_{port}_{}", proto.to_ascii_uppercase());
        if i == 0 {
            out.push((format!("{prefix}_SERVICE_PORT"), port.clone()));
            out.push((format!("{prefix}_PORT"), url.clone()));
        }
        if let Some(n) = p.name.as_deref().filter(|n| !n.is_empty()) {
            let n = n.to_ascii_uppercase().replace('-', "_");
            out.push((format!("{prefix}_SERVICE_PORT_{n}"), port.clone()));
        }
        out.push((base.clone(), url));
        out.push((format!("{base}_PROTO"), proto.to_ascii_lowercase()));
        out.push((format!("{base}_PORT"), port));
        out.push((format!("{base}_ADDR"), ip.to_string()));
    }
    out
}

async fn keyed(
    client: &kube::Client,
    ns: &str,
    kind: &str,
    title: &str,
    name: &str,
    key: &str,
    optional: Option<bool>,
) -> Result<Option<String>, String> {
    let optional = optional.unwrap_or(false);
    match source(client, ns, kind, name).await? {
        Some(data) => match data.get(key) {
            Some(v) => Ok(Some(String::from_utf8_lossy(v).into_owned())),
            None if optional => Ok(None),
            None => Err(format!("couldn't find key {key} in {title} {ns}/{name}")),
        },
        None if optional => Ok(None),
        None => Err(format!("{kind} \"{name}\" not found")),
    }
}

fn resource_field(c: &Container, resource: &str) -> String {
    let r = c.resources.as_ref();
    let (which, name) = resource.split_once('.').unwrap_or(("", resource));
    let map = match which {
        "limits" => r.and_then(|r| r.limits.as_ref()),
        _ => r.and_then(|r| r.requests.as_ref()),
    };
    let q = map.and_then(|m| m.get(name)).map(|q| q.0.clone());
    match (name, q) {
        ("cpu", Some(q)) => {
            // Rounded up to whole cores, as the divisor 1 does upstream.
            let m = super::spec::milli_cpu(&q).unwrap_or(0);
            ((m + 999) / 1000).to_string()
        }
        ("memory", Some(q)) => super::spec::bytes(&q).unwrap_or(0).to_string(),
        ("cpu", None) => std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .to_string(),
        ("memory", None) => super::node::memory_bytes().to_string(),
        (_, q) => q.unwrap_or_default(),
    }
}

fn write_files(dir: &Path, files: &Files) -> std::io::Result<()> {
    // Written beside, then swapped in by renaming a symlink, so a reader sees the old set or
    // the new one, never half of each (as the kubelet's atomic writer does).
    let stamp = format!("..{}", chrono::Utc::now().format("%Y_%m_%d_%H_%M_%S.%f"));
    let data = dir.join(&stamp);
    std::fs::create_dir_all(&data)?;
    for (path, (bytes, mode)) in files {
        let p = data.join(path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&p, bytes)?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode))?;
    }
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&stamp, &tmp)?;
    let old = std::fs::read_link(dir.join("..data")).ok();
    std::fs::rename(&tmp, dir.join("..data"))?;
    for top in files.keys().filter_map(|p| p.split('/').next()) {
        let link = dir.join(top);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{top}"), &link)?;
        }
    }
    if let Some(old) = old.filter(|o| *o != Path::new(&stamp)) {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(())
}

/// The files a configMap or secret's `data` makes: the keys `items` names (each at its path),
/// or every key.
fn keys_to_files(
    kind: &str,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    mode: u32,
    optional: Option<bool>,
) -> Result<Files, String> {
    let mut files = BTreeMap::new();
    let Some(items) = items else {
        for (k, b) in data {
            files.insert(k.clone(), (b.clone(), mode));
        }
        return Ok(files);
    };
    for it in items {
        match data.get(&it.key) {
            Some(b) => {
                files.insert(
                    it.path.clone(),
                    (b.clone(), it.mode.map_or(mode, |m| m as u32)),
                );
            }
            None if optional.unwrap_or(false) => {}
            None => {
                return Err(format!(
                    "{kind} references non-existent config key: {}",
                    it.key
                ))
            }
        }
    }
    Ok(files)
}

/// Files of a volume: path -> (content, mode).
type Files = BTreeMap<String, (Vec<u8>, u32)>;

/// Tokens the kubelet got for its pods' projected volumes, kept until they are due for renewal.
#[derive(Debug, Default)]
pub struct Tokens {
    held: std::sync::Mutex<BTreeMap<TokenKey, HeldToken>>,
}

/// Which token: pod uid, account, audience, lifetime asked for.
type TokenKey = (String, String, String, i64);

#[derive(Debug, Clone)]
struct HeldToken {
    token: String,
    issued: i64,
    expires: i64,
}

/// The longest a token is used before it is renewed, as upstream's kubelet.
const TOKEN_MAX_AGE_SECONDS: i64 = 24 * 3600;

/// When a token issued at `issued` and expiring at `expires` is renewed: once 80% of its
/// lifetime has passed, or a day, whichever comes first (upstream's token manager).
pub fn renew_at(issued: i64, expires: i64) -> i64 {
    let lifetime = (expires - issued).max(0);
    (issued + lifetime * 8 / 10).min(issued + TOKEN_MAX_AGE_SECONDS)
}

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Tokens {
    /// The pod's token for `p`: the one held, unless it is due, else a new one from the API
    /// (TokenRequest bound to the pod, asked as this node).
    async fn get(
        &self,
        client: &kube::Client,
        pod: &Pod,
        p: &ServiceAccountTokenProjection,
    ) -> Result<String, String> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let name = pod.metadata.name.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let account = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into());
        let seconds = p.expiration_seconds.unwrap_or(3600);
        let audience = p.audience.clone().unwrap_or_default();
        let key = (uid.clone(), account.clone(), audience.clone(), seconds);
        let held = self.held.lock().expect("tokens lock").get(&key).cloned();
        if let Some(t) = held.filter(|t| unix_now() < renew_at(t.issued, t.expires)) {
            return Ok(t.token);
        }
        let request = serde_json::json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": if audience.is_empty() { vec![] } else { vec![audience] },
                "expirationSeconds": seconds,
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": name, "uid": uid},
            },
        });
        let url = format!("/api/v1/namespaces/{ns}/serviceaccounts/{account}/token");
        let req = http::Request::post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(&request).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        let issued = unix_now();
        let answer: TokenRequest = client
            .request(req)
            .await
            .map_err(|e| format!("failed to fetch token: {e}"))?;
        let status = answer.status.ok_or("failed to fetch token: no status")?;
        let expires = status.expiration_timestamp.0.as_second();
        let token = status.token;
        self.held.lock().expect("tokens lock").insert(
            key,
            HeldToken {
                token: token.clone(),
                issued,
                expires,
            },
        );
        Ok(token)
    }

    /// Forgets the tokens of pod `uid` (gone from this node).
    pub fn forget(&self, uid: &str) {
        self.held
            .lock()
            .expect("tokens lock")
            .retain(|k, _| k.0 != uid);
    }

    /// Seconds until the first of the pod's tokens is due (none held: None).
    pub fn next_renewal(&self, uid: &str) -> Option<i64> {
        let now = unix_now();
        self.held
            .lock()
            .expect("tokens lock")
            .iter()
            .filter(|(k, _)| k.0 == uid)
            .map(|(_, t)| (renew_at(t.issued, t.expires) - now).max(0))
            .min()
    }

    /// Whether one of the pod's held tokens is due.
    pub fn due(&self, uid: &str) -> bool {
        self.next_renewal(uid) == Some(0)
    }
}

/// The files of a projected volume: each source's, later sources over earlier ones.
async fn projected_files(
    client: &kube::Client,
    tokens: &Tokens,
    pod: &Pod,
    pv: &k8s_openapi::api::core::v1::ProjectedVolumeSource,
    pod_ip: Option<&str>,
    host_ip: &str,
) -> Result<Files, String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mode = pv.default_mode.unwrap_or(0o644) as u32;
    let mut files = BTreeMap::new();
    for src in pv.sources.iter().flatten() {
        if let Some(t) = &src.service_account_token {
            let token = tokens.get(client, pod, t).await?;
            files.insert(t.path.clone(), (token.into_bytes(), mode));
        }
        let keyed = [
            src.config_map
                .as_ref()
                .map(|c| ("configmap", c.name.clone(), c.items.clone(), c.optional)),
            src.secret
                .as_ref()
                .map(|s| ("secret", s.name.clone(), s.items.clone(), s.optional)),
        ];
        for (kind, name, items, optional) in keyed.into_iter().flatten() {
            let data = match source(client, ns, kind, &name).await? {
                Some(d) => d,
                None if optional.unwrap_or(false) => continue,
                None => return Err(format!("{kind} \"{name}\" not found")),
            };
            files.extend(keys_to_files(
                kind,
                &data,
                items.as_deref(),
                mode,
                optional,
            )?);
        }
        if let Some(da) = &src.downward_api {
            for it in da.items.iter().flatten() {
                if let Some(f) = &it.field_ref {
                    let val = field(pod, &f.field_path, pod_ip, host_ip).unwrap_or_default();
                    files.insert(
                        it.path.clone(),
                        (val.into_bytes(), it.mode.map_or(mode, |m| m as u32)),
                    );
                }
            }
        }
    }
    Ok(files)
}

/// Rewrites the pod's projected volumes that hold a token due for renewal (each as one atomic
/// swap, so a reader sees the old token or the new). Gives the seconds until the next renewal.
pub async fn renew_projected(
    client: &kube::Client,
    tokens: &Tokens,
    pod: &Pod,
    pod_dir: &Path,
    pod_ip: Option<&str>,
    host_ip: &str,
) -> Result<Option<i64>, String> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    if tokens.due(&uid) {
        for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
            let Some(pv) = &v.projected else { continue };
            let d = pod_dir.join("volumes/projected").join(&v.name);
            if !d.exists() {
                continue;
            }
            let files = projected_files(client, tokens, pod, pv, pod_ip, host_ip).await?;
            write_files(&d, &files).map_err(|e| e.to_string())?;
        }
    }
    Ok(tokens.next_renewal(&uid))
}

/// Makes every volume of the pod ready under `pod_dir/volumes` (or names the host path) and
/// returns volume name -> host path.
pub async fn volumes(
    client: &kube::Client,
    tokens: &Tokens,
    pod: &Pod,
    pod_dir: &Path,
    pod_ip: Option<&str>,
    host_ip: &str,
) -> Result<BTreeMap<String, PathBuf>, String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut out = BTreeMap::new();
    let vols: Vec<Volume> = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default();
    for v in vols {
        let fail = |e: String| format!("MountVolume.SetUp failed for volume \"{}\" : {e}", v.name);
        if let Some(ed) = &v.empty_dir {
            let d = pod_dir.join("volumes/empty-dir").join(&v.name);
            std::fs::create_dir_all(&d).map_err(|e| fail(e.to_string()))?;
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777))
                .map_err(|e| fail(e.to_string()))?;
            if ed.medium.as_deref() == Some("Memory") && !crate::image::rootfs::is_mounted(&d) {
                let size = ed
                    .size_limit
                    .as_ref()
                    .and_then(|q| super::spec::bytes(&q.0))
                    .map(|b| format!(",size={b}"))
                    .unwrap_or_default();
                nix::mount::mount(
                    Some("tmpfs"),
                    &d,
                    Some("tmpfs"),
                    nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
                    Some(format!("mode=1777{size}").as_str()),
                )
                .map_err(|e| fail(format!("mount tmpfs: {e}")))?;
            }
            out.insert(v.name.clone(), d);
        } else if let Some(hp) = &v.host_path {
            let p = PathBuf::from(&hp.path);
            let t = hp.type_.as_deref().unwrap_or("");
            let meta = std::fs::metadata(&p);
            match t {
                "DirectoryOrCreate" if meta.is_err() => {
                    std::fs::create_dir_all(&p).map_err(|e| fail(e.to_string()))?;
                    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))
                        .map_err(|e| fail(e.to_string()))?;
                }
                "FileOrCreate" if meta.is_err() => {
                    std::fs::write(&p, b"").map_err(|e| fail(e.to_string()))?;
                }
                "Directory" if !meta.as_ref().is_ok_and(|m| m.is_dir()) => {
                    return Err(fail(format!(
                        "hostPath type check failed: {} is not a directory",
                        hp.path
                    )));
                }
                "File" if !meta.as_ref().is_ok_and(|m| m.is_file()) => {
                    return Err(fail(format!(
                        "hostPath type check failed: {} is not a file",
                        hp.path
                    )));
                }
                "Socket" | "CharDevice" | "BlockDevice" if meta.is_err() => {
                    return Err(fail(format!(
                        "hostPath type check failed: {} does not exist",
                        hp.path
                    )));
                }
                _ => {}
            }
            out.insert(v.name.clone(), p);
        } else if v.config_map.is_some() || v.secret.is_some() {
            let (kind, name, items, mode, optional) = if let Some(cm) = &v.config_map {
                (
                    "configmap",
                    cm.name.clone(),
                    cm.items.clone(),
                    cm.default_mode,
                    cm.optional,
                )
            } else {
                let s = v.secret.as_ref().expect("checked");
                (
                    "secret",
                    s.secret_name.clone().unwrap_or_default(),
                    s.items.clone(),
                    s.default_mode,
                    s.optional,
                )
            };
            let mode = mode.unwrap_or(0o644) as u32;
            let data = match source(client, ns, kind, &name).await.map_err(&fail)? {
                Some(d) => d,
                None if optional.unwrap_or(false) => BTreeMap::new(),
                None => return Err(fail(format!("{kind} \"{name}\" not found"))),
            };
            let files =
                keys_to_files(kind, &data, items.as_deref(), mode, optional).map_err(&fail)?;
            let d = pod_dir.join("volumes").join(kind).join(&v.name);
            std::fs::create_dir_all(&d).map_err(|e| fail(e.to_string()))?;
            write_files(&d, &files).map_err(|e| fail(e.to_string()))?;
            out.insert(v.name.clone(), d);
        } else if let Some(da) = &v.downward_api {
            let mut files = BTreeMap::new();
            for it in da.items.iter().flatten() {
                if let Some(f) = &it.field_ref {
                    let val = field(pod, &f.field_path, pod_ip, host_ip).unwrap_or_default();
                    files.insert(
                        it.path.clone(),
                        (val.into_bytes(), it.mode.unwrap_or(0o644) as u32),
                    );
                }
            }
            let d = pod_dir.join("volumes/downward-api").join(&v.name);
            std::fs::create_dir_all(&d).map_err(|e| fail(e.to_string()))?;
            write_files(&d, &files).map_err(|e| fail(e.to_string()))?;
            out.insert(v.name.clone(), d);
        } else if let Some(pv) = &v.projected {
            let files = projected_files(client, tokens, pod, pv, pod_ip, host_ip)
                .await
                .map_err(&fail)?;
            let d = pod_dir.join("volumes/projected").join(&v.name);
            std::fs::create_dir_all(&d).map_err(|e| fail(e.to_string()))?;
            write_files(&d, &files).map_err(|e| fail(e.to_string()))?;
            out.insert(v.name.clone(), d);
        }
        // Other volume types (persistentVolumeClaim, ...) come with their issues; a
        // container that mounts one fails with a config error naming it.
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_renewed_at_four_fifths_of_their_life_or_after_a_day() {
        assert_eq!(renew_at(1000, 1000 + 3607), 1000 + 3607 * 8 / 10);
        assert_eq!(renew_at(0, 365 * 24 * 3600), 24 * 3600);
        assert_eq!(renew_at(50, 40), 50);
    }

    #[test]
    fn the_api_servers_variables_are_docker_links() {
        let port = k8s_openapi::api::core::v1::ServicePort {
            name: Some("https".into()),
            port: 443,
            protocol: Some("TCP".into()),
            ..Default::default()
        };
        let env: BTreeMap<String, String> = service_env("kubernetes", "10.43.0.1", &[port])
            .into_iter()
            .collect();
        for (k, v) in [
            ("KUBERNETES_SERVICE_HOST", "10.43.0.1"),
            ("KUBERNETES_SERVICE_PORT", "443"),
            ("KUBERNETES_SERVICE_PORT_HTTPS", "443"),
            ("KUBERNETES_PORT", "tcp://10.43.0.1:443"),
            ("KUBERNETES_PORT_443_TCP", "tcp://10.43.0.1:443"),
            ("KUBERNETES_PORT_443_TCP_PROTO", "tcp"),
            ("KUBERNETES_PORT_443_TCP_PORT", "443"),
            ("KUBERNETES_PORT_443_TCP_ADDR", "10.43.0.1"),
        ] {
            assert_eq!(env.get(k).map(String::as_str), Some(v), "{k}");
        }
        assert_eq!(env.len(), 8);
    }
}
