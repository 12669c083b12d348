//! One keep-alive FastCGI connection and the request/response exchange.
//!
//! Over 600 lines only with its unit tests (the exchange against scripted servers).

use std::fmt;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use crate::record::{self, Header, HEADER_LEN, MAX_CONTENT_LEN, REQUEST_ID};
use crate::{FastCgiError, Params};

/// Bodies up to this size are copied into the single request buffer (one
/// write syscall); larger ones are sent from the caller's slice with
/// vectored writes, concurrently with reading the response.
const INLINE_BODY_MAX: usize = 32 * 1024;
/// Read buffer size; PHP flushes output in 8 KiB records, so this holds several.
const READ_BUF_SIZE: usize = 32 * 1024;
/// Below this much free space the read buffer is compacted/grown before a read.
const READ_BUF_MIN_SPARE: usize = 4 * 1024;
/// Record content still unread after the buffered part is read straight into
/// the output buffer when it is at least this big (saves one copy of big bodies).
const DIRECT_READ_MIN: usize = 8 * 1024;
/// Upper bound on slices passed to one writev call.
const MAX_IOV: usize = 64;

/// What the FastCGI server sent back for one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawResponse {
    /// The FCGI_STDOUT stream: a CGI response (see [`crate::parse_cgi_response`]).
    pub stdout: Bytes,
    /// The FCGI_STDERR stream: PHP's log messages for this request.
    pub stderr: Bytes,
    /// Application status from FCGI_END_REQUEST (PHP sends 0).
    pub app_status: u32,
}

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// Where to reconnect to; known for connections made with `connect_*`.
#[derive(Debug, Clone)]
enum Endpoint {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In sync: the next request can go out on this stream.
    Ready,
    /// The last request succeeded, but the server answered before taking all
    /// of STDIN (or sent bytes after END_REQUEST). The server is idle but the
    /// stream is out of sync: reconnect before the next request.
    Desynced,
    /// A request failed or was cancelled; the server may still be busy with
    /// it, so only the caller can decide what to do (drop, kill the worker).
    Broken,
}

/// One keep-alive connection to one FastCGI server (TCP or Unix socket).
///
/// Requests run one at a time with request id 1 (PHP does not multiplex).
/// If a request fails, or its future is dropped before it finishes, the
/// connection is marked unusable ([`Connection::is_reusable`] returns false
/// and later requests fail with [`FastCgiError::Broken`]); drop it.
pub struct Connection {
    stream: Stream,
    endpoint: Option<Endpoint>,
    /// Bytes read from the socket but not yet parsed.
    rbuf: BytesMut,
    /// Reused buffer for the outgoing BEGIN_REQUEST + PARAMS (+ small STDIN).
    wbuf: Vec<u8>,
    max_response: Option<usize>,
    state: State,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("endpoint", &self.endpoint)
            .field("state", &self.state)
            .field("max_response", &self.max_response)
            .finish()
    }
}

impl Connection {
    /// Connects over TCP (with TCP_NODELAY: requests go out in one write and
    /// must not wait for Nagle).
    pub async fn connect_tcp(addr: SocketAddr) -> Result<Connection, FastCgiError> {
        let mut conn = Connection::from_tcp(TcpStream::connect(addr).await?)?;
        conn.endpoint = Some(Endpoint::Tcp(addr));
        Ok(conn)
    }

    /// Connects to a Unix domain socket.
    pub async fn connect_unix(path: &Path) -> Result<Connection, FastCgiError> {
        let mut conn = Connection::from_unix(UnixStream::connect(path).await?);
        conn.endpoint = Some(Endpoint::Unix(path.to_path_buf()));
        Ok(conn)
    }

    /// Wraps an already connected TCP stream (sets TCP_NODELAY). Such a
    /// connection cannot reconnect by itself.
    pub fn from_tcp(stream: TcpStream) -> Result<Connection, FastCgiError> {
        stream.set_nodelay(true)?;
        Ok(Connection::new(Stream::Tcp(stream)))
    }

    /// Wraps an already connected Unix stream. Such a connection cannot
    /// reconnect by itself.
    pub fn from_unix(stream: UnixStream) -> Connection {
        Connection::new(Stream::Unix(stream))
    }

    fn new(stream: Stream) -> Connection {
        Connection {
            stream,
            endpoint: None,
            rbuf: BytesMut::with_capacity(READ_BUF_SIZE),
            wbuf: Vec::with_capacity(4096),
            max_response: None,
            state: State::Ready,
        }
    }

