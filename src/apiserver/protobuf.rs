//! Request bodies in Kubernetes' protobuf encoding (`application/vnd.kubernetes.protobuf`), for
//! the kinds kubectl's `create <kind>` generators send that way: namespaces, configmaps,
//! secrets, serviceaccounts, services, deployments, jobs and cronjobs.
//!
//! The envelope is the 4 bytes `k8s\0` and a `runtime.Unknown` message (1: typeMeta {1:
//! apiVersion, 2: kind}, 2: raw object bytes). The object is read with a small hand-written
//! schema per message (field number, JSON name, type), as the kinds' generated.proto files
//! number them. A field the schema does not know fails the decode instead of being dropped:
//! the client gets a 415 and can send JSON (`kubectl apply`, `create -f`).

use serde_json::{json, Map, Value};

/// Errors of protobuf decoding.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The body does not start with the `k8s\0` magic.
    #[error("not a Kubernetes protobuf envelope")]
    Envelope,
    /// The bytes are not valid protobuf.
    #[error("malformed protobuf: {0}")]
    Malformed(&'static str),
    /// The kind has no protobuf schema here.
    #[error("protobuf bodies are not supported for {0}; send JSON or YAML")]
    UnsupportedKind(String),
    /// A field number the schema does not know.
    #[error("protobuf field {number} of {message} is not supported; send JSON or YAML")]
    UnknownField { message: &'static str, number: u64 },
}

#[derive(Debug, Clone, Copy)]
enum Ty {
    /// A string; empty ones are left out, as the JSON encoding omits them.
    Str,
    /// A non-pointer bool or integer: false and 0 are left out.
    Bool,
    Int,
    /// A pointer integer or bool: present means set, 0 and false included.
    OptInt,
    OptBool,
    Msg(&'static Schema),
    MapStr,
    MapBytes,
    MapQuantity,
    Time,
    IntOrString,
    /// Read and dropped (status sent on create, reset by the server anyway).
    Skip,
}

#[derive(Debug)]
struct Schema {
    name: &'static str,
    fields: &'static [(u64, &'static str, Ty, bool)],
}

const R: bool = true; // repeated
const O: bool = false;

static OWNER_REFERENCE: Schema = Schema {
    name: "OwnerReference",
    fields: &[
        (1, "kind", Ty::Str, O),
        (3, "name", Ty::Str, O),
        (4, "uid", Ty::Str, O),
        (5, "apiVersion", Ty::Str, O),
        (6, "controller", Ty::OptBool, O),
        (7, "blockOwnerDeletion", Ty::OptBool, O),
    ],
};

static OBJECT_META: Schema = Schema {
    name: "ObjectMeta",
    fields: &[
        (1, "name", Ty::Str, O),
        (2, "generateName", Ty::Str, O),
        (3, "namespace", Ty::Str, O),
        (4, "selfLink", Ty::Str, O),
        (5, "uid", Ty::Str, O),
        (6, "resourceVersion", Ty::Str, O),
        (7, "generation", Ty::Int, O),
        (8, "creationTimestamp", Ty::Time, O),
        (9, "deletionTimestamp", Ty::Time, O),
        (10, "deletionGracePeriodSeconds", Ty::OptInt, O),
        (11, "labels", Ty::MapStr, O),
        (12, "annotations", Ty::MapStr, O),
        (13, "ownerReferences", Ty::Msg(&OWNER_REFERENCE), R),
        (14, "finalizers", Ty::Str, R),
        (17, "managedFields", Ty::Skip, R),
    ],
};

static NAMESPACE_SPEC: Schema = Schema {
    name: "NamespaceSpec",
    fields: &[(1, "finalizers", Ty::Str, R)],
};
static NAMESPACE: Schema = Schema {
    name: "Namespace",
    fields: &[
        (1, "metadata", Ty::Msg(&OBJECT_META), O),
        (2, "spec", Ty::Msg(&NAMESPACE_SPEC), O),
        (3, "status", Ty::Skip, O),
    ],
};

static CONFIG_MAP: Schema = Schema {
    name: "ConfigMap",
    fields: &[
        (1, "metadata", Ty::Msg(&OBJECT_META), O),
        (2, "data", Ty::MapStr, O),
        (3, "binaryData", Ty::MapBytes, O),
        (4, "immutable", Ty::OptBool, O),
    ],
};

