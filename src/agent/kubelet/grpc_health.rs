//! The grpc probe: one call of the standard gRPC health service
//! (`grpc.health.v1.Health/Check`) over cleartext HTTP/2, as the kubelet makes it. The two
//! messages are one optional field each, so they are encoded by hand rather than generated.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};

/// HealthCheckResponse.ServingStatus SERVING: the only answer that passes.
pub const SERVING: u64 = 1;

/// The request message framed for gRPC: no compression, a 4-byte length, then
/// HealthCheckRequest { string service = 1 }.
fn request(service: &str) -> Vec<u8> {
    let mut msg = Vec::new();
    if !service.is_empty() {
        msg.push(0x0a);
        varint(service.len() as u64, &mut msg);
        msg.extend_from_slice(service.as_bytes());
    }
    let mut out = vec![0u8];
    out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    out.extend(msg);
    out
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn read_varint(b: &[u8], i: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*i)?;
        *i += 1;
        v |= ((byte & 0x7f) as u64) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// HealthCheckResponse { ServingStatus status = 1 } out of a framed reply; other fields are
/// skipped. A missing status is UNKNOWN (0).
fn status_of(body: &[u8]) -> Result<u64, String> {
    if body.len() < 5 {
        return Err("empty gRPC response".into());
    }
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    let msg = body
        .get(5..5 + len)
        .ok_or_else(|| "truncated gRPC response".to_string())?;
    let mut i = 0;
    let mut status = 0;
    while i < msg.len() {
        let key = read_varint(msg, &mut i).ok_or("bad response")?;
        match (key >> 3, key & 7) {
            (1, 0) => status = read_varint(msg, &mut i).ok_or("bad response")?,
            (_, 0) => {
                read_varint(msg, &mut i).ok_or("bad response")?;
            }
            (_, 2) => {
                let n = read_varint(msg, &mut i).ok_or("bad response")? as usize;
                i += n;
            }
            (_, 5) => i += 4,
            (_, 1) => i += 8,
            _ => return Err("bad response".into()),
        }
    }
    Ok(status)
}

/// Calls Check for `service` at host:port and returns the serving status, or why the call
/// failed (a non-zero grpc-status included, as `rpc error: code = N desc = ...`).
pub async fn check(host: &str, port: u16, service: &str) -> Result<u64, String> {
    let stream = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("failed to connect service {host}:{port}: {e}"))?;
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = hyper::Request::post(format!("http://{host}:{port}/grpc.health.v1.Health/Check"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("user-agent", "kube-probe/1.33")
        .body(Full::new(Bytes::from(request(service))))
        .map_err(|e| e.to_string())?;
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    if resp.status() != hyper::StatusCode::OK {
        return Err(format!("HTTP status {}", resp.status()));
    }
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    let trailers = body.trailers().cloned().unwrap_or_default();
    // A reply with no message carries grpc-status in its headers ("trailers-only").
    let field = |name: &str| {
        trailers
            .get(name)
            .or_else(|| headers.get(name))
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let code = field("grpc-status").unwrap_or_else(|| "0".into());
    if code != "0" {
        let desc = field("grpc-message").unwrap_or_default();
        return Err(format!("rpc error: code = {code} desc = {desc}"));
    }
    status_of(&body.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::StreamBody;
    use hyper::body::Frame;

    /// A health server on loopback: "" and "web" serve, "down" does not, others are unknown.
    async fn server() -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (s, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        |req: hyper::Request<hyper::body::Incoming>| async move {
                            assert_eq!(req.uri().path(), "/grpc.health.v1.Health/Check");
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let service =
                                String::from_utf8_lossy(body.get(7..).unwrap_or(&[])).to_string();
                            let mut trailers = hyper::HeaderMap::new();
                            let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> =
                                match service.as_str() {
                                    "" | "web" | "down" => {
                                        let st = if service == "down" { 2 } else { 1 };
                                        trailers.insert("grpc-status", "0".parse().unwrap());
                                        vec![
                                            Ok(Frame::data(Bytes::from(vec![
                                                0, 0, 0, 0, 2, 0x08, st,
                                            ]))),
                                            Ok(Frame::trailers(trailers)),
                                        ]
                                    }
                                    _ => {
                                        trailers.insert("grpc-status", "5".parse().unwrap());
                                        trailers.insert(
                                            "grpc-message",
                                            "unknown service".parse().unwrap(),
                                        );
                                        vec![Ok(Frame::trailers(trailers))]
                                    }
                                };
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                StreamBody::new(futures::stream::iter(frames)),
                            ))
                        },
                    );
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        port
    }

    #[tokio::test]
    async fn health_check_over_http2() {
        let port = server().await;
        assert_eq!(check("127.0.0.1", port, "").await, Ok(SERVING));
        assert_eq!(check("127.0.0.1", port, "web").await, Ok(SERVING));
        assert_eq!(check("127.0.0.1", port, "down").await, Ok(2));
        assert_eq!(
            check("127.0.0.1", port, "nope").await,
            Err("rpc error: code = 5 desc = unknown service".into())
        );
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead = closed.local_addr().unwrap().port();
        drop(closed);
        assert!(check("127.0.0.1", dead, "")
            .await
            .unwrap_err()
            .starts_with("failed to connect service"));
    }

    #[test]
    fn messages_encode_and_decode() {
        assert_eq!(request(""), vec![0, 0, 0, 0, 0]);
        assert_eq!(request("ab"), vec![0, 0, 0, 0, 4, 0x0a, 2, b'a', b'b']);
        // An unknown string field before the status is skipped.
        let reply = [0, 0, 0, 0, 6, 0x12, 2, b'x', b'y', 0x08, 1];
        assert_eq!(status_of(&reply), Ok(1));
        assert!(status_of(&[0, 0, 0, 0, 9, 0x08]).is_err());
    }
}
