//! The health-check node ports of externalTrafficPolicy Local services: an external load
//! balancer asks `http://<node>:<healthCheckNodePort>/` whether this node has an endpoint of
//! the service, and sends traffic only to nodes that answer 200 (503 otherwise), with the body
//! kube-proxy gives.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What one health-check port reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub namespace: String,
    pub name: String,
    pub local_endpoints: usize,
}

struct Server {
    state: Arc<Mutex<Health>>,
    task: tokio::task::JoinHandle<()>,
}

/// The listening health-check ports, by port.
#[derive(Default)]
pub struct HealthServers {
    servers: BTreeMap<u16, Server>,
}

impl std::fmt::Debug for HealthServers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.servers.keys()).finish()
    }
}

fn response(h: &Health) -> String {
    let body = serde_json::json!({
        "service": {"namespace": h.namespace, "name": h.name},
        "localEndpoints": h.local_endpoints,
        "serviceProxyHealthy": true,
    })
    .to_string();
    let status = if h.local_endpoints > 0 {
        "200 OK"
    } else {
        "503 Service Unavailable"
    };
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nX-Content-Type-Options: nosniff\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

async fn serve(listener: tokio::net::TcpListener, state: Arc<Mutex<Health>>) {
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            // The request says nothing the answer depends on; read it so the close is clean.
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf).await;
            let text = response(&state.lock().expect("health lock"));
            let _ = conn.write_all(text.as_bytes()).await;
            let _ = conn.shutdown().await;
        });
    }
}

impl HealthServers {
    /// Listens on exactly the ports of `want`, each answering for its service.
    pub async fn sync(&mut self, want: BTreeMap<u16, Health>) {
        self.servers.retain(|port, s| {
            let keep = want.contains_key(port);
            if !keep {
                s.task.abort();
            }
            keep
        });
        for (port, health) in want {
            if let Some(s) = self.servers.get(&port) {
                *s.state.lock().expect("health lock") = health;
                continue;
            }
            match tokio::net::TcpListener::bind(("0.0.0.0", port)).await {
                Ok(listener) => {
                    let state = Arc::new(Mutex::new(health));
                    let task = tokio::spawn(serve(listener, state.clone()));
                    self.servers.insert(port, Server { state, task });
                }
                Err(e) => tracing::warn!(port, error = %e, "health-check node port"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_as_kube_proxy_does() {
        let mut h = Health {
            namespace: "default".into(),
            name: "web".into(),
            local_endpoints: 2,
        };
        let r = response(&h);
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(r.ends_with(
            r#"{"localEndpoints":2,"service":{"name":"web","namespace":"default"},"serviceProxyHealthy":true}"#
        ));
        h.local_endpoints = 0;
        assert!(response(&h).starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
    }
}
