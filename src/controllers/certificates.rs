//! The certificate controllers of kube-controller-manager, for CertificateSigningRequests:
//!
//! - csrapproving: a kubelet's client certificate (signer
//!   `kubernetes.io/kube-apiserver-client-kubelet`) is approved when the request is shaped as
//!   one (`O=system:nodes`, `CN=system:node:<name>`, no names, client usages) and a
//!   SubjectAccessReview lets its requester create `certificatesigningrequests/nodeclient` (a
//!   node bootstrapping with the join token) or, when it asks for its own name,
//!   `certificatesigningrequests/selfnodeclient` (a node renewing). A kubelet's serving
//!   certificate (`kubernetes.io/kubelet-serving`), which upstream leaves to an outside
//!   approver, is approved here when a node asks for its own name and claims no address
//!   another node has.
//! - csrsigning: an approved request for one of the `kubernetes.io` signers above or
//!   `kubernetes.io/kube-apiserver-client` is signed with the cluster CA for
//!   `expirationSeconds` (at most `--cluster-signing-duration`); one the signer cannot honour
//!   gets a Failed condition saying why.
//!
//! - csrcleaner: a request that was issued, denied or failed goes an hour after it was made,
//!   a pending one after a day, as upstream's.
//!
//! Anything else (another signer, a request nobody may auto-approve) waits for
//! `kubectl certificate approve|deny`.

use futures::StreamExt;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use std::sync::Arc;
use std::time::Duration;

use crate::apiserver::tls::{Pki, Usage};

pub const KUBELET_CLIENT: &str = "kubernetes.io/kube-apiserver-client-kubelet";
pub const KUBELET_SERVING: &str = "kubernetes.io/kubelet-serving";
pub const API_CLIENT: &str = "kubernetes.io/kube-apiserver-client";
const NODES_GROUP: &str = "system:nodes";
/// How long csrcleaner keeps a request that was answered, and one that never was.
const FINISHED_KEPT: Duration = Duration::from_secs(3600);
const PENDING_KEPT: Duration = Duration::from_secs(24 * 3600);
const NODE_PREFIX: &str = "system:node:";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kube: {0}")]
    Kube(#[from] kube::Error),
}

#[derive(Clone)]
pub struct Settings {
    pub ca: Arc<Pki>,
    /// The longest a signed certificate lives (`--cluster-signing-duration`).
    pub signing_duration: Duration,
    /// `--service-cidr`: no node's serving certificate may name an address in it.
    pub service_cidr: Option<crate::network::Cidr>,
    /// The API server's own names and addresses (its serving certificate's): never a node's.
    pub reserved: Vec<String>,
}

struct Ctx {
    client: kube::Client,
    settings: Settings,
}

pub async fn run(client: kube::Client, settings: Settings) {
    let csrs: Api<CertificateSigningRequest> = Api::all(client.clone());
    Controller::new(csrs, watcher::Config::default())
        .run(reconcile, error_policy, Arc::new(Ctx { client, settings }))
        .for_each(|_| async {})
        .await;
}

fn error_policy(csr: Arc<CertificateSigningRequest>, e: &Error, _c: Arc<Ctx>) -> Action {
    tracing::warn!(csr = ?csr.metadata.name, error = %e, "certificate signing request");
    Action::requeue(Duration::from_secs(5))
}

/// What a request asks for, read from its PEM.
#[derive(Debug, Default, PartialEq)]
pub struct Asked {
    pub common_name: String,
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub ips: Vec<std::net::IpAddr>,
    /// Names of other kinds (email, URI).
    pub other_names: usize,
}

/// The subject and names of a PEM CSR, its signature checked; None when it is not one.
pub fn read_request(pem: &str) -> Option<Asked> {
    let csr = rcgen::CertificateSigningRequestParams::from_pem(pem).ok()?;
    let mut asked = Asked::default();
    for (ty, value) in csr.params.distinguished_name.iter() {
        let text = match value {
            rcgen::DnValue::Utf8String(s) => s.clone(),
            rcgen::DnValue::PrintableString(p) => p.as_str().to_string(),
            rcgen::DnValue::Ia5String(s) => s.as_str().to_string(),
            _ => continue,
        };
        match ty {
            rcgen::DnType::CommonName => asked.common_name = text,
            rcgen::DnType::OrganizationName => asked.organizations.push(text),
            _ => {}
        }
    }
    for san in &csr.params.subject_alt_names {
        match san {
            rcgen::SanType::DnsName(n) => asked.dns_names.push(n.as_str().to_string()),
            rcgen::SanType::IpAddress(ip) => asked.ips.push(*ip),
            _ => asked.other_names += 1,
        }
    }
    Some(asked)
}

