//! The cluster's entry in the user's kubeconfig: a cluster, a user and a context all named
//! `nanokube-<name>`, merged in on create (and made current, as kind and k3d do) and taken out
//! on delete. The file is handled as YAML values so that whatever else it holds stays as it was.

use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};

/// The kubeconfig kubectl would use: $KUBECONFIG's first file, else ~/.kube/config.
pub fn default_path() -> PathBuf {
    if let Some(first) = std::env::var_os("KUBECONFIG")
        .and_then(|v| std::env::split_paths(&v).find(|p| !p.as_os_str().is_empty()))
    {
        return first;
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    Path::new(&home).join(".kube/config")
}

/// Renames the server's own kubeconfig (one cluster, user and context, all `default`) to
/// `context` and points it at `server`.
pub fn renamed(server_kubeconfig: &str, context: &str, server: &str) -> Result<Value, String> {
    let mut doc: Value = serde_yaml::from_str(server_kubeconfig).map_err(|e| e.to_string())?;
    for (list, inner) in [
        ("clusters", "cluster"),
        ("users", "user"),
        ("contexts", "context"),
    ] {
        let Some(Value::Sequence(items)) = doc.get_mut(list) else {
            return Err(format!("the server's kubeconfig has no {list}"));
        };
        items.truncate(1);
        let Some(item) = items.first_mut() else {
            return Err(format!("the server's kubeconfig has no {list}"));
        };
        item["name"] = context.into();
        if list == "clusters" {
            item[inner]["server"] = server.into();
        }
        if list == "contexts" {
            item[inner]["cluster"] = context.into();
            item[inner]["user"] = context.into();
        }
    }
    doc["current-context"] = context.into();
    Ok(doc)
}

fn load(path: &Path) -> Result<Value, String> {
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => {
            serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
        }
        Ok(_) => Ok(Value::Mapping(Mapping::new())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Value::Mapping(Mapping::new())),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

fn store(path: &Path, doc: &Value) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let text = serde_yaml::to_string(doc).map_err(|e| e.to_string())?;
    crate::apiserver::tls::write_private(path, text.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Drops every entry named `name` from the three lists of `doc`.
fn strip(doc: &mut Value, name: &str) {
    for list in ["clusters", "users", "contexts"] {
        if let Some(Value::Sequence(items)) = doc.get_mut(list) {
            items.retain(|i| i.get("name").and_then(Value::as_str) != Some(name));
        }
    }
}

/// Merges `entry` (from [`renamed`]) into the kubeconfig at `path` and makes it current.
pub fn merge(path: &Path, entry: &Value) -> Result<(), String> {
    let mut doc = load(path)?;
    let Some(name) = entry["current-context"].as_str() else {
        return Err("the entry names no context".into());
    };
    strip(&mut doc, name);
    let map = doc
        .as_mapping_mut()
        .ok_or_else(|| format!("{}: not a kubeconfig", path.display()))?;
    map.entry("apiVersion".into()).or_insert("v1".into());
    map.entry("kind".into()).or_insert("Config".into());
    for list in ["clusters", "users", "contexts"] {
        let items = map
            .entry(list.into())
            .or_insert_with(|| Value::Sequence(Vec::new()));
        if !items.is_sequence() {
            *items = Value::Sequence(Vec::new());
        }
        if let (Value::Sequence(items), Some(Value::Sequence(new))) = (items, entry.get(list)) {
            items.extend(new.iter().cloned());
        }
    }
    map.insert("current-context".into(), name.into());
    store(path, &doc)
}

/// Takes the context `name` out of the kubeconfig at `path`; if it was current, no context is
/// current afterwards (as `kind delete cluster` leaves it). A missing file is left missing.
pub fn remove(path: &Path, name: &str) -> Result<(), String> {
    if !path.exists() {
        return Ok(());
    }
    let mut doc = load(path)?;
    strip(&mut doc, name);
    if doc.get("current-context").and_then(Value::as_str) == Some(name) {
        doc["current-context"] = "".into();
    }
    store(path, &doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER: &str = "apiVersion: v1\nkind: Config\nclusters:\n- name: default\n  cluster:\n    certificate-authority-data: Q0E=\n    server: https://127.0.0.1:6443\ncontexts:\n- name: default\n  context:\n    cluster: default\n    user: default\ncurrent-context: default\npreferences: {}\nusers:\n- name: default\n  user:\n    client-certificate-data: Y2VydA==\n    client-key-data: a2V5\n";

    #[test]
    fn merged_beside_other_contexts_then_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        let other = SERVER.replace("default", "other");
        std::fs::write(&path, &other).unwrap();
        let entry = renamed(SERVER, "nanokube-a", "https://127.0.0.1:40001").unwrap();
        merge(&path, &entry).unwrap();
        merge(&path, &entry).unwrap();
        let doc: Value = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(doc["current-context"], "nanokube-a");
        let names = |list: &str| -> Vec<String> {
            doc[list]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|i| i["name"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(names("clusters"), ["other", "nanokube-a"], "merged once");
        assert_eq!(names("users"), ["other", "nanokube-a"]);
        assert_eq!(
            doc["clusters"][1]["cluster"]["server"],
            "https://127.0.0.1:40001"
        );
        assert_eq!(doc["contexts"][1]["context"]["user"], "nanokube-a");
        assert_eq!(doc["users"][1]["user"]["client-key-data"], "a2V5");
        remove(&path, "nanokube-a").unwrap();
        let doc: Value = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(doc["current-context"], "");
        assert_eq!(doc["clusters"].as_sequence().unwrap().len(), 1);
        assert_eq!(doc["clusters"][0]["name"], "other");
    }

    #[test]
    fn a_new_file_is_made_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/config");
        merge(
            &path,
            &renamed(SERVER, "nanokube-b", "https://127.0.0.1:1").unwrap(),
        )
        .unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        remove(&dir.path().join("absent"), "nanokube-b").unwrap();
        assert!(!dir.path().join("absent").exists());
    }
}
