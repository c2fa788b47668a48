//! A fault-injecting HTTP proxy for the S3 tests and the throttling benchmark: it sits on
//! 127.0.0.1 between narward and
//! the local S3 server (moto) and, per request, either forwards it or
//! - answers `503 SlowDown` (S3's throttling answer, XML body),
//! - answers `500 InternalError`,
//! - resets the connection before forwarding (the request never reached S3),
//! - forwards it and then resets the connection (the request took effect, its answer
//!   was lost),
//!
//! each with a configured probability drawn from a seeded generator; optionally a token
//! bucket limits the forwarded rate and answers `503 SlowDown` above it. It handles one
//! request per connection (it answers `Connection: close`), which every HTTP client copes
//! with. It is bounded: it stops by itself after `max_requests` requests or `lifetime`,
//! and when dropped. It keeps the request line (`POST /bucket?delete HTTP/1.1`) of every
//! request it received, in arrival order ([`FaultProxy::request_lines`]), so a test can
//! count requests of one kind.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy does to requests.
#[derive(Debug, Clone)]
pub struct FaultConfig {
    pub slow_down: f64,
    pub internal_error: f64,
    pub reset: f64,
    pub lost_answer: f64,
    /// Forwarded requests per second at most (token bucket); above it: `503 SlowDown`.
    pub rate_limit: Option<f64>,
    /// Tokens the bucket holds at most (and starts with); `None`: one second's worth.
    pub burst: Option<f64>,
    /// Requests (numbered from 1 in the order they arrive) answered `500 InternalError`
    /// whatever the fractions say: a fault at an exact step.
    pub fail_nth: Vec<u64>,
    pub seed: u64,
    pub max_requests: u64,
    pub lifetime: Duration,
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig {
            slow_down: 0.0,
            internal_error: 0.0,
            reset: 0.0,
            lost_answer: 0.0,
            rate_limit: None,
            burst: None,
            fail_nth: Vec::new(),
            seed: 1,
            max_requests: 100_000,
            lifetime: Duration::from_secs(300),
        }
    }
}

/// Counts of what the proxy did.
#[derive(Debug, Default)]
pub struct ProxyStats {
    pub requests: AtomicU64,
    pub forwarded: AtomicU64,
    pub slow_down: AtomicU64,
    pub internal_error: AtomicU64,
    pub reset: AtomicU64,
    pub lost_answer: AtomicU64,
    pub rate_limited: AtomicU64,
    /// The request line of every request received, in arrival order.
    lines: Mutex<Vec<String>>,
    /// The request line (`POST /bucket/key?restore HTTP/1.1`) of every request forwarded
    /// upstream (those answered by the proxy itself are not).
    forwarded_lines: Mutex<Vec<String>>,
}

impl ProxyStats {
    /// The request lines received so far (`METHOD TARGET HTTP/1.1`), in arrival order.
    pub fn request_lines(&self) -> Vec<String> {
        lock(&self.lines).clone()
    }