    /// Caps STDOUT + STDERR bytes per request; beyond it the request fails with
    /// [`FastCgiError::ResponseTooLarge`] (and the connection must be dropped).
    /// `None` (the default) means no cap.
    pub fn set_max_response_size(&mut self, limit: Option<usize>) {
        self.max_response = limit;
    }

    /// False once a request failed or was cancelled mid-way: the stream is
    /// out of sync and the server may still be busy, so drop the connection.
    pub fn is_reusable(&self) -> bool {
        self.state != State::Broken
    }

    /// Asks the server for management values (FCGI_GET_VALUES, e.g.
    /// `FCGI_MPXS_CONNS`) and returns the pairs it answers with.
    ///
    /// A server answers only once it accepts connections, so this doubles as
    /// a readiness check. php-cgi closes the connection after answering: a
    /// connection made with `connect_*` reconnects before its next request.
    pub async fn get_values(
        &mut self,
        names: &[&str],
    ) -> Result<Vec<(String, String)>, FastCgiError> {
        match self.state {
            State::Ready => {}
            State::Desynced => self.reconnect().await?,
            State::Broken => return Err(FastCgiError::Broken),
        }
        let mut content = Vec::new();
        for name in names {
            record::encode_pair(&mut content, name.as_bytes(), b"");
        }
        if content.len() > MAX_CONTENT_LEN {
            return Err(FastCgiError::Protocol("too many GET_VALUES names".into()));
        }
        let header = Header {
            kind: record::GET_VALUES,
            request_id: 0,
            content_len: content.len() as u16,
            padding_len: 0,
        };
        self.state = State::Broken;
        let Connection { stream, rbuf, .. } = self;
        let mut out = header.encode().to_vec();
        out.extend_from_slice(&content);
        let values = match stream {
            Stream::Tcp(s) => read_values(s, rbuf, &out).await?,
            Stream::Unix(s) => read_values(s, rbuf, &out).await?,
        };
        // Whether the server keeps the connection or not, start the next request afresh.
        self.state = State::Desynced;
        Ok(values)
    }

    /// Sends one request (BEGIN_REQUEST role RESPONDER with FCGI_KEEP_CONN,
    /// PARAMS, empty PARAMS, STDIN chunks, empty STDIN) and reads STDOUT/STDERR
    /// until END_REQUEST.
    ///
    /// Fails with [`FastCgiError::ClosedEarly`] if the peer closes first; after
    /// any error except [`FastCgiError::ParamTooLarge`] discard the connection.
    ///
    /// If the server completed the previous request without reading all of
    /// its body, PHP drops that stream; this call then reconnects first
    /// (connections made with `connect_*` only, else [`FastCgiError::Broken`]).
    pub async fn request(
        &mut self,
        params: &Params,
        body: &[u8],
    ) -> Result<RawResponse, FastCgiError> {
        match self.state {
            State::Ready => {}
            State::Desynced => self.reconnect().await?,
            State::Broken => return Err(FastCgiError::Broken),
        }
        params.check()?;

        self.wbuf.clear();
        self.wbuf.extend_from_slice(&record::begin_request_record());
        params.write_records(&mut self.wbuf);
        let large_body = if body.len() <= INLINE_BODY_MAX {
            push_stdin_records(&mut self.wbuf, body);
            None
        } else {
            Some(body)
        };

        // Back to Ready only when the exchange completes: an error or a
        // dropped future leaves the stream mid-request.
        self.state = State::Broken;
        let Connection {
            stream,
            rbuf,
            wbuf,
            max_response,
            state,
            ..
        } = self;
        let (response, body_fully_sent) = match stream {
            Stream::Tcp(s) => {
                let (r, w) = s.split();
                exchange(r, w, rbuf, wbuf, large_body, *max_response).await?
            }
            Stream::Unix(s) => {
                let (r, w) = s.split();
                exchange(r, w, rbuf, wbuf, large_body, *max_response).await?
            }
        };
        // Leftover bytes after END_REQUEST, or STDIN the server never read,
        // would be misread as part of the next request.
        *state = if body_fully_sent && rbuf.is_empty() {
            State::Ready
        } else if self.endpoint.is_some() {
            State::Desynced
        } else {
            State::Broken
        };
        Ok(response)
    }

    /// Replaces the stream with a fresh one to the same endpoint.
    async fn reconnect(&mut self) -> Result<(), FastCgiError> {
        self.state = State::Broken;
        // A single-process php-cgi accepts the new connection only once it has
        // noticed the old one closing; the connect itself completes from the
        // listen backlog, and the old stream is dropped right after.
        self.stream = match &self.endpoint {
            Some(Endpoint::Tcp(addr)) => {
                let s = TcpStream::connect(addr).await?;
                s.set_nodelay(true)?;
                Stream::Tcp(s)
            }
            Some(Endpoint::Unix(path)) => Stream::Unix(UnixStream::connect(path).await?),
            None => return Err(FastCgiError::Broken),
        };
        self.rbuf.clear();
        self.state = State::Ready;
        Ok(())
    }
}

