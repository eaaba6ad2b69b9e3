//! The decoder on hand-built bytes: each helper writes one field exactly as the protobuf wire
//! format lays it out, so these tests do not depend on any encoder.

use super::wire::put_varint;
use super::*;
use serde_json::json;

/// A length-delimited field (strings, bytes, messages, map entries).
fn ld(num: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    put_varint(&mut out, u64::from(num) << 3 | 2);
    put_varint(&mut out, payload.len() as u64);
    out.extend_from_slice(payload);
    out
}

fn s(num: u32, text: &str) -> Vec<u8> {
    ld(num, text.as_bytes())
}

fn varint(num: u32, v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    put_varint(&mut out, u64::from(num) << 3);
    put_varint(&mut out, v);
    out
}

fn map_entry(num: u32, key: &str, value: &[u8]) -> Vec<u8> {
    ld(num, &[s(1, key), value.to_vec()].concat())
}

/// `k8s\0` + runtime.Unknown{typeMeta, raw}.
fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let type_meta = [s(1, api_version), s(2, kind)].concat();
    [b"k8s\0".to_vec(), ld(1, &type_meta), ld(2, raw)].concat()
}

fn metadata(name: &str, extra: &[u8]) -> Vec<u8> {
    ld(1, &[s(1, name), extra.to_vec()].concat())
}

#[test]
fn deployment_with_maps_repeated_messages_and_kept_zero_replicas() {
    let labels = map_entry(11, "app", &s(2, "web"));
    let container = |name: &str, image: &str| {
        ld(
            2,
            &[
                s(1, name),
                s(2, image),
                s(4, "sleep"),
                s(4, "10"),
                // A zero string and a zero int Go always writes: dropped as unset.
                s(5, ""),
                ld(6, &[varint(3, 80), s(4, "TCP")].concat()),
            ]
            .concat(),
        )
    };
    let pod_spec = [container("a", "busybox:1"), container("b", "busybox:2")].concat();
    let template = [ld(1, &labels), ld(2, &pod_spec)].concat();
    let selector = map_entry(1, "app", &s(2, "web"));
    let spec = [
        varint(1, 0), // replicas: 0 is a choice, not unset
        ld(2, &selector),
        ld(3, &template),
        varint(5, 0), // minReadySeconds 0: unset
    ]
    .concat();
    let raw = [metadata("web", &labels), ld(2, &spec), ld(3, &[])].concat();
    let obj = decode_request(&envelope("apps/v1", "Deployment", &raw)).unwrap();
    assert_eq!(
        obj,
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [
                        {"name": "a", "image": "busybox:1", "args": ["sleep", "10"],
                         "ports": [{"containerPort": 80, "protocol": "TCP"}]},
                        {"name": "b", "image": "busybox:2", "args": ["sleep", "10"],
                         "ports": [{"containerPort": 80, "protocol": "TCP"}]},
                    ]}
                }
            },
            "status": {}
        })
    );
}

#[test]
fn time_is_rfc3339_and_the_zero_time_is_left_out() {
    let created = [varint(1, 1_704_067_200), varint(2, 0)].concat();
    let meta = [
        s(1, "x"),
        ld(8, &created),
        ld(9, &[]), // deletionTimestamp: Go writes an empty message for the zero Time
    ]
    .concat();
    let obj = decode_request(&envelope("v1", "ConfigMap", &ld(1, &meta))).unwrap();
    assert_eq!(obj["metadata"]["creationTimestamp"], "2024-01-01T00:00:00Z");
    assert!(obj["metadata"].get("deletionTimestamp").is_none(), "{obj}");
}

#[test]
fn micro_time_keeps_microseconds() {
    let t = [varint(1, 1_704_067_200), varint(2, 123_456_000)].concat();
    let spec = [s(1, "me"), ld(4, &t)].concat();
    let raw = [metadata("l", &[]), ld(2, &spec)].concat();
    let obj = decode_request(&envelope("coordination.k8s.io/v1", "Lease", &raw)).unwrap();
    assert_eq!(obj["spec"]["renewTime"], "2024-01-01T00:00:00.123456Z");
    assert_eq!(obj["spec"]["holderIdentity"], "me");
}

