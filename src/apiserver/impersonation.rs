//! Impersonation (`kubectl --as`, `--as-group`, `--as-uid`): between authentication and
//! authorization, a request carrying `Impersonate-*` headers becomes the request of the user
//! they name, provided the real user may `impersonate` each part of that identity: the user
//! (`users`, or `serviceaccounts` for a service account's name), every group (`groups`), the
//! uid (`uids`) and every extra value (`userextras/<key>`), as upstream checks them.

use super::auth::User;
use super::authorization::{self, Authorizer};
use super::status::ApiError;
use http::HeaderMap;

const USER: &str = "impersonate-user";
const GROUP: &str = "impersonate-group";
const UID: &str = "impersonate-uid";
const EXTRA: &str = "impersonate-extra-";

/// The user the request acts as: the authenticated one, or the one it may impersonate.
pub fn apply(z: &dyn Authorizer, real: User, headers: &HeaderMap) -> Result<User, ApiError> {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect()
    };
    let user = values(USER).into_iter().next();
    let groups = values(GROUP);
    let uid = values(UID).into_iter().next();
    let mut extra = std::collections::BTreeMap::<String, Vec<String>>::new();
    for name in headers.keys() {
        if let Some(key) = name.as_str().strip_prefix(EXTRA) {
            // Extra keys travel percent-encoded in header names.
            let key = percent_decode(key);
            extra.entry(key).or_default().extend(values(name.as_str()));
        }
    }
    let Some(name) = user else {
        if groups.is_empty() && uid.is_none() && extra.is_empty() {
            return Ok(real);
        }
        return Err(ApiError::BadRequest(
            "requested impersonation of groups, uid or extra without impersonating a user".into(),
        ));
    };
    let ask = |verb_on: (&str, &str, &str, &str, &str)| {
        let (group, resource, subresource, namespace, object) = verb_on;
        let a = authorization::Attributes {
            user: real.clone(),
            verb: "impersonate".into(),
            resource_request: true,
            namespace: namespace.into(),
            api_group: group.into(),
            resource: resource.into(),
            subresource: subresource.into(),
            name: object.into(),
            ..Default::default()
        };
        authorization::check(z, &a)
    };
    let account = name
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'));
    match account {
        Some((ns, sa)) => ask(("", "serviceaccounts", "", ns, sa))?,
        None => ask(("", "users", "", "", &name))?,
    }
    for g in &groups {
        ask(("", "groups", "", "", g))?;
    }
    if let Some(uid) = &uid {
        ask(("authentication.k8s.io", "uids", "", "", uid))?;
    }
    for (key, vals) in &extra {
        for v in vals {
            ask(("authentication.k8s.io", "userextras", key, "", v))?;
        }
    }
    let mut groups = groups;
    // As upstream: an impersonated user is authenticated, and a service account is in its
    // account groups, unless the caller named the groups of an anonymous user.
    if let Some((ns, _)) = account {
        for g in [
            "system:serviceaccounts".to_string(),
            format!("system:serviceaccounts:{ns}"),
        ] {
            if !groups.contains(&g) {
                groups.push(g);
            }
        }
    }
    if name != "system:anonymous" && !groups.iter().any(|g| g == "system:authenticated") {
        groups.push("system:authenticated".into());
    }
    Ok(User {
        name,
        uid: uid.unwrap_or_default(),
        groups,
        extra,
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::authorization::{Attributes, Decision};

    /// Allows impersonating only the user "alice" and the group "devs".
    struct MayBeAlice;

    impl Authorizer for MayBeAlice {
        fn authorize(&self, a: &Attributes) -> Decision {
            let ok = a.verb == "impersonate"
                && ((a.resource == "users" && a.name == "alice")
                    || (a.resource == "groups" && a.name == "devs"));
            if ok {
                Decision::Allow
            } else {
                Decision::NoOpinion
            }
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn impersonation_needs_the_verb_on_every_part() {
        let me = User::new("bob", &["system:authenticated"]);
        let same = apply(&MayBeAlice, me.clone(), &headers(&[])).unwrap();
        assert_eq!(same, me);
        let alice = apply(
            &MayBeAlice,
            me.clone(),
            &headers(&[("Impersonate-User", "alice"), ("Impersonate-Group", "devs")]),
        )
        .unwrap();
        assert_eq!(alice.name, "alice");
        assert_eq!(alice.groups, ["devs", "system:authenticated"]);
        let e = apply(
            &MayBeAlice,
            me.clone(),
            &headers(&[("Impersonate-User", "carol")]),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"users "carol" is forbidden: User "bob" cannot impersonate resource "users" in API group "" at the cluster scope"#
        );
        assert!(apply(
            &MayBeAlice,
            me.clone(),
            &headers(&[
                ("Impersonate-User", "alice"),
                ("Impersonate-Group", "admins")
            ])
        )
        .is_err());
        assert!(matches!(
            apply(&MayBeAlice, me, &headers(&[("Impersonate-Group", "devs")])),
            Err(ApiError::BadRequest(_))
        ));
        assert_eq!(percent_decode("scopes%2Fa"), "scopes/a");
    }
}
