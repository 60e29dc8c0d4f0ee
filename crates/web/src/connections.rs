//! The accept loop, with limits a slow or hostile client cannot get around: at most
//! `max_connections` connections at once (further ones wait in the kernel's backlog until a slot
//! frees), a request head must arrive within `header_read_timeout`, and a connection on which no
//! byte moves for `idle_timeout` while no request of it is being answered is closed.
//!
//! axum's own `serve` sets none of these: hyper's header-read timeout needs a timer axum does not
//! give it, so 20,400 sockets each sending half a request head once held 20,000 file descriptors
//! and starved everyone else.
//!
//! With TLS (`serve --tls-cert`), the handshake runs in the connection's own task, within the
//! request-head timeout, so a client that stalls it delays nobody else's accept.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;
use tower_http::timeout::TimeoutBody;

/// How many connections the server takes and how long it waits for their clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections served at once; more wait to be accepted until one closes.
    pub max_connections: usize,
    /// Time to send a complete request head (request line and headers), for the first request
    /// of a connection and for each next one on a kept-alive connection.
    pub header_read_timeout: Duration,
    /// A connection on which no byte moves for this long while none of its requests is being
    /// answered is closed; so is a request whose body stops arriving for this long.
    pub idle_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            // Below the usual 1,024 open files of a service, leaving room for the database.
            max_connections: 512,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` completes, then lets the
/// requests in flight finish. With `tls`, every connection is HTTPS.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let mut shutdown = pin!(shutdown);
    loop {
        // A slot first, then the connection: beyond the cap, clients wait in the backlog
        // instead of holding a file descriptor here.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break, // closed: never happens, the semaphore lives here
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let activity = Arc::new(Activity::new());
        let service = RequestService {
            router: router.clone(),
            peer,
            activity: activity.clone(),
            idle_timeout: limits.idle_timeout,
        };
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let connection = Connection {
                builder,
                watcher,
                service,
                activity: activity.clone(),
                idle_timeout: limits.idle_timeout,
                peer,
            };
            match tls {
                None => {
                    let tracked = Tracked {
                        inner: stream,
                        activity,
                    };
                    connection.serve(tracked).await;
                }
                Some(acceptor) => {
                    let handshake = tls_handshake(&acceptor, stream, activity, peer);
                    // A client that never finishes its handshake holds a slot no longer than
                    // one that never finishes its request head.
                    match tokio::time::timeout(limits.header_read_timeout, handshake).await {
                        Ok(Some(secured)) => connection.serve(secured).await,
                        Ok(None) => {}
                        Err(_) => {
                            tracing::debug!(message = "Closed a connection whose TLS handshake did not finish in time.", %peer);
                        }
                    }
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// One accepted connection, ready to be served over plain TCP or TLS.
struct Connection {
    builder: Arc<auto::Builder<TokioExecutor>>,
    watcher: Watcher,
    service: RequestService,
    activity: Arc<Activity>,
    idle_timeout: Duration,
    peer: SocketAddr,
}

impl Connection {
    /// Serves HTTP/1.1 or HTTP/2 on `io` until the client is done, idle too long, or the
    /// server shuts down.
    async fn serve(self, io: impl AsyncRead + AsyncWrite + Unpin + Send + 'static) {
        let peer = self.peer;
        let connection = self.watcher.watch(
            self.builder
                .serve_connection_with_upgrades(TokioIo::new(io), self.service)
                .into_owned(),
        );
        tokio::select! {
            result = connection => {
                if let Err(error) = result {
                    tracing::debug!(message = "Connection ended with an error.", %error, %peer);
                }
            }
            () = self.activity.idle_for(self.idle_timeout) => {
                tracing::debug!(message = "Closed an idle connection.", %peer);
            }
        }
    }
}

/// The TLS handshake on an accepted connection, or, when the client speaks plain HTTP to this
/// HTTPS port (someone typed http://), an answer that says to use https:// instead of a
/// connection dropped without a word.
async fn tls_handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    activity: Arc<Activity>,
    peer: SocketAddr,
) -> Option<tokio_rustls::server::TlsStream<Tracked>> {
    let mut first = [0u8; 1];
    match stream.peek(&mut first).await {
        Ok(1) if first[0].is_ascii_uppercase() => {
            // A TLS connection starts with a handshake record (byte 0x16); an HTTP/1 request
            // with its method's first letter.
            answer_plain_http(stream).await;
            return None;
        }
        Ok(1) => {}
        _ => return None,
    }
    let tracked = Tracked {
        inner: stream,
        activity,
    };
    match acceptor.accept(tracked).await {
        Ok(secured) => Some(secured),
        Err(error) => {
            tracing::debug!(message = "TLS handshake failed.", %error, %peer);
            None
        }
    }
}

/// What Go's and nginx's HTTPS servers do for a plain HTTP request: a 400 that says why.
async fn answer_plain_http(mut stream: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const BODY: &str = "This port speaks HTTPS only: use https:// in the address.\n";
    // Read the request head first: closing a socket with unread bytes makes the kernel reset
    // the connection, and the client would see the reset instead of this answer.
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while head.len() < 16 * 1024 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = stream.write_all(answer.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// The router as hyper calls it, with the peer's address for `ConnectInfo`, the connection's
/// requests counted while they are answered, and a request body that stops arriving for
/// `idle_timeout` failing (its handler answers; the connection then closes).
#[derive(Clone)]
struct RequestService {
    router: Router,
    peer: SocketAddr,
    activity: Arc<Activity>,
    idle_timeout: Duration,
}

impl hyper::service::Service<hyper::Request<Incoming>> for RequestService {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, request: hyper::Request<Incoming>) -> Self::Future {
        let idle_timeout = self.idle_timeout;
        let mut request = request.map(|body| Body::new(TimeoutBody::new(idle_timeout, body)));
        request.extensions_mut().insert(ConnectInfo(self.peer));
        let answering = Answering::start(self.activity.clone());
        let response = self.router.clone().oneshot(request);
        Box::pin(async move {
            let response = response.await;
            drop(answering);
            response
        })
    }
}

/// Like axum's own loop: running out of file descriptors (or another per-connection error) must
/// not end the server; wait a little for connections to close.
async fn accept_failed(error: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!(message = "Accepting a connection failed.", %error);
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// When bytes last moved on a connection, and how many of its requests are being answered.
#[derive(Debug)]
struct Activity {
    start: Instant,
    /// Milliseconds after `start`.
    last: AtomicU64,
    answering: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last: AtomicU64::new(0),
            answering: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last.load(Ordering::Relaxed))
    }

    /// Completes once nothing has moved for `timeout` while no request was being answered (a
    /// handler may think for long; its client is not idle meanwhile).
    async fn idle_for(&self, timeout: Duration) {
        loop {
            let deadline = self.last() + timeout;
            if Instant::now() >= deadline && self.answering.load(Ordering::Relaxed) == 0 {
                return;
            }
            tokio::time::sleep_until(deadline.max(Instant::now() + timeout / 4)).await;
        }
    }
}

/// Counts a request as being answered while it lives.
struct Answering(Arc<Activity>);

impl Answering {
    fn start(activity: Arc<Activity>) -> Self {
        activity.answering.fetch_add(1, Ordering::Relaxed);
        activity.touch();
        Self(activity)
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.touch();
        self.0.answering.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A socket that records when bytes move.
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