#[test]
fn int_or_string_as_int_or_string() {
    let port = |target: Vec<u8>| ld(1, &[varint(3, 80), ld(4, &target)].concat());
    let spec = [
        port([varint(1, 0), varint(2, 8080)].concat()),
        port([varint(1, 1), s(3, "http")].concat()),
    ]
    .concat();
    let raw = [metadata("svc", &[]), ld(2, &spec)].concat();
    let obj = decode_request(&envelope("v1", "Service", &raw)).unwrap();
    assert_eq!(
        obj["spec"]["ports"],
        json!([{"port": 80, "targetPort": 8080}, {"port": 80, "targetPort": "http"}])
    );
}

#[test]
fn quantities_are_strings_in_maps() {
    let q = |v: &str| ld(2, &s(1, v));
    let hard = [
        map_entry(1, "cpu", &q("500m")),
        map_entry(1, "memory", &q("1Gi")),
    ]
    .concat();
    let raw = [metadata("q", &[]), ld(2, &hard)].concat();
    let obj = decode_request(&envelope("v1", "ResourceQuota", &raw)).unwrap();
    assert_eq!(obj["spec"]["hard"], json!({"cpu": "500m", "memory": "1Gi"}));
}

#[test]
fn secret_bytes_are_base64_and_empty_values_stay() {
    let raw = [
        metadata("s", &[]),
        map_entry(2, "pw", &ld(2, b"s3cr3t\xff")),
        map_entry(2, "empty", &[]),
        s(3, "Opaque"),
    ]
    .concat();
    let obj = decode_request(&envelope("v1", "Secret", &raw)).unwrap();
    assert_eq!(obj["data"], json!({"pw": "czNjcjN0/w==", "empty": ""}));
    assert_eq!(obj["type"], "Opaque");
}

#[test]
fn unknown_fields_of_every_wire_type_are_skipped() {
    let mut fixed64 = Vec::new();
    put_varint(&mut fixed64, 98 << 3 | 1);
    fixed64.extend_from_slice(&[1; 8]);
    let mut fixed32 = Vec::new();
    put_varint(&mut fixed32, 97 << 3 | 5);
    fixed32.extend_from_slice(&[1; 4]);
    let raw = [
        varint(99, 7),
        metadata("cm", &s(50, "from a newer kubectl")),
        fixed64,
        ld(96, b"\x01\x02"),
        fixed32,
        map_entry(2, "k", &s(2, "v")),
    ]
    .concat();
    let obj = decode_request(&envelope("v1", "ConfigMap", &raw)).unwrap();
    assert_eq!(
        obj,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"k": "v"}})
    );
}

