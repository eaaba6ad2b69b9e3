//! What a container needs from the API before it can start: its environment (values,
//! configMap/secret keys, the pod's own fields) and its pod's volumes written to disk. Failures
//! carry the messages kubectl users know from the kubelet (CreateContainerConfigError,
//! FailedMount).

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Volume};
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
    let mut out: Vec<(String, String)> = Vec::new();
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

fn write_files(dir: &Path, files: &BTreeMap<String, (Vec<u8>, u32)>) -> std::io::Result<()> {
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

/// Makes every volume of the pod ready under `pod_dir/volumes` (or names the host path) and
/// returns volume name -> host path.
pub async fn volumes(
    client: &kube::Client,
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
            let mut files = BTreeMap::new();
            match items {
                Some(items) => {
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
                                return Err(fail(format!(
                                    "configmap references non-existent config key: {}",
                                    it.key
                                )))
                            }
                        }
                    }
                }
                None => {
                    for (k, b) in data {
                        files.insert(k, (b, mode));
                    }
                }
            }
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
        }
        // Other volume types (projected, persistentVolumeClaim, ...) come with their issues; a
        // container that mounts one fails with a config error naming it.
    }
    Ok(out)
}
