//! The built-in HTTP server of a build (Packer's `http_directory` / `http_content`): serves
//! files to the guest — a nocloud-net seed, a preseed or kickstart file — on a free port of
//! a range, reached from the guest through qemu's user network at 10.0.2.2.
//!
//! Deliberately small: `GET` and `HEAD`, one request per connection (`Connection: close`),
//! `Content-Length` always set, no directory listings (a directory serves its `index.html`
//! or 404), no path outside `http_directory` (`..` is refused and symbolic links that lead
//! out are not followed).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// The longest request head read (request line and headers).
const MAX_HEAD: usize = 16 * 1024;

/// How long a connection may take to send its request head.
const HEAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// What the server serves and where it listens.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// `http_directory`: files under it are served by their path relative to it.
    pub directory: Option<PathBuf>,
    /// The address to listen on (`http_bind_address`).
    pub bind: IpAddr,
    /// The lowest port to try (`http_port_min`).
    pub port_min: u16,
    /// The highest port to try (`http_port_max`).
    pub port_max: u16,
}

/// One answered request, for the build log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// The client's address.
    pub peer: SocketAddr,
    /// `GET`, `HEAD`, …
    pub method: String,
    /// The request target as sent.
    pub target: String,
    /// The status code sent.
    pub status: u16,
    /// The body length announced.
    pub length: u64,
}

impl std::fmt::Display for Served {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {} → {} ({} bytes)",
            self.peer.ip(),
            self.method,
            self.target,
            self.status,
            self.length
        )
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// No port of the range could be bound.
    #[error(
        "no free port between http_port_min {min} and http_port_max {max} on {bind}: widen the range or free a port"
    )]
    NoFreePort {
        /// The address.
        bind: IpAddr,
        /// Lowest port tried.
        min: u16,
        /// Highest port tried.
        max: u16,
    },
    /// `http_directory` is not a directory.
    #[error(
        "http_directory {0}: not a directory; give the directory whose files the guest fetches"
    )]
    NotADirectory(PathBuf),
    /// The listening socket failed.
    #[error("the HTTP server's socket: {0}")]
    Socket(#[source] std::io::Error),
    /// `http_directory` could not be resolved.
    #[error("http_directory {path}: {source}")]
    Directory {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// A running server; stopped by [`HttpServer::stop`] or when dropped.
pub struct HttpServer {
    addr: SocketAddr,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpServer")
            .field("addr", &self.addr)
            .finish()
    }
}

struct Site {
    root: Option<PathBuf>,
    content: BTreeMap<String, Vec<u8>>,
    log: Box<dyn Fn(Served) + Send + Sync>,
}

/// A bound port, not yet serving: its number is known, so content that names it can be
/// rendered before [`Bound::serve`] starts.
pub struct Bound {
    listener: TcpListener,
    root: Option<PathBuf>,
}

impl Bound {
    /// The port bound.
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Starts serving the directory and `content` (URL path such as `/user-data` or
    /// `user-data` → body); every answered request is passed to `log`.
    pub fn serve(
        self,
        content: BTreeMap<String, Vec<u8>>,
        log: impl Fn(Served) + Send + Sync + 'static,
    ) -> Result<HttpServer, ServeError> {
        let listener = self.listener;
        let addr = listener.local_addr().map_err(ServeError::Socket)?;
        let site = Arc::new(Site {
            root: self.root,
            content: content
                .into_iter()
                .map(|(k, v)| (normalize_key(&k), v))
                .collect(),
            log: Box::new(log),
        });
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    _ = stopped.cancelled() => break,
                    accepted = listener.accept() => {
                        if let Ok((stream, peer)) = accepted {
                            let site = site.clone();
                            connections.spawn(async move {
                                let _ = serve_one(stream, peer, &site).await;
                            });
                        }
                    }
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
            connections.abort_all();
        });
        Ok(HttpServer {
            addr,
            stop,
            task: Some(task),
        })
    }
}

impl HttpServer {
    /// Checks the directory and binds the first free port of the range.
    pub async fn bind(config: &ServeConfig) -> Result<Bound, ServeError> {
        let root = match &config.directory {
            Some(dir) => {
                let canonical =
                    std::fs::canonicalize(dir).map_err(|source| ServeError::Directory {
                        path: dir.clone(),
                        source,
                    })?;
                if !canonical.is_dir() {
                    return Err(ServeError::NotADirectory(dir.clone()));
                }
                Some(canonical)
            }
            None => None,
        };
        for port in config.port_min..=config.port_max {
            if let Ok(listener) = TcpListener::bind((config.bind, port)).await {
                return Ok(Bound { listener, root });
            }
        }
        Err(ServeError::NoFreePort {
            bind: config.bind,
            min: config.port_min,
            max: config.port_max,
        })
    }