/// Appends STDIN records for `body` (split at the record limit) and the empty
/// STDIN record that ends the stream.
fn push_stdin_records(buf: &mut Vec<u8>, body: &[u8]) {
    buf.reserve(body.len() + (body.len() / MAX_CONTENT_LEN + 2) * HEADER_LEN);
    for chunk in body.chunks(MAX_CONTENT_LEN) {
        record::push_record(buf, record::STDIN, chunk);
    }
    record::push_record(buf, record::STDIN, &[]);
}

/// Writes the request and reads the response. Returns the response and
/// whether the whole request was written before the response ended.
async fn exchange<R, W>(
    mut reader: R,
    mut writer: W,
    rbuf: &mut BytesMut,
    head: &[u8],
    large_body: Option<&[u8]>,
    max_response: Option<usize>,
) -> Result<(RawResponse, bool), FastCgiError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let Some(body) = large_body else {
        // Small request: one write; it fits the socket buffer, so there is no
        // risk of both sides blocking on writes.
        writer
            .write_all(head)
            .await
            .map_err(FastCgiError::from_io)?;
        let response = read_response(&mut reader, rbuf, max_response).await?;
        return Ok((response, true));
    };

    // Large body: PHP may start answering (and fill the socket) before it has
    // consumed STDIN, so write and read at the same time to avoid a deadlock.
    let write = write_with_body(&mut writer, head, body);
    let read = read_response(&mut reader, rbuf, max_response);
    tokio::pin!(write, read);
    let mut written = false;
    loop {
        tokio::select! {
            biased;
            response = &mut read => return Ok((response?, written)),
            done = &mut write, if !written => {
                done.map_err(FastCgiError::from_io)?;
                written = true;
            }
        }
    }
}

/// Writes `head` (BEGIN_REQUEST + PARAMS), then `body` as STDIN records
/// straight from the caller's slice, then the empty STDIN record.
async fn write_with_body<W: AsyncWrite + Unpin>(
    writer: &mut W,
    head: &[u8],
    body: &[u8],
) -> io::Result<()> {
    let headers: Vec<[u8; HEADER_LEN]> = body
        .chunks(MAX_CONTENT_LEN)
        .map(|chunk| record::header(record::STDIN, chunk.len()))
        .collect();
    let end = record::header(record::STDIN, 0);
    let mut parts: Vec<&[u8]> = Vec::with_capacity(headers.len() * 2 + 2);
    parts.push(head);
    for (header, chunk) in headers.iter().zip(body.chunks(MAX_CONTENT_LEN)) {
        parts.push(header);
        parts.push(chunk);
    }
    parts.push(&end);
    write_all_vectored(writer, &parts).await?;
    writer.flush().await
}

/// writev() loop over `parts` until everything is written.
async fn write_all_vectored<W: AsyncWrite + Unpin>(
    writer: &mut W,
    parts: &[&[u8]],
) -> io::Result<()> {
    // Position: part index and offset inside that part.
    let (mut idx, mut off) = (0, 0);
    while idx < parts.len() {
        let mut iov = [IoSlice::new(&[]); MAX_IOV];
        iov[0] = IoSlice::new(&parts[idx][off..]);
        let mut n = 1;
        for part in parts[idx + 1..].iter().take(MAX_IOV - 1) {
            iov[n] = IoSlice::new(part);
            n += 1;
        }
        let mut left = writer.write_vectored(&iov[..n]).await?;
        if left == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        while left > 0 && idx < parts.len() {
            let avail = parts[idx].len() - off;
            if left >= avail {
                left -= avail;
                idx += 1;
                off = 0;
            } else {
                off += left;
                left = 0;
            }
        }
        // Skip empty parts so the next iov[0] is never a zero-length slice.
        while idx < parts.len() && parts[idx].len() == off {
            idx += 1;
            off = 0;
        }
    }
    Ok(())
}

