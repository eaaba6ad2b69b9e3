//! /metrics against a real server: requests made with kubectl move kube-apiserver's counters.

mod api_support;

use api_support::{eventually, raw::curl, Server};
use std::collections::BTreeMap;

/// One sample: metric name and labels.
type Sample = (String, BTreeMap<String, String>);

/// Parses the Prometheus text format (what /metrics writes: no timestamps, quoted labels).
fn parse(text: &str) -> Vec<(Sample, f64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample line");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value in {line}"));
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.strip_suffix('}').expect("closing brace")),
            None => (series, ""),
        };
        let mut map = BTreeMap::new();
        let mut rest = labels;
        while !rest.is_empty() {
            let (k, after) = rest.split_once("=\"").expect("label");
            let mut v = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                let (i, c) = chars.next().expect("closing quote");
                match c {
                    '\\' => {
                        let (_, e) = chars.next().unwrap();
                        v.push(if e == 'n' { '\n' } else { e });
                    }
                    '"' => break i,
                    c => v.push(c),
                }
            };
            map.insert(k.to_string(), v);
            rest = after[end + 1..].trim_start_matches(',');
        }
        out.push(((name.to_string(), map), value));
    }
    out
}

fn scrape(s: &Server) -> Vec<(Sample, f64)> {
    let (code, body, headers) = curl(s, "admin", "GET", "/metrics", "application/json", None);
    assert_eq!(code, 200, "{body}");
    assert!(
        headers.contains("text/plain; version=0.0.4"),
        "content type: {headers}"
    );
    parse(&body)
}

/// The sum of the samples of `name` whose labels include all of `want`.
fn value(samples: &[(Sample, f64)], name: &str, want: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|((n, l), _)| {
            n == name
                && want
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| v)
        .sum()
}

#[test]
fn metrics_count_requests_objects_watches_and_store_calls() {
    let s = Server::start();
    // Strangers get no metrics.
    assert_eq!(curl(&s, "none", "GET", "/metrics", "", None).0, 401);
    let before = scrape(&s);
    let created = [
        ("verb", "POST"),
        ("resource", "configmaps"),
        ("code", "201"),
    ];
    let listed = [
        ("verb", "LIST"),
        ("resource", "configmaps"),
        ("code", "200"),
    ];
    let objects = [("resource", "configmaps")];
    let store_creates = [
        ("operation", "create"),
        ("type", "/registry/core/configmaps"),
    ];

    s.ok(&["create", "configmap", "m1", "--from-literal=a=1"]);
    s.ok(&["create", "configmap", "m2", "--from-literal=a=2"]);
    s.ok(&["get", "configmaps"]);
    s.fails(&["get", "configmap", "nope"]);
    // A path naming nothing served is not counted (no label values made up by clients).
    assert_eq!(
        curl(&s, "admin", "GET", "/api/v1/madeupthings", "", None).0,
        404
    );

    let after = scrape(&s);
    let delta =
        |name: &str, want: &[(&str, &str)]| value(&after, name, want) - value(&before, name, want);
    assert_eq!(delta("apiserver_request_total", &created), 2.0);
    assert!(delta("apiserver_request_total", &listed) >= 1.0);
    assert_eq!(
        delta(
            "apiserver_request_total",
            &[
                ("verb", "GET"),
                ("resource", "configmaps"),
                ("code", "404"),
                ("scope", "resource")
            ]
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "apiserver_request_total",
            &[("resource", "madeupthings")]
        ),
        0.0
    );
    // Every label upstream has is there.
    let ((_, labels), _) = after
        .iter()
        .find(|((n, _), _)| n == "apiserver_request_total")
        .unwrap();
    for l in [
        "verb",
        "dry_run",
        "group",
        "version",
        "resource",
        "subresource",
        "scope",
        "component",
        "code",
    ] {
        assert!(labels.contains_key(l), "label {l} missing: {labels:?}");
    }
    // The duration histogram counted the creates, and its buckets are cumulative up to +Inf.
    let posts = [("verb", "POST"), ("resource", "configmaps")];
    assert_eq!(
        delta("apiserver_request_duration_seconds_count", &posts),
        2.0
    );
    let inf = value(
        &after,
        "apiserver_request_duration_seconds_bucket",
        &[("verb", "POST"), ("resource", "configmaps"), ("le", "+Inf")],
    );
    assert_eq!(
        inf,
        value(&after, "apiserver_request_duration_seconds_count", &posts)
    );
    assert!(value(&after, "apiserver_request_duration_seconds_sum", &posts) > 0.0);
    assert_eq!(delta("apiserver_storage_objects", &objects), 2.0);
    assert!(
        value(
            &after,
            "apiserver_storage_objects",
            &[("resource", "namespaces")]
        ) >= 4.0
    );
    assert!(delta("etcd_request_duration_seconds_count", &store_creates) >= 2.0);
    // The scrape itself is the one read in flight.
    assert_eq!(
        value(
            &after,
            "apiserver_current_inflight_requests",
            &[("request_kind", "readOnly")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "apiserver_current_inflight_requests",
            &[("request_kind", "mutating")]
        ),
        0.0
    );

    // An open watch is a long-running request until it ends.
    let watching = [("verb", "WATCH"), ("resource", "configmaps")];
    // The controllers' own watches (the root CA publisher watches ConfigMaps) stay open.
    let others = value(&scrape(&s), "apiserver_longrunning_requests", &watching);
    let mut watch = s
        .kubectl_command(api_support::KUBECTL)
        .args(["get", "configmaps", "--watch", "--request-timeout=0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    eventually(20, || {
        (value(&scrape(&s), "apiserver_longrunning_requests", &watching) == others + 1.0)
            .then_some(())
    });
    watch.kill().unwrap();
    watch.wait().unwrap();
    eventually(20, || {
        (value(&scrape(&s), "apiserver_longrunning_requests", &watching) == others).then_some(())
    });
    // Watches are counted in the request total but not timed, as upstream.
    let end = scrape(&s);
    assert!(value(&end, "apiserver_request_total", &watching) >= 1.0);
    assert_eq!(
        value(&end, "apiserver_request_duration_seconds_count", &watching),
        0.0
    );
}
