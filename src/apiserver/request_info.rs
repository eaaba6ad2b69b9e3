//! Stage 1 of the request pipeline: what a request is, read from its method, path and query
//! alone, before anything else runs. It is upstream's RequestInfoFactory: the verb
//! (get list watch create update patch delete deletecollection proxy, or the lowercased method
//! of a non-resource path), API group and version, resource, subresource, namespace and name.
//! Authorization, the in-flight limits, the metrics and the connect hand-off all read it, so
//! they see a request the same way whatever the handler later does.

use http::Method;

/// Subresources that stream for as long as the client stays, as kube-apiserver counts them.
const LONG_RUNNING_SUBRESOURCES: &[&str] = &["attach", "exec", "proxy", "log", "portforward"];

/// Core-group (resource, subresource) pairs that are handed to the `Connector` before any body
/// is read: they stream, and exec/attach/portforward upgrade the connection.
pub const CONNECT_SUBRESOURCES: &[(&str, &str)] = &[
    ("pods", "exec"),
    ("pods", "attach"),
    ("pods", "portforward"),
    ("pods", "log"),
    ("pods", "proxy"),
    ("services", "proxy"),
    ("nodes", "proxy"),
];

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
    /// Upstream's RequestInfo.Verb, what authorization and admission read: get, list, watch,
    /// create, update, patch, delete, deletecollection, proxy; for non-resource paths the
    /// lowercased method (get, post, ...).
    pub api_verb: &'static str,
    /// The namespace the path names ("" for cluster-scoped paths). As upstream, the namespace
    /// object's own path `namespaces/<n>` has namespace `<n>` too.
    pub namespace: String,
    /// The object's name ("" for collections); a list or watch with the field selector
    /// `metadata.name=<n>` names `<n>`, as upstream.
    pub name: String,
    /// One of `CONNECT_SUBRESOURCES` of a named object: handed to the connector.
    pub connect: bool,
}

fn lower_verb(m: &Method) -> &'static str {
    match *m {
        Method::GET => "get",
        Method::HEAD => "head",
        Method::POST => "post",
        Method::PUT => "put",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        Method::OPTIONS => "options",
        Method::CONNECT => "connect",
        _ => "other",
    }
}

/// The verb of a resource request before list/watch/deletecollection are told apart.
fn resource_verb(m: &Method) -> &'static str {
    match *m {
        Method::POST => "create",
        Method::GET | Method::HEAD => "get",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "",
    }
}

