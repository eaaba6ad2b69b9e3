//! The request path's front: it runs the pipeline's stages in order (see `pipeline`):
//! RequestInfo, authentication, the audit event (`audit`), the in-flight slot, authorization,
//! the connect hand-off, and then routes by path, negotiates the output format, and turns every
//! error into a Kubernetes Status. Resource verbs live in `resources`, `deletes`, `reads` and
//! `watch`.

use super::auth::{Authenticator, User};
use super::authorization::{self, reviews};
use super::metrics::{self, Metrics};
use super::negotiate::{self, Format};
use super::overload;
use super::pipeline::Pipeline;
use super::registry::{Registry, ResourceInfo};
use super::request_info::{self, RequestInfo};
use super::status::ApiError;
use super::{admission, audit, connect, discovery, encoding, health, openapi};
use crate::store::Store;
use bytes::Bytes;
use http::{header, HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use serde_json::Value;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

/// Response bodies: whole (Full) or streamed (watch).
pub type Body = BoxBody<Bytes, Infallible>;
pub type Resp = Response<Body>;

/// The most a request body may hold, as kube-apiserver's limit.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

pub const TABLE_CONTENT_TYPE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

/// The client's address, put in the request's extensions by the listener (`http`); requests
/// made in process have none.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::SocketAddr);

/// Shared state of the API server.
pub struct Api {
    pub store: Arc<dyn Store>,
    pub auth: Authenticator,
    /// Flips to true on shutdown: watches end so connections can drain.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// host:port advertised in /api.
    pub server_address: String,
    /// The Arc this Api lives in, for background work started by a request.
    pub me: std::sync::Weak<Api>,
    /// The served kinds; discovery and OpenAPI follow its changes.
    pub registry: Registry,
    /// The in-flight limits (--max-requests-inflight, --max-mutating-requests-inflight).
    pub inflight: overload::Inflight,
    /// What /metrics reports; the store is wrapped to time its calls into the same place.
    pub metrics: Arc<Metrics>,
    /// The pluggable stages: authorizer, admission plugins, connector.
    pub pipeline: Pipeline,
}

/// How a list, get or watch answer is rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Json,
    /// meta.k8s.io/v1 Table; rows carry PartialObjectMetadata, the full object, or nothing.
    Table(IncludeObject),
    /// meta.k8s.io/v1 PartialObjectMetadata (a list: PartialObjectMetadataList): only the
    /// objects' metadata, for clients that need nothing else (the garbage collector's
    /// watchers).
    Metadata,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

/// One request against a resource, after routing.
#[derive(Clone)]
pub struct ResourceRequest {
    pub info: Arc<ResourceInfo>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
    pub query: HashMap<String, String>,
    pub output: Output,
    pub content_type: String,
    pub body: Bytes,
    pub user: User,
    /// Who owns the fields this write sets: ?fieldManager=, else the User-Agent's program name.
    pub field_manager: String,
}

impl ResourceRequest {
    pub fn param(&self, k: &str) -> Option<&str> {
        self.query
            .get(k)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub fn dry_run(&self) -> bool {
        self.query.get("dryRun").is_some_and(|v| v == "All")
    }
}

pub fn full(code: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Resp {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, content_type)
        .body(Full::new(body.into()).boxed())
        .expect("static response parts are valid")
}

pub fn json(code: StatusCode, v: &Value) -> Resp {
    full(code, "application/json", encoding::json_bytes(v))
}

pub fn error_response(e: &ApiError) -> Resp {
    let code = StatusCode::from_u16(e.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = json(code, &e.to_status());
    if let ApiError::TooManyRequests { retry_after, .. } = e {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, http::HeaderValue::from(*retry_after));
    }
    resp
}

fn output_of(headers: &HeaderMap, query: &HashMap<String, String>) -> Output {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let table = accept.split(',').any(|r| {
        let p: Vec<&str> = r.split(';').map(str::trim).collect();
        p.contains(&"as=Table") && p.contains(&"g=meta.k8s.io")
    });
    let metadata = accept.split(',').any(|r| {
        let p: Vec<&str> = r.split(';').map(str::trim).collect();
        (p.contains(&"as=PartialObjectMetadata") || p.contains(&"as=PartialObjectMetadataList"))
            && p.contains(&"g=meta.k8s.io")
    });
    if metadata && !table {
        return Output::Metadata;
    }
    if !table {
        return Output::Json;
    }
    Output::Table(match query.get("includeObject").map(String::as_str) {
        Some("None") => IncludeObject::None,
        Some("Object") => IncludeObject::Object,
        _ => IncludeObject::Metadata,
    })
}

impl Api {
    /// Entry point for every HTTP request; never fails (errors become Status responses).
    pub async fn handle<B>(
        self: Arc<Self>,
        req: Request<B>,
        cert_user: Option<User>,
    ) -> Result<Resp, Infallible>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let gzip_ok = req
            .headers()
            .get(header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
        let started = std::time::Instant::now();
        let received = k8s_openapi::jiff::Timestamp::now();
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let info =
            request_info::classify(&method, req.uri().path(), req.uri().query(), content_type);
        let dry_run = req
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|kv| kv == "dryRun=All"));
        let format = if info.is_resource {
            let accept = req
                .headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            negotiate::output(accept, info.verb == "WATCH")
        } else {
            Ok(Format::Json)
        };
        let audit_id = audit::request_id(req.headers());
        let auth_header = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let user = match self.authenticate(auth_header, cert_user.as_ref()).await {
            // No credentials at all (a wrong token is still 401): anonymous, if enabled.
            None if auth_header.is_none() && cert_user.is_none() => self.auth.anonymous_user(),
            known => known,
        };
        let mut audit = self.pipeline.audit.as_ref().and_then(|log| {
            log.begin(&audit::event::RequestFacts {
                info: &info,
                uri: req.uri(),
                headers: req.headers(),
                peer: req.extensions().get::<Peer>().map(|p| p.0.ip()),
                user: user.as_ref(),
                audit_id: &audit_id,
                received,
            })
        });
        if let Some(a) = &audit {
            a.received().await;
        }
        // Warnings, audit annotations and the request body are recorded on the way.
        let routed = std::panic::AssertUnwindSafe(self.route(req, user, &info, &format));
        let (resp, recorded) =
            admission::recorder::record(futures::FutureExt::catch_unwind(routed)).await;
        if let Some(a) = audit.as_mut() {
            a.recorded(&recorded);
        }
        let resp = match resp {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => error_response(&e),
            Err(panic) => {
                let message = panic_message(panic.as_ref());
                tracing::error!(%method, %path, panic = %message, "a request handler panicked");
                if let Some(a) = audit.take() {
                    a.panicked(&format!("APIServer panic'd: {message}")).await;
                }
                error_response(&ApiError::Internal(
                    "This request caused apiserver to panic. Look in the logs for details.".into(),
                ))
            }
        };
        let resp = super::resources::with_warnings(resp, &recorded.warnings);
        let resp = match audit {
            Some(a) => a.respond(resp, info.long_running).await,
            None => resp,
        };
        let resp = if matches!(format, Ok(Format::Yaml)) {
            to_yaml(resp).await
        } else {
            resp
        };
        let resp = self.instrument(&info, dry_run, resp, started.elapsed());
        let mut resp = if gzip_ok {
            gzip_large(resp).await
        } else {
            resp
        };
        if let Ok(v) = http::HeaderValue::from_str(&audit_id) {
            resp.headers_mut().insert(audit::AUDIT_ID_HEADER, v);
        }
        tracing::debug!(%method, %path, status = resp.status().as_u16(), elapsed_us = started.elapsed().as_micros() as u64, "request");
        Ok(resp)
    }

    /// Counts an answered request, and keeps a watch in apiserver_longrunning_requests for as
    /// long as its stream lasts. Requests that never reached a handler (401) or named nothing
    /// served (404 on an unknown path or resource) are left out, as upstream does, which also
    /// keeps strangers from inventing label values.
    fn instrument(
        &self,
        info: &RequestInfo,
        dry_run: bool,
        resp: Resp,
        elapsed: std::time::Duration,
    ) -> Resp {
        let code = resp.status().as_u16();
        let served = if info.is_resource {
            self.registry
                .lookup(&info.group, &info.version, &info.resource)
                .is_some()
        } else {
            code != 404
        };
        if code == 401 || !served {
            return resp;
        }
        self.metrics.record(info, dry_run, code, elapsed);
        if info.long_running && resp.status().is_success() {
            let guard = self.metrics.long_running(info);
            return resp.map(|body| {
                Guarded {
                    inner: body,
                    _guard: guard,
                }
                .boxed()
            });
        }
        resp
    }

    async fn route<B>(
        self: &Arc<Self>,
        req: Request<B>,
        user: Option<User>,
        info: &RequestInfo,
        format: &Result<Format, ApiError>,
    ) -> Result<Resp, ApiError>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (parts, body) = req.into_parts();
        let path = parts.uri.path().trim_end_matches('/').to_string();
        let path = if path.is_empty() {
            "/".to_string()
        } else {
            path
        };

        // Health and version are open to anyone, as kube-apiserver's default RBAC has them.
        if path == "/version" {
            return Ok(json(StatusCode::OK, &discovery::version()));
        }
        if let Some(resp) = health::serve(self, &path, parts.uri.query()).await {
            return Ok(resp);
        }
        // Joining nodes: the CA is open to anyone.
        if let Some(resp) = super::join::serve(&path) {
            discard_body(&parts.headers, body);
            return resp;
        }
        let Some(user) = user else {
            // Refused before the body is read: a stranger's upload costs no memory.
            discard_body(&parts.headers, body);
            return Err(ApiError::Unauthorized);
        };
        let impersonating = parts.headers.contains_key("impersonate-user");
        let user = match super::impersonation::apply(
            self.pipeline.authorizer.as_ref(),
            user,
            &parts.headers,
        ) {
            Ok(u) => {
                if impersonating {
                    admission::recorder::impersonated(user_info(&u));
                }
                u
            }
            Err(e) => {
                discard_body(&parts.headers, body);
                return Err(e);
            }
        };
        // Held until the answer is ready; long-running requests take no slot.
        let _slot = if info.long_running {
            None
        } else {
            match self.inflight.try_admit(info.mutating) {
                Some(slot) => Some(slot),
                // As upstream: system:masters always gets an answer, so an admin can still
                // reach (and fix) a server that is overloaded.
                None if user.groups.iter().any(|g| g == "system:masters") => None,
                None => {
                    discard_body(&parts.headers, body);
                    return Err(ApiError::TooManyRequests {
                        message: overload::MESSAGE.into(),
                        retry_after: overload::RETRY_AFTER_SECONDS,
                    });
                }
            }
        };
        // Refused before it runs: a create the client cannot read the answer of is not made.
        if let Err(e) = format {
            discard_body(&parts.headers, body);
            return Err(ApiError::NotAcceptable(e.to_string()));
        }
        let attrs = authorization::Attributes::of(info, &user);
        let decision = self.pipeline.authorizer.authorize(&attrs);
        for (key, value) in authorization::audit_annotations(&decision) {
            admission::recorder::annotate(key, value);
        }
        if let Err(e) = authorization::enforce(decision, &attrs) {
            discard_body(&parts.headers, body);
            return Err(e);
        }
        if info.connect {
            return self.connect(info, user, parts, body).await;
        }

        let accept = parts
            .headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        // One registry state for the whole request.
        let snap = self.registry.snapshot();
        let if_none_match = parts
            .headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let tagged = |content_type: &str, body: Bytes, tag: String| {
            with_etag(content_type, body, &tag, if_none_match.as_deref())
        };
        let not_found = || ApiError::NotFound {
            message: "the server could not find the requested resource".into(),
            target: Default::default(),
        };
        let get_only = |m: &Method| {
            if m == Method::GET {
                Ok(())
            } else {
                Err(ApiError::MethodNotAllowed(format!(
                    "{m} is not supported on {path}"
                )))
            }
        };

        match segments.as_slice() {
            ["api"] => {
                get_only(&parts.method)?;
                Ok(match discovery::wants_aggregated(&accept) {
                    Some(v) => aggregated(&snap, true, v, if_none_match.as_deref()),
                    None => json(
                        StatusCode::OK,
                        &discovery::api_versions(&self.server_address),
                    ),
                })
            }
            ["apis"] => {
                get_only(&parts.method)?;
                Ok(match discovery::wants_aggregated(&accept) {
                    Some(v) => aggregated(&snap, false, v, if_none_match.as_deref()),
                    None => json(StatusCode::OK, &discovery::api_group_list(&snap)),
                })
            }
            ["api", "v1"] => {
                get_only(&parts.method)?;
                Ok(json(
                    StatusCode::OK,
                    &discovery::api_resource_list(&snap, "", "v1").ok_or_else(not_found)?,
                ))
            }
            ["apis", g] => {
                get_only(&parts.method)?;
                Ok(json(
                    StatusCode::OK,
                    &discovery::api_group(&snap, g).ok_or_else(not_found)?,
                ))
            }
            ["apis", g, v] => {
                get_only(&parts.method)?;
                Ok(json(
                    StatusCode::OK,
                    &discovery::api_resource_list(&snap, g, v).ok_or_else(not_found)?,
                ))
            }
            ["openapi", "v2"] => {
                // One document, two encodings: the ETag names the encoding too.
                let hash = openapi::v2::v2_hash(&snap);
                Ok(if accept.contains("protobuf") {
                    tagged(
                        openapi::v2::PROTOBUF_CONTENT_TYPE,
                        openapi::v2::v2_protobuf(&snap),
                        format!("\"{hash}-pb\""),
                    )
                } else {
                    tagged(
                        "application/json",
                        openapi::v2::v2_json(&snap),
                        format!("\"{hash}\""),
                    )
                })
            }
            ["openapi", "v3"] => Ok(json(StatusCode::OK, &openapi::v3_root(&snap))),
            ["openapi", "v3", "api", "v1"] => {
                let (doc, hash) =
                    openapi::v3_group_version_json(&snap, "", "v1").ok_or_else(not_found)?;
                Ok(tagged("application/json", doc, format!("\"{hash}\"")))
            }
            ["openapi", "v3", "apis", g, v] => {
                let (doc, hash) =
                    openapi::v3_group_version_json(&snap, g, v).ok_or_else(not_found)?;
                Ok(tagged("application/json", doc, format!("\"{hash}\"")))
            }
            ["metrics"] => {
                get_only(&parts.method)?;
                let snap = self.registry.snapshot();
                let objects = metrics::count_objects(self.store.as_ref(), snap.all()).await;
                Ok(full(
                    StatusCode::OK,
                    metrics::CONTENT_TYPE,
                    self.metrics.render(self.inflight.current(), &objects),
                ))
            }
            // Answered by the authorizer the request itself went through.
            ["apis", "authorization.k8s.io", "v1", "selfsubjectaccessreviews"]
                if parts.method == Method::POST =>
            {
                let body = read_body(&parts.headers, body).await?;
                let review = reviews::access_review(
                    self.pipeline.authorizer.as_ref(),
                    &user,
                    content_type_of(&parts.headers),
                    &body,
                )?;
                Ok(json(StatusCode::CREATED, &review))
            }
            ["apis", "authorization.k8s.io", "v1", "subjectaccessreviews"]
                if parts.method == Method::POST =>
            {
                let body = read_body(&parts.headers, body).await?;
                let review = reviews::subject_access_review(
                    self.pipeline.authorizer.as_ref(),
                    None,
                    content_type_of(&parts.headers),
                    &body,
                )?;
                Ok(json(StatusCode::CREATED, &review))
            }
            ["apis", "authorization.k8s.io", "v1", "namespaces", ns, "localsubjectaccessreviews"]
                if parts.method == Method::POST =>
            {
                let body = read_body(&parts.headers, body).await?;
                let review = reviews::subject_access_review(
                    self.pipeline.authorizer.as_ref(),
                    Some(ns),
                    content_type_of(&parts.headers),
                    &body,
                )?;
                Ok(json(StatusCode::CREATED, &review))
            }
            ["apis", "authorization.k8s.io", "v1", "selfsubjectrulesreviews"]
                if parts.method == Method::POST =>
            {
                let body = read_body(&parts.headers, body).await?;
                let review = reviews::rules_review(
                    self.pipeline.authorizer.as_ref(),
                    &user,
                    content_type_of(&parts.headers),
                    &body,
                )?;
                Ok(json(StatusCode::CREATED, &review))
            }
            ["apis", "authentication.k8s.io", "v1", "tokenreviews"]
                if parts.method == Method::POST =>
            {
                let body = read_body(&parts.headers, body).await?;
                self.token_review(content_type_of(&parts.headers), &body)
                    .await
            }
            [".well-known", "openid-configuration"] => {
                get_only(&parts.method)?;
                Ok(self.openid_configuration())
            }
            ["openid", "v1", "jwks"] => {
                get_only(&parts.method)?;
                Ok(self.jwks())
            }
            ["apis", "authentication.k8s.io", "v1", "selfsubjectreviews"]
                if parts.method == Method::POST =>
            {
                let _ = read_body(&parts.headers, body).await;
                Ok(json(
                    StatusCode::CREATED,
                    &serde_json::json!({
                    "kind": "SelfSubjectReview", "apiVersion": "authentication.k8s.io/v1", "metadata": {},
                    "status": {"userInfo": user_info(&user)}}),
                ))
            }
            ["nanokube", "secrets-encrypt", action] => {
                discard_body(&parts.headers, body);
                super::secrets_encrypt::serve(action, &parts.method, &user).await
            }
            ["api", "v1", rest @ ..] => self.resource(parts, body, "", "v1", rest, user).await,
            ["apis", g, v, rest @ ..] => {
                let (g, v) = (g.to_string(), v.to_string());
                self.resource(parts, body, &g, &v, rest, user).await
            }
            _ => Err(not_found()),
        }
    }

    /// The connect hand-off: the object's resource must be served, the method one the
    /// subresource takes, and admission (CONNECT) must let it through; then the connector gets
    /// the request with its body unread and its upgrade pending.
    async fn connect<B>(
        self: &Arc<Self>,
        info: &RequestInfo,
        user: User,
        parts: http::request::Parts,
        body: B,
    ) -> Result<Resp, ApiError>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let Some(resource) = self
            .registry
            .lookup(&info.group, &info.version, &info.resource)
            .filter(|r| r.namespaced != info.namespace.is_empty())
        else {
            discard_body(&parts.headers, body);
            return Err(ApiError::NotFound {
                message: "the server could not find the requested resource".into(),
                target: Default::default(),
            });
        };
        if !connect::method_allowed(&info.subresource, &parts.method) {
            discard_body(&parts.headers, body);
            return Err(ApiError::MethodNotAllowed(format!(
                "{} is not supported on {}/{}",
                parts.method, info.resource, info.subresource
            )));
        }
        let mut attrs = admission::Attributes {
            user: user.clone(),
            operation: admission::Operation::Connect,
            kind: admission::Kind::of(&resource),
            resource: resource.clone(),
            subresource: info.subresource.clone(),
            namespace: info.namespace.clone(),
            name: info.name.clone(),
            object: None,
            old_object: None,
            dry_run: false,
        };
        let admitted = async {
            self.pipeline.admission.admit(self, &mut attrs).await?;
            self.pipeline.admission.validate(self, &attrs).await
        };
        if let Err(e) = admitted.await {
            discard_body(&parts.headers, body);
            return Err(e);
        }
        let req = connect::ConnectRequest {
            info: info.clone(),
            user,
            resource,
            parts,
            body: body.map_err(Into::into).boxed_unsync(),
        };
        self.pipeline.connector.connect(self, req).await
    }

    async fn resource<B>(
        self: &Arc<Self>,
        parts: http::request::Parts,
        body: B,
        group: &str,
        version: &str,
        rest: &[&str],
        user: User,
    ) -> Result<Resp, ApiError>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        // The body is read first: an error answered mid-upload can reach HTTP/2 clients as a
        // reset stream instead of the Status.
        let has_body = matches!(
            parts.method,
            Method::POST | Method::PUT | Method::PATCH | Method::DELETE
        );
        let body = if has_body {
            read_body(&parts.headers, body).await?
        } else {
            Bytes::new()
        };
        // namespaces/<ns>/<plural>[/<name>[/<sub>]] is a namespaced resource, except for the
        // namespace object's own subresources (namespaces/<ns>/status|finalize).
        let (plural, namespace, name, sub) = match rest {
            ["namespaces", ns, plural, tail @ ..]
                if !(tail.is_empty() && matches!(*plural, "status" | "finalize")) =>
            {
                (
                    *plural,
                    Some(ns.to_string()),
                    tail.first().map(|s| s.to_string()),
                    tail.get(1).map(|s| s.to_string()),
                )
            }
            [plural, tail @ ..] => (
                *plural,
                None,
                tail.first().map(|s| s.to_string()),
                tail.get(1).map(|s| s.to_string()),
            ),
            [] => unreachable!("handled as discovery"),
        };
        if rest.len() > 5 || (namespace.is_none() && rest.len() > 3) {
            return Err(ApiError::NotFound {
                message: "the server could not find the requested resource".into(),
                target: Default::default(),
            });
        }
        let info = self
            .registry
            .lookup(group, version, plural)
            .ok_or_else(|| ApiError::NotFound {
                message: "the server could not find the requested resource".into(),
                target: Default::default(),
            })?;
        if namespace.is_some() && !info.namespaced {
            return Err(ApiError::NotFound {
                message: "the server could not find the requested resource".into(),
                target: Default::default(),
            });
        }
        match sub.as_deref() {
            None => {}
            Some("status") if info.status || info.plural == "namespaces" => {}
            Some("scale") if info.scale => {}
            Some("finalize") if info.plural == "namespaces" => {}
            Some("binding" | "eviction" | "ephemeralcontainers")
                if info.plural == "pods" && info.group.is_empty() => {}
            Some("token") if info.plural == "serviceaccounts" && info.group.is_empty() => {}
            Some("approval")
                if info.plural == "certificatesigningrequests"
                    && info.group == "certificates.k8s.io" => {}
            Some(other) => {
                return Err(ApiError::NotFound {
                    message: format!(
                        "the server could not find the requested resource ({} {})",
                        info.plural, other
                    ),
                    target: Default::default(),
                })
            }
        }

        let query = encoding::parse_query(parts.uri.query());
        let output = output_of(&parts.headers, &query);
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let field_manager = match query.get("fieldManager").filter(|m| !m.is_empty()) {
            Some(m) => m.clone(),
            None => parts
                .headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .and_then(|ua| ua.split('/').next())
                .filter(|p| !p.is_empty())
                .unwrap_or("unknown")
                .to_string(),
        };
        let r = ResourceRequest {
            info,
            namespace,
            name,
            subresource: sub,
            query,
            output,
            content_type,
            body,
            user,
            field_manager,
        };

        let watch = r
            .query
            .get("watch")
            .is_some_and(|v| v == "true" || v == "1");
        // A deprecated version (of a CRD) says so on every answer, before admission's warnings
        // (`admission::recorder`; `handle` turns them into headers).
        if let Some(w) = r.info.strategy.warning() {
            admission::recorder::warn(w);
        }
        match (&parts.method, r.name.is_some()) {
            (&Method::GET, true) => self.get(&r).await,
            (&Method::GET, false) if watch => self.watch(r).await,
            (&Method::GET, false) => self.list(&r).await,
            (&Method::POST, false) => self.create(&r).await,
            (&Method::POST, true) if r.subresource.as_deref() == Some("binding") => {
                self.bind(&r).await
            }
            (&Method::POST, true) if r.subresource.as_deref() == Some("eviction") => {
                self.evict(&r).await
            }
            (&Method::POST, true) if r.subresource.as_deref() == Some("token") => {
                self.create_token(&r).await
            }
            (&Method::PUT, true) => self.update(&r).await,
            (&Method::PATCH, true) => self.patch(&r).await,
            (&Method::DELETE, true) => self.delete(&r).await,
            (&Method::DELETE, false) => self.delete_collection(&r).await,
            (m, _) => Err(ApiError::MethodNotAllowed(format!(
                "{m} is not supported on {}",
                parts.uri.path()
            ))),
        }
    }
}

