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

/// The byte range of top-level `metadata.managedFields` (with one adjoining comma) in stored
/// bytes, found by walking the metadata object's members without parsing values.
fn managed_fields_span(stored: &[u8]) -> Option<(usize, usize)> {
    let start = stored.windows(META.len()).position(|w| w == META)? + META.len();
    let mut i = start;
    let mut prev_member_end = start; // where the previous member (or `{`) ended
    loop {
        // At a member: skip whitespace, read the key.
        while stored.get(i)?.is_ascii_whitespace() {
            i += 1;
        }
        if stored[i] == b'}' {
            return None;
        }
        let member_start = i;
        let key_end = skip_string(stored, i)?;
        let key = &stored[i..key_end];
        i = key_end;
        while stored.get(i)?.is_ascii_whitespace() || stored[i] == b':' {
            i += 1;
        }
        let value_end = skip_value(stored, i)?;
        if key == b"\"managedFields\"" {
            // Remove the member and the comma that separates it from a neighbour.
            return if stored.get(value_end) == Some(&b',') {
                Some((member_start, value_end + 1))
            } else if member_start > start {
                Some((prev_member_end, value_end))
            } else {
                Some((member_start, value_end))
            };
        }
        i = value_end;
        prev_member_end = i;
        match stored.get(i)? {
            b',' => i += 1,
            _ => return None,
        }
    }
}

/// End (exclusive) of the JSON string starting at `i`.
fn skip_string(b: &[u8], mut i: usize) -> Option<usize> {
    if b.get(i)? != &b'"' {
        return None;
    }
    i += 1;
    loop {
        match b.get(i)? {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
}

/// End (exclusive) of the JSON value starting at `i` (compact JSON, as stored).
fn skip_value(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => skip_string(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match b.get(j)? {
                    b'"' => {
                        j = skip_string(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let mut j = i;
            while !matches!(b.get(j)?, b',' | b'}' | b']') {
                j += 1;
            }
            Some(j)
        }
    }
}

/// Parses a stored object without its managedFields (for Table rows, which never show them:
/// they are often the largest part of an object, and parsing is the cost of a big Table).
pub fn decode_stored_for_display(stored: &[u8], rv: i64) -> Result<Value, serde_json::Error> {
    match managed_fields_span(stored) {
        Some((a, b)) => {
            let mut trimmed = Vec::with_capacity(stored.len() - (b - a));
            trimmed.extend_from_slice(&stored[..a]);
            trimmed.extend_from_slice(&stored[b..]);
            decode_stored(&trimmed, rv)
        }
        None => decode_stored(stored, rv),
    }
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
    fn display_decoding_drops_only_top_level_managed_fields() {
        for obj in [
            json!({"kind":"A","metadata":{"name":"a","managedFields":[{"manager":"x","fieldsV1":{"f:a":{}}}],"labels":{"k":"v"}},"data":{"metadata":{"managedFields":[1]}}}),
            json!({"kind":"A","metadata":{"managedFields":[{"m":"}]\"x"}],"name":"a"}}),
            json!({"kind":"A","metadata":{"name":"a","managedFields":[]}}),
            json!({"kind":"A","metadata":{"managedFields":[]}}),
            json!({"kind":"A","metadata":{"name":"a","annotations":{"managedFields":"s"}}}),
        ] {
            let stored = to_stored(&obj);
            let mut want = obj.clone();
            want["metadata"]
                .as_object_mut()
                .unwrap()
                .remove("managedFields");
            want["metadata"]["resourceVersion"] = json!("3");
            assert_eq!(
                decode_stored_for_display(&stored, 3).unwrap(),
                want,
                "{obj}"
            );
        }
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
