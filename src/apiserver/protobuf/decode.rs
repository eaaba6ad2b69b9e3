//! One protobuf message to its Kubernetes JSON form, driven by the schema table.
//!
//! Go's JSON encoding of the API types decides the output: fields by their JSON names, maps as
//! objects, int64 as numbers, bytes as base64, the hand-written forms of Time, MicroTime, Duration,
//! Quantity, IntOrString, RawExtension and FieldsV1, and embedded `inline` structs lifted into
//! their parent. Go writes every non-pointer scalar even when it is zero, and the API reads a zero
//! as "unset", so zero scalars are dropped, except for the pointer fields listed in KEEP_ZERO
//! where an explicit 0, false or "" means something.

use base64::Engine;
use serde_json::{Map, Value};

use super::schema::{self, Field, Scalar, Shape, Type};
use super::wire::{self, Reader};
use super::Error;

/// Pointer fields of the API types whose zero value, when sent, differs from leaving them unset
/// (`replicas: 0`, `runAsUser: 0`, `automountServiceAccountToken: false`, `maxUnavailable: 0`...).
/// Sorted, for binary search.
pub(super) const KEEP_ZERO: &[&str] = &[
    "activeDeadlineSeconds",
    "allocateLoadBalancerNodePorts",
    "allowPrivilegeEscalation",
    "allowVolumeExpansion",
    "attachRequired",
    "automountServiceAccountToken",
    "averageUtilization",
    "backoffLimit",
    "backoffLimitPerIndex",
    "borrowingLimitPercent",
    "completions",
    "defaultMode",
    "deletionGracePeriodSeconds",
    "enableServiceLinks",
    "expirationSeconds",
    "failedJobsHistoryLimit",
    "fsGroup",
    "gracePeriodSeconds",
    "hostUsers",
    "lendablePercent",
    "maxFailedIndexes",
    "maxSurge",
    "maxUnavailable",
    "minAvailable",
    "minReplicas",
    "mode",
    "nominalConcurrencyShares",
    "optional",
    "parallelism",
    "partition",
    "podInfoOnMount",
    "priority",
    "privileged",
    "progressDeadlineSeconds",
    "readOnlyRootFilesystem",
    "ready",
    "replicas",
    "requiresRepublish",
    "revisionHistoryLimit",
    "runAsGroup",
    "runAsNonRoot",
    "runAsUser",
    "seLinuxMount",
    "serving",
    "setHostnameAsFQDN",
    "shareProcessNamespace",
    "stabilizationWindowSeconds",
    "startingDeadlineSeconds",
    "storageCapacity",
    "storageClassName",
    "successfulJobsHistoryLimit",
    "suspend",
    "targetCPUUtilizationPercentage",
    "terminating",
    "terminationGracePeriodSeconds",
    "tolerationSeconds",
    "ttlSecondsAfterFinished",
    "value",
];

const META: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.";

/// Decodes one message into a JSON object.
pub fn message(buf: &[u8], name: &str) -> Result<Map<String, Value>, Error> {
    let Some(schema) = schema::message(name) else {
        // Every name in the table is defined (the schema test checks), so this is only a caller
        // passing an unknown top-level name.
        return Err(Error::UnknownKind {
            api_version: String::new(),
            kind: name.to_string(),
        });
    };
    let mut out = Map::new();
    let mut r = Reader::new(buf);
    while let Some((num, value)) = r.next_field()? {
        // Unknown fields are skipped, as Go's decoder does: newer clients may send more.
        let Some(field) = schema.get(&num) else {
            continue;
        };
        field_into(&mut out, field, value).map_err(|e| at(field.name, e))?;
    }
    Ok(out)
}

/// Prefixes an error with a field name, building `spec.template.spec.containers[0].image`.
fn at(name: &str, e: Error) -> Error {
    match e {
        Error::At { path, source } => Error::At {
            path: if path.starts_with('[') {
                format!("{name}{path}")
            } else {
                format!("{name}.{path}")
            },
            source,
        },
        other => Error::At {
            path: name.to_string(),
            source: Box::new(other),
        },
    }
}