fn content_type_of(headers: &HeaderMap) -> &str {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// A user as authentication.k8s.io's UserInfo (uid and extra only when there are some).
pub(crate) fn user_info(user: &User) -> Value {
    let mut v = serde_json::json!({"username": user.name, "groups": user.groups});
    if !user.uid.is_empty() {
        v["uid"] = serde_json::json!(user.uid);
    }
    if !user.extra.is_empty() {
        v["extra"] = serde_json::json!(user.extra);
    }
    v
}

/// Rewrites a whole JSON answer (object, list or Status) as YAML for a client that asked for
/// it; tables, streams and other types are left alone.
async fn to_yaml(resp: Resp) -> Resp {
    use hyper::body::Body as _;
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v == "application/json");
    if !is_json || resp.body().size_hint().exact().is_none() {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(collected) = body.collect().await;
    let raw = collected.to_bytes();
    let yaml = serde_json::from_slice::<Value>(&raw)
        .ok()
        .and_then(|v| serde_yaml::to_string(&v).ok());
    let Some(yaml) = yaml else {
        return Response::from_parts(parts, Full::new(raw).boxed());
    };
    parts.headers.insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(negotiate::YAML),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Full::new(Bytes::from(yaml)).boxed())
}

/// A response body that holds something (a gauge's share) until the stream ends or the client
/// goes away.
struct Guarded<T> {
    inner: Body,
    _guard: T,
}