fn has_condition(csr: &CertificateSigningRequest, kind: &str) -> bool {
    csr.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == kind && c.status == "True"))
}

fn usages(csr: &CertificateSigningRequest) -> Vec<String> {
    csr.spec.usages.clone().unwrap_or_default()
}

/// Only `allowed` usages, and `needed` among them (upstream's kubelet certificate checks).
fn usages_fit(csr: &CertificateSigningRequest, needed: &str) -> bool {
    let allowed = ["digital signature", "key encipherment", needed];
    let u = usages(csr);
    u.iter().any(|x| x == needed) && u.iter().all(|x| allowed.contains(&x.as_str()))
}

fn is_node_subject(a: &Asked) -> bool {
    a.organizations == [NODES_GROUP] && a.common_name.starts_with(NODE_PREFIX)
}

async fn reconcile(csr: Arc<CertificateSigningRequest>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let issued = csr
        .status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .is_some_and(|c| !c.0.is_empty());
    let api: Api<CertificateSigningRequest> = Api::all(ctx.client.clone());
    let name = csr.metadata.name.clone().unwrap_or_default();
    let finished = issued || has_condition(&csr, "Denied") || has_condition(&csr, "Failed");
    let keep = if finished {
        FINISHED_KEPT
    } else {
        PENDING_KEPT
    };
    let age = csr
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| k8s_openapi::jiff::Timestamp::now().duration_since(t.0))
        .and_then(|d| Duration::try_from(d).ok())
        .unwrap_or_default();
    if age >= keep {
        match api.delete(&name, &Default::default()).await {
            Ok(_) => tracing::info!(csr = %name, "removed an old certificate signing request"),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
        return Ok(Action::await_change());
    }
    if finished {
        return Ok(Action::requeue(keep - age));
    }
    let asked = read_request(&String::from_utf8_lossy(&csr.spec.request.0));
    if !has_condition(&csr, "Approved") {
        if let Some((reason, message)) = approval(&csr, asked.as_ref(), &ctx).await? {
            let mut approved = (*csr).clone();
            condition(&mut approved, "Approved", reason, message);
            api.replace_subresource("approval", &name, &PostParams::default(), &approved)
                .await?;
            tracing::info!(csr = %name, signer = %csr.spec.signer_name, "approved");
        }
        // The approval's own event brings the request back to be signed.
        return Ok(Action::requeue(keep - age));
    }
    let usage = match csr.spec.signer_name.as_str() {
        KUBELET_CLIENT | API_CLIENT => Usage::Client,
        KUBELET_SERVING => Usage::Server,
        // Another signer's request: not ours to sign or fail.
        _ => return Ok(Action::requeue(keep - age)),
    };
    let mut done = (*csr).clone();
    match signable(&csr, asked.as_ref()) {
        Err(why) => condition(&mut done, "Failed", "SignerValidationFailure", why),
        Ok(()) => {
            let lifetime = csr
                .spec
                .expiration_seconds
                .map(|s| Duration::from_secs(s.max(600) as u64))
                .map_or(ctx.settings.signing_duration, |d| {
                    d.min(ctx.settings.signing_duration)
                });
            let pem = String::from_utf8_lossy(&csr.spec.request.0).into_owned();
            match ctx.settings.ca.sign_request(&pem, usage, lifetime) {
                Ok(cert) => {
                    done.status.get_or_insert_with(Default::default).certificate =
                        Some(k8s_openapi::ByteString(cert.into_bytes()));
                }
                Err(e) => condition(&mut done, "Failed", "SigningError", e.to_string()),
            }
        }
    }
    api.replace_status(&name, &PostParams::default(), &done)
        .await?;
    tracing::info!(csr = %name, signer = %csr.spec.signer_name, "signed");
    Ok(Action::requeue(FINISHED_KEPT))
}

fn condition(csr: &mut CertificateSigningRequest, kind: &str, reason: &str, message: String) {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    csr.status
        .get_or_insert_with(Default::default)
        .conditions
        .get_or_insert_with(Vec::new)
        .push(CertificateSigningRequestCondition {
            type_: kind.into(),
            status: "True".into(),
            reason: Some(reason.into()),
            message: Some(message),
            last_update_time: Some(now.clone()),
            last_transition_time: Some(now),
        });
}

