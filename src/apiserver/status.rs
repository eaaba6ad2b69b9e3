//! Kubernetes `Status` errors: every failed request is answered with one, so kubectl and client
//! libraries can print the message and branch on `reason` and `code`.

use serde_json::{json, Value};

/// One reason a field was refused, as a `details.causes` item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    pub reason: String,
    pub message: String,
    pub field: String,
}

/// What identifies the object an error is about (`details` of the Status).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    pub group: String,
    pub kind: String,
    pub name: String,
}

/// Errors of the API request path; each becomes one Kubernetes Status with its HTTP code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The object, resource or path does not exist (404).
    #[error("{message}")]
    NotFound { message: String, target: Target },
    /// A create found the name taken (409 AlreadyExists).
    #[error("{message}")]
    AlreadyExists { message: String, target: Target },
    /// An optimistic-concurrency or precondition check failed (409 Conflict).
    #[error("{message}")]
    Conflict { message: String, target: Target },
    /// The object failed validation (422 Invalid) with one cause per field.
    #[error("{message}")]
    Invalid {
        message: String,
        target: Target,
        causes: Vec<Cause>,
    },
    /// The request could not be understood: malformed body, wrong kind, bad parameters (400).
    #[error("{0}")]
    BadRequest(String),
    /// The request is understood but refused, e.g. creating in a terminating namespace (403).
    #[error("{message}")]
    Forbidden { message: String, target: Target },
    /// No valid credentials were presented (401).
    #[error("Unauthorized")]
    Unauthorized,
    /// The verb is not supported on this path (405).
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The requested resourceVersion or continue token is older than the kept history (410).
    #[error("{0}")]
    Expired(String),
    /// The request body exceeds the size limit (413).
    #[error("{0}")]
    TooLarge(String),
    /// The Content-Type of the body is not one this endpoint accepts (415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The Accept header names no format this endpoint can write (406).
    #[error("{0}")]
    NotAcceptable(String),
    /// The server is at its in-flight limit; the client should retry after this many seconds
    /// (429, with a Retry-After header).
    #[error("{message}")]
    TooManyRequests { message: String, retry_after: u64 },
    /// Refused for now by a rule that may change, e.g. an eviction a PodDisruptionBudget does
    /// not allow yet (429 with its causes, no Retry-After).
    #[error("{message}")]
    Throttled { message: String, causes: Vec<Cause> },
    /// An admission webhook refused the request with its own Status code and reason (at least
    /// 400, as upstream makes it).
    #[error("{message}")]
    Denied {
        code: u16,
        reason: String,
        message: String,
    },
    /// Nothing can serve the request now, e.g. a pod's exec with no node agent to run it (503).
    #[error("{0}")]
    ServiceUnavailable(String),
    /// A read asked for a resourceVersion the store has not reached (504 Timeout).
    #[error("{0}")]
    Timeout(String),
    /// The server failed (500); the message says where.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn not_found(group: &str, plural: &str, name: &str) -> Self {
        let what = qualified(group, plural);
        ApiError::NotFound {
            message: format!("{what} \"{name}\" not found"),
            target: Target {
                group: group.into(),
                kind: plural.into(),
                name: name.into(),
            },
        }
    }

    pub fn already_exists(group: &str, plural: &str, name: &str) -> Self {
        let what = qualified(group, plural);
        ApiError::AlreadyExists {
            message: format!("{what} \"{name}\" already exists"),
            target: Target {
                group: group.into(),
                kind: plural.into(),
                name: name.into(),
            },
        }
    }

    /// The optimistic-concurrency conflict kubectl users know ("the object has been modified").
    pub fn modified(group: &str, plural: &str, name: &str) -> Self {
        let what = qualified(group, plural);
        ApiError::Conflict {
            message: format!(
                "Operation cannot be fulfilled on {what} \"{name}\": the object has been modified; \
                 please apply your changes to the latest version and try again"
            ),
            target: Target {
                group: group.into(),
                kind: plural.into(),
                name: name.into(),
            },
        }
    }

    pub fn conflict(group: &str, plural: &str, name: &str, why: &str) -> Self {
        let what = qualified(group, plural);
        ApiError::Conflict {
            message: format!("Operation cannot be fulfilled on {what} \"{name}\": {why}"),
            target: Target {
                group: group.into(),
                kind: plural.into(),
                name: name.into(),
            },
        }
    }

    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<Cause>) -> Self {
        let list: Vec<String> = causes
            .iter()
            .map(|c| {
                if c.field.is_empty() {
                    c.message.clone()
                } else {
                    format!("{}: {}", c.field, c.message)
                }
            })
            .collect();
        let what = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        let message = match list.len() {
            1 => format!("{what} \"{name}\" is invalid: {}", list[0]),
            _ => format!("{what} \"{name}\" is invalid: [{}]", list.join(", ")),
        };
        ApiError::Invalid {
            message,
            target: Target {
                group: group.into(),
                kind: kind.into(),
                name: name.into(),
            },
            causes,
        }
    }

    /// As apierrors.NewForbidden: `pods "x" is forbidden: why`, or `pods is forbidden: why`
    /// when the name is not known (a create with generateName).
    pub fn forbidden(group: &str, plural: &str, name: &str, why: &str) -> Self {
        let what = qualified(group, plural);
        let message = if name.is_empty() {
            format!("{what} is forbidden: {why}")
        } else {
            format!("{what} \"{name}\" is forbidden: {why}")
        };
        ApiError::Forbidden {
            message,
            target: Target {
                group: group.into(),
                kind: plural.into(),
                name: name.into(),
            },
        }
    }

    pub fn code(&self) -> u16 {
        match self {
            ApiError::NotFound { .. } => 404,
            ApiError::AlreadyExists { .. } | ApiError::Conflict { .. } => 409,
            ApiError::Invalid { .. } => 422,
            ApiError::BadRequest(_) => 400,
            ApiError::Forbidden { .. } => 403,
            ApiError::Unauthorized => 401,
            ApiError::MethodNotAllowed(_) => 405,
            ApiError::Expired(_) => 410,
            ApiError::TooLarge(_) => 413,
            ApiError::UnsupportedMediaType(_) => 415,
            ApiError::NotAcceptable(_) => 406,
            ApiError::TooManyRequests { .. } | ApiError::Throttled { .. } => 429,
            ApiError::ServiceUnavailable(_) => 503,
            ApiError::Denied { code, .. } => *code,
            ApiError::Timeout(_) => 504,
            ApiError::Internal(_) => 500,
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            ApiError::NotFound { .. } => "NotFound",
            ApiError::AlreadyExists { .. } => "AlreadyExists",
            ApiError::Conflict { .. } => "Conflict",
            ApiError::Invalid { .. } => "Invalid",
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Forbidden { .. } => "Forbidden",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::MethodNotAllowed(_) => "MethodNotAllowed",
            ApiError::Expired(_) => "Expired",
            ApiError::TooLarge(_) => "RequestEntityTooLarge",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::NotAcceptable(_) => "NotAcceptable",
            ApiError::TooManyRequests { .. } | ApiError::Throttled { .. } => "TooManyRequests",
            ApiError::ServiceUnavailable(_) => "ServiceUnavailable",
            ApiError::Denied { reason, .. } => reason,
            ApiError::Timeout(_) => "Timeout",
            ApiError::Internal(_) => "InternalError",
        }
    }

    /// The Status object sent as the response body (or in a watch ERROR event).
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code(),
        });
        let (target, causes) = match self {
            ApiError::NotFound { target, .. }
            | ApiError::AlreadyExists { target, .. }
            | ApiError::Conflict { target, .. }
            | ApiError::Forbidden { target, .. } => (Some(target), None),
            ApiError::Invalid { target, causes, .. } => (Some(target), Some(causes)),
            _ => (None, None),
        };
        if let Some(t) = target {
            let mut details = json!({"name": t.name, "kind": t.kind});
            if !t.group.is_empty() {
                details["group"] = json!(t.group);
            }
            if let Some(causes) = causes {
                details["causes"] = causes
                    .iter()
                    .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                    .collect();
            }
            status["details"] = details;
        }
        if let ApiError::TooManyRequests { retry_after, .. } = self {
            status["details"] = json!({"retryAfterSeconds": retry_after});
        }
        if let ApiError::Throttled { causes, .. } = self {
            // These causes name no field, and upstream leaves the key out.
            status["details"] = json!({"causes": causes.iter().map(|c| {
                let mut v = json!({"reason": c.reason, "message": c.message});
                if !c.field.is_empty() {
                    v["field"] = json!(c.field);
                }
                v
            }).collect::<Vec<_>>()});
        }
        status
    }
}