impl<T: Send + Sync + Unpin + 'static> hyper::body::Body for Guarded<T> {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Whole responses at least this large are gzipped for clients that accept it (kubectl does),
/// as kube-apiserver does; streams (watches) are left alone.
const GZIP_MIN: u64 = 128 * 1024;

async fn gzip_large(resp: Resp) -> Resp {
    use hyper::body::Body as _;
    let size = resp.body().size_hint().exact();
    if size.is_none_or(|n| n < GZIP_MIN) || resp.headers().contains_key(header::CONTENT_ENCODING) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(collected) = body.collect().await;
    let raw = collected.to_bytes();
    let compressed = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(
            Vec::with_capacity(raw.len() / 4),
            flate2::Compression::fast(),
        );
        enc.write_all(&raw)
            .and_then(|_| enc.finish())
            .map_err(|_| raw)
    })
    .await;
    match compressed {
        Ok(Ok(gz)) => {
            parts.headers.insert(
                header::CONTENT_ENCODING,
                http::HeaderValue::from_static("gzip"),
            );
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, Full::new(Bytes::from(gz)).boxed())
        }
        Ok(Err(raw)) => Response::from_parts(parts, Full::new(raw).boxed()),
        Err(_) => Response::from_parts(parts, Full::new(Bytes::new()).boxed()),
    }
}

