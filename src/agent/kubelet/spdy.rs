//! SPDY/3.1 framing, as much as Kubernetes' streaming protocols use: kubectl port-forward (and
//! exec/attach of kubectl before 1.30) open streams with SYN_STREAM frames whose headers say
//! what each stream is, and move bytes in DATA frames. Parsing is apart from any I/O: bytes go
//! in with [`Decoder::push`], frames come out of [`Decoder::next_frame`]; [`Encoder`] turns frames
//! back into bytes.
//!
//! Header blocks are zlib streams that run across the whole connection, compressed against the
//! SPDY/3 dictionary. Received blocks are inflated with it; ours are written as stored
//! (uncompressed) deflate blocks in a zlib stream without a dictionary, each ended as a sync
//! flush ends it, which every inflater reads and which needs no compressor state. Flow control (WINDOW_UPDATE, SETTINGS) is read and
//! ignored: the Go implementation Kubernetes clients use does not enforce windows either.

use flate2::{Decompress, FlushDecompress, Status};

pub const SYN_STREAM: u16 = 1;
pub const SYN_REPLY: u16 = 2;
pub const RST_STREAM: u16 = 3;
pub const PING: u16 = 6;
pub const GOAWAY: u16 = 7;
pub const HEADERS: u16 = 8;

pub const FLAG_FIN: u8 = 0x01;

/// RST_STREAM status codes used here.
pub const PROTOCOL_ERROR: u32 = 1;
pub const REFUSED_STREAM: u32 = 3;

/// Frames whose bodies are larger than this are refused (a header block or a data frame from
/// Kubernetes clients is at most 32 KiB; the format allows 16 MiB).
const MAX_FRAME: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("SPDY: unsupported version {0}")]
    Version(u16),
    #[error("SPDY: frame of {0} bytes is too large")]
    TooLarge(usize),
    #[error("SPDY: malformed {0}")]
    Malformed(&'static str),
    #[error("SPDY: header block: {0}")]
    Inflate(String),
}

pub type Headers = Vec<(String, String)>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream: u32,
        flags: u8,
        headers: Headers,
    },
    SynReply {
        stream: u32,
        flags: u8,
        headers: Headers,
    },
    RstStream {
        stream: u32,
        status: u32,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good: u32,
        status: u32,
    },
    Headers {
        stream: u32,
        flags: u8,
        headers: Headers,
    },
    Data {
        stream: u32,
        fin: bool,
        data: Vec<u8>,
    },
    /// SETTINGS, WINDOW_UPDATE and anything newer: read past.
    Ignored {
        kind: u16,
    },
}

impl Frame {
    pub fn data(stream: u32, data: &[u8]) -> Frame {
        Frame::Data {
            stream,
            fin: false,
            data: data.to_vec(),
        }
    }

    pub fn fin(stream: u32) -> Frame {
        Frame::Data {
            stream,
            fin: true,
            data: Vec::new(),
        }
    }
}

/// The value of header `name` (names are lower case on the wire).
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The SPDY/3 header dictionary (draft 3, section 2.6.10.1): length-prefixed header names and
/// common values, then a run of status codes, dates and media types.
pub fn dictionary() -> &'static [u8] {
    static DICT: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    DICT.get_or_init(|| {
        const WORDS: &[&str] = &[
            "options",
            "head",
            "post",
            "put",
            "delete",
            "trace",
            "accept",
            "accept-charset",
            "accept-encoding",
            "accept-language",
            "accept-ranges",
            "age",
            "allow",
            "authorization",
            "cache-control",
            "connection",
            "content-base",
            "content-encoding",
            "content-language",
            "content-length",
            "content-location",
            "content-md5",
            "content-range",
            "content-type",
            "date",
            "etag",
            "expect",
            "expires",
            "from",
            "host",
            "if-match",
            "if-modified-since",
            "if-none-match",
            "if-range",
            "if-unmodified-since",
            "last-modified",
            "location",
            "max-forwards",
            "pragma",
            "proxy-authenticate",
            "proxy-authorization",
            "range",
            "referer",
            "retry-after",
            "server",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "user-agent",
            "vary",
            "via",
            "warning",
            "www-authenticate",
            "method",
            "get",
            "status",
            "200 OK",
            "version",
            "HTTP/1.1",
            "url",
            "public",
            "set-cookie",
            "keep-alive",
            "origin",
        ];
        const TAIL: &str = concat!(
            "100101201202205206300302303304305306307402405406407408409410411412413414415416417",
            "502504505203 Non-Authoritative Information204 No Content301 Moved Permanently",
            "400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error",
            "501 Not Implemented503 Service Unavailable",
            "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 ",
            "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
            "chunked,text/html,image/png,image/jpg,image/gif,application/xml,",
            "application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=",
            "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
        );
        let mut d = Vec::with_capacity(1423);
        for w in WORDS {
            d.extend_from_slice(&(w.len() as u32).to_be_bytes());
            d.extend_from_slice(w.as_bytes());
        }
        d.extend_from_slice(TAIL.as_bytes());
        d
    })
}

