//! Stage 4 of the request pipeline, for connect subresources only (pods/exec, pods/attach,
//! pods/portforward, pods/log, pods/proxy, services/proxy, nodes/proxy): once the request is
//! authenticated and authorized it is handed to a `Connector` whole, before any body is read,
//! with hyper's pending upgrade still in its extensions, so a node agent can switch protocols
//! (websocket, SPDY) or stream. The kubelet work implements `Connector`; until a node agent
//! exists, `NoNodeAgent` answers what upstream would when nothing can be reached.

use super::auth::User;
use super::handler::{full, Api, Resp};
use super::registry::ResourceInfo;
use super::request_info::RequestInfo;
use super::status::ApiError;
use bytes::Bytes;
use futures::future::BoxFuture;
use http::StatusCode;
use http_body_util::combinators::UnsyncBoxBody;
use std::sync::Arc;

/// A request body nobody has read: the connector streams it (exec's stdin over SPDY on
/// HTTP/1.1 arrives after the upgrade, port-forward's data likewise).
pub type ConnectBody = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// A connect request, as it arrived.
pub struct ConnectRequest {
    pub info: RequestInfo,
    pub user: User,
    /// The registry entry of the resource (pods, services or nodes).
    pub resource: Arc<ResourceInfo>,
    /// Method, URI (the query carries exec's command, container, stdin/stdout/tty flags),
    /// headers (`Connection: Upgrade`, `Upgrade: SPDY/3.1` or `websocket`,
    /// `Sec-WebSocket-Protocol: v5.channel.k8s.io`, ...) and extensions, which hold hyper's
    /// pending upgrade until `upgrade` takes it.
    pub parts: http::request::Parts,
    pub body: ConnectBody,
}

impl ConnectRequest {
    /// Hyper's pending upgrade of the connection: resolves once a 101 response has been sent.
    /// None when the connection cannot be upgraded (HTTP/2 without extended CONNECT).
    pub fn upgrade(&mut self) -> Option<hyper::upgrade::OnUpgrade> {
        self.parts.extensions.remove::<hyper::upgrade::OnUpgrade>()
    }

    /// The object's name without a proxy's `:port` (services/web:8080/proxy).
    pub fn object_name(&self) -> &str {
        self.info
            .name
            .split_once(':')
            .map_or(self.info.name.as_str(), |(n, _)| n)
    }
}

pub trait Connector: Send + Sync {
    fn connect<'a>(
        &'a self,
        api: &'a Api,
        req: ConnectRequest,
    ) -> BoxFuture<'a, Result<Resp, ApiError>>;
}

/// The connector of a cluster without node agents: it checks the object as upstream's
/// location lookups do (missing → 404; an unscheduled pod → upstream's 400 `pod <name> does not
/// have a host assigned`; an unscheduled pod's log is empty, as upstream streams nothing) and
/// answers 503 for everything that would need an agent.
pub struct NoNodeAgent;

impl Connector for NoNodeAgent {
    fn connect<'a>(
        &'a self,
        api: &'a Api,
        req: ConnectRequest,
    ) -> BoxFuture<'a, Result<Resp, ApiError>> {
        Box::pin(async move {
            let info = &req.resource;
            let ns = Some(req.info.namespace.as_str()).filter(|n| !n.is_empty());
            let name = req.object_name().to_string();
            let Some((obj, _)) = api.get_object(info, ns, &name).await? else {
                return Err(ApiError::not_found(&info.group, &info.plural, &name));
            };
            let sub = req.info.subresource.as_str();
            match info.plural.as_str() {
                "pods" => {
                    let node = obj["spec"]["nodeName"].as_str().unwrap_or_default();
                    if node.is_empty() {
                        if sub == "log" {
                            return Ok(full(StatusCode::OK, "text/plain", Bytes::new()));
                        }
                        return Err(ApiError::BadRequest(format!(
                            "pod {name} does not have a host assigned"
                        )));
                    }
                    Err(ApiError::ServiceUnavailable(format!(
                        "no node agent serves node {node:?} yet: pods/{sub} of pod {name} cannot be reached"
                    )))
                }
                "services" => Err(ApiError::ServiceUnavailable(format!(
                    "no endpoints available for service {name:?}"
                ))),
                _ => Err(ApiError::ServiceUnavailable(format!(
                    "no node agent serves node {name:?} yet"
                ))),
            }
        })
    }
}

/// Which methods each connect subresource takes, as upstream registers them: exec, attach and
/// portforward GET (websocket) or POST (SPDY), log GET, proxy any.
pub fn method_allowed(sub: &str, m: &http::Method) -> bool {
    match sub {
        "log" => m == http::Method::GET,
        "exec" | "attach" | "portforward" => m == http::Method::GET || m == http::Method::POST,
        _ => true,
    }
}