/// `metadata.name=<n>` (or `==`) in a fieldSelector: the name a list or watch is about.
fn selected_name(query: Option<&str>) -> Option<String> {
    let q = super::encoding::parse_query(query);
    q.get("fieldSelector")?.split(',').find_map(|term| {
        let (k, v) = term.split_once("==").or_else(|| term.split_once('='))?;
        (k.trim() == "metadata.name").then(|| v.trim().to_string())
    })
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
        api_verb: lower_verb(method),
        namespace: String::new(),
        name: String::new(),
        connect: false,
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
    // The deprecated /watch/ and /proxy/ prefixes kube-apiserver still serves.
    let (watch_prefix, proxy_prefix, rest) = match rest {
        ["watch", rest @ ..] => (true, false, rest),
        ["proxy", rest @ ..] => (false, true, rest),
        r => (false, false, r),
    };
    if rest.is_empty() {
        return info;
    }
    let (namespaced, tail) = match rest {
        ["namespaces", ns, plural, tail @ ..]
            if !(tail.is_empty() && matches!(*plural, "status" | "finalize")) =>
        {
            info.namespace = ns.to_string();
            (true, &rest[2..])
        }
        ["namespaces", ns, ..] => {
            info.namespace = ns.to_string();
            (false, rest)
        }
        r => (false, r),
    };
    let Some((resource, tail)) = tail.split_first() else {
        return info;
    };
    info.is_resource = true;
    info.resource = resource.to_string();
    let named = !tail.is_empty();
    info.name = tail.first().map(|s| s.to_string()).unwrap_or_default();
    // The legacy proxy prefix takes the rest of the path as the proxied path, not a subresource.
    if !proxy_prefix {
        info.subresource = tail.get(1).map(|s| s.to_string()).unwrap_or_default();
    }
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
    info.api_verb = match resource_verb(method) {
        _ if proxy_prefix => "proxy",
        "get" if watch => "watch",
        "get" if !named => "list",
        "delete" if !named => "deletecollection",
        v => v,
    };
    if info.api_verb.is_empty() {
        info.api_verb = lower_verb(method);
    }
    if matches!(info.api_verb, "list" | "watch") && info.name.is_empty() {
        info.name = selected_name(query).unwrap_or_default();
    }
    info.connect = info.group.is_empty()
        && named
        && CONNECT_SUBRESOURCES
            .iter()
            .any(|(r, s)| *r == info.resource && *s == info.subresource);
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

    /// The fields upstream's RequestInfoFactory gives, path by path.
    #[test]
    fn upstream_request_info() {
        let c = |m: Method, p: &str, q: Option<&str>| classify(&m, p, q, "application/json");
        let fields = |i: &RequestInfo| {
            (
                i.api_verb,
                i.group.clone(),
                i.version.clone(),
                i.namespace.clone(),
                i.resource.clone(),
                i.subresource.clone(),
                i.name.clone(),
            )
        };
        let f = |v: &'static str, g: &str, ver: &str, ns: &str, r: &str, s: &str, n: &str| {
            (
                v,
                g.to_string(),
                ver.to_string(),
                ns.to_string(),
                r.to_string(),
                s.to_string(),
                n.to_string(),
            )
        };
        let cases = [
            (
                Method::GET,
                "/api/v1/namespaces/default/pods",
                None,
                f("list", "", "v1", "default", "pods", "", ""),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/default/pods",
                Some("watch=true"),
                f("watch", "", "v1", "default", "pods", "", ""),
            ),
            (
                Method::GET,
                "/api/v1/watch/namespaces/default/pods/p",
                None,
                f("watch", "", "v1", "default", "pods", "", "p"),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/default/pods",
                Some("fieldSelector=metadata.name%3Dweb"),
                f("list", "", "v1", "default", "pods", "", "web"),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/default/pods/p",
                None,
                f("get", "", "v1", "default", "pods", "", "p"),
            ),
            (
                Method::POST,
                "/apis/apps/v1/namespaces/ns/deployments",
                None,
                f("create", "apps", "v1", "ns", "deployments", "", ""),
            ),
            (
                Method::PUT,
                "/apis/apps/v1/namespaces/ns/deployments/d/scale",
                None,
                f("update", "apps", "v1", "ns", "deployments", "scale", "d"),
            ),
            (
                Method::PATCH,
                "/api/v1/nodes/n1/status",
                None,
                f("patch", "", "v1", "", "nodes", "status", "n1"),
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/ns/configmaps/c",
                None,
                f("delete", "", "v1", "ns", "configmaps", "", "c"),
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/ns/configmaps",
                None,
                f("deletecollection", "", "v1", "ns", "configmaps", "", ""),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/ns",
                None,
                f("get", "", "v1", "ns", "namespaces", "", "ns"),
            ),
            (
                Method::PUT,
                "/api/v1/namespaces/ns/finalize",
                None,
                f("update", "", "v1", "ns", "namespaces", "finalize", "ns"),
            ),
            (
                Method::GET,
                "/api/v1/namespaces",
                None,
                f("list", "", "v1", "", "namespaces", "", ""),
            ),
            (
                Method::POST,
                "/api/v1/namespaces/ns/pods/p/exec",
                Some("command=ls"),
                f("create", "", "v1", "ns", "pods", "exec", "p"),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/ns/pods/p/log",
                None,
                f("get", "", "v1", "ns", "pods", "log", "p"),
            ),
            (
                Method::GET,
                "/api/v1/proxy/namespaces/ns/pods/p/some/path",
                None,
                f("proxy", "", "v1", "ns", "pods", "", "p"),
            ),
            (
                Method::GET,
                "/healthz",
                None,
                f("get", "", "", "", "", "", ""),
            ),
            (
                Method::POST,
                "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                None,
                f(
                    "create",
                    "authorization.k8s.io",
                    "v1",
                    "",
                    "selfsubjectaccessreviews",
                    "",
                    "",
                ),
            ),
        ];
        for (m, p, q, want) in cases {
            assert_eq!(fields(&c(m.clone(), p, q)), want, "{m} {p} {q:?}");
        }
        assert!(!c(Method::GET, "/healthz", None).is_resource);
        assert!(c(Method::GET, "/api/v1/namespaces/ns/pods/p/exec", None).connect);
        assert!(c(Method::GET, "/api/v1/nodes/n/proxy/metrics", None).connect);
        assert!(
            c(
                Method::GET,
                "/api/v1/namespaces/ns/services/s:80/proxy/x",
                None
            )
            .connect
        );
        assert!(!c(Method::GET, "/api/v1/namespaces/ns/pods/p/status", None).connect);
        assert!(
            !c(
                Method::GET,
                "/apis/apps/v1/namespaces/ns/deployments/d/exec",
                None
            )
            .connect
        );
    }
}