static SECRET: Schema = Schema {
    name: "Secret",
    fields: &[
        (1, "metadata", Ty::Msg(&OBJECT_META), O),
        (2, "data", Ty::MapBytes, O),
        (3, "type", Ty::Str, O),
        (4, "stringData", Ty::MapStr, O),
        (5, "immutable", Ty::OptBool, O),
    ],
};

static LOCAL_OBJECT_REFERENCE: Schema = Schema {
    name: "LocalObjectReference",
    fields: &[(1, "name", Ty::Str, O)],
};
static OBJECT_REFERENCE: Schema = Schema {
    name: "ObjectReference",
    fields: &[
        (1, "kind", Ty::Str, O),
        (2, "namespace", Ty::Str, O),
        (3, "name", Ty::Str, O),
        (4, "uid", Ty::Str, O),
        (5, "apiVersion", Ty::Str, O),
        (6, "resourceVersion", Ty::Str, O),
        (7, "fieldPath", Ty::Str, O),
    ],
};
static SERVICE_ACCOUNT: Schema = Schema {
    name: "ServiceAccount",
    fields: &[
        (1, "metadata", Ty::Msg(&OBJECT_META), O),
        (2, "secrets", Ty::Msg(&OBJECT_REFERENCE), R),
        (3, "imagePullSecrets", Ty::Msg(&LOCAL_OBJECT_REFERENCE), R),
        (4, "automountServiceAccountToken", Ty::OptBool, O),
    ],
};

static SERVICE_PORT: Schema = Schema {
    name: "ServicePort",
    fields: &[
        (1, "name", Ty::Str, O),
        (2, "protocol", Ty::Str, O),
        (3, "port", Ty::Int, O),
        (4, "targetPort", Ty::IntOrString, O),
        (5, "nodePort", Ty::Int, O),
        (6, "appProtocol", Ty::Str, O),
    ],
};
static SERVICE_SPEC: Schema = Schema {
    name: "ServiceSpec",
    fields: &[
        (1, "ports", Ty::Msg(&SERVICE_PORT), R),
        (2, "selector", Ty::MapStr, O),
        (3, "clusterIP", Ty::Str, O),
        (4, "type", Ty::Str, O),
        (5, "externalIPs", Ty::Str, R),
        (7, "sessionAffinity", Ty::Str, O),
        (8, "loadBalancerIP", Ty::Str, O),
        (9, "loadBalancerSourceRanges", Ty::Str, R),
        (10, "externalName", Ty::Str, O),
        (11, "externalTrafficPolicy", Ty::Str, O),
        (12, "healthCheckNodePort", Ty::Int, O),
        (13, "publishNotReadyAddresses", Ty::Bool, O),
        (17, "ipFamilyPolicy", Ty::Str, O),
        (18, "clusterIPs", Ty::Str, R),
        (19, "ipFamilies", Ty::Str, R),
        (20, "allocateLoadBalancerNodePorts", Ty::OptBool, O),
        (21, "loadBalancerClass", Ty::Str, O),
        (22, "internalTrafficPolicy", Ty::Str, O),
    ],
};
static SERVICE: Schema = Schema {
    name: "Service",
    fields: &[
        (1, "metadata", Ty::Msg(&OBJECT_META), O),
        (2, "spec", Ty::Msg(&SERVICE_SPEC), O),
        (3, "status", Ty::Skip, O),
    ],
};

