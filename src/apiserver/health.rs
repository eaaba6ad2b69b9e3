//! `/livez`, `/readyz` and `/healthz` as kube-apiserver answers them: named checks, each also
//! served alone at `/<endpoint>/<check>`, `?exclude=<check>` to skip one, `?verbose` to list
//! them. The texts are upstream's, since load balancers and scripts match on them. The
//! endpoints are open to anyone (upstream's default RBAC grants them to system:unauthenticated),
//! so a failing check's reason goes to the log only.

use super::handler::{full, Api, Resp};
use http::{header, HeaderValue, StatusCode};
use std::time::Duration;

/// As kube-apiserver's --etcd-healthcheck-timeout and --etcd-readycheck-timeout.
const STORE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Ping,
    Log,
    Etcd,
    EtcdReadiness,
    Shutdown,
}

impl Check {
    fn name(self) -> &'static str {
        match self {
            Check::Ping => "ping",
            Check::Log => "log",
            Check::Etcd => "etcd",
            Check::EtcdReadiness => "etcd-readiness",
            Check::Shutdown => "shutdown",
        }
    }
}

/// The checks of each endpoint, in upstream's order (less the ones for parts nanokube lacks).
fn checks(endpoint: &str) -> &'static [Check] {
    match endpoint {
        "readyz" => &[
            Check::Ping,
            Check::Log,
            Check::Etcd,
            Check::EtcdReadiness,
            Check::Shutdown,
        ],
        _ => &[Check::Ping, Check::Log, Check::Etcd],
    }
}

async fn run(api: &Api, check: Check) -> Result<(), String> {
    match check {
        // Logging writes synchronously to stderr: there is no background flusher to get stuck.
        Check::Ping | Check::Log => Ok(()),
        // The store answers a read (a revision lookup: the cheapest round trip it has) in time.
        Check::Etcd | Check::EtcdReadiness => {
            match tokio::time::timeout(STORE_TIMEOUT, api.store.current_revision()).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("the store did not answer within {STORE_TIMEOUT:?}")),
            }
        }
        // Ready no more once shutdown began, so load balancers move away before the listener
        // closes.
        Check::Shutdown => {
            if *api.shutdown.borrow() {
                Err("process is shutting down".into())
            } else {
                Ok(())
            }
        }
    }
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i..i + 3) {
            Some([b'%', h, l]) => hex(*h).zip(hex(*l)).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
                continue;
            }
            (None, b'+') => out.push(b' '),
            (None, b) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn text(code: StatusCode, body: String) -> Resp {
    let mut resp = full(code, "text/plain; charset=utf-8", body);
    resp.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// Answers a health path, or None when `path` is not one (or names no check: a 404).
pub async fn serve(api: &Api, path: &str, query: Option<&str>) -> Option<Resp> {
    let mut segs = path.trim_start_matches('/').splitn(2, '/');
    let endpoint = segs.next()?;
    if !matches!(endpoint, "livez" | "readyz" | "healthz") {
        return None;
    }
    let checks = checks(endpoint);
    if let Some(name) = segs.next() {
        let check = checks.iter().find(|c| c.name() == name)?;
        return Some(match run(api, *check).await {
            Ok(()) => text(StatusCode::OK, "ok".into()),
            Err(e) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("internal server error: {e}\n"),
            ),
        });
    }
    let params: Vec<(String, String)> = query
        .unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    let verbose = params.iter().any(|(k, _)| k == "verbose");
    let mut excluded: Vec<String> = params
        .into_iter()
        .filter(|(k, _)| k == "exclude")
        .map(|(_, v)| v)
        .collect();
    let mut report = String::new();
    let mut failed = Vec::new();
    for check in checks {
        let name = check.name();
        if excluded.iter().any(|e| e == name) {
            excluded.retain(|e| e != name);
            report.push_str(&format!("[+]{name} excluded: ok\n"));
            continue;
        }
        match run(api, *check).await {
            Ok(()) => report.push_str(&format!("[+]{name} ok\n")),
            Err(e) => {
                report.push_str(&format!("[-]{name} failed: reason withheld\n"));
                tracing::info!(check = name, error = %e, "{endpoint} check failed");
                failed.push(name);
            }
        }
    }
    if !excluded.is_empty() {
        excluded.sort();
        excluded.dedup();
        let names: Vec<String> = excluded.iter().map(|e| format!("{e:?}")).collect();
        report.push_str(&format!(
            "warn: some health checks cannot be excluded: no matches for {}\n",
            names.join(",")
        ));
    }
    // A failure always lists the checks, verbose or not.
    if !failed.is_empty() {
        return Some(text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{report}{endpoint} check failed\n"),
        ));
    }
    if !verbose {
        return Some(text(StatusCode::OK, "ok".into()));
    }
    Some(text(
        StatusCode::OK,
        format!("{report}{endpoint} check passed\n"),
    ))
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn decodes_query_values() {
        assert_eq!(percent_decode("poststarthook%2Fx"), "poststarthook/x");
        assert_eq!(percent_decode("etcd"), "etcd");
        assert_eq!(percent_decode("bad%zz"), "bad%zz");
        assert_eq!(percent_decode("end%2"), "end%2");
    }
}
