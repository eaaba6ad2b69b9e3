//! The audit policy (audit.k8s.io/v1 Policy, as `--audit-policy-file` reads it): which level a
//! request is logged at. Rules are tried in order and the first that matches decides, as
//! upstream; a request no rule matches is not logged (level None).
//!
use serde::{Deserialize, Serialize};

/// How much of a request is logged, least to most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub enum Level {
    #[default]
    None,
    Metadata,
    Request,
    RequestResponse,
}

/// The points of a request's life an event is written at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stage {
    RequestReceived,
    ResponseStarted,
    ResponseComplete,
    Panic,
}

/// A group and resources within it a rule names; empty lists match everything.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupResources {
    #[serde(default)]
    pub group: String,
    /// `pods`, `pods/log` (a subresource), `*/scale` or `pods/*`.
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub resource_names: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    pub level: Level,
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub user_groups: Vec<String>,
    #[serde(default)]
    pub verbs: Vec<String>,
    #[serde(default)]
    pub resources: Vec<GroupResources>,
    /// `""` names cluster-scoped requests, as upstream.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Paths, with a trailing `*` matching any suffix.
    #[serde(default, rename = "nonResourceURLs")]
    pub non_resource_urls: Vec<String>,
    #[serde(default)]
    pub omit_stages: Vec<Stage>,
    pub omit_managed_fields: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    #[serde(default)]
    pub rules: Vec<Rule>,
    #[serde(default)]
    pub omit_stages: Vec<Stage>,
    #[serde(default)]
    pub omit_managed_fields: bool,
}

/// What the matcher needs to know of a request.
#[derive(Debug, Clone, Default)]
pub struct Attributes<'a> {
    pub user: &'a str,
    pub groups: &'a [String],
    pub verb: &'a str,
    pub is_resource: bool,
    pub group: &'a str,
    pub resource: &'a str,
    pub subresource: &'a str,
    pub name: &'a str,
    pub namespace: &'a str,
    pub path: &'a str,
}

/// The decision for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub level: Level,
    pub omit_stages: Vec<Stage>,
    pub omit_managed_fields: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
}

impl Policy {
    /// Reads a Policy file (YAML or JSON); its kind and apiVersion must be upstream's.
    pub fn load(path: &std::path::Path) -> Result<Policy, Error> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: shown.clone(),
            source,
        })?;
        Policy::parse(&text).map_err(|message| Error::Parse {
            path: shown,
            message,
        })
    }

    pub fn parse(text: &str) -> Result<Policy, String> {
        let value: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        let kind = value.get("kind").and_then(|v| v.as_str()).unwrap_or("");
        let api_version = value
            .get("apiVersion")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        if kind != "Policy" || api_version != "audit.k8s.io/v1" {
            return Err(format!(
                "expected kind Policy of apiVersion audit.k8s.io/v1, got {kind:?} of {api_version:?}"
            ));
        }
        serde_yaml::from_value(value).map_err(|e| e.to_string())
    }

    /// The first matching rule's level; the rule's omitStages join the policy's.
    pub fn decide(&self, a: &Attributes) -> Decision {
        let Some(rule) = self.rules.iter().find(|r| r.matches(a)) else {
            return Decision {
                level: Level::None,
                omit_stages: self.omit_stages.clone(),
                omit_managed_fields: self.omit_managed_fields,
            };
        };
        let mut omit_stages = self.omit_stages.clone();
        omit_stages.extend(rule.omit_stages.iter().copied());
        Decision {
            level: rule.level,
            omit_stages,
            omit_managed_fields: rule.omit_managed_fields.unwrap_or(self.omit_managed_fields),
        }
    }
}

fn any_or(list: &[String], pred: impl Fn(&str) -> bool) -> bool {
    list.is_empty() || list.iter().any(|s| pred(s))
}