static LABEL_SELECTOR_REQUIREMENT: Schema = Schema {
    name: "LabelSelectorRequirement",
    fields: &[
        (1, "key", Ty::Str, O),
        (2, "operator", Ty::Str, O),
        (3, "values", Ty::Str, R),
    ],
};
static LABEL_SELECTOR: Schema = Schema {
    name: "LabelSelector",
    fields: &[
        (1, "matchLabels", Ty::MapStr, O),
        (
            2,
            "matchExpressions",
            Ty::Msg(&LABEL_SELECTOR_REQUIREMENT),
            R,
        ),
    ],
};
static CONTAINER_PORT: Schema = Schema {
    name: "ContainerPort",
    fields: &[
        (1, "name", Ty::Str, O),
        (2, "hostPort", Ty::Int, O),
        (3, "containerPort", Ty::Int, O),
        (4, "protocol", Ty::Str, O),
        (5, "hostIP", Ty::Str, O),
    ],
};
static ENV_VAR: Schema = Schema {
    name: "EnvVar",
    fields: &[(1, "name", Ty::Str, O), (2, "value", Ty::Str, O)],
};
static RESOURCES: Schema = Schema {
    name: "ResourceRequirements",
    fields: &[
        (1, "limits", Ty::MapQuantity, O),
        (2, "requests", Ty::MapQuantity, O),
    ],
};
static CONTAINER: Schema = Schema {
    name: "Container",
    fields: &[
        (1, "name", Ty::Str, O),
        (2, "image", Ty::Str, O),
        (3, "command", Ty::Str, R),
        (4, "args", Ty::Str, R),
        (5, "workingDir", Ty::Str, O),
        (6, "ports", Ty::Msg(&CONTAINER_PORT), R),
        (7, "env", Ty::Msg(&ENV_VAR), R),
        (8, "resources", Ty::Msg(&RESOURCES), O),
        (13, "terminationMessagePath", Ty::Str, O),
        (14, "imagePullPolicy", Ty::Str, O),
        (16, "stdin", Ty::Bool, O),
        (17, "stdinOnce", Ty::Bool, O),
        (18, "tty", Ty::Bool, O),
        (20, "terminationMessagePolicy", Ty::Str, O),
    ],
};
static POD_SPEC: Schema = Schema {
    name: "PodSpec",
    fields: &[
        (2, "containers", Ty::Msg(&CONTAINER), R),
        (3, "restartPolicy", Ty::Str, O),
        (4, "terminationGracePeriodSeconds", Ty::OptInt, O),
        (5, "activeDeadlineSeconds", Ty::OptInt, O),
        (6, "dnsPolicy", Ty::Str, O),
        (7, "nodeSelector", Ty::MapStr, O),
        (8, "serviceAccountName", Ty::Str, O),
        (9, "serviceAccount", Ty::Str, O),
        (10, "nodeName", Ty::Str, O),
        (11, "hostNetwork", Ty::Bool, O),
        (12, "hostPID", Ty::Bool, O),
        (13, "hostIPC", Ty::Bool, O),
        (15, "imagePullSecrets", Ty::Msg(&LOCAL_OBJECT_REFERENCE), R),
        (16, "hostname", Ty::Str, O),
        (17, "subdomain", Ty::Str, O),
        (19, "schedulerName", Ty::Str, O),
        (20, "initContainers", Ty::Msg(&CONTAINER), R),
        (24, "priorityClassName", Ty::Str, O),
    ],
};
static POD_TEMPLATE_SPEC: Schema = Schema {
    name: "PodTemplateSpec",
    fields: &[
        (1, "metadata", Ty::Msg(&OBJECT_META), O),
        (2, "spec", Ty::Msg(&POD_SPEC), O),
    ],
};
static ROLLING_UPDATE_DEPLOYMENT: Schema = Schema {
    name: "RollingUpdateDeployment",
    fields: &[
        (1, "maxUnavailable", Ty::IntOrString, O),
        (2, "maxSurge", Ty::IntOrString, O),
    ],
};
static DEPLOYMENT_STRATEGY: Schema = Schema {
    name: "DeploymentStrategy",
    fields: &[
        (1, "type", Ty::Str, O),
        (2, "rollingUpdate", Ty::Msg(&ROLLING_UPDATE_DEPLOYMENT), O),
    ],
};
static DEPLOYMENT_SPEC: Schema = Schema {
    name: "DeploymentSpec",
    fields: &[
        (1, "replicas", Ty::OptInt, O),
        (2, "selector", Ty::Msg(&LABEL_SELECTOR), O),
        (3, "template", Ty::Msg(&POD_TEMPLATE_SPEC), O),
        (4, "strategy", Ty::Msg(&DEPLOYMENT_STRATEGY), O),
        (5, "minReadySeconds", Ty::Int, O),
        (6, "revisionHistoryLimit", Ty::OptInt, O),
        (7, "paused", Ty::Bool, O),
        (9, "progressDeadlineSeconds", Ty::OptInt, O),
    ],
};
static DEPLOYMENT: Schema = Schema {
    name: "Deployment",
    fields: &[
        (1, "metadata", Ty::Msg(&OBJECT_META), O),
        (2, "spec", Ty::Msg(&DEPLOYMENT_SPEC), O),
        (3, "status", Ty::Skip, O),
    ],
};