    /// Requests forwarded upstream whose request line starts with `method` and contains
    /// `part`.
    pub fn count(&self, method: &str, part: &str) -> usize {
        lock(&self.forwarded_lines)
            .iter()
            .filter(|l| l.starts_with(method) && l.contains(part))
            .count()
    }
    pub fn get(&self, c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
    pub fn faults(&self) -> u64 {
        [
            &self.slow_down,
            &self.internal_error,
            &self.reset,
            &self.lost_answer,
            &self.rate_limited,
        ]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum()
    }
}

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    pub addr: SocketAddr,
    pub stats: Arc<ProxyStats>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FaultProxy {
    /// `http://127.0.0.1:PORT`, to use as the S3 endpoint.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The request lines received so far, in arrival order (see [`ProxyStats`]).
    pub fn request_lines(&self) -> Vec<String> {
        self.stats.request_lines()
    }

    /// Start a proxy to `upstream` (`http://IP:PORT`) on a free port, in its own thread.
    /// For tests: panics when the upstream is not `http://IP:PORT` or no port is free
    /// ([`FaultProxy::try_start`] gives the error instead).
    pub fn start(upstream: &str, cfg: FaultConfig) -> FaultProxy {
        match FaultProxy::try_start(upstream, cfg) {
            Ok(p) => p,
            Err(e) => panic!("fault proxy to {upstream}: {e}"),
        }
    }

    /// Start a proxy to `upstream` (`http://IP:PORT`) on a free port, in its own thread.
    ///
    /// # Errors
    /// `upstream` is not `http://IP:PORT`; no port can be bound; no thread or runtime.
    pub fn try_start(upstream: &str, cfg: FaultConfig) -> std::io::Result<FaultProxy> {
        let up: SocketAddr = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("upstream {upstream:?} is not http://IP:PORT: {e}"),
                )
            })?;
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let stats = Arc::new(ProxyStats::default());
        let (tx, rx) = tokio::sync::oneshot::channel();
        let st = stats.clone();
        let thread = std::thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || rt.block_on(serve(std_listener, up, cfg, st, rx)))?;
        Ok(FaultProxy {
            addr,
            stats,
            stop: Some(tx),
            thread: Some(thread),
        })
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[derive(Clone, Copy)]
enum Action {
    Forward,
    SlowDown,
    InternalError,
    Reset,
    LostAnswer,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// SplitMix64: a small seeded generator (the proxy needs no more).
struct SplitMix(u64);

impl SplitMix {
    /// A uniform number in `[0, 1)`.
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct Shared {
    cfg: FaultConfig,
    rng: Mutex<SplitMix>,
    bucket: Mutex<(f64, Instant)>,
    stats: Arc<ProxyStats>,
    upstream: SocketAddr,
}

impl Shared {
    fn decide(&self) -> Action {
        let x = lock(&self.rng).next_f64();
        let c = &self.cfg;
        let mut edge = c.slow_down;
        if x < edge {
            return Action::SlowDown;
        }
        edge += c.internal_error;
        if x < edge {
            return Action::InternalError;
        }
        edge += c.reset;
        if x < edge {
            return Action::Reset;
        }
        edge += c.lost_answer;
        if x < edge {
            return Action::LostAnswer;
        }
        Action::Forward
    }

    /// Take a token; false when the rate limit is exceeded.
    fn token(&self) -> bool {
        let Some(rate) = self.cfg.rate_limit else {
            return true;
        };
        let mut b = lock(&self.bucket);
        let now = Instant::now();
        let cap = self.cfg.burst.unwrap_or(rate).max(1.0);
        b.0 = (b.0 + rate * now.duration_since(b.1).as_secs_f64()).min(cap);
        b.1 = now;
        if b.0 >= 1.0 {
            b.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    upstream: SocketAddr,
    cfg: FaultConfig,
    stats: Arc<ProxyStats>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let Ok(listener) = TcpListener::from_std(listener) else {
        return;
    };
    let deadline = tokio::time::Instant::now() + cfg.lifetime;
    let shared = Arc::new(Shared {
        rng: Mutex::new(SplitMix(cfg.seed)),
        bucket: Mutex::new((
            cfg.burst.or(cfg.rate_limit).unwrap_or(0.0).max(1.0),
            Instant::now(),
        )),
        cfg,
        stats,
        upstream,
    });
    loop {
        let accepted = tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep_until(deadline) => return,
            a = listener.accept() => a,
        };
        let Ok((conn, _)) = accepted else { continue };
        let n = shared.stats.requests.fetch_add(1, Ordering::Relaxed);
        if n >= shared.cfg.max_requests {
            return;
        }
        let sh = shared.clone();
        tokio::spawn(async move {
            let _ = handle(conn, sh, n + 1).await;
        });
    }
}

/// One request: head up to the blank line, then a Content-Length body or a chunked one.
async fn read_request(conn: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 16384];
    let head_end = loop {
        if let Some(p) = find(&buf, b"\r\n\r\n") {
            break p + 4;
        }
        let n = conn.read(&mut tmp).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
    };
    if header("transfer-encoding:").is_some_and(|v| v.contains("chunked")) {
        while find(&buf[head_end..], b"0\r\n\r\n").is_none() {
            let n = conn.read(&mut tmp).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            buf.extend_from_slice(&tmp[..n]);
        }
    } else {
        let len: usize = header("content-length:")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + len {
            let n = conn.read(&mut tmp).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            buf.extend_from_slice(&tmp[..n]);
        }
    }
    Ok(buf)
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// Send the request upstream (asking it to close after answering) and read the whole
/// answer.
async fn forward(req: &[u8], upstream: SocketAddr) -> std::io::Result<Vec<u8>> {
    let mut up = TcpStream::connect(upstream).await?;
    let head_end = find(req, b"\r\n\r\n").map_or(req.len(), |p| p + 2);
    let head = String::from_utf8_lossy(&req[..head_end]);
    let mut out = String::new();
    for line in head.split("\r\n").filter(|l| !l.is_empty()) {
        if !line.to_ascii_lowercase().starts_with("connection:") {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    up.write_all(out.as_bytes()).await?;
    up.write_all(&req[(head_end + 2).min(req.len())..]).await?;
    let mut resp = Vec::new();
    up.read_to_end(&mut resp).await?;
    Ok(resp)
}

fn error_response(status: &str, code: &str, message: &str) -> Vec<u8> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>fault-proxy</RequestId></Error>"
    );
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Close with an RST: SO_LINGER 0 (deprecated in tokio because a non-zero linger blocks
/// on drop; zero does not).
#[allow(deprecated)]
fn reset(conn: TcpStream) {
    let _ = conn.set_linger(Some(Duration::ZERO));
    drop(conn);
}

async fn handle(mut conn: TcpStream, sh: Arc<Shared>, nth: u64) -> std::io::Result<()> {
    let req = read_request(&mut conn).await?;
    let st = &sh.stats;
    let line_end = find(&req, b"\r\n").unwrap_or(req.len());
    let first = String::from_utf8_lossy(&req[..line_end]).into_owned();
    lock(&st.lines).push(first.clone());
    let log = || lock(&st.forwarded_lines).push(first.clone());
    let action = if sh.cfg.fail_nth.contains(&nth) {
        Action::InternalError
    } else {
        sh.decide()
    };
    let answer = match action {
        Action::SlowDown => {
            st.slow_down.fetch_add(1, Ordering::Relaxed);
            error_response(
                "503 Slow Down",
                "SlowDown",
                "Please reduce your request rate.",
            )
        }
        Action::InternalError => {
            st.internal_error.fetch_add(1, Ordering::Relaxed);
            error_response(
                "500 Internal Server Error",
                "InternalError",
                "We encountered an internal error. Please try again.",
            )
        }
        Action::Reset => {
            st.reset.fetch_add(1, Ordering::Relaxed);
            reset(conn);
            return Ok(());
        }
        Action::LostAnswer if sh.token() => {
            log();
            forward(&req, sh.upstream).await?;
            st.lost_answer.fetch_add(1, Ordering::Relaxed);
            reset(conn);
            return Ok(());
        }
        Action::Forward if sh.token() => {
            log();
            st.forwarded.fetch_add(1, Ordering::Relaxed);
            forward(&req, sh.upstream).await?
        }
        Action::Forward | Action::LostAnswer => {
            st.rate_limited.fetch_add(1, Ordering::Relaxed);
            error_response(
                "503 Slow Down",
                "SlowDown",
                "Please reduce your request rate.",
            )
        }
    };
    conn.write_all(&answer).await?;
    conn.shutdown().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// An upstream that answers every connection `200 OK` (one request each).
    fn upstream() -> SocketAddr {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(mut c) = c else { return };
                let mut buf = [0u8; 4096];
                let _ = c.read(&mut buf);
                let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
            }
        });
        addr
    }