/// A cached document with its ETag; a 304 when the client already holds this version.
fn with_etag(content_type: &str, body: Bytes, tag: &str, if_none_match: Option<&str>) -> Resp {
    let matches =
        if_none_match.is_some_and(|h| h.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let mut resp = if matches {
        full(StatusCode::NOT_MODIFIED, content_type, Bytes::new())
    } else {
        full(StatusCode::OK, content_type, body)
    };
    if let Ok(etag) = http::HeaderValue::from_str(tag) {
        resp.headers_mut().insert(header::ETAG, etag);
    }
    resp
}

fn aggregated(
    snap: &super::registry::Snapshot,
    core: bool,
    version: &str,
    if_none_match: Option<&str>,
) -> Resp {
    let ct = if version == "v2" {
        discovery::AGGREGATED_V2
    } else {
        discovery::AGGREGATED_V2BETA1
    };
    let (body, tag) = discovery::aggregated_cached(snap, core, version);
    with_etag(ct, body, &tag, if_none_match)
}

/// Reads and drops, in the background, what a refused client goes on sending, so it finishes its
/// upload and reads the answer instead of a reset connection. Nothing is kept, and the reading
/// stops after a bound (the connection then closes). A client that waits for
/// `100 Continue` is not asked for its body at all.
fn discard_body<B>(headers: &HeaderMap, body: B)
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
{
    const DISCARD_LIMIT: usize = MAX_BODY + 1024 * 1024;
    let expects_continue = headers
        .get(header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    if expects_continue || body.is_end_stream() {
        return;
    }
    tokio::spawn(async move {
        let mut body = std::pin::pin!(body);
        let mut seen = 0usize;
        let drain = async {
            while let Some(Ok(frame)) = body.frame().await {
                if let Ok(data) = frame.into_data() {
                    seen += data.len();
                    if seen > DISCARD_LIMIT {
                        break;
                    }
                }
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), drain).await;
    });
}

/// Reads a request body of at most MAX_BODY bytes. A larger one is still read to its end (up to
/// a bound) before the 413 goes out, so the client finishes sending and reads the Status
/// instead of seeing its upload cut off.
async fn read_body<B>(headers: &HeaderMap, body: B) -> Result<Bytes, ApiError>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    const DRAIN_LIMIT: usize = 64 * 1024 * 1024;
    let too_large =
        || ApiError::TooLarge(format!("the request body is larger than {MAX_BODY} bytes"));
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > DRAIN_LIMIT) {
        return Err(too_large());
    }
    let mut body = std::pin::pin!(body);
    let mut buf = bytes::BytesMut::new();
    let mut seen = 0usize;
    let drain = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                ApiError::BadRequest(format!("reading the request body: {}", e.into()))
            })?;
            if let Ok(data) = frame.into_data() {
                seen += data.len();
                if seen <= MAX_BODY {
                    buf.extend_from_slice(&data);
                } else if seen > DRAIN_LIMIT {
                    break;
                }
            }
        }
        Ok::<(), ApiError>(())
    };
    match tokio::time::timeout(std::time::Duration::from_secs(30), drain).await {
        Ok(r) => r?,
        Err(_) if seen > MAX_BODY => return Err(too_large()),
        Err(_) => {
            return Err(ApiError::BadRequest(
                "timed out reading the request body".into(),
            ))
        }
    }
    if seen > MAX_BODY {
        return Err(too_large());
    }
    let body = buf.freeze();
    admission::recorder::request_body(&body);
    Ok(body)
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}
