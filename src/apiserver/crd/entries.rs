//! The registry entries of a CRD: one per served version, with the strategy built from the
//! version's schema, printer columns, subresources and deprecation.

use super::definition::storage_version;
use super::names::Names;
use super::strategy::{field_path, Column, CustomResource, ScalePaths};
use super::{jsonpath, openapi};
use crate::apiserver::conversion::Converted;
use crate::apiserver::kinds;
use crate::apiserver::registry::ResourceInfo;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Kubernetes' version priority (`CompareKubeAwareVersionStrings`): GA before beta before
/// alpha, higher numbers first, then anything else by name.
pub fn version_order(a: &str, b: &str) -> std::cmp::Ordering {
    fn parse(v: &str) -> Option<(u8, u64, u64)> {
        let rest = v.strip_prefix('v')?;
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let major: u64 = rest[..digits].parse().ok()?;
        let tail = &rest[digits..];
        if tail.is_empty() {
            return Some((2, major, 0));
        }
        let (level, num) = if let Some(n) = tail.strip_prefix("beta") {
            (1, n)
        } else if let Some(n) = tail.strip_prefix("alpha") {
            (0, n)
        } else {
            return None;
        };
        Some((level, major, num.parse().ok()?))
    }
    match (parse(a), parse(b)) {
        (Some(x), Some(y)) => y.cmp(&x),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

/// Upstream's `defaultDeprecationWarning`.
fn deprecation_text(group: &str, version: &str, kind: &str, versions: &[Value]) -> String {
    let mut msg = format!("{group}/{version} {kind} is deprecated");
    let mut newer: Vec<&str> = versions
        .iter()
        .filter(|v| v["served"] == true && v["deprecated"] != true)
        .filter_map(|v| v["name"].as_str())
        .filter(|n| version_order(version, n) == std::cmp::Ordering::Greater)
        .collect();
    newer.sort_by(|a, b| version_order(a, b));
    if let Some(best) = newer.first() {
        msg.push_str(&format!("; use {group}/{best} {kind}"));
    }
    msg
}

/// The registry entries of a CRD's served versions, the preferred (highest) version first.
pub(crate) fn entries(
    crd: &Value,
    names: &Names,
    terminating: &Arc<AtomicBool>,
) -> Vec<ResourceInfo> {
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or("");
    let namespaced = spec["scope"] != "Cluster";
    let all_versions = spec["versions"].as_array().cloned().unwrap_or_default();
    let mut versions: Vec<&Value> = all_versions
        .iter()
        .filter(|v| v["served"] == true)
        .collect();
    versions.sort_by(|a, b| {
        version_order(
            a["name"].as_str().unwrap_or(""),
            b["name"].as_str().unwrap_or(""),
        )
    });
    let storage = storage_version(crd).unwrap_or("").to_string();
    let schemas: Arc<BTreeMap<String, Value>> = Arc::new(
        all_versions
            .iter()
            .filter_map(|v| {
                let name = v["name"].as_str()?.to_string();
                let schema = v["schema"]["openAPIV3Schema"].clone();
                schema.is_object().then_some((name, schema))
            })
            .collect(),
    );
    // Namespace cleanup and the garbage collector walk one entry: the storage version's, or the
    // first served one when storage is not served.
    let listed = if versions.iter().any(|v| v["name"] == storage.as_str()) {
        storage.clone()
    } else {
        versions
            .first()
            .and_then(|v| v["name"].as_str())
            .unwrap_or("")
            .to_string()
    };
    let mut out = Vec::new();
    for v in versions {
        let version = v["name"].as_str().unwrap_or("");
        let schema = v["schema"]["openAPIV3Schema"].clone();
        let columns = v["additionalPrinterColumns"]
            .as_array()
            .filter(|c| !c.is_empty())
            .cloned()
            .unwrap_or_else(|| {
                vec![
                    json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp",
                    "description": crate::apiserver::table::AGE_DESC}),
                ]
            });
        let columns = columns
            .iter()
            .filter_map(|c| {
                let jp = c["jsonPath"].as_str()?;
                Some(Column {
                    name: c["name"].as_str().unwrap_or("").to_string(),
                    ty: c["type"].as_str().unwrap_or("string").to_string(),
                    format: c["format"].as_str().unwrap_or("").to_string(),
                    description: c["description"]
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| {
                            format!("Custom resource definition column (in JSONPath format): {jp}")
                        }),
                    priority: c["priority"].as_u64().unwrap_or(0).min(255) as u8,
                    path: jsonpath::Path::parse(jp).ok()?,
                })
            })
            .collect();
        let scale = v["subresources"]["scale"].as_object().and_then(|s| {
            Some(ScalePaths {
                spec: field_path(s.get("specReplicasPath")?.as_str()?)?,
                status: field_path(s.get("statusReplicasPath")?.as_str()?)?,
                selector: s
                    .get("labelSelectorPath")
                    .and_then(Value::as_str)
                    .and_then(field_path),
            })
        });
        let warning = (v["deprecated"] == true).then(|| match v["deprecationWarning"].as_str() {
            Some(w) => w.to_string(),
            None => deprecation_text(group, version, &names.kind, &all_versions),
        });
        let strategy = CustomResource {
            group: group.to_string(),
            version: version.to_string(),
            storage_version: storage.clone(),
            schema: schema.clone(),
            schemas: schemas.clone(),
            columns,
            scale,
            warning,
            terminating: terminating.clone(),
        };
        let mut info = kinds::custom(
            group,
            version,
            &names.kind,
            &names.plural,
            namespaced,
            openapi::definition(&schema),
            Arc::new(strategy),
        );
        info.singular = names.singular.clone();
        if !names.list_kind.is_empty() {
            info.list_kind = names.list_kind.clone();
        }
        info.short_names = names.short.clone();
        info.categories = names.categories.clone();
        info.status = v["subresources"]["status"].is_object();
        info.scale = v["subresources"]["scale"].is_object();
        info.decode = super::strategy::decode;
        // selectableFields: field selectors on their paths (".spec.engine" -> spec.engine).
        info.field_selectors = v["selectableFields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f["jsonPath"].as_str())
            .map(|p| p.trim_start_matches('.').to_string())
            .collect();
        info.converted = Some(Converted::Custom {
            listed: version == listed,
        });
        out.push(info);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_as_kubernetes_and_deprecations_name_the_successor() {
        let mut v = vec!["v1alpha1", "v1", "v2beta1", "v1beta2", "foo", "v2"];
        v.sort_by(|a, b| version_order(a, b));
        assert_eq!(v, vec!["v2", "v1", "v2beta1", "v1beta2", "v1alpha1", "foo"]);
        let versions = vec![
            json!({"name": "v1beta1", "served": true, "deprecated": true}),
            json!({"name": "v1", "served": true}),
        ];
        assert_eq!(
            deprecation_text("example.com", "v1beta1", "Widget", &versions),
            "example.com/v1beta1 Widget is deprecated; use example.com/v1 Widget"
        );
    }
}