    fn get(proxy: &FaultProxy, path: &str) -> String {
        let mut c = std::net::TcpStream::connect(proxy.addr).unwrap();
        write!(c, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut s = String::new();
        let _ = c.read_to_string(&mut s);
        s
    }

    #[test]
    fn a_rate_limited_proxy_answers_slow_down_above_the_rate_and_logs_every_request() {
        let up = upstream();
        let cfg = FaultConfig {
            rate_limit: Some(1.0),
            burst: Some(3.0),
            ..FaultConfig::default()
        };
        let proxy = FaultProxy::start(&format!("http://{up}"), cfg);
        let answers: Vec<String> = (0..10).map(|i| get(&proxy, &format!("/b/k{i}"))).collect();
        let ok = answers
            .iter()
            .filter(|a| a.starts_with("HTTP/1.1 200"))
            .count();
        let slow = answers
            .iter()
            .filter(|a| a.contains("<Code>SlowDown</Code>"))
            .count();
        // The burst of 3 (and at most one more token refilled meanwhile) goes through.
        assert!((3..=4).contains(&ok), "{ok} forwarded: {answers:?}");
        assert_eq!(ok + slow, 10);
        assert_eq!(proxy.stats.get(&proxy.stats.rate_limited), slow as u64);
        let lines = proxy.request_lines();
        assert_eq!(lines.len(), 10);
        assert_eq!(lines[0], "GET /b/k0 HTTP/1.1");
        assert_eq!(lines[9], "GET /b/k9 HTTP/1.1");
    }

    #[test]
    fn an_upstream_that_is_not_ip_and_port_is_an_error_not_a_panic() {
        let e = FaultProxy::try_start("http://localhost:x", FaultConfig::default());
        assert!(e.is_err());
    }
}
