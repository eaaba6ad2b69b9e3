//! What a request is, read from its method, path and query alone, before routing: the verb and
//! resource coordinates kube-apiserver's RequestInfo gives its filters. The in-flight limits and
//! the metrics use it, so they classify a request the same way whatever the handler later does.

use http::Method;

/// Subresources that stream for as long as the client stays, as kube-apiserver counts them.
const LONG_RUNNING_SUBRESOURCES: &[&str] = &["attach", "exec", "proxy", "log", "portforward"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    /// Under /api or /apis with a resource; false for discovery, /metrics, /healthz and the like.
    pub is_resource: bool,
    /// Metrics verb: GET LIST WATCH POST PUT PATCH APPLY DELETE, or the method for non-resource
    /// paths.
    pub verb: &'static str,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    /// "resource" (one named object), "namespace", "cluster", or "" for non-resource paths.
    pub scope: &'static str,
    /// Non-resource requests: the path itself (what upstream's metrics put in `subresource`).
    pub path: String,
    pub long_running: bool,
    /// Anything but get, list and watch: such requests share the mutating in-flight limit.
    pub mutating: bool,
}

fn method_verb(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        _ => "OTHER",
    }
}

fn query_flag(query: Option<&str>, key: &str) -> bool {
    query.unwrap_or("").split('&').any(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        k == key && (v == "true" || v == "1")
    })
}

/// Classifies one request. `content_type` tells a server-side apply (APPLY) from other patches.
pub fn classify(
    method: &Method,
    path: &str,
    query: Option<&str>,
    content_type: &str,
) -> RequestInfo {
    let read = matches!(*method, Method::GET | Method::HEAD);
    let mut info = RequestInfo {
        is_resource: false,
        verb: method_verb(method),
        group: String::new(),
        version: String::new(),
        resource: String::new(),
        subresource: String::new(),
        scope: "",
        path: path.to_string(),
        long_running: false,
        mutating: !read,
    };
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let rest = match segs.as_slice() {
        ["api", v, rest @ ..] if !rest.is_empty() => {
            info.version = v.to_string();
            rest
        }
        ["apis", g, v, rest @ ..] if !rest.is_empty() => {
            info.group = g.to_string();
            info.version = v.to_string();
            rest
        }
        _ => return info,
    };
    // The deprecated /watch/ prefix kube-apiserver still serves.
    let (watch_prefix, rest) = match rest {
        ["watch", rest @ ..] => (true, rest),
        r => (false, r),
    };
    let (namespaced, tail) = match rest {
        ["namespaces", _ns, plural, tail @ ..]
            if !(tail.is_empty() && matches!(*plural, "status" | "finalize")) =>
        {
            (true, &rest[2..])
        }
        r => (false, r),
    };
    let Some((resource, tail)) = tail.split_first() else {
        return info;
    };
    info.is_resource = true;
    info.resource = resource.to_string();
    let named = !tail.is_empty();
    info.subresource = tail.get(1).map(|s| s.to_string()).unwrap_or_default();
    info.scope = if named {
        "resource"
    } else if namespaced {
        "namespace"
    } else {
        "cluster"
    };
    let watch = read && (watch_prefix || query_flag(query, "watch"));
    info.verb = match *method {
        Method::GET | Method::HEAD if watch => "WATCH",
        Method::GET | Method::HEAD if !named => "LIST",
        Method::PATCH if content_type.starts_with("application/apply-patch") => "APPLY",
        _ => info.verb,
    };
    info.long_running = watch || LONG_RUNNING_SUBRESOURCES.contains(&info.subresource.as_str());
    if info.long_running {
        info.verb = if watch { "WATCH" } else { "CONNECT" };
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_scopes_and_long_running() {
        let c = |m: Method, p: &str, q: Option<&str>| classify(&m, p, q, "application/json");
        let list = c(Method::GET, "/api/v1/namespaces/default/pods", None);
        assert_eq!(
            (list.verb, list.scope, list.mutating),
            ("LIST", "namespace", false)
        );
        assert_eq!(list.resource, "pods");
        let w = c(
            Method::GET,
            "/apis/apps/v1/deployments",
            Some("watch=true&rv=1"),
        );
        assert_eq!(
            (w.verb, w.scope, w.long_running),
            ("WATCH", "cluster", true)
        );
        assert_eq!(w.group, "apps");
        let old = c(Method::GET, "/api/v1/watch/namespaces/a/configmaps", None);
        assert!(old.long_running);
        assert_eq!(old.resource, "configmaps");
        let exec = c(Method::POST, "/api/v1/namespaces/a/pods/p/exec", None);
        assert_eq!((exec.verb, exec.long_running), ("CONNECT", true));
        let st = c(Method::PUT, "/api/v1/namespaces/a/status", None);
        assert_eq!(
            (st.resource.as_str(), st.subresource.as_str()),
            ("namespaces", "status")
        );
        assert_eq!(st.scope, "resource");
        let del = c(Method::DELETE, "/api/v1/namespaces/a/configmaps", None);
        assert!(del.mutating && !del.long_running);
        let apply = classify(
            &Method::PATCH,
            "/api/v1/namespaces/a/configmaps/x",
            None,
            "application/apply-patch+yaml",
        );
        assert_eq!(apply.verb, "APPLY");
        let disc = c(Method::GET, "/apis/apps/v1", None);
        assert!(!disc.is_resource);
        assert_eq!(disc.path, "/apis/apps/v1");
    }
}