fn field_into(
    out: &mut Map<String, Value>,
    field: &Field,
    value: wire::Value,
) -> Result<(), Error> {
    match field.shape {
        Shape::Single => {
            let decoded = single(field.ty, value, field.name)?;
            let keep = KEEP_ZERO.binary_search(&field.name).is_ok();
            match decoded {
                None => {}
                Some(Value::Object(fields)) if field.inline => out.extend(fields),
                Some(v) if is_zero(&v) && !keep => {
                    out.remove(field.name);
                }
                // A message field sent twice is merged, as protobuf specifies.
                Some(Value::Object(more)) => match out.get_mut(field.name) {
                    Some(Value::Object(existing)) => existing.extend(more),
                    _ => {
                        out.insert(field.name.to_string(), Value::Object(more));
                    }
                },
                Some(v) => {
                    out.insert(field.name.to_string(), v);
                }
            }
        }
        Shape::Repeated => {
            let list = out
                .entry(field.name)
                .or_insert_with(|| Value::Array(Vec::new()));
            let Value::Array(list) = list else {
                unreachable!("only this arm writes repeated fields")
            };
            let index = list.len();
            match (field.ty, value) {
                (Type::Scalar(s), wire::Value::Bytes(packed)) if packable(s) => {
                    let mut r = Reader::new(packed);
                    while !r.at_end() {
                        let v = match s {
                            Scalar::Fixed32 | Scalar::Sfixed32 | Scalar::Float => {
                                wire::Value::Fixed32(r.fixed::<4>()?)
                            }
                            Scalar::Fixed64 | Scalar::Sfixed64 | Scalar::Double => {
                                wire::Value::Fixed64(r.fixed::<8>()?)
                            }
                            _ => wire::Value::Varint(r.varint()?),
                        };
                        list.push(scalar(s, v, field.name)?);
                    }
                }
                (ty, v) => list.push(
                    single(ty, v, field.name)
                        .map_err(|e| at(&format!("[{index}]"), e))?
                        .unwrap_or(Value::Null),
                ),
            }
        }
        Shape::Map(key_ty) => {
            let wire::Value::Bytes(entry) = value else {
                return Err(wrong(field.name, "map entry", &value));
            };
            let (mut key, mut val) = (None, None);
            let mut r = Reader::new(entry);
            while let Some((num, v)) = r.next_field()? {
                match num {
                    1 => key = single(key_ty, v, "key")?,
                    2 => val = Some(v),
                    _ => {}
                }
            }
            let key = match key {
                Some(Value::String(s)) => s,
                Some(other) => other.to_string(),
                None => String::new(),
            };
            let val = match val {
                Some(v) => single(field.ty, v, &key).map_err(|e| at(&key, e))?,
                None => None,
            }
            .unwrap_or_else(|| zero(field.ty));
            let map = out
                .entry(field.name)
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(map) = map {
                map.insert(key, val);
            }
        }
    }
    Ok(())
}