static JOB_SPEC: Schema = Schema {
    name: "JobSpec",
    fields: &[
        (1, "parallelism", Ty::OptInt, O),
        (2, "completions", Ty::OptInt, O),
        (3, "activeDeadlineSeconds", Ty::OptInt, O),
        (4, "selector", Ty::Msg(&LABEL_SELECTOR), O),
        (5, "manualSelector", Ty::OptBool, O),
        (6, "template", Ty::Msg(&POD_TEMPLATE_SPEC), O),
        (7, "backoffLimit", Ty::OptInt, O),
        (8, "ttlSecondsAfterFinished", Ty::OptInt, O),
        (9, "completionMode", Ty::Str, O),
        (10, "suspend", Ty::OptBool, O),
        (12, "backoffLimitPerIndex", Ty::OptInt, O),
        (13, "maxFailedIndexes", Ty::OptInt, O),
        (14, "podReplacementPolicy", Ty::Str, O),
        (15, "managedBy", Ty::Str, O),
    ],
};
static JOB: Schema = Schema {
    name: "Job",
    fields: &[
        (1, "metadata", Ty::Msg(&OBJECT_META), O),
        (2, "spec", Ty::Msg(&JOB_SPEC), O),
        (3, "status", Ty::Skip, O),
    ],
};
static JOB_TEMPLATE_SPEC: Schema = Schema {
    name: "JobTemplateSpec",
    fields: &[
        (1, "metadata", Ty::Msg(&OBJECT_META), O),
        (2, "spec", Ty::Msg(&JOB_SPEC), O),
    ],
};
static CRON_JOB_SPEC: Schema = Schema {
    name: "CronJobSpec",
    fields: &[
        (1, "schedule", Ty::Str, O),
        (2, "startingDeadlineSeconds", Ty::OptInt, O),
        (3, "concurrencyPolicy", Ty::Str, O),
        (4, "suspend", Ty::OptBool, O),
        (5, "jobTemplate", Ty::Msg(&JOB_TEMPLATE_SPEC), O),
        (6, "successfulJobsHistoryLimit", Ty::OptInt, O),
        (7, "failedJobsHistoryLimit", Ty::OptInt, O),
        (8, "timeZone", Ty::Str, O),
    ],
};
static CRON_JOB: Schema = Schema {
    name: "CronJob",
    fields: &[
        (1, "metadata", Ty::Msg(&OBJECT_META), O),
        (2, "spec", Ty::Msg(&CRON_JOB_SPEC), O),
        (3, "status", Ty::Skip, O),
    ],
};

fn schema_for(api_version: &str, kind: &str) -> Option<&'static Schema> {
    Some(match (api_version, kind) {
        ("v1", "Namespace") => &NAMESPACE,
        ("v1", "ConfigMap") => &CONFIG_MAP,
        ("v1", "Secret") => &SECRET,
        ("v1", "ServiceAccount") => &SERVICE_ACCOUNT,
        ("v1", "Service") => &SERVICE,
        ("apps/v1", "Deployment") => &DEPLOYMENT,
        ("batch/v1", "Job") => &JOB,
        ("batch/v1", "CronJob") => &CRON_JOB,
        _ => return None,
    })
}

struct Reader<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Reader<'a> {
    fn done(&self) -> bool {
        self.i >= self.b.len()
    }

    fn varint(&mut self) -> Result<u64, Error> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self
                .b
                .get(self.i)
                .ok_or(Error::Malformed("truncated varint"))?;
            self.i += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Error::Malformed("varint too long"))
    }

    fn bytes(&mut self) -> Result<&'a [u8], Error> {
        let len = self.varint()? as usize;
        let end = self
            .i
            .checked_add(len)
            .filter(|e| *e <= self.b.len())
            .ok_or(Error::Malformed("truncated field"))?;
        let out = &self.b[self.i..end];
        self.i = end;
        Ok(out)
    }

    /// The next (field number, wire type).
    fn tag(&mut self) -> Result<(u64, u64), Error> {
        let t = self.varint()?;
        Ok((t >> 3, t & 7))
    }

    fn skip(&mut self, wire: u64) -> Result<(), Error> {
        match wire {
            0 => self.varint().map(drop),
            1 => self.advance(8),
            2 => self.bytes().map(drop),
            5 => self.advance(4),
            _ => Err(Error::Malformed("unsupported wire type")),
        }
    }

    fn advance(&mut self, n: usize) -> Result<(), Error> {
        if self.i + n > self.b.len() {
            return Err(Error::Malformed("truncated field"));
        }
        self.i += n;
        Ok(())
    }
}

