//! A tiny HTTP/1.1 file server on 127.0.0.1 for the `image` module's tests.
//!
//! It serves byte buffers by path, answers `GET` and `HEAD`, honours `Range: bytes=N-` (with
//! `If-Range`) when told to, sends `ETag`/`Last-Modified` and answers `If-None-Match` with
//! `304`, can be told to cut the connection after N body bytes for the first K responses, can
//! send slowly, and records every request. One request per connection (`Connection: close`).

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// What a request asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `HEAD`, …
    pub method: String,
    /// The path, e.g. `/img/disk.qcow2`.
    pub path: String,
    /// Header names (lowercase) and values.
    pub headers: HashMap<String, String>,
}

impl Request {
    /// A header's value (name in lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// How the server behaves; change it at any time with [`ImageServer::configure`].
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Answer `Range` requests with `206` (else they get the whole file with `200`).
    pub ranges: bool,
    /// Cut the connection after this many body bytes …
    pub cut_after: Option<u64>,
    /// … for this many more responses.
    pub cuts_left: usize,
    /// Body chunk size.
    pub chunk: usize,
    /// Pause after each chunk.
    pub delay: Option<Duration>,
    /// `ETag` of every file (its value, quotes included).
    pub etag: Option<String>,
    /// `Last-Modified` of every file.
    pub last_modified: Option<String>,
    /// Send `Content-Length` (else the body ends when the connection closes).
    pub content_length: bool,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            ranges: true,
            cut_after: None,
            cuts_left: 0,
            chunk: 64 * 1024,
            delay: None,
            etag: None,
            last_modified: None,
            content_length: true,
        }
    }
}

#[derive(Default)]
struct State {
    files: HashMap<String, Arc<Vec<u8>>>,
    requests: Vec<Request>,
    behaviour: Behaviour,
}

/// The server; stops when dropped.
pub struct ImageServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl Drop for ImageServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ImageServer {
    /// Starts a server on a free port of 127.0.0.1.
    pub async fn start() -> ImageServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, shared.clone()));
            }
        });
        ImageServer { addr, state, task }
    }

    /// Serves `data` at `path` (starting with `/`).
    pub fn add(&self, path: &str, data: impl Into<Vec<u8>>) {
        self.state
            .lock()
            .unwrap()
            .files
            .insert(path.to_string(), Arc::new(data.into()));
    }

    /// The URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Changes the behaviour.
    pub fn configure(&self, change: impl FnOnce(&mut Behaviour)) {
        change(&mut self.state.lock().unwrap().behaviour);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().requests.clone()
    }

    /// How many requests so far.
    pub fn request_count(&self) -> usize {
        self.state.lock().unwrap().requests.len()
    }
}

async fn serve(mut stream: TcpStream, state: Arc<Mutex<State>>) {
    let Some(request) = read_request(&mut stream).await else {
        return;
    };
    let (file, behaviour, cut) = {
        let mut s = state.lock().unwrap();
        s.requests.push(request.clone());
        let file = s.files.get(&request.path).cloned();
        let cut = if s.behaviour.cuts_left > 0 && file.is_some() && request.method == "GET" {
            s.behaviour.cuts_left -= 1;
            s.behaviour.cut_after
        } else {
            None
        };
        (file, s.behaviour.clone(), cut)
    };
    let Some(file) = file else {
        let _ = stream
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found")
            .await;
        return;
    };
    let len = file.len() as u64;
    let mut head = String::new();
    let mut validators = String::new();
    if let Some(etag) = &behaviour.etag {
        validators.push_str(&format!("ETag: {etag}\r\n"));
    }
    if let Some(lm) = &behaviour.last_modified {
        validators.push_str(&format!("Last-Modified: {lm}\r\n"));
    }
    if behaviour.etag.is_some() && request.header("if-none-match") == behaviour.etag.as_deref() {
        head.push_str("HTTP/1.1 304 Not Modified\r\n");
        head.push_str(&validators);
        head.push_str("Connection: close\r\n\r\n");
        let _ = stream.write_all(head.as_bytes()).await;
        return;
    }
    let if_range_ok = match request.header("if-range") {
        None => true,
        Some(v) => {
            Some(v) == behaviour.etag.as_deref() || Some(v) == behaviour.last_modified.as_deref()
        }
    };
    let range_start = request
        .header("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<u64>().ok())
        .filter(|_| behaviour.ranges && if_range_ok);
    let start = match range_start {
        Some(start) if start >= len => {
            head.push_str(&format!(
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            ));
            let _ = stream.write_all(head.as_bytes()).await;
            return;
        }
        Some(start) => {
            head.push_str("HTTP/1.1 206 Partial Content\r\n");
            head.push_str(&format!(
                "Content-Range: bytes {start}-{}/{len}\r\n",
                len - 1
            ));
            start
        }
        None => {
            head.push_str("HTTP/1.1 200 OK\r\n");
            0
        }
    };
    if behaviour.content_length {
        head.push_str(&format!("Content-Length: {}\r\n", len - start));
    }
    if behaviour.ranges {
        head.push_str("Accept-Ranges: bytes\r\n");
    }
    head.push_str(&validators);
    head.push_str("Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n");
    if stream.write_all(head.as_bytes()).await.is_err() || request.method == "HEAD" {
        return;
    }
    let body = &file[start as usize..];
    let limit = cut.map_or(body.len(), |c| (c as usize).min(body.len()));
    for piece in body[..limit].chunks(behaviour.chunk.max(1)) {
        if stream.write_all(piece).await.is_err() {
            return;
        }
        if let Some(d) = behaviour.delay {
            tokio::time::sleep(d).await;
        }
    }
    let _ = stream.flush().await;
    let _ = stream.shutdown().await;
}

async fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut byte).await.ok()?;
        if n == 0 || buf.len() > 64 * 1024 {
            return None;
        }
        buf.extend_from_slice(&byte[..n]);
    }
    let text = String::from_utf8_lossy(&buf);
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let headers = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some(Request {
        method,
        path,
        headers,
    })
}
