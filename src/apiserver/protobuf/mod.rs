//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`), decoded into the
//! JSON form the rest of the server handles.
//!
//! kubectl's generator commands (`create deployment`, `run`, `expose`, ...) build typed Go objects
//! and send them in protobuf. The body is the 4 bytes `k8s\0` and a `runtime.Unknown` message:
//! typeMeta {apiVersion, kind}, raw (the object message), contentEncoding, contentType. The object
//! message is decoded field by field with the table in schema.txt (see schema.rs); Kubernetes'
//! hand-written JSON forms (Time, Quantity, IntOrString, ...) are rebuilt in decode.rs.
//! Responses stay JSON: kubectl's Accept always lists application/json too.

mod decode;
pub mod schema;
mod wire;

use serde_json::{Map, Value};

/// The media type of Kubernetes protobuf bodies.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The prefix of every Kubernetes protobuf body.
const MAGIC: &[u8; 4] = b"k8s\0";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The body does not start with the `k8s\0` magic of Kubernetes protobuf.
    #[error("the body does not start with the Kubernetes protobuf prefix \"k8s\\x00\"")]
    NoMagic,
    /// The envelope names no apiVersion or kind.
    #[error("the protobuf envelope has no apiVersion/kind")]
    NoTypeMeta,
    /// The envelope's raw object is compressed or otherwise encoded.
    #[error("unsupported protobuf contentEncoding {0:?}; send JSON or YAML")]
    ContentEncoding(String),
    /// No message in the schema for this apiVersion and kind.
    #[error("no protobuf schema for {api_version}, Kind={kind}; send JSON or YAML")]
    UnknownKind { api_version: String, kind: String },
    /// A message ended in the middle of a field.
    #[error("truncated message")]
    Truncated,
    /// A varint ran over 10 bytes.
    #[error("malformed varint")]
    BadVarint,
    /// A key names field number 0 or one beyond 2^29.
    #[error("invalid field number {0}")]
    BadFieldNumber(u64),
    /// A key uses a wire type protobuf 3 does not have (groups or 6, 7).
    #[error("unsupported wire type {0}")]
    BadWireType(u8),
    /// A field's wire type does not match its schema type.
    #[error("{field}: expected {expected}, found {found}")]
    WrongWireType {
        field: String,
        expected: &'static str,
        found: &'static str,
    },
    /// A string field holds bytes that are not UTF-8.
    #[error("{0}: string is not valid UTF-8")]
    Utf8(String),
    /// A Time's seconds lie outside what a date can hold.
    #[error("time {0}s is out of range")]
    TimeOutOfRange(i64),
    /// A RawExtension or FieldsV1 holds bytes that are neither JSON nor Kubernetes protobuf.
    #[error("embedded object is not JSON: {0}")]
    RawNotJson(String),
    /// A field failed to decode; the path says where in the object.
    #[error("{path}: {source}")]
    At {
        path: String,
        #[source]
        source: Box<Error>,
    },
}

/// Whether a Content-Type names Kubernetes protobuf.
pub fn is_protobuf(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|m| m.trim().eq_ignore_ascii_case(MEDIA_TYPE))
}

/// Decodes a Kubernetes protobuf request body into the object's JSON form, with apiVersion and
/// kind from the envelope.
pub fn decode_request(body: &[u8]) -> Result<Value, Error> {
    let rest = body.strip_prefix(MAGIC.as_slice()).ok_or(Error::NoMagic)?;
    let envelope = Envelope::parse(rest)?;
    if envelope.api_version.is_empty() || envelope.kind.is_empty() {
        return Err(Error::NoTypeMeta);
    }
    if !envelope.content_encoding.is_empty() {
        return Err(Error::ContentEncoding(envelope.content_encoding));
    }
    let name =
        message_name(&envelope.api_version, &envelope.kind).ok_or_else(|| Error::UnknownKind {
            api_version: envelope.api_version.clone(),
            kind: envelope.kind.clone(),
        })?;
    let mut obj = Map::new();
    obj.insert("apiVersion".into(), envelope.api_version.into());
    obj.insert("kind".into(), envelope.kind.into());
    obj.extend(decode::message(envelope.raw, name)?);
    Ok(Value::Object(obj))
}

/// `runtime.Unknown`, read by hand: its raw bytes are the payload, not a JSON field.
struct Envelope<'a> {
    api_version: String,
    kind: String,
    raw: &'a [u8],
    content_encoding: String,
}

impl<'a> Envelope<'a> {
    fn parse(buf: &'a [u8]) -> Result<Self, Error> {
        let mut e = Envelope {
            api_version: String::new(),
            kind: String::new(),
            raw: &[],
            content_encoding: String::new(),
        };
        let text = |b: &[u8], what: &str| {
            String::from_utf8(b.to_vec()).map_err(|_| Error::Utf8(what.to_string()))
        };
        let mut r = wire::Reader::new(buf);
        while let Some((num, value)) = r.next_field()? {
            match (num, value) {
                (1, wire::Value::Bytes(type_meta)) => {
                    let mut t = wire::Reader::new(type_meta);
                    while let Some((num, value)) = t.next_field()? {
                        match (num, value) {
                            (1, wire::Value::Bytes(b)) => e.api_version = text(b, "apiVersion")?,
                            (2, wire::Value::Bytes(b)) => e.kind = text(b, "kind")?,
                            _ => {}
                        }
                    }
                }
                (2, wire::Value::Bytes(raw)) => e.raw = raw,
                (3, wire::Value::Bytes(b)) => e.content_encoding = text(b, "contentEncoding")?,
                _ => {}
            }
        }
        Ok(e)
    }
}

/// The protobuf message of an API kind: Go packages are named after the group's first label
/// (`rbac.authorization.k8s.io/v1` is `k8s.io.api.rbac.v1`; the core group is `core`).
fn message_name(api_version: &str, kind: &str) -> Option<&'static str> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let package = match group {
        "" => format!("k8s.io.api.core.{version}"),
        "meta.k8s.io" => format!("k8s.io.apimachinery.pkg.apis.meta.{version}"),
        g => format!("k8s.io.api.{}.{version}", g.split('.').next().unwrap_or(g)),
    };
    let find = |package: &str| {
        schema::messages()
            .get_key_value(format!("{package}.{kind}").as_str())
            .map(|(k, _)| *k)
    };
    // The option kinds (DeleteOptions, ...) are meta.k8s.io's, registered in every group: an
    // eviction or delete names them as "v1" or "policy/v1".
    find(&package).or_else(|| find(&format!("k8s.io.apimachinery.pkg.apis.meta.{version}")))
}

#[cfg(test)]
mod tests;