fn utf8(b: &[u8]) -> Result<String, Error> {
    String::from_utf8(b.to_vec()).map_err(|_| Error::Malformed("string is not UTF-8"))
}

/// Fields of a small message as (number, raw bytes or varint).
fn fields(b: &[u8]) -> Result<Vec<(u64, FieldValue<'_>)>, Error> {
    let mut r = Reader { b, i: 0 };
    let mut out = Vec::new();
    while !r.done() {
        let (num, wire) = r.tag()?;
        match wire {
            0 => out.push((num, FieldValue::Varint(r.varint()?))),
            2 => out.push((num, FieldValue::Bytes(r.bytes()?))),
            w => r.skip(w)?,
        }
    }
    Ok(out)
}

enum FieldValue<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn map_entry(b: &[u8]) -> Result<(String, &[u8]), Error> {
    let (mut k, mut v): (String, &[u8]) = (String::new(), &[]);
    for (num, fv) in fields(b)? {
        match (num, fv) {
            (1, FieldValue::Bytes(x)) => k = utf8(x)?,
            (2, FieldValue::Bytes(x)) => v = x,
            _ => return Err(Error::Malformed("bad map entry")),
        }
    }
    Ok((k, v))
}

fn time(b: &[u8]) -> Result<Option<Value>, Error> {
    let (mut secs, mut nanos) = (0i64, 0i64);
    for (num, fv) in fields(b)? {
        if let FieldValue::Varint(v) = fv {
            match num {
                1 => secs = v as i64,
                2 => nanos = v as i64,
                _ => {}
            }
        }
    }
    // Go's zero time (year 1) and the epoch default mean "unset".
    if secs <= 0 && nanos == 0 {
        return Ok(None);
    }
    Ok(chrono::DateTime::from_timestamp(secs, nanos as u32)
        .map(|t| json!(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))))
}

fn int_or_string(b: &[u8]) -> Result<Value, Error> {
    let (mut ty, mut i, mut s) = (0u64, 0i64, String::new());
    for (num, fv) in fields(b)? {
        match (num, fv) {
            (1, FieldValue::Varint(v)) => ty = v,
            (2, FieldValue::Varint(v)) => i = v as i32 as i64,
            (3, FieldValue::Bytes(x)) => s = utf8(x)?,
            _ => return Err(Error::Malformed("bad IntOrString")),
        }
    }
    Ok(if ty == 1 { json!(s) } else { json!(i) })
}

fn message(schema: &'static Schema, b: &[u8]) -> Result<Value, Error> {
    use base64::Engine;
    let mut out = Map::new();
    let mut r = Reader { b, i: 0 };
    while !r.done() {
        let (num, wire) = r.tag()?;
        let Some(&(_, name, ty, repeated)) = schema.fields.iter().find(|f| f.0 == num) else {
            return Err(Error::UnknownField {
                message: schema.name,
                number: num,
            });
        };
        let value: Option<Value> = match (ty, wire) {
            (Ty::Skip, w) => {
                r.skip(w)?;
                None
            }
            (Ty::Int, 0) => Some(json!(r.varint()? as i64)).filter(|v| v != &json!(0)),
            (Ty::OptInt, 0) => Some(json!(r.varint()? as i64)),
            (Ty::Bool, 0) => Some(json!(r.varint()? != 0)).filter(|v| v == &json!(true)),
            (Ty::OptBool, 0) => Some(json!(r.varint()? != 0)),
            (Ty::Str, 2) => {
                let s = utf8(r.bytes()?)?;
                if s.is_empty() && !repeated {
                    None
                } else {
                    Some(json!(s))
                }
            }
            (Ty::Msg(s), 2) => Some(message(s, r.bytes()?)?),
            (Ty::Time, 2) => time(r.bytes()?)?,
            (Ty::IntOrString, 2) => Some(int_or_string(r.bytes()?)?),
            (Ty::MapStr | Ty::MapBytes | Ty::MapQuantity, 2) => {
                let (k, v) = map_entry(r.bytes()?)?;
                let v = match ty {
                    Ty::MapStr => json!(utf8(v)?),
                    Ty::MapBytes => json!(base64::engine::general_purpose::STANDARD.encode(v)),
                    _ => {
                        // resource.Quantity: {1: string}
                        let mut q = String::new();
                        for (n, fv) in fields(v)? {
                            if let (1, FieldValue::Bytes(x)) = (n, fv) {
                                q = utf8(x)?;
                            }
                        }
                        json!(q)
                    }
                };
                out.entry(name).or_insert_with(|| json!({}))[k] = v;
                continue;
            }
            _ => return Err(Error::Malformed("unexpected wire type")),
        };
        if let Some(v) = value {
            if repeated {
                match out.entry(name).or_insert_with(|| json!([])) {
                    Value::Array(a) => a.push(v),
                    _ => return Err(Error::Malformed("repeated field mixed with a single one")),
                }
            } else {
                out.insert(name.into(), v);
            }
        }
    }
    Ok(Value::Object(out))
}