/// Reads frames from the bytes of one connection.
pub struct Decoder {
    buf: Vec<u8>,
    inflate: Decompress,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder {
            buf: Vec::new(),
            inflate: Decompress::new(true),
        }
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl Decoder {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame, or None until more bytes come.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, Error> {
        if self.buf.len() < 8 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([0, self.buf[5], self.buf[6], self.buf[7]]) as usize;
        if len > MAX_FRAME {
            return Err(Error::TooLarge(len));
        }
        if self.buf.len() < 8 + len {
            return Ok(None);
        }
        let head: [u8; 8] = self.buf[..8].try_into().expect("eight bytes");
        let body: Vec<u8> = self.buf.drain(..8 + len).skip(8).collect();
        let flags = head[4];
        if head[0] & 0x80 == 0 {
            return Ok(Some(Frame::Data {
                stream: be32(&head) & 0x7fff_ffff,
                fin: flags & FLAG_FIN != 0,
                data: body,
            }));
        }
        let version = u16::from_be_bytes([head[0] & 0x7f, head[1]]);
        if version != 3 {
            return Err(Error::Version(version));
        }
        let kind = u16::from_be_bytes([head[2], head[3]]);
        let need = |n: usize, what| {
            if body.len() < n {
                Err(Error::Malformed(what))
            } else {
                Ok(())
            }
        };
        let frame = match kind {
            SYN_STREAM => {
                need(10, "SYN_STREAM")?;
                Frame::SynStream {
                    stream: be32(&body) & 0x7fff_ffff,
                    flags,
                    headers: self.header_block(&body[10..])?,
                }
            }
            SYN_REPLY | HEADERS => {
                need(4, "SYN_REPLY")?;
                let stream = be32(&body) & 0x7fff_ffff;
                let headers = self.header_block(&body[4..])?;
                if kind == SYN_REPLY {
                    Frame::SynReply {
                        stream,
                        flags,
                        headers,
                    }
                } else {
                    Frame::Headers {
                        stream,
                        flags,
                        headers,
                    }
                }
            }
            RST_STREAM => {
                need(8, "RST_STREAM")?;
                Frame::RstStream {
                    stream: be32(&body) & 0x7fff_ffff,
                    status: be32(&body[4..]),
                }
            }
            PING => {
                need(4, "PING")?;
                Frame::Ping { id: be32(&body) }
            }
            GOAWAY => {
                need(8, "GOAWAY")?;
                Frame::GoAway {
                    last_good: be32(&body) & 0x7fff_ffff,
                    status: be32(&body[4..]),
                }
            }
            kind => Frame::Ignored { kind },
        };
        Ok(Some(frame))
    }

    fn header_block(&mut self, compressed: &[u8]) -> Result<Headers, Error> {
        let plain = self.inflate_block(compressed)?;
        parse_headers(&plain)
    }

    /// Inflates one frame's part of the connection's header stream.
    fn inflate_block(&mut self, input: &[u8]) -> Result<Vec<u8>, Error> {
        let mut out = Vec::with_capacity(input.len() * 4 + 256);
        let mut pos = 0;
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.capacity().max(1024));
            }
            let before = self.inflate.total_in();
            let status =
                self.inflate
                    .decompress_vec(&input[pos..], &mut out, FlushDecompress::Sync);
            pos += (self.inflate.total_in() - before) as usize;
            match status {
                Ok(Status::StreamEnd) => break,
                Ok(_) if pos >= input.len() && out.len() < out.capacity() => break,
                Ok(Status::BufError) if pos >= input.len() => break,
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(dictionary())
                        .map_err(|e| Error::Inflate(e.to_string()))?;
                }
                Err(e) => return Err(Error::Inflate(e.to_string())),
            }
            if out.len() > MAX_FRAME {
                return Err(Error::TooLarge(out.len()));
            }
        }
        Ok(out)
    }
}