    /// [`HttpServer::bind`], then [`Bound::serve`].
    pub async fn start(
        config: &ServeConfig,
        content: BTreeMap<String, Vec<u8>>,
        log: impl Fn(Served) + Send + Sync + 'static,
    ) -> Result<HttpServer, ServeError> {
        Self::bind(config).await?.serve(content, log)
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Stops listening and ends open connections; returns once the port is free.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// `http_content` keys are matched with one leading `/`.
fn normalize_key(key: &str) -> String {
    format!("/{}", key.trim_start_matches('/'))
}

/// Reads one request, answers it, closes.
async fn serve_one(mut stream: TcpStream, peer: SocketAddr, site: &Site) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 2048];
    let end = loop {
        if let Some(end) = find(&head, b"\r\n\r\n") {
            break end;
        }
        if head.len() > MAX_HEAD {
            return respond_error(&mut stream, peer, site, "?", "?", 431).await;
        }
        let n = match tokio::time::timeout(HEAD_TIMEOUT, stream.read(&mut buf)).await {
            Ok(read) => read?,
            // A client that sends no request is dropped.
            Err(_) => return Ok(()),
        };
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    };
    let text = String::from_utf8_lossy(&head[..end]);
    let line = text.lines().next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (method, target) = match (parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v)) if v.starts_with("HTTP/1.") => (m.to_string(), t.to_string()),
        _ => return respond_error(&mut stream, peer, site, "?", line, 400).await,
    };
    if method != "GET" && method != "HEAD" {
        return respond_error(&mut stream, peer, site, &method, &target, 405).await;
    }
    let head_only = method == "HEAD";
    let Some(path) = request_path(&target) else {
        return respond_error(&mut stream, peer, site, &method, &target, 400).await;
    };
    if let Some(body) = site.content.get(&path) {
        send(&mut stream, 200, body.len() as u64).await?;
        if !head_only {
            stream.write_all(body).await?;
        }
        (site.log)(Served {
            peer,
            method,
            target,
            status: 200,
            length: body.len() as u64,
        });
        return stream.shutdown().await;
    }
    let Some(root) = &site.root else {
        return respond_error(&mut stream, peer, site, &method, &target, 404).await;
    };
    let Some(file) = resolve(root, &path) else {
        return respond_error(&mut stream, peer, site, &method, &target, 404).await;
    };
    let mut f = match tokio::fs::File::open(&file).await {
        Ok(f) => f,
        Err(_) => return respond_error(&mut stream, peer, site, &method, &target, 404).await,
    };
    let length = f.metadata().await?.len();
    send(&mut stream, 200, length).await?;
    if !head_only {
        let copied = tokio::io::copy(&mut (&mut f).take(length), &mut stream).await?;
        if copied != length {
            // The file shrank while being sent: the client sees a short body and fails.
            return Err(std::io::Error::other("file changed while being served"));
        }
    }
    (site.log)(Served {
        peer,
        method,
        target,
        status: 200,
        length,
    });
    stream.shutdown().await
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The decoded path of a request target (`/a%20b?x=1` → `/a b`); None when it is not an
/// absolute path or decodes to something that is not UTF-8 or contains NUL.
fn request_path(target: &str) -> Option<String> {
    let raw = target.split(['?', '#']).next()?;
    if !raw.starts_with('/') {
        return None;
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let path = String::from_utf8(out).ok()?;
    (!path.contains('\0')).then_some(path)
}

/// The file under `root` that `path` names, or None when it does not exist, leaves `root`
/// (`..`, or a symbolic link pointing out) or is a directory without `index.html`.
fn resolve(root: &Path, path: &str) -> Option<PathBuf> {
    let mut candidate = root.to_path_buf();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return None,
            p if p.contains('\\') => return None,
            p => candidate.push(p),
        }
    }
    let mut real = std::fs::canonicalize(&candidate).ok()?;
    if !real.starts_with(root) {
        return None;
    }
    if real.is_dir() {
        real = std::fs::canonicalize(real.join("index.html")).ok()?;
        if !real.starts_with(root) {
            return None;
        }
    }
    real.is_file().then_some(real)
}

async fn send(stream: &mut TcpStream, status: u16, length: u64) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Error",
    };
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nServer: kiln\r\nContent-Length: {length}\r\nConnection: close\r\n"
    );
    if status == 200 {
        head.push_str("Content-Type: application/octet-stream\r\n");
    } else {
        head.push_str("Content-Type: text/plain; charset=utf-8\r\n");
    }
    if status == 405 {
        head.push_str("Allow: GET, HEAD\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await
}

async fn respond_error(
    stream: &mut TcpStream,
    peer: SocketAddr,
    site: &Site,
    method: &str,
    target: &str,
    status: u16,
) -> std::io::Result<()> {
    let body = format!("{status}\n");
    send(stream, status, body.len() as u64).await?;
    if method != "HEAD" {
        stream.write_all(body.as_bytes()).await?;
    }
    (site.log)(Served {
        peer,
        method: method.to_string(),
        target: target.to_string(),
        status,
        length: body.len() as u64,
    });
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_paths_are_decoded() {
        assert_eq!(request_path("/a%20b?x=1").as_deref(), Some("/a b"));
        assert_eq!(request_path("/%2e%2e/etc").as_deref(), Some("/../etc"));
        assert_eq!(request_path("http://x/").as_deref(), None);
        assert_eq!(request_path("/%zz").as_deref(), None);
        assert_eq!(request_path("/%00").as_deref(), None);
        assert_eq!(request_path("/%").as_deref(), None);
    }

    #[test]
    fn resolve_stays_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("www");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/f"), "x").unwrap();
        std::fs::write(dir.path().join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("link")).unwrap();
        let root = std::fs::canonicalize(&root).unwrap();
        assert_eq!(resolve(&root, "/sub/f"), Some(root.join("sub/f")));
        assert_eq!(resolve(&root, "/sub/../../secret"), None);
        assert_eq!(resolve(&root, "/../secret"), None);
        assert_eq!(resolve(&root, "/link"), None, "symlink out of the root");
        assert_eq!(resolve(&root, "/sub"), None, "no listing, no index.html");
        std::fs::write(root.join("sub/index.html"), "i").unwrap();
        assert_eq!(resolve(&root, "/sub/"), Some(root.join("sub/index.html")));
    }
}