/// Reads until `rbuf` holds at least `n` bytes.
/// Writes a GET_VALUES record and reads records until its GET_VALUES_RESULT.
async fn read_values<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    rbuf: &mut BytesMut,
    request: &[u8],
) -> Result<Vec<(String, String)>, FastCgiError> {
    stream
        .write_all(request)
        .await
        .map_err(FastCgiError::from_io)?;
    rbuf.clear();
    loop {
        fill(stream, rbuf, HEADER_LEN).await?;
        let mut head = [0u8; HEADER_LEN];
        head.copy_from_slice(&rbuf[..HEADER_LEN]);
        rbuf.advance(HEADER_LEN);
        let header = Header::decode(&head)?;
        if header.kind != record::GET_VALUES_RESULT {
            skip(stream, rbuf, header.body_len()).await?;
            continue;
        }
        let len = usize::from(header.content_len);
        fill(stream, rbuf, header.body_len()).await?;
        let pairs = record::decode_pairs(&rbuf[..len])?
            .into_iter()
            .map(|(n, v)| {
                (
                    String::from_utf8_lossy(n).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect();
        rbuf.advance(header.body_len());
        return Ok(pairs);
    }
}

async fn fill<R: AsyncRead + Unpin>(
    reader: &mut R,
    rbuf: &mut BytesMut,
    n: usize,
) -> Result<(), FastCgiError> {
    while rbuf.len() < n {
        let spare = rbuf.capacity() - rbuf.len();
        if spare < READ_BUF_MIN_SPARE || spare < n - rbuf.len() {
            // Compacts in place when the consumed prefix is big enough, else grows.
            rbuf.reserve(READ_BUF_SIZE.max(n - rbuf.len()));
        }
        let got = reader.read_buf(rbuf).await.map_err(FastCgiError::from_io)?;
        if got == 0 {
            return Err(FastCgiError::ClosedEarly);
        }
    }
    Ok(())
}

/// Drops `n` bytes of the stream (padding, or records not meant for us).
async fn skip<R: AsyncRead + Unpin>(
    reader: &mut R,
    rbuf: &mut BytesMut,
    mut n: usize,
) -> Result<(), FastCgiError> {
    while n > 0 {
        if rbuf.is_empty() {
            fill(reader, rbuf, 1).await?;
        }
        let take = n.min(rbuf.len());
        rbuf.advance(take);
        n -= take;
    }
    Ok(())
}

/// Appends `n` bytes of record content to `out`: first what is buffered,
/// then big remainders straight from the socket into `out`.
async fn read_content<R: AsyncRead + Unpin>(
    reader: &mut R,
    rbuf: &mut BytesMut,
    out: &mut BytesMut,
    n: usize,
) -> Result<(), FastCgiError> {
    let buffered = n.min(rbuf.len());
    out.extend_from_slice(&rbuf[..buffered]);
    rbuf.advance(buffered);
    let mut rest = n - buffered;
    if rest == 0 {
        return Ok(());
    }
    if rest < DIRECT_READ_MIN {
        // Small remainder: a buffered read also picks up the next records.
        fill(reader, rbuf, rest).await?;
        out.extend_from_slice(&rbuf[..rest]);
        rbuf.advance(rest);
        return Ok(());
    }
    out.reserve(rest);
    while rest > 0 {
        let got = (&mut *reader)
            .take(rest as u64)
            .read_buf(out)
            .await
            .map_err(FastCgiError::from_io)?;
        if got == 0 {
            return Err(FastCgiError::ClosedEarly);
        }
        rest -= got;
    }
    Ok(())
}

/// Reads records until FCGI_END_REQUEST for our request id.
async fn read_response<R: AsyncRead + Unpin>(
    reader: &mut R,
    rbuf: &mut BytesMut,
    max_response: Option<usize>,
) -> Result<RawResponse, FastCgiError> {
    let mut stdout = BytesMut::new();
    let mut stderr = BytesMut::new();
    loop {
        fill(reader, rbuf, HEADER_LEN).await?;
        let mut raw = [0u8; HEADER_LEN];
        raw.copy_from_slice(&rbuf[..HEADER_LEN]);
        rbuf.advance(HEADER_LEN);
        let header = Header::decode(&raw)?;
        let content_len = usize::from(header.content_len);
        let padding_len = usize::from(header.padding_len);

        if header.request_id != REQUEST_ID {
            // Management records (id 0) or another request: not ours.
            skip(reader, rbuf, header.body_len()).await?;
            continue;
        }
        match header.kind {
            record::STDOUT | record::STDERR => {
                if let Some(limit) = max_response {
                    if stdout.len() + stderr.len() + content_len > limit {
                        return Err(FastCgiError::ResponseTooLarge { limit });
                    }
                }
                let out = if header.kind == record::STDOUT {
                    &mut stdout
                } else {
                    &mut stderr
                };
                read_content(reader, rbuf, out, content_len).await?;
                skip(reader, rbuf, padding_len).await?;
            }
            record::END_REQUEST => {
                if content_len < 8 {
                    return Err(FastCgiError::Protocol(format!(
                        "END_REQUEST record with {content_len} content bytes, expected 8"
                    )));
                }
                fill(reader, rbuf, header.body_len()).await?;
                let app_status = u32::from_be_bytes([rbuf[0], rbuf[1], rbuf[2], rbuf[3]]);
                let protocol_status = rbuf[4];
                rbuf.advance(header.body_len());
                return match protocol_status {
                    record::REQUEST_COMPLETE => Ok(RawResponse {
                        stdout: stdout.freeze(),
                        stderr: stderr.freeze(),
                        app_status,
                    }),
                    record::CANT_MPX_CONN => Err(FastCgiError::CantMultiplex),
                    record::OVERLOADED => Err(FastCgiError::Overloaded),
                    record::UNKNOWN_ROLE => Err(FastCgiError::UnknownRole),
                    other => Err(FastCgiError::Protocol(format!(
                        "END_REQUEST with unknown protocol status {other}"
                    ))),
                };
            }
            // Nothing else is defined for a responder's reply; skip it rather
            // than fail, as the spec asks of unknown record types.
            _ => skip(reader, rbuf, header.body_len()).await?,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{decode_pairs, END_REQUEST, PARAMS, STDERR, STDIN, STDOUT};
    use tokio::io::AsyncReadExt;

    /// What the fake server saw of one request.
    #[derive(Debug, Default)]
    struct Seen {
        records: Vec<Header>,
        params: Vec<u8>,
        stdin: Vec<u8>,
    }

    async fn read_request(s: &mut UnixStream) -> Seen {
        let mut seen = Seen::default();
        loop {
            let mut h = [0u8; HEADER_LEN];
            s.read_exact(&mut h).await.unwrap();
            let h = Header::decode(&h).unwrap();
            let mut body = vec![0u8; h.body_len()];
            s.read_exact(&mut body).await.unwrap();
            body.truncate(usize::from(h.content_len));
            seen.records.push(h);
            match h.kind {
                PARAMS => {
                    // Like PHP: each PARAMS record must decode on its own.
                    decode_pairs(&body).unwrap();
                    seen.params.extend_from_slice(&body);
                }
                STDIN if h.content_len == 0 => return seen,
                STDIN => seen.stdin.extend_from_slice(&body),
                _ => {}
            }
        }
    }

    /// A record with explicit id and padding, as a server would send it.
    fn rec(kind: u8, id: u16, content: &[u8], padding: u8) -> Vec<u8> {
        let mut out = Header {
            kind,
            request_id: id,
            content_len: content.len() as u16,
            padding_len: padding,
        }
        .encode()
        .to_vec();
        out.extend_from_slice(content);
        out.extend(std::iter::repeat(0xAA).take(usize::from(padding)));
        out
    }

    fn end(app_status: u32, protocol_status: u8) -> Vec<u8> {
        let mut body = app_status.to_be_bytes().to_vec();
        body.extend_from_slice(&[protocol_status, 0, 0, 0]);
        rec(END_REQUEST, 1, &body, 0)
    }

    fn pair() -> (Connection, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        (Connection::from_unix(a), b)
    }

    #[tokio::test]
    async fn sends_begin_params_stdin_and_reads_padded_records() {
        let (mut conn, mut server) = pair();
        let srv = tokio::spawn(async move {
            let seen = read_request(&mut server).await;
            let mut reply = rec(STDOUT, 1, b"Content-Type: text/plain\r\n\r\nhel", 5);
            reply.extend(rec(STDERR, 1, b"warn", 4));
            reply.extend(rec(STDOUT, 1, b"lo", 6));
            reply.extend(rec(STDOUT, 1, b"", 0));
            reply.extend(rec(STDERR, 1, b"", 0));
            reply.extend(end(7, 0));
            server.write_all(&reply).await.unwrap();
            (seen, server)
        });
        let mut params = Params::new();
        params
            .push("REQUEST_METHOD", "POST")
            .push("CONTENT_LENGTH", "4");
        let resp = conn.request(&params, b"ping").await.unwrap();
        assert_eq!(&resp.stdout[..], b"Content-Type: text/plain\r\n\r\nhello");
        assert_eq!(&resp.stderr[..], b"warn");
        assert_eq!(resp.app_status, 7);
        assert!(conn.is_reusable());

        let (seen, _server) = srv.await.unwrap();
        let kinds: Vec<u8> = seen.records.iter().map(|h| h.kind).collect();
        assert_eq!(kinds, [record::BEGIN_REQUEST, PARAMS, PARAMS, STDIN, STDIN]);
        assert!(seen.records.iter().all(|h| h.request_id == 1));
        assert_eq!(seen.params, params.encoded());
        assert_eq!(seen.stdin, b"ping");
    }

    #[tokio::test]
    async fn empty_body_sends_only_the_empty_stdin_record() {
        let (mut conn, mut server) = pair();
        let srv = tokio::spawn(async move {
            let seen = read_request(&mut server).await;
            server.write_all(&end(0, 0)).await.unwrap();
            (seen, server)
        });
        let resp = conn.request(&Params::new(), b"").await.unwrap();
        assert!(resp.stdout.is_empty());
        let (seen, _server) = srv.await.unwrap();
        let kinds: Vec<u8> = seen.records.iter().map(|h| h.kind).collect();
        assert_eq!(kinds, [record::BEGIN_REQUEST, PARAMS, STDIN]);
    }

    #[tokio::test]
    async fn ignores_records_for_other_ids_and_management_records() {
        let (mut conn, mut server) = pair();
        let srv = tokio::spawn(async move {
            read_request(&mut server).await;
            let mut reply = rec(STDOUT, 2, b"not ours", 0);
            reply.extend(rec(record::UNKNOWN_TYPE, 0, &[9, 0, 0, 0, 0, 0, 0, 0], 0));
            reply.extend(rec(END_REQUEST, 3, &[0; 8], 0));
            reply.extend(rec(STDOUT, 1, b"ours", 0));
            reply.extend(end(0, 0));
            server.write_all(&reply).await.unwrap();
            server
        });
        let resp = conn.request(&Params::new(), b"").await.unwrap();
        assert_eq!(&resp.stdout[..], b"ours");
        let _server = srv.await.unwrap();
    }

    #[tokio::test]
    async fn large_body_is_split_into_records_and_written_while_reading() {
        let (mut conn, mut server) = pair();
        let body: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let expected = body.clone();
        let srv = tokio::spawn(async move {
            let seen = read_request(&mut server).await;
            server.write_all(&rec(STDOUT, 1, b"ok", 0)).await.unwrap();
            server.write_all(&end(0, 0)).await.unwrap();
            (seen, server)
        });
        let resp = conn.request(&Params::new(), &body).await.unwrap();
        assert_eq!(&resp.stdout[..], b"ok");
        assert!(conn.is_reusable());
        let (seen, _server) = srv.await.unwrap();
        assert_eq!(seen.stdin, expected);
        let stdin_records: Vec<&Header> = seen.records.iter().filter(|h| h.kind == STDIN).collect();
        assert_eq!(
            stdin_records.len(),
            3_000_000usize.div_ceil(MAX_CONTENT_LEN) + 1
        );
        assert!(stdin_records
            .iter()
            .all(|h| usize::from(h.content_len) <= MAX_CONTENT_LEN));
    }

    #[tokio::test]
    async fn server_answering_before_reading_a_large_body_does_not_deadlock() {
        let (mut conn, mut server) = pair();
        let body = vec![b'x'; 8 * 1024 * 1024];
        let srv = tokio::spawn(async move {
            // Answer with a big response without reading anything first.
            let big = vec![b'y'; 60_000];
            for _ in 0..100 {
                server.write_all(&rec(STDOUT, 1, &big, 0)).await.unwrap();
            }
            server.write_all(&end(0, 0)).await.unwrap();
            server
        });
        let resp = conn.request(&Params::new(), &body).await.unwrap();
        assert_eq!(resp.stdout.len(), 6_000_000);
        // The server never read the body, so the stream is out of sync.
        assert!(!conn.is_reusable());
        assert!(matches!(
            conn.request(&Params::new(), b"").await,
            Err(FastCgiError::Broken)
        ));
        drop(srv.await.unwrap());
    }

    #[tokio::test]
    async fn reconnects_after_server_skipped_the_body() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let srv = tokio::spawn(async move {
            // First connection: answer at once, never read the 1 MB body.
            let (mut first, _) = listener.accept().await.unwrap();
            let mut reply = rec(STDOUT, 1, b"early", 0);
            reply.extend(end(0, 0));
            first.write_all(&reply).await.unwrap();
            // Second connection: a normal exchange.
            let (mut second, _) = listener.accept().await.unwrap();
            let seen = read_request(&mut second).await;
            let mut reply = rec(STDOUT, 1, &seen.stdin, 0);
            reply.extend(end(0, 0));
            second.write_all(&reply).await.unwrap();
            (first, second)
        });
        let mut conn = Connection::connect_unix(&path).await.unwrap();
        let resp = conn
            .request(&Params::new(), &vec![b'z'; 1 << 20])
            .await
            .unwrap();
        assert_eq!(&resp.stdout[..], b"early");
        assert!(conn.is_reusable());
        let resp = conn.request(&Params::new(), b"again").await.unwrap();
        assert_eq!(&resp.stdout[..], b"again");
        let _streams = srv.await.unwrap();
    }

    #[tokio::test]
    async fn get_values_answers_then_the_next_request_reconnects() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let srv = tokio::spawn(async move {
            // First connection: a GET_VALUES exchange, then closed (as php-cgi does).
            let (mut first, _) = listener.accept().await.unwrap();
            let mut head = [0u8; HEADER_LEN];
            first.read_exact(&mut head).await.unwrap();
            let header = Header::decode(&head).unwrap();
            let mut content = vec![0u8; header.body_len()];
            first.read_exact(&mut content).await.unwrap();
            let asked: Vec<Vec<u8>> = decode_pairs(&content[..usize::from(header.content_len)])
                .unwrap()
                .into_iter()
                .map(|(n, _)| n.to_vec())
                .collect();
            let mut answer = Vec::new();
            record::encode_pair(&mut answer, b"FCGI_MPXS_CONNS", b"0");
            // Something unrelated first: it must be skipped.
            let mut reply = rec(STDERR, 0, b"noise", 3);
            reply.extend(rec(record::GET_VALUES_RESULT, 0, &answer, 0));
            first.write_all(&reply).await.unwrap();
            drop(first);
            // Second connection: a normal request.
            let (mut second, _) = listener.accept().await.unwrap();
            let seen = read_request(&mut second).await;
            let mut reply = rec(STDOUT, 1, &seen.stdin, 0);
            reply.extend(end(0, 0));
            second.write_all(&reply).await.unwrap();
            (header.kind, asked, second)
        });
        let mut conn = Connection::connect_unix(&path).await.unwrap();
        let values = conn.get_values(&["FCGI_MPXS_CONNS"]).await.unwrap();
        assert_eq!(
            values,
            vec![("FCGI_MPXS_CONNS".to_string(), "0".to_string())]
        );
        let resp = conn.request(&Params::new(), b"after").await.unwrap();
        assert_eq!(&resp.stdout[..], b"after");
        let (kind, asked, _second) = srv.await.unwrap();
        assert_eq!(kind, record::GET_VALUES);
        assert_eq!(asked, vec![b"FCGI_MPXS_CONNS".to_vec()]);
    }

    #[tokio::test]
    async fn large_stdout_records_are_reassembled() {
        let (mut conn, mut server) = pair();
        let payload: Vec<u8> = (0..5_000_000u32).map(|i| (i % 253) as u8).collect();
        let expected = payload.clone();
        let srv = tokio::spawn(async move {
            read_request(&mut server).await;
            for chunk in payload.chunks(MAX_CONTENT_LEN) {
                server
                    .write_all(&rec(STDOUT, 1, chunk, (8 - chunk.len() % 8) as u8 % 8))
                    .await
                    .unwrap();
            }
            server.write_all(&end(0, 0)).await.unwrap();
            server
        });
        let resp = conn.request(&Params::new(), b"").await.unwrap();
        assert_eq!(resp.stdout, expected);
        let _server = srv.await.unwrap();
    }

    #[tokio::test]
    async fn keep_alive_serves_many_requests_on_one_stream() {
        let (mut conn, mut server) = pair();
        let srv = tokio::spawn(async move {
            for i in 0..50u32 {
                let seen = read_request(&mut server).await;
                let mut reply = rec(STDOUT, 1, &seen.stdin, 0);
                reply.extend(end(i, 0));
                server.write_all(&reply).await.unwrap();
            }
            server
        });
        for i in 0..50u32 {
            let body = format!("request {i}");
            let resp = conn.request(&Params::new(), body.as_bytes()).await.unwrap();
            assert_eq!(resp.stdout, body.as_bytes());
            assert_eq!(resp.app_status, i);
        }
        let _server = srv.await.unwrap();
    }

    async fn expect_error(reply: Vec<u8>) -> (FastCgiError, Connection) {
        let (mut conn, mut server) = pair();
        let srv = tokio::spawn(async move {
            read_request(&mut server).await;
            server.write_all(&reply).await.unwrap();
            // Dropping the server closes the stream.
        });
        let err = conn.request(&Params::new(), b"").await.unwrap_err();
        srv.await.unwrap();
        (err, conn)
    }

    #[tokio::test]
    async fn end_request_protocol_statuses_are_errors() {
        let (e, _) = expect_error(end(0, record::OVERLOADED)).await;
        assert!(matches!(e, FastCgiError::Overloaded), "{e}");
        let (e, _) = expect_error(end(0, record::CANT_MPX_CONN)).await;
        assert!(matches!(e, FastCgiError::CantMultiplex), "{e}");
        let (e, _) = expect_error(end(0, record::UNKNOWN_ROLE)).await;
        assert!(matches!(e, FastCgiError::UnknownRole), "{e}");
        let (e, _) = expect_error(end(0, 99)).await;
        assert!(matches!(e, FastCgiError::Protocol(_)), "{e}");
    }

    #[tokio::test]
    async fn peer_closing_early_is_closed_early_and_breaks_the_connection() {
        let (e, mut conn) = expect_error(rec(STDOUT, 1, b"partial", 0)).await;
        assert!(matches!(e, FastCgiError::ClosedEarly), "{e}");
        assert!(!conn.is_reusable());
        let again = conn.request(&Params::new(), b"").await.unwrap_err();
        assert!(matches!(again, FastCgiError::Broken), "{again}");

        // Closed in the middle of a record header.
        let (e, _) = expect_error(vec![1, STDOUT, 0]).await;
        assert!(matches!(e, FastCgiError::ClosedEarly), "{e}");
    }

    #[tokio::test]
    async fn bad_version_and_short_end_request_are_protocol_errors() {
        let (e, _) = expect_error(vec![2, STDOUT, 0, 1, 0, 0, 0, 0]).await;
        assert!(matches!(e, FastCgiError::Protocol(_)), "{e}");
        let (e, _) = expect_error(rec(END_REQUEST, 1, &[0; 4], 0)).await;
        assert!(matches!(e, FastCgiError::Protocol(_)), "{e}");
    }

    #[tokio::test]
    async fn response_size_limit() {
        let (mut conn, mut server) = pair();
        conn.set_max_response_size(Some(10));
        let srv = tokio::spawn(async move {
            read_request(&mut server).await;
            let mut reply = rec(STDOUT, 1, b"123456", 0);
            reply.extend(rec(STDERR, 1, b"7890X", 0));
            reply.extend(end(0, 0));
            server.write_all(&reply).await.unwrap();
            server
        });
        let err = conn.request(&Params::new(), b"").await.unwrap_err();
        assert!(
            matches!(err, FastCgiError::ResponseTooLarge { limit: 10 }),
            "{err}"
        );
        assert!(!conn.is_reusable());
        let _server = srv.await.unwrap();
    }

    #[tokio::test]
    async fn oversized_param_fails_before_sending_and_keeps_connection() {
        let (mut conn, mut server) = pair();
        let mut params = Params::new();
        params.push("HTTP_X", vec![b'a'; 100_000]);
        let err = conn.request(&params, b"").await.unwrap_err();
        assert!(matches!(err, FastCgiError::ParamTooLarge { .. }), "{err}");
        assert!(conn.is_reusable());
        // Nothing was written: the next request is the first thing the server sees.
        let srv = tokio::spawn(async move {
            let seen = read_request(&mut server).await;
            server.write_all(&end(0, 0)).await.unwrap();
            (seen, server)
        });
        conn.request(&Params::new(), b"x").await.unwrap();
        let (seen, _server) = srv.await.unwrap();
        assert_eq!(seen.records[0].kind, record::BEGIN_REQUEST);
    }

    #[tokio::test]
    async fn cancelled_request_breaks_the_connection() {
        let (mut conn, _server) = pair();
        let timed_out = tokio::time::timeout(
            std::time::Duration::from_millis(20),
            conn.request(&Params::new(), b""),
        )
        .await;
        assert!(timed_out.is_err());
        assert!(!conn.is_reusable());
    }

    #[tokio::test]
    async fn write_all_vectored_handles_partial_writes() {
        // A duplex pipe with a tiny buffer forces many short writes.
        let (mut a, mut b) = tokio::io::duplex(7);
        let parts: Vec<Vec<u8>> = (0..200).map(|i| vec![i as u8; i % 13]).collect();
        let refs: Vec<&[u8]> = parts.iter().map(|p| &p[..]).collect();
        let expected = parts.concat();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            b.read_to_end(&mut got).await.unwrap();
            got
        });
        write_all_vectored(&mut a, &refs).await.unwrap();
        drop(a);
        assert_eq!(reader.await.unwrap(), expected);
    }
}