fn packable(s: Scalar) -> bool {
    !matches!(s, Scalar::String | Scalar::Bytes)
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

/// A map value that was left out of its entry: the type's zero.
fn zero(ty: Type) -> Value {
    match ty {
        Type::Scalar(Scalar::String | Scalar::Bytes) => Value::String(String::new()),
        Type::Scalar(Scalar::Bool) => Value::Bool(false),
        Type::Scalar(_) => Value::from(0),
        Type::Message("k8s.io.apimachinery.pkg.api.resource.Quantity") => "0".into(),
        Type::Message(_) => Value::Object(Map::new()),
    }
}

fn wrong(field: &str, expected: &'static str, found: &wire::Value) -> Error {
    Error::WrongWireType {
        field: field.to_string(),
        expected,
        found: found.wire_name(),
    }
}

/// One value of a field; None when it stands for nothing (a zero Time).
fn single(ty: Type, value: wire::Value, name: &str) -> Result<Option<Value>, Error> {
    match ty {
        Type::Scalar(s) => scalar(s, value, name).map(Some),
        Type::Message(m) => {
            let wire::Value::Bytes(buf) = value else {
                return Err(wrong(name, "message", &value));
            };
            special(m, buf)?.map_or_else(|| message(buf, m).map(|o| Some(Value::Object(o))), Ok)
        }
    }
}

fn scalar(s: Scalar, value: wire::Value, name: &str) -> Result<Value, Error> {
    use wire::Value as W;
    Ok(match (s, value) {
        (Scalar::Int32, W::Varint(v)) => Value::from(v as i64 as i32),
        (Scalar::Int64, W::Varint(v)) => Value::from(v as i64),
        (Scalar::Uint32, W::Varint(v)) => Value::from(v as u32),
        (Scalar::Uint64, W::Varint(v)) => Value::from(v),
        (Scalar::Sint32, W::Varint(v)) => Value::from(unzigzag(v) as i32),
        (Scalar::Sint64, W::Varint(v)) => Value::from(unzigzag(v)),
        (Scalar::Bool, W::Varint(v)) => Value::Bool(v != 0),
        (Scalar::Fixed32, W::Fixed32(b)) => Value::from(u32::from_le_bytes(b)),
        (Scalar::Sfixed32, W::Fixed32(b)) => Value::from(i32::from_le_bytes(b)),
        (Scalar::Float, W::Fixed32(b)) => Value::from(f64::from(f32::from_le_bytes(b))),
        (Scalar::Fixed64, W::Fixed64(b)) => Value::from(u64::from_le_bytes(b)),
        (Scalar::Sfixed64, W::Fixed64(b)) => Value::from(i64::from_le_bytes(b)),
        (Scalar::Double, W::Fixed64(b)) => Value::from(f64::from_le_bytes(b)),
        (Scalar::String, W::Bytes(b)) => Value::String(
            std::str::from_utf8(b)
                .map_err(|_| Error::Utf8(name.to_string()))?
                .to_string(),
        ),
        (Scalar::Bytes, W::Bytes(b)) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        (s, v) => {
            let expected = match s {
                Scalar::String | Scalar::Bytes => "length-delimited",
                Scalar::Fixed32 | Scalar::Sfixed32 | Scalar::Float => "fixed32",
                Scalar::Fixed64 | Scalar::Sfixed64 | Scalar::Double => "fixed64",
                _ => "varint",
            };
            return Err(wrong(name, expected, &v));
        }
    })
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// The messages whose JSON form is not their fields: Some(form), or None for the rest.
/// The inner Option is None for a value that stands for nothing (an unset Time).
fn special(name: &str, buf: &[u8]) -> Result<Option<Option<Value>>, Error> {
    let Some(short) = name
        .strip_prefix(META)
        .or_else(|| name.strip_prefix("k8s.io.apimachinery.pkg.api.resource."))
        .or_else(|| name.strip_prefix("k8s.io.apimachinery.pkg.util.intstr."))
        .or_else(|| name.strip_prefix("k8s.io.apimachinery.pkg.runtime."))
        .or_else(|| name.ends_with(".ExtraValue").then_some("ExtraValue"))
    else {
        return Ok(None);
    };
    let fields = || -> Result<Map<String, Value>, Error> { message(buf, name) };
    Ok(Some(match short {
        "Time" | "MicroTime" => {
            let f = fields()?;
            if buf.is_empty() {
                // Go writes nothing for the zero Time, whose JSON is null.
                None
            } else {
                let secs = f.get("seconds").and_then(Value::as_i64).unwrap_or(0);
                let nanos = f.get("nanos").and_then(Value::as_i64).unwrap_or(0);
                let t = chrono::DateTime::from_timestamp(secs, nanos.clamp(0, 999_999_999) as u32)
                    .ok_or(Error::TimeOutOfRange(secs))?;
                Some(Value::String(if short == "Time" {
                    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
                } else {
                    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
                }))
            }
        }
        "Duration" => {
            let f = fields()?;
            Some(Value::String(go_duration(
                f.get("duration").and_then(Value::as_i64).unwrap_or(0),
            )))
        }
        "Quantity" | "QuantityValue" => {
            let f = fields()?;
            let s = f.get("string").and_then(Value::as_str).unwrap_or("");
            Some(Value::String(
                if s.is_empty() { "0" } else { s }.to_string(),
            ))
        }
        "IntOrString" => {
            let f = fields()?;
            if f.get("type").and_then(Value::as_i64) == Some(1) {
                Some(f.get("strVal").cloned().unwrap_or_else(|| "".into()))
            } else {
                Some(f.get("intVal").cloned().unwrap_or_else(|| 0.into()))
            }
        }
        "RawExtension" | "FieldsV1" => {
            // Both hold JSON text (FieldsV1's field is named Raw, RawExtension's raw).
            let mut r = Reader::new(buf);
            let mut raw: &[u8] = &[];
            while let Some((num, v)) = r.next_field()? {
                if let (1, wire::Value::Bytes(b)) = (num, v) {
                    raw = b;
                }
            }
            if raw.is_empty() {
                None
            } else if raw.starts_with(b"k8s\0") {
                // Not decoded: a nested envelope could nest again without bound, and no client
                // sends one (kubectl embeds JSON).
                return Err(Error::RawNotJson("a nested protobuf object".into()));
            } else {
                Some(serde_json::from_slice(raw).map_err(|e| Error::RawNotJson(e.to_string()))?)
            }
        }
        "Verbs" | "ExtraValue" => Some(
            fields()?
                .remove("items")
                .unwrap_or_else(|| Value::Array(Vec::new())),
        ),
        _ => return Ok(None),
    }))
}

/// A duration in Go's time.Duration.String form ("1h2m3.5s", "150ms", "0s"), which is how
/// metav1.Duration is written in JSON.
pub fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let u = nanos.unsigned_abs();
    let frac = |v: u64, digits: u32| {
        let unit = 10u64.pow(digits);
        let f = format!("{:0width$}", v % unit, width = digits as usize);
        let f = f.trim_end_matches('0');
        if f.is_empty() {
            format!("{}", v / unit)
        } else {
            format!("{}.{f}", v / unit)
        }
    };
    if u < 1_000_000_000 {
        return match u {
            0..=999 => format!("{sign}{u}ns"),
            1_000..=999_999 => format!("{sign}{}µs", frac(u, 3)),
            _ => format!("{sign}{}ms", frac(u, 6)),
        };
    }
    let secs = frac(u % 60_000_000_000, 9);
    let mins = (u / 60_000_000_000) % 60;
    let hours = u / 3_600_000_000_000;
    if hours > 0 {
        format!("{sign}{hours}h{mins}m{secs}s")
    } else if mins > 0 {
        format!("{sign}{mins}m{secs}s")
    } else {
        format!("{sign}{secs}s")
    }
}