/// Decodes a protobuf request body into the object's JSON form.
pub fn decode(body: &[u8]) -> Result<Value, Error> {
    let raw = body.strip_prefix(b"k8s\0").ok_or(Error::Envelope)?;
    let (mut api_version, mut kind, mut object) = (String::new(), String::new(), &[][..]);
    for (num, fv) in fields(raw)? {
        match (num, fv) {
            (1, FieldValue::Bytes(tm)) => {
                for (n, f) in fields(tm)? {
                    match (n, f) {
                        (1, FieldValue::Bytes(x)) => api_version = utf8(x)?,
                        (2, FieldValue::Bytes(x)) => kind = utf8(x)?,
                        _ => {}
                    }
                }
            }
            (2, FieldValue::Bytes(x)) => object = x,
            (3, FieldValue::Bytes(enc)) if !enc.is_empty() => {
                return Err(Error::Malformed("content encodings are not supported"))
            }
            _ => {}
        }
    }
    let schema = schema_for(&api_version, &kind)
        .ok_or_else(|| Error::UnsupportedKind(format!("{api_version} {kind}")))?;
    let mut v = message(schema, object)?;
    v["apiVersion"] = json!(api_version);
    v["kind"] = json!(kind);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn field(num: u64, bytes: &[u8], out: &mut Vec<u8>) {
        varint(num << 3 | 2, out);
        varint(bytes.len() as u64, out);
        out.extend_from_slice(bytes);
    }

    fn entry(k: &str, v: &str) -> Vec<u8> {
        let mut e = Vec::new();
        field(1, k.as_bytes(), &mut e);
        field(2, v.as_bytes(), &mut e);
        e
    }

    #[test]
    fn configmap_as_kubectl_create_sends_it() {
        let mut meta = Vec::new();
        field(1, b"cfg", &mut meta);
        field(2, b"", &mut meta); // gogo writes empty non-pointer strings
        varint(7 << 3, &mut meta);
        varint(0, &mut meta);
        field(8, &[], &mut meta); // zero creationTimestamp
        let mut cm = Vec::new();
        field(1, &meta, &mut cm);
        field(2, &entry("a", "1"), &mut cm);
        field(2, &entry("b", "2"), &mut cm);
        let mut tm = Vec::new();
        field(1, b"v1", &mut tm);
        field(2, b"ConfigMap", &mut tm);
        let mut body = b"k8s\0".to_vec();
        field(1, &tm, &mut body);
        field(2, &cm, &mut body);
        let v = decode(&body).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cfg"},"data":{"a":"1","b":"2"}})
        );
    }

    #[test]
    fn unknown_fields_and_kinds_are_refused() {
        let mut cm = Vec::new();
        field(9, b"x", &mut cm);
        let mut tm = Vec::new();
        field(1, b"v1", &mut tm);
        field(2, b"ConfigMap", &mut tm);
        let mut body = b"k8s\0".to_vec();
        field(1, &tm, &mut body);
        field(2, &cm, &mut body);
        assert_eq!(
            decode(&body),
            Err(Error::UnknownField {
                message: "ConfigMap",
                number: 9
            })
        );
        assert_eq!(decode(b"{}"), Err(Error::Envelope));
    }
}