/// "deployments.apps" or "pods": how Kubernetes names a resource in messages.
fn qualified(group: &str, plural: &str) -> String {
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}

/// The Status kubectl prints after a successful delete that returns no object.
pub fn success(group: &str, plural: &str, name: &str, uid: &str) -> Value {
    let mut details = json!({"name": name, "kind": plural, "uid": uid});
    if !group.is_empty() {
        details["group"] = json!(group);
    }
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
}

/// `{"kind":"Status","status":"Success"}` with no details (what a binding answers).
pub fn success_plain() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})
}

impl From<crate::store::Error> for ApiError {
    fn from(e: crate::store::Error) -> Self {
        use crate::store::Error as S;
        match e {
            S::Compacted {
                requested,
                compacted,
            } => ApiError::Expired(format!(
                "too old resource version: {requested} ({compacted})"
            )),
            S::FutureRevision(r) => ApiError::Timeout(format!("Too large resource version: {r}")),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_without_a_name() {
        assert_eq!(
            ApiError::forbidden("", "pods", "", "no").to_string(),
            "pods is forbidden: no"
        );
        assert_eq!(
            ApiError::forbidden("apps", "deployments", "d", "no").to_string(),
            "deployments.apps \"d\" is forbidden: no"
        );
    }

    #[test]
    fn not_found_status_names_the_resource() {
        let s = ApiError::not_found("apps", "deployments", "web").to_status();
        assert_eq!(s["code"], 404);
        assert_eq!(s["reason"], "NotFound");
        assert_eq!(s["message"], "deployments.apps \"web\" not found");
        assert_eq!(s["details"]["group"], "apps");
    }

    #[test]
    fn invalid_status_lists_causes_with_fields() {
        let causes = vec![Cause {
            reason: "FieldValueRequired".into(),
            message: "Required value".into(),
            field: "spec.containers".into(),
        }];
        let s = ApiError::invalid("", "Pod", "p", causes).to_status();
        assert_eq!(s["code"], 422);
        assert_eq!(s["details"]["causes"][0]["field"], "spec.containers");
        assert_eq!(
            s["message"],
            "Pod \"p\" is invalid: spec.containers: Required value"
        );
    }
}