impl Rule {
    fn matches(&self, a: &Attributes) -> bool {
        if !any_or(&self.users, |u| u == a.user) {
            return false;
        }
        if !self.user_groups.is_empty()
            && !a
                .groups
                .iter()
                .any(|g| self.user_groups.iter().any(|r| r == g))
        {
            return false;
        }
        if !any_or(&self.verbs, |v| v == a.verb) {
            return false;
        }
        if a.is_resource {
            // A rule that names only non-resource URLs says nothing about resources.
            if !self.non_resource_urls.is_empty() && self.resources.is_empty() {
                return false;
            }
            any_or(&self.namespaces, |n| n == a.namespace)
                && (self.resources.is_empty() || self.resources.iter().any(|g| g.matches(a)))
        } else {
            if !self.resources.is_empty() || !self.namespaces.is_empty() {
                return false;
            }
            any_or(&self.non_resource_urls, |u| match u.strip_suffix('*') {
                Some(prefix) => a.path.starts_with(prefix),
                None => u == a.path,
            })
        }
    }
}

impl GroupResources {
    fn matches(&self, a: &Attributes) -> bool {
        if self.group != a.group {
            return false;
        }
        let full = if a.subresource.is_empty() {
            a.resource.to_string()
        } else {
            format!("{}/{}", a.resource, a.subresource)
        };
        let resource_ok = any_or(&self.resources, |r| {
            r == full
                || r == "*"
                || (a.subresource.is_empty() && r == a.resource)
                || r.strip_prefix("*/").is_some_and(|s| s == a.subresource)
                || r.strip_suffix("/*")
                    .is_some_and(|res| res == a.resource && !a.subresource.is_empty())
        });
        resource_ok && any_or(&self.resource_names, |n| n == a.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  users: ["system:kube-proxy"]
  verbs: ["watch"]
- level: None
  nonResourceURLs: ["/healthz*", "/version"]
- level: RequestResponse
  resources:
  - group: ""
    resources: ["pods/log", "configmaps"]
    resourceNames: ["special"]
- level: Metadata
  resources:
  - group: ""
    resources: ["secrets"]
  omitStages: [ResponseStarted]
- level: Request
  namespaces: ["kube-system"]
- level: Metadata
"#;

    fn req<'a>(verb: &'a str, resource: &'a str, name: &'a str, ns: &'a str) -> Attributes<'a> {
        Attributes {
            user: "alice",
            verb,
            is_resource: true,
            resource,
            name,
            namespace: ns,
            ..Default::default()
        }
    }

    #[test]
    fn first_matching_rule_wins() {
        let p = Policy::parse(POLICY).unwrap();
        let secret = p.decide(&req("get", "secrets", "s", "kube-system"));
        assert_eq!(secret.level, Level::Metadata);
        assert_eq!(
            secret.omit_stages,
            vec![Stage::RequestReceived, Stage::ResponseStarted]
        );
        assert_eq!(
            p.decide(&req("get", "configmaps", "x", "kube-system"))
                .level,
            Level::Request
        );
        assert_eq!(
            p.decide(&req("get", "configmaps", "special", "default"))
                .level,
            Level::RequestResponse
        );
        assert_eq!(
            p.decide(&req("get", "configmaps", "x", "default")).level,
            Level::Metadata
        );
    }

    #[test]
    fn users_subresources_and_urls() {
        let p = Policy::parse(POLICY).unwrap();
        let mut w = req("watch", "endpoints", "", "default");
        w.user = "system:kube-proxy";
        assert_eq!(p.decide(&w).level, Level::None);
        let mut log = req("get", "pods", "special", "default");
        log.subresource = "log";
        assert_eq!(p.decide(&log).level, Level::RequestResponse);
        let health = Attributes {
            user: "alice",
            verb: "get",
            path: "/healthz/etcd",
            ..Default::default()
        };
        assert_eq!(p.decide(&health).level, Level::None);
        let metrics = Attributes {
            path: "/metrics",
            ..health
        };
        assert_eq!(p.decide(&metrics).level, Level::Metadata);
    }

    #[test]
    fn no_rule_is_none_and_wrong_kind_is_refused() {
        let p = Policy::parse("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: []\n").unwrap();
        assert_eq!(p.decide(&req("get", "pods", "", "")).level, Level::None);
        let err = Policy::parse("apiVersion: v1\nkind: ConfigMap\n").unwrap_err();
        assert!(err.contains("expected kind Policy"), "{err}");
    }
}