fn parse_headers(b: &[u8]) -> Result<Headers, Error> {
    let mut at = 0;
    let mut take = |n: usize| -> Result<&[u8], Error> {
        let s = b.get(at..at + n).ok_or(Error::Malformed("header block"))?;
        at += n;
        Ok(s)
    };
    let count = be32(take(4)?) as usize;
    let mut out = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let n = be32(take(4)?) as usize;
        let name = String::from_utf8_lossy(take(n)?).to_ascii_lowercase();
        let n = be32(take(4)?) as usize;
        let value = String::from_utf8_lossy(take(n)?).into_owned();
        // Several values of one name are NUL-separated.
        for v in value.split('\0') {
            out.push((name.clone(), v.to_string()));
        }
    }
    Ok(out)
}

/// Writes frames for one connection.
#[derive(Default)]
pub struct Encoder {
    /// Whether the header stream's zlib header has gone out (it precedes the first block).
    started: bool,
}

impl Encoder {
    pub fn encode(&mut self, frame: &Frame) -> Vec<u8> {
        match frame {
            Frame::Data { stream, fin, data } => {
                let mut out = Vec::with_capacity(8 + data.len());
                out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
                out.push(if *fin { FLAG_FIN } else { 0 });
                out.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
                out.extend_from_slice(data);
                out
            }
            Frame::SynStream {
                stream,
                flags,
                headers,
            } => {
                let mut body = (stream & 0x7fff_ffff).to_be_bytes().to_vec();
                body.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
                body.extend(self.header_block(headers));
                control(SYN_STREAM, *flags, &body)
            }
            Frame::SynReply {
                stream,
                flags,
                headers,
            }
            | Frame::Headers {
                stream,
                flags,
                headers,
            } => {
                let kind = if matches!(frame, Frame::SynReply { .. }) {
                    SYN_REPLY
                } else {
                    HEADERS
                };
                let mut body = (stream & 0x7fff_ffff).to_be_bytes().to_vec();
                body.extend(self.header_block(headers));
                control(kind, *flags, &body)
            }
            Frame::RstStream { stream, status } => {
                let mut body = stream.to_be_bytes().to_vec();
                body.extend_from_slice(&status.to_be_bytes());
                control(RST_STREAM, 0, &body)
            }
            Frame::Ping { id } => control(PING, 0, &id.to_be_bytes()),
            Frame::GoAway { last_good, status } => {
                let mut body = last_good.to_be_bytes().to_vec();
                body.extend_from_slice(&status.to_be_bytes());
                control(GOAWAY, 0, &body)
            }
            Frame::Ignored { .. } => Vec::new(),
        }
    }

    /// A header block as stored deflate blocks; the first one starts the zlib stream.
    fn header_block(&mut self, headers: &Headers) -> Vec<u8> {
        let mut plain = (headers.len() as u32).to_be_bytes().to_vec();
        for (n, v) in headers {
            plain.extend_from_slice(&(n.len() as u32).to_be_bytes());
            plain.extend_from_slice(n.to_ascii_lowercase().as_bytes());
            plain.extend_from_slice(&(v.len() as u32).to_be_bytes());
            plain.extend_from_slice(v.as_bytes());
        }
        let mut out = Vec::with_capacity(plain.len() + 16);
        if !self.started {
            // Deflate with a 32 KiB window, no preset dictionary; the check bits make the
            // pair a multiple of 31.
            out.extend_from_slice(&[0x78, 0x01]);
            self.started = true;
        }
        for chunk in plain.chunks(0xffff) {
            // Not the final block, type 00 (stored): the stream goes on with the next frame.
            out.push(0);
            let n = chunk.len() as u16;
            out.extend_from_slice(&n.to_le_bytes());
            out.extend_from_slice(&(!n).to_le_bytes());
            out.extend_from_slice(chunk);
        }
        // An empty stored block, as a sync flush ends each block: Go's inflater hands out
        // what it holds only when it reaches one, and would otherwise read on into the next
        // frame's bytes (and fail, since each frame's block is read on its own).
        out.extend_from_slice(&[0, 0, 0, 0xff, 0xff]);
        out
    }
}

