//! One SPDY connection over whatever carries it: the upgraded HTTP connection itself, or the
//! binary messages of a websocket (kubectl 1.31+ tunnels port-forward's SPDY that way). Either
//! way the rest sees frames: [`Frames`] to read them, and a sender whose frames one writer task
//! encodes in order (the header stream's compression state is per connection).

use futures::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::{Message, Role};

use super::spdy::{self, Frame};

/// The frames a client sends, decoded as their bytes arrive.
pub struct Frames {
    bytes: mpsc::Receiver<Vec<u8>>,
    decoder: spdy::Decoder,
}

impl Frames {
    /// The next frame; None once the connection has ended, an error for bytes that are not
    /// SPDY/3.
    pub async fn next(&mut self) -> Option<Result<Frame, spdy::Error>> {
        loop {
            match self.decoder.next_frame() {
                Ok(Some(f)) => return Some(Ok(f)),
                Ok(None) => {}
                Err(e) => return Some(Err(e)),
            }
            let more = self.bytes.recv().await?;
            self.decoder.push(&more);
        }
    }
}

/// Where frames to the client go.
pub type Sender = mpsc::Sender<Frame>;

fn start(bytes: mpsc::Receiver<Vec<u8>>, out: mpsc::Sender<Vec<u8>>) -> (Frames, Sender) {
    let (tx, mut rx) = mpsc::channel::<Frame>(64);
    tokio::spawn(async move {
        let mut enc = spdy::Encoder::default();
        while let Some(f) = rx.recv().await {
            if out.send(enc.encode(&f)).await.is_err() {
                break;
            }
        }
    });
    (
        Frames {
            bytes,
            decoder: spdy::Decoder::default(),
        },
        tx,
    )
}

/// SPDY right on an upgraded connection.
pub fn over_upgraded(up: hyper::upgrade::Upgraded) -> (Frames, Sender) {
    let (mut rd, mut wr) = tokio::io::split(TokioIo::new(up));
    let (in_tx, in_rx) = mpsc::channel::<Vec<u8>>(16);
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(64);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        while let Ok(n @ 1..) = rd.read(&mut buf).await {
            if in_tx.send(buf[..n].to_vec()).await.is_err() {
                break;
            }
        }
    });
    tokio::spawn(async move {
        while let Some(b) = out_rx.recv().await {
            if wr.write_all(&b).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    start(in_rx, out_tx)
}

/// SPDY inside a websocket's binary messages (a frame may span messages, and the other way).
pub async fn over_websocket(up: hyper::upgrade::Upgraded) -> (Frames, Sender) {
    let ws =
        tokio_tungstenite::WebSocketStream::from_raw_socket(TokioIo::new(up), Role::Server, None)
            .await;
    let (mut ws_tx, mut ws_rx) = ws.split();
    let (in_tx, in_rx) = mpsc::channel::<Vec<u8>>(16);
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(64);
    tokio::spawn(async move {
        while let Some(Ok(msg)) = ws_rx.next().await {
            match msg {
                Message::Binary(b) if in_tx.send(b.to_vec()).await.is_err() => break,
                Message::Close(_) => break,
                _ => {}
            }
        }
    });
    tokio::spawn(async move {
        while let Some(b) = out_rx.recv().await {
            if ws_tx.send(Message::Binary(b.into())).await.is_err() {
                break;
            }
        }
        let _ = ws_tx.close().await;
    });
    start(in_rx, out_tx)
}

/// Accepts a stream the client opened: a SYN_REPLY without headers.
pub async fn accept(frames: &Sender, stream: u32) {
    let _ = frames
        .send(Frame::SynReply {
            stream,
            flags: 0,
            headers: Vec::new(),
        })
        .await;
}

/// Refuses a stream the client opened (one whose headers say nothing we serve).
pub async fn refuse(frames: &Sender, stream: u32) {
    let _ = frames
        .send(Frame::RstStream {
            stream,
            status: spdy::REFUSED_STREAM,
        })
        .await;
}

/// Answers a ping of the client's (odd ids; ours would be even) with the same frame.
pub async fn answer_ping(frames: &Sender, id: u32) {
    if id % 2 == 1 {
        let _ = frames.send(Frame::Ping { id }).await;
    }
}