/// Whether the signer can honour a request it was asked to sign (upstream's per-signer
/// restrictions): a kubelet's certificates must be shaped as a kubelet's.
fn signable(csr: &CertificateSigningRequest, asked: Option<&Asked>) -> Result<(), String> {
    let Some(a) = asked else {
        return Err("the request is not a valid PEM certificate request".into());
    };
    match csr.spec.signer_name.as_str() {
        KUBELET_CLIENT if !(is_node_subject(a) && a.dns_names.is_empty() && a.ips.is_empty() && a.other_names == 0 && usages_fit(csr, "client auth")) => {
            Err("invalid kubelet client certificate: want O=system:nodes, CN=system:node:<name>, no subject alternative names, usages digital signature, key encipherment, client auth".into())
        }
        KUBELET_SERVING if !(is_node_subject(a) && a.other_names == 0 && (!a.dns_names.is_empty() || !a.ips.is_empty()) && usages_fit(csr, "server auth")) => {
            Err("invalid kubelet serving certificate: want O=system:nodes, CN=system:node:<name>, DNS or IP names only, usages digital signature, key encipherment, server auth".into())
        }
        API_CLIENT if !usages(csr).iter().any(|u| u == "client auth") => {
            Err("kube-apiserver-client certificates need the client auth usage".into())
        }
        _ => Ok(()),
    }
}

/// Why a request is approved, if it may be without a person: (reason, message).
async fn approval(
    csr: &CertificateSigningRequest,
    asked: Option<&Asked>,
    ctx: &Ctx,
) -> Result<Option<(&'static str, String)>, Error> {
    let Some(a) = asked else { return Ok(None) };
    let requester = csr.spec.username.as_deref().unwrap_or("");
    match csr.spec.signer_name.as_str() {
        KUBELET_CLIENT if signable(csr, asked).is_ok() => {
            if requester == a.common_name && review(csr, "selfnodeclient", ctx).await? {
                return Ok(Some((
                    "AutoApproved",
                    "Auto approving self kubelet client certificate after SubjectAccessReview."
                        .into(),
                )));
            }
            if review(csr, "nodeclient", ctx).await? {
                return Ok(Some((
                    "AutoApproved",
                    "Auto approving kubelet client certificate after SubjectAccessReview.".into(),
                )));
            }
            Ok(None)
        }
        KUBELET_SERVING if signable(csr, asked).is_ok() && requester == a.common_name => {
            let node = &a.common_name[NODE_PREFIX.len()..];
            let nodes: Api<Node> = Api::all(ctx.client.clone());
            let all = nodes.list(&Default::default()).await?.items;
            let addresses = |n: &Node| -> Vec<String> {
                n.status
                    .as_ref()
                    .and_then(|s| s.addresses.clone())
                    .unwrap_or_default()
                    .into_iter()
                    .map(|a| a.address)
                    .collect()
            };
            let others: Vec<String> = all
                .iter()
                .filter(|n| n.metadata.name.as_deref() != Some(node))
                .flat_map(addresses)
                .chain(ctx.settings.reserved.iter().cloned())
                .collect();
            Ok(serving_fits(a, node, &others, ctx.settings.service_cidr)
                .then(|| (
                    "AutoApproved",
                    "Auto approving kubelet serving certificate: the node asks for its own name and addresses.".into(),
                )))
        }
        _ => Ok(None),
    }
}

/// Whether a node's serving request names only the node: its own name as the one DNS name,
/// and addresses that are no other node's, none of the API server's names or addresses
/// (`taken`), not loopback and outside the service range (a certificate for 10.43.0.1 or
/// `kubernetes.default.svc` would let a node pose as the API server to pods). The Node's own
/// status is not trusted for this: a node writes it itself.
fn serving_fits(
    a: &Asked,
    node: &str,
    taken: &[String],
    service_cidr: Option<crate::network::Cidr>,
) -> bool {
    if a.dns_names.iter().any(|d| d != node) || taken.iter().any(|t| t == node) {
        return false;
    }
    a.ips.iter().all(|ip| {
        let in_services = match (ip, service_cidr) {
            (std::net::IpAddr::V4(v4), Some(c)) => c.contains(*v4),
            _ => false,
        };
        !ip.is_loopback()
            && !ip.is_unspecified()
            && !in_services
            && !taken.contains(&ip.to_string())
    })
}