fn control(kind: u16, flags: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + body.len());
    out.extend_from_slice(&[0x80, 3]);
    out.extend_from_slice(&kind.to_be_bytes());
    out.push(flags);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compress, Compression, FlushCompress};

    fn hv(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_dictionary_is_the_published_one() {
        let d = dictionary();
        assert_eq!(d.len(), 1423);
        assert_eq!(&d[..11], b"\0\0\0\x07options");
        assert!(d.ends_with(b"enq=0."));
    }

    #[test]
    fn frames_survive_a_round_trip_in_pieces() {
        let frames = vec![
            Frame::SynStream {
                stream: 1,
                flags: 0,
                headers: hv(&[("streamtype", "error"), ("port", "80"), ("requestid", "0")]),
            },
            Frame::SynReply {
                stream: 1,
                flags: 0,
                headers: Vec::new(),
            },
            Frame::data(3, b"GET / HTTP/1.0\r\n\r\n"),
            Frame::fin(3),
            Frame::RstStream {
                stream: 5,
                status: REFUSED_STREAM,
            },
            Frame::Ping { id: 7 },
            Frame::GoAway {
                last_good: 3,
                status: 0,
            },
        ];
        let mut enc = Encoder::default();
        let bytes: Vec<u8> = frames.iter().flat_map(|f| enc.encode(f)).collect();
        let mut dec = Decoder::default();
        let mut got = Vec::new();
        // Byte by byte: a frame split anywhere waits for the rest.
        for b in bytes {
            dec.push(&[b]);
            while let Some(f) = dec.next_frame().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, frames);
    }

    /// What a Go client sends: headers deflated against the dictionary, sync-flushed per frame,
    /// one zlib stream over the connection.
    #[test]
    fn reads_header_blocks_compressed_with_the_dictionary() {
        let mut z = Compress::new(Compression::best(), true);
        z.set_dictionary(dictionary()).unwrap();
        let mut wire = Vec::new();
        for (id, kind) in [(1u32, "error"), (3, "data")] {
            let h = hv(&[("port", "8080"), ("requestid", "0"), ("streamtype", kind)]);
            let mut plain = (h.len() as u32).to_be_bytes().to_vec();
            for (n, v) in &h {
                plain.extend_from_slice(&(n.len() as u32).to_be_bytes());
                plain.extend_from_slice(n.as_bytes());
                plain.extend_from_slice(&(v.len() as u32).to_be_bytes());
                plain.extend_from_slice(v.as_bytes());
            }
            let mut block = Vec::with_capacity(256);
            z.compress_vec(&plain, &mut block, FlushCompress::Sync)
                .unwrap();
            let mut body = id.to_be_bytes().to_vec();
            body.extend_from_slice(&[0; 6]);
            body.extend(block);
            wire.extend(control(SYN_STREAM, 0, &body));
        }
        let mut dec = Decoder::default();
        dec.push(&wire);
        for (id, kind) in [(1u32, "error"), (3, "data")] {
            match dec.next_frame().unwrap() {
                Some(Frame::SynStream {
                    stream, headers, ..
                }) => {
                    assert_eq!(stream, id);
                    assert_eq!(header(&headers, "streamType"), Some(kind));
                    assert_eq!(header(&headers, "port"), Some("8080"));
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(dec.next_frame().unwrap(), None);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let mut dec = Decoder::default();
        dec.push(&[0x80, 2, 0, 1, 0, 0, 0, 0]);
        assert!(matches!(dec.next_frame(), Err(Error::Version(2))));
        let mut dec = Decoder::default();
        dec.push(&[0x80, 3, 0, 1, 0, 0, 0, 2, 0, 0]);
        assert!(matches!(dec.next_frame(), Err(Error::Malformed(_))));
        let mut dec = Decoder::default();
        dec.push(&[0x80, 3, 0, 1, 0, 0xff, 0xff, 0xff]);
        assert!(matches!(dec.next_frame(), Err(Error::TooLarge(_))));
        let mut dec = Decoder::default();
        let mut body = vec![0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        body.extend_from_slice(b"not zlib");
        dec.push(&control(SYN_STREAM, 0, &body));
        assert!(matches!(dec.next_frame(), Err(Error::Inflate(_))));
    }
}
