//! How objects are kept in the store and put on the wire.
//!
//! The store holds each object as compact JSON *without* `metadata.resourceVersion` (the store
//! assigns the revision only when it writes), serialized with apiVersion, kind and metadata first.
//! Reading splices `"resourceVersion":"<mod_revision>"` right after the top-level `"metadata":{`,
//! so lists and watches copy stored bytes to the client without parsing them.

use bytes::Bytes;
use serde_json::{Map, Value};

/// The stored form of an object: resourceVersion removed, apiVersion/kind/metadata leading.
pub fn to_stored(obj: &Value) -> Vec<u8> {
    let map = match obj.as_object() {
        Some(m) => m,
        None => return serde_json::to_vec(obj).unwrap_or_default(),
    };
    let mut out = Vec::with_capacity(1024);
    out.push(b'{');
    let mut first = true;
    let mut put = |out: &mut Vec<u8>, k: &str, v: &Value| {
        if !first {
            out.push(b',');
        }
        first = false;
        serde_json::to_writer(&mut *out, k).expect("string serializes");
        out.push(b':');
        serde_json::to_writer(&mut *out, v).expect("value serializes");
    };
    for k in ["apiVersion", "kind"] {
        if let Some(v) = map.get(k) {
            put(&mut out, k, v);
        }
    }
    let mut meta = map
        .get("metadata")
        .cloned()
        .unwrap_or_else(|| Value::Object(Map::new()));
    if let Some(m) = meta.as_object_mut() {
        m.remove("resourceVersion");
    }
    put(&mut out, "metadata", &meta);
    for (k, v) in map {
        if !matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
            put(&mut out, k, v);
        }
    }
    out.push(b'}');
    out
}

const META: &[u8] = b"\"metadata\":{";

/// Appends the stored bytes to `out` with resourceVersion spliced in.
pub fn write_with_rv(out: &mut Vec<u8>, stored: &[u8], rv: i64) {
    match stored.windows(META.len()).position(|w| w == META) {
        Some(pos) => {
            let at = pos + META.len();
            out.extend_from_slice(&stored[..at]);
            out.extend_from_slice(b"\"resourceVersion\":\"");
            out.extend_from_slice(rv.to_string().as_bytes());
            out.push(b'"');
            if stored.get(at) != Some(&b'}') {
                out.push(b',');
            }
            out.extend_from_slice(&stored[at..]);
        }
        None => out.extend_from_slice(stored),
    }
}

pub fn with_rv(stored: &[u8], rv: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(stored.len() + 32);
    write_with_rv(&mut out, stored, rv);
    out
}

/// Parses a stored object and sets its resourceVersion.
pub fn decode_stored(stored: &[u8], rv: i64) -> Result<Value, serde_json::Error> {
    let mut v: Value = serde_json::from_slice(stored)?;
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("resourceVersion".into(), Value::String(rv.to_string()));
    }
    Ok(v)
}

/// Request body formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    Json,
    Yaml,
}

/// Errors of body decoding.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The body is not valid JSON.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// The body is not valid YAML.
    #[error("yaml: {0}")]
    Yaml(#[from] serde_yaml::Error),
}

/// The format named by a Content-Type (JSON when absent or unknown parameters follow).
pub fn body_format(content_type: &str) -> Option<BodyFormat> {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        ""
        | "application/json"
        | "application/json-patch+json"
        | "application/merge-patch+json"
        | "application/strategic-merge-patch+json"
        | "*/*" => Some(BodyFormat::Json),
        "application/yaml"
        | "application/x-yaml"
        | "text/yaml"
        | "application/apply-patch+yaml" => Some(BodyFormat::Yaml),
        _ => None,
    }
}

pub fn parse_body(raw: &[u8], format: BodyFormat) -> Result<Value, Error> {
    Ok(match format {
        BodyFormat::Json => serde_json::from_slice(raw)?,
        BodyFormat::Yaml => {
            // YAML is a superset of JSON: apply-patch bodies may be either.
            let v: serde_yaml::Value = serde_yaml::from_slice(raw)?;
            serde_json::to_value(v).map_err(Error::Json)?
        }
    })
}

/// A raw body as JSON bytes, for the unknown/duplicate field check (which reads JSON).
pub fn body_as_json_bytes<'a>(
    raw: &'a [u8],
    parsed: &Value,
    format: BodyFormat,
) -> std::borrow::Cow<'a, [u8]> {
    match format {
        BodyFormat::Json => std::borrow::Cow::Borrowed(raw),
        BodyFormat::Yaml => std::borrow::Cow::Owned(serde_json::to_vec(parsed).unwrap_or_default()),
    }
}

/// Decodes a percent-encoded query component (`+` is a space).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(x) => {
                        out.push(x);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Query parameters, last value wins (`?&limit=500`'s empty pair is skipped).
pub fn parse_query(q: Option<&str>) -> std::collections::HashMap<String, String> {
    let mut out = std::collections::HashMap::new();
    for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.insert(percent_decode(k), percent_decode(v));
    }
    out
}

pub fn json_bytes(v: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stored_form_leads_with_metadata_and_takes_rv_back() {
        let obj = json!({"data":{"metadata":{"x":1}},"kind":"ControllerRevision","apiVersion":"apps/v1",
            "metadata":{"name":"a","resourceVersion":"9"}});
        let stored = to_stored(&obj);
        assert!(!String::from_utf8_lossy(&stored).contains("\"9\""));
        let back: Value = serde_json::from_slice(&with_rv(&stored, 42)).unwrap();
        assert_eq!(back["metadata"]["resourceVersion"], "42");
        assert_eq!(back["data"]["metadata"], json!({"x":1}));
        assert_eq!(decode_stored(&stored, 42).unwrap(), back);
    }

    #[test]
    fn empty_metadata_gets_rv_without_trailing_comma() {
        let stored = to_stored(&json!({"kind":"X","metadata":{}}));
        let back: Value = serde_json::from_slice(&with_rv(&stored, 1)).unwrap();
        assert_eq!(back["metadata"]["resourceVersion"], "1");
    }

    #[test]
    fn query_decoding() {
        let q = parse_query(Some(
            "&limit=500&labelSelector=app%3Dweb%2Ctier+in+(a)&watch",
        ));
        assert_eq!(q["limit"], "500");
        assert_eq!(q["labelSelector"], "app=web,tier in (a)");
        assert_eq!(q["watch"], "");
        assert_eq!(percent_decode("a%"), "a%");
    }
}
