//! Who the server's own callers are. Work the server does by itself (creating the default
//! namespaces) and the controllers that have upstream's service accounts (the garbage
//! collector, the namespace controller: their clients in `src/server.rs` carry these names)
//! act as named identities, so authorization and admission see who did what. `kubeconfig_for` mints the credential of any named
//! identity: a client certificate (CN the user, O the groups) signed by the cluster CA; the
//! node agent will use it as `system:node:<name>` in `system:nodes`.

use super::auth::User;
use super::tls;
use base64::Engine as _;

/// A service account's user, with the groups upstream's token authenticator gives it.
fn service_account(namespace: &str, name: &str) -> User {
    User {
        name: format!("system:serviceaccount:{namespace}:{name}"),
        uid: String::new(),
        groups: vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{namespace}"),
            "system:authenticated".into(),
        ],
        ..Default::default()
    }
}

/// The API server itself, for what it does at start (the default namespaces).
pub fn apiserver() -> User {
    // In system:masters, as upstream's loopback client.
    User::new(
        "system:apiserver",
        &["system:masters", "system:authenticated"],
    )
}

/// The garbage collector (`src/controllers/garbagecollector/`).
pub fn garbage_collector() -> User {
    service_account("kube-system", "generic-garbage-collector")
}

/// The namespace controller (`src/controllers/namespace.rs`).
pub fn namespace_controller() -> User {
    service_account("kube-system", "namespace-controller")
}

/// A node agent: `system:node:<name>` in `system:nodes`.
pub fn node(name: &str) -> User {
    User::new(
        &format!("system:node:{name}"),
        &["system:nodes", "system:authenticated"],
    )
}

/// A kubeconfig for `server` with the cluster CA and the given client certificate.
pub fn kubeconfig(server: &str, ca_pem: &str, cert_pem: &str, key_pem: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: default\n  cluster:\n    certificate-authority-data: {}\n    server: {server}\ncontexts:\n- name: default\n  context:\n    cluster: default\n    user: default\ncurrent-context: default\npreferences: {{}}\nusers:\n- name: default\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
        b64(ca_pem),
        b64(cert_pem),
        b64(key_pem),
    )
}

/// Mints a credential for `user` in `groups` (a client certificate signed by the cluster CA)
/// and the kubeconfig that uses it. `system:authenticated` is added by the server to every
/// user, so it need not be listed.
pub fn kubeconfig_for(
    server: &str,
    pki: &tls::Pki,
    user: &str,
    groups: &[&str],
) -> Result<String, tls::Error> {
    let groups: Vec<&str> = groups
        .iter()
        .copied()
        .filter(|g| *g != "system:authenticated")
        .collect();
    let (cert, key) = pki.issue_client(user, &groups)?;
    Ok(kubeconfig(server, &pki.ca_cert_pem, &cert, &key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_credentials_name_the_identity() {
        let dir = tempfile::tempdir().unwrap();
        let pki = tls::Pki::load_or_create(dir.path(), &["127.0.0.1".into()]).unwrap();
        let node = node("n1");
        let groups: Vec<&str> = node.groups.iter().map(String::as_str).collect();
        let kc = kubeconfig_for("https://127.0.0.1:6443", &pki, &node.name, &groups).unwrap();
        let cert_b64 = kc
            .lines()
            .find_map(|l| l.trim().strip_prefix("client-certificate-data: "))
            .unwrap();
        let pem = base64::engine::general_purpose::STANDARD
            .decode(cert_b64)
            .unwrap();
        let (_, parsed) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
        let (cn, orgs) = tls::identity_of(&parsed.contents).unwrap();
        assert_eq!(cn, "system:node:n1");
        assert_eq!(orgs, vec!["system:nodes"]);
        assert!(kc.contains("server: https://127.0.0.1:6443"));
        assert_eq!(
            garbage_collector().name,
            "system:serviceaccount:kube-system:generic-garbage-collector"
        );
        assert!(!garbage_collector().in_group("system:masters"));
    }
}
