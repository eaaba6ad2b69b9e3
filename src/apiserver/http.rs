//! HTTPS serving: accept TCP, finish the TLS handshake (noting the verified client certificate's
//! user), and serve HTTP/1.1 or HTTP/2 on the connection with `Api::handle`. On shutdown the
//! listener closes, watches end, and open connections get a few seconds to finish.

use super::auth::User;
use super::handler::Api;
use super::tls;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Serves until `shutdown` flips, then drains connections for at most `drain`.
pub async fn serve(
    api: Arc<Api>,
    listener: TcpListener,
    tls_config: Arc<rustls::ServerConfig>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    drain: Duration,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls_config);
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let api = api.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let stream = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                    let cert_user = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|certs| certs.first())
                        .and_then(|c| tls::identity_of(c))
                        .map(|(name, groups)| User { name, groups, ..Default::default() });
                    let svc = service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                        req.extensions_mut().insert(super::handler::Peer(peer));
                        api.clone().handle(req, cert_user.clone())
                    });
                    let mut builder = auto::Builder::new(TokioExecutor::new());
                    builder.http2().max_concurrent_streams(1000);
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc).into_owned();
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections closed"),
        _ = tokio::time::sleep(drain) => tracing::info!("connections still open after {drain:?}; closing"),
    }
}
