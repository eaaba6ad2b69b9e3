//! certificates.k8s.io/v1 CertificateSigningRequest: a request for a signed certificate.

use super::{Facts, Strategy, NONE};
use crate::apiserver::registry::ResourceInfo;
use crate::apiserver::table::Col;
use chrono::{DateTime, Utc};
use serde_json::Value;

pub fn info() -> ResourceInfo {
    super::entry::<k8s_openapi::api::certificates::v1::CertificateSigningRequest>(
        Facts {
            short: &["csr"],
            status: true,
            fields: &["spec.signerName"],
            ..NONE
        },
        Kind,
    )
}

struct Kind;

impl Strategy for Kind {
    /// As upstream: the request is immutable once made (approval and the certificate go
    /// through their own subresources), and the kube-apiserver-client signer never signs for
    /// system:masters (the CertificateSubjectRestriction admission plugin).
    fn validate(
        &self,
        obj: &Value,
        old: Option<&Value>,
        errs: &mut Vec<crate::apiserver::validation::FieldError>,
    ) {
        use crate::apiserver::validation::forbidden;
        if let Some(old) = old {
            if obj["spec"] != old["spec"] {
                errs.push(forbidden("spec", "field is immutable"));
            }
            return;
        }
        if obj["spec"]["signerName"] != crate::controllers::certificates::API_CLIENT {
            return;
        }
        use base64::Engine as _;
        let pem = obj["spec"]["request"]
            .as_str()
            .and_then(|r| base64::engine::general_purpose::STANDARD.decode(r).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let masters = crate::controllers::certificates::read_request(&pem)
            .is_some_and(|a| a.organizations.iter().any(|o| o == "system:masters"));
        if masters {
            errs.push(forbidden(
                "spec.signerName",
                "use of kubernetes.io/kube-apiserver-client signer with system:masters group is not allowed",
            ));
        }
    }

    /// As upstream's PrepareForCreate: who asked is the server's to say, never the request's.
    fn created_by(&self, obj: &mut Value, user: &crate::apiserver::auth::User) {
        let spec = &mut obj["spec"];
        spec["username"] = user.name.clone().into();
        spec["groups"] = serde_json::json!(user.groups);
        match user.uid.is_empty() {
            true => spec.as_object_mut().map(|o| o.remove("uid")),
            false => spec
                .as_object_mut()
                .map(|o| o.insert("uid".into(), user.uid.clone().into())),
        };
        match user.extra.is_empty() {
            true => spec.as_object_mut().map(|o| o.remove("extra")),
            false => spec
                .as_object_mut()
                .map(|o| o.insert("extra".into(), serde_json::json!(user.extra))),
        };
        // Nothing is approved or issued at birth.
        if let Some(o) = obj.as_object_mut() {
            o.remove("status");
        }
    }

    fn columns(&self) -> Vec<Col> {
        printer::columns()
    }

    fn row(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        printer::row(obj, now)
    }
}

mod printer {
    use crate::apiserver::table::*;
    use chrono::{DateTime, Utc};
    use serde_json::{json, Value};

    pub(super) fn columns() -> Vec<Col> {
        vec![
                NAME,
                AGE,
                c("SignerName", "string", 0, "signerName indicates the requested signer."),
                c("Requestor", "string", 0, "Name of the user requesting the certificate."),
                c("RequestedDuration", "string", 0, "expirationSeconds is the requested duration of validity of the issued certificate."),
                c("Condition", "string", 0, "Conditions applied to the request."),
            ]
    }

    /// CONDITION of a CSR: Approved/Denied/Failed, plus Issued once a certificate is there.
    pub(super) fn row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let spec = &obj["spec"];
        let mut conds: Vec<&str> = Vec::new();
        for c in arr(&obj["status"]["conditions"]) {
            let ty = s(&c["type"]);
            if matches!(ty, "Approved" | "Denied" | "Failed") && !conds.contains(&ty) {
                conds.push(ty);
            }
        }
        if conds.is_empty() {
            conds.push("Pending");
        }
        let mut condition = conds.join(",");
        if !s(&obj["status"]["certificate"]).is_empty() {
            condition.push_str(",Issued");
        }
        let duration = spec["expirationSeconds"]
            .as_i64()
            .map(|secs| human_duration(chrono::Duration::seconds(secs)))
            .unwrap_or_else(|| "<none>".into());
        vec![
            name(obj),
            age(obj, now),
            json!(s(&spec["signerName"])),
            json!(s(&spec["username"])),
            json!(duration),
            json!(condition),
        ]
    }
}