#[test]
fn inline_structs_are_lifted_into_their_parent() {
    // Volume{name, volumeSource{configMap{localObjectReference{name}}}} and a Probe's handler.
    let cm = ld(1, &s(1, "settings"));
    let volume = ld(1, &[s(1, "conf"), ld(2, &ld(19, &cm))].concat());
    let http_get = ld(2, &[s(1, "/healthz"), ld(2, &varint(2, 8080))].concat());
    let probe = ld(10, &[ld(1, &http_get), varint(4, 5)].concat());
    let container = ld(2, &[s(1, "c"), s(2, "img"), probe].concat());
    let raw = [metadata("p", &[]), ld(2, &[volume, container].concat())].concat();
    let obj = decode_request(&envelope("v1", "Pod", &raw)).unwrap();
    assert_eq!(
        obj["spec"]["volumes"],
        json!([{"name": "conf", "configMap": {"name": "settings"}}])
    );
    assert_eq!(
        obj["spec"]["containers"][0]["livenessProbe"],
        json!({"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 5})
    );
}

#[test]
fn negative_int32_and_int64_decode_with_sign() {
    // int32 -1 is sign-extended to ten bytes on the wire.
    let raw = [metadata("pc", &[]), varint(2, (-1i64) as u64)].concat();
    let obj = decode_request(&envelope("scheduling.k8s.io/v1", "PriorityClass", &raw)).unwrap();
    assert_eq!(obj["value"], -1);
}

#[test]
fn packed_and_unpacked_repeated_ints() {
    let mut packed = Vec::new();
    for v in [1, 2, 300] {
        put_varint(&mut packed, v);
    }
    let req = [s(1, "c"), s(2, "In"), ld(3, &packed), varint(3, 4)].concat();
    let rule = ld(1, &[s(1, "FailJob"), ld(2, &req)].concat());
    let policy = ld(11, &rule);
    let raw = [metadata("j", &[]), ld(2, &policy)].concat();
    let obj = decode_request(&envelope("batch/v1", "Job", &raw)).unwrap();
    assert_eq!(
        obj["spec"]["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"],
        json!([1, 2, 300, 4])
    );
}

#[test]
fn raw_extension_holds_json() {
    let raw = [
        metadata("rev", &[]),
        ld(2, &s(1, r#"{"spec":{"x":1}}"#)),
        varint(3, 4),
    ]
    .concat();
    let obj = decode_request(&envelope("apps/v1", "ControllerRevision", &raw)).unwrap();
    assert_eq!(obj["data"], json!({"spec": {"x": 1}}));
    assert_eq!(obj["revision"], 4);
    let nested = envelope("apps/v1", "ControllerRevision", &metadata("in", &[]));
    let raw = [metadata("rev", &[]), ld(2, &ld(1, &nested))].concat();
    let e = decode_request(&envelope("apps/v1", "ControllerRevision", &raw)).unwrap_err();
    assert!(
        e.to_string().contains("data: embedded object is not JSON"),
        "{e}"
    );
}

#[test]
fn duration_reads_like_go() {
    assert_eq!(decode::go_duration(0), "0s");
    assert_eq!(decode::go_duration(3_600_000_000_000), "1h0m0s");
    assert_eq!(decode::go_duration(90_500_000_000), "1m30.5s");
    assert_eq!(decode::go_duration(1_500_000), "1.5ms");
    assert_eq!(decode::go_duration(-2_000_000_000), "-2s");
    assert_eq!(decode::go_duration(42), "42ns");
}

#[test]
fn bad_bodies_are_clear_errors() {
    let err = |b: &[u8]| decode_request(b).unwrap_err().to_string();
    assert!(err(b"{\"kind\":\"Pod\"}").contains("k8s"), "no magic");
    assert!(err(&envelope("v1", "Pod", &[])[..10]).contains("truncated"));
    assert!(err(&envelope("v1", "Nope", &[])).contains("no protobuf schema for v1, Kind=Nope"));
    assert!(err(&[b"k8s\0".as_slice(), &ld(2, b"")].concat()).contains("apiVersion/kind"));
    // An image sent as a varint: the path says where.
    let container = ld(2, &[s(1, "c"), varint(2, 5)].concat());
    let raw = [metadata("p", &[]), ld(2, &container)].concat();
    let e = err(&envelope("v1", "Pod", &raw));
    assert!(e.contains("spec.containers[0].image"), "{e}");
    assert!(e.contains("expected length-delimited, found varint"), "{e}");
    let bad_utf8 = [metadata("p", &[]), ld(2, &ld(3, b"\xff"))].concat();
    assert!(err(&envelope("v1", "Pod", &bad_utf8)).contains("not valid UTF-8"));
}

#[test]
fn content_type_detection() {
    assert!(is_protobuf("application/vnd.kubernetes.protobuf"));
    assert!(is_protobuf(
        "application/vnd.kubernetes.protobuf; charset=x"
    ));
    assert!(!is_protobuf("application/json"));
}

#[test]
fn keep_zero_list_is_sorted_for_binary_search() {
    assert!(decode::KEEP_ZERO.windows(2).all(|w| w[0] < w[1]));
}
