//! core/v1 Secret: sensitive data, base64 in JSON, typed by `type`.

use super::{Facts, Strategy, NONE};
use crate::apiserver::registry::ResourceInfo;
use crate::apiserver::table::Col;
use crate::apiserver::validation::FieldError;
use chrono::{DateTime, Utc};
use serde_json::Value;

pub fn info() -> ResourceInfo {
    super::entry::<k8s_openapi::api::core::v1::Secret>(
        Facts {
            fields: &["type"],
            ..NONE
        },
        Kind,
    )
}

struct Kind;

impl Strategy for Kind {
    fn defaults(&self, obj: &mut Value) {
        defaults::apply(obj)
    }

    fn validate(&self, obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
        validation::check(obj, old, errs)
    }

    fn columns(&self) -> Vec<Col> {
        printer::columns()
    }

    fn row(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        printer::row(obj, now)
    }
}

mod defaults {
    use crate::apiserver::defaults::*;
    use serde_json::{json, Value};

    pub(super) fn apply(obj: &mut Value) {
        secret(obj);
    }

    /// `stringData` is write-only: the real server folds it into `data` (base64), winning over a
    /// `data` key of the same name, and never stores it.
    fn secret(obj: &mut Value) {
        use base64::Engine;
        set(obj, &["type"], json!("Opaque"));
        let Some(m) = obj.as_object_mut() else { return };
        let Some(Value::Object(string_data)) = m.remove("stringData") else {
            return;
        };
        let data = m.entry("data").or_insert_with(|| json!({}));
        if data.is_null() {
            *data = json!({});
        }
        if let Some(data) = data.as_object_mut() {
            for (k, v) in string_data {
                let text = v.as_str().unwrap_or("");
                let encoded = base64::engine::general_purpose::STANDARD.encode(text);
                data.insert(k, Value::String(encoded));
            }
        }
    }
}

mod validation {

    use crate::apiserver::validation::kinds::*;

    use crate::apiserver::validation::*;
    use serde_json::Value;

    pub(super) fn check(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
        secret(obj, old, errs);
    }

    fn secret(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
        data_keys(obj, old, true, errs);
        let has = |k: &str| !obj["data"][k].is_null() || !obj["stringData"][k].is_null();
        let ty = s(&obj["type"]);
        let need: &[&str] = match ty {
            "kubernetes.io/tls" => &["tls.crt", "tls.key"],
            "kubernetes.io/dockerconfigjson" => &[".dockerconfigjson"],
            "kubernetes.io/dockercfg" => &[".dockercfg"],
            "kubernetes.io/ssh-auth" => &["ssh-privatekey"],
            _ => &[],
        };
        for k in need {
            if !has(k) {
                errs.push(required(&format!("data[{k}]"), ""));
            }
        }
        if ty == "kubernetes.io/basic-auth" && !has("username") && !has("password") {
            errs.push(required("data[username]", ""));
            errs.push(required("data[password]", ""));
        }
        if ty == "kubernetes.io/service-account-token"
            && s(&obj["metadata"]["annotations"]["kubernetes.io/service-account.name"]).is_empty()
        {
            errs.push(required(
                "metadata.annotations[kubernetes.io/service-account.name]",
                "",
            ));
        }
        if let Some(old) = old {
            immutable(&obj["type"], Some(&old["type"]), "type", errs);
        }
    }
}

mod printer {
    use crate::apiserver::table::*;
    use chrono::{DateTime, Utc};
    use serde_json::{json, Value};

    pub(super) fn columns() -> Vec<Col> {
        vec![
            NAME,
            c(
                "Type",
                "string",
                0,
                "Used to facilitate programmatic handling of secret data.",
            ),
            c("Data", "integer", 0, "Data contains the secret data."),
            AGE,
        ]
    }

    pub(super) fn row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        vec![
            name(obj),
            json!(s(&obj["type"])),
            json!(map_len(&obj["data"])),
            age(obj, now),
        ]
    }
}