/// Whether the requester may create `certificatesigningrequests/<subresource>`, asked of the
/// authorizer as upstream's approver asks it.
async fn review(
    csr: &CertificateSigningRequest,
    subresource: &str,
    ctx: &Ctx,
) -> Result<bool, Error> {
    let api: Api<SubjectAccessReview> = Api::all(ctx.client.clone());
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: csr.spec.username.clone(),
            groups: csr.spec.groups.clone(),
            uid: csr.spec.uid.clone(),
            extra: csr.spec.extra.clone(),
            resource_attributes: Some(ResourceAttributes {
                group: Some("certificates.k8s.io".into()),
                resource: Some("certificatesigningrequests".into()),
                subresource: Some(subresource.into()),
                verb: Some("create".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = api.create(&PostParams::default(), &review).await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(cn: &str, orgs: &[&str], sans: &[&str]) -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        for o in orgs {
            p.distinguished_name
                .push(rcgen::DnType::OrganizationName, *o);
        }
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.serialize_request(&key).unwrap().pem().unwrap()
    }

    fn csr(signer: &str, pem: &str, usages: &[&str]) -> CertificateSigningRequest {
        let mut c = CertificateSigningRequest::default();
        c.spec.signer_name = signer.into();
        c.spec.request = k8s_openapi::ByteString(pem.as_bytes().to_vec());
        c.spec.usages = Some(usages.iter().map(|u| u.to_string()).collect());
        c
    }

    #[test]
    fn requests_are_read_and_checked_as_a_kubelets() {
        let pem = request("system:node:n1", &["system:nodes"], &[]);
        let asked = read_request(&pem).unwrap();
        assert_eq!(asked.common_name, "system:node:n1");
        assert_eq!(asked.organizations, ["system:nodes"]);
        let client = csr(KUBELET_CLIENT, &pem, &["digital signature", "client auth"]);
        assert_eq!(signable(&client, Some(&asked)), Ok(()));
        // Server usages on a client signer, or a name in a client certificate, fail.
        let wrong = csr(KUBELET_CLIENT, &pem, &["server auth"]);
        assert!(signable(&wrong, Some(&asked)).is_err());
        let named = request("system:node:n1", &["system:nodes"], &["n1", "10.0.0.1"]);
        let named_asked = read_request(&named).unwrap();
        assert_eq!(named_asked.dns_names, ["n1"]);
        assert_eq!(
            named_asked.ips,
            ["10.0.0.1".parse::<std::net::IpAddr>().unwrap()]
        );
        let c = csr(KUBELET_CLIENT, &named, &["client auth"]);
        assert!(signable(&c, Some(&named_asked)).is_err());
        let serving = csr(
            KUBELET_SERVING,
            &named,
            &["digital signature", "server auth"],
        );
        assert_eq!(signable(&serving, Some(&named_asked)), Ok(()));
        // Not a node's subject.
        let alice = request("alice", &["devs"], &[]);
        let c = csr(KUBELET_CLIENT, &alice, &["client auth"]);
        assert!(signable(&c, read_request(&alice).as_ref()).is_err());
        assert!(read_request(
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
        )
        .is_none());
    }

    #[test]
    fn a_serving_request_names_only_its_node() {
        let asked = |dns: &[&str], ips: &[&str]| Asked {
            dns_names: dns.iter().map(|s| s.to_string()).collect(),
            ips: ips.iter().map(|s| s.parse().unwrap()).collect(),
            ..Default::default()
        };
        let services = Some("10.43.0.0/16".parse().unwrap());
        let taken = vec!["10.99.0.3".to_string(), "kubernetes".to_string()];
        let fits = |dns: &[&str], ips: &[&str], node: &str| {
            serving_fits(&asked(dns, ips), node, &taken, services)
        };
        assert!(fits(&["n1"], &["10.99.0.2"], "n1"));
        // Another name, another node's (or the API server's) address, loopback, the
        // service range, or a node named as the API server is: refused.
        assert!(!fits(&["kubernetes.default.svc"], &[], "n1"));
        assert!(!fits(&["n1"], &["10.99.0.3"], "n1"));
        assert!(!fits(&["n1"], &["10.43.0.1"], "n1"));
        assert!(!fits(&["n1"], &["127.0.0.1"], "n1"));
        assert!(!fits(&["kubernetes"], &[], "kubernetes"));
    }

    #[test]
    fn a_signed_request_keeps_its_subject_and_gets_the_usage() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path(), &["127.0.0.1".into()]).unwrap();
        let pem = request("system:node:n1", &["system:nodes"], &["n1"]);
        let cert = pki
            .sign_request(&pem, Usage::Server, Duration::from_secs(3600))
            .unwrap();
        let der = x509_parser::pem::parse_x509_pem(cert.as_bytes()).unwrap().1;
        let parsed = der.parse_x509().unwrap();
        let (cn, groups) = crate::apiserver::tls::identity_of(&der.contents).unwrap();
        assert_eq!(cn, "system:node:n1");
        assert_eq!(groups, ["system:nodes"]);
        let eku = parsed.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && !eku.client_auth);
        let life =
            parsed.validity().not_after.timestamp() - parsed.validity().not_before.timestamp();
        assert_eq!(life, 3600 + 300);
        // A short life is backdated less, so 80% of it is still ahead.
        let cert = pki
            .sign_request(&pem, Usage::Client, Duration::from_secs(40))
            .unwrap();
        let der = x509_parser::pem::parse_x509_pem(cert.as_bytes()).unwrap().1;
        let v = der.parse_x509().unwrap().validity().clone();
        assert_eq!(v.not_after.timestamp() - v.not_before.timestamp(), 44);
    }
}
