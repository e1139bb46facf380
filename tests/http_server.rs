//! The build's HTTP server against real clients on 127.0.0.1: reqwest for ordinary requests,
//! raw TCP for what a polite client never sends (`..`, encoded dots, other methods, HEAD).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::sync::{Arc, Mutex};

use kiln::cloudinit::http::{HttpServer, ServeConfig, ServeError, Served};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn config(dir: Option<&Path>, min: u16, max: u16) -> ServeConfig {
    ServeConfig {
        directory: dir.map(Path::to_path_buf),
        bind: LOCALHOST,
        port_min: min,
        port_max: max,
    }
}

/// A port that is free now, with the next one free too.
fn free_pair() -> u16 {
    for _ in 0..100 {
        let a = TcpListener::bind((LOCALHOST, 0)).unwrap();
        let p = a.local_addr().unwrap().port();
        if p < u16::MAX && TcpListener::bind((LOCALHOST, p + 1)).is_ok() {
            return p;
        }
    }
    panic!("no two adjacent free ports");
}

/// Sends `request` as is and returns the whole response.
async fn raw(addr: SocketAddr, request: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

fn www() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("www");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(
        root.join("preseed.cfg"),
        "d-i debian-installer/locale string en_US\n",
    )
    .unwrap();
    std::fs::write(root.join("sub/a b.txt"), "spaced\n").unwrap();
    std::fs::write(dir.path().join("secret"), "outside the root\n").unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret"), root.join("escape")).unwrap();
    dir
}

#[tokio::test]
async fn serves_http_directory_with_length_and_head_and_logs_each_request() {
    let dir = www();
    let root = dir.path().join("www");
    let log: Arc<Mutex<Vec<Served>>> = Arc::default();
    let seen = log.clone();
    let server = HttpServer::start(
        &config(Some(&root), 8000, 9000),
        BTreeMap::new(),
        move |s| seen.lock().unwrap().push(s),
    )
    .await
    .unwrap();
    let base = format!("http://{}", server.addr());

    let response = reqwest::get(format!("{base}/preseed.cfg")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.content_length(), Some(41));
    assert_eq!(
        response.text().await.unwrap(),
        "d-i debian-installer/locale string en_US\n"
    );
    let spaced = reqwest::get(format!("{base}/sub/a%20b.txt?x=1"))
        .await
        .unwrap();
    assert_eq!(spaced.text().await.unwrap(), "spaced\n");

    let head = raw(
        server.addr(),
        "HEAD /preseed.cfg HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("Content-Length: 41\r\n"), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "HEAD has no body: {head:?}");

    let missing = reqwest::get(format!("{base}/nope")).await.unwrap();
    assert_eq!(missing.status(), 404);

    let entries = log.lock().unwrap().clone();
    let lines: Vec<String> = entries
        .iter()
        .map(|s| format!("{} {} {}", s.method, s.target, s.status))
        .collect();
    assert_eq!(
        lines,
        [
            "GET /preseed.cfg 200",
            "GET /sub/a%20b.txt?x=1 200",
            "HEAD /preseed.cfg 200",
            "GET /nope 404"
        ]
    );
    assert_eq!(entries[0].length, 41);
    assert_eq!(
        entries[0].to_string(),
        "127.0.0.1 GET /preseed.cfg → 200 (41 bytes)"
    );
    server.stop().await;
}

#[tokio::test]
async fn refuses_paths_outside_the_directory_listings_and_other_methods() {
    let dir = www();
    let root = dir.path().join("www");
    let server = HttpServer::start(&config(Some(&root), 8000, 9000), BTreeMap::new(), |_| {})
        .await
        .unwrap();
    let addr = server.addr();
    for target in [
        "/../secret",
        "/sub/../../secret",
        "/%2e%2e/secret",
        "/%2E%2E%2Fsecret",
        "/escape",
        "/sub",
        "/",
        "/sub/..%5c..%5csecret",
    ] {
        let response = raw(addr, &format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n")).await;
        assert!(
            response.starts_with("HTTP/1.1 404 "),
            "{target}: {response}"
        );
        assert!(!response.contains("outside the root"), "{target}");
    }
    let post = raw(
        addr,
        "POST /preseed.cfg HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
    assert!(post.contains("Allow: GET, HEAD\r\n"), "{post}");
    let garbage = raw(addr, "hello\r\n\r\n").await;
    assert!(garbage.starts_with("HTTP/1.1 400 "), "{garbage}");
    let absolute = raw(addr, "GET http://evil/preseed.cfg HTTP/1.1\r\n\r\n").await;
    assert!(absolute.starts_with("HTTP/1.1 400 "), "{absolute}");
    server.stop().await;
}

#[tokio::test]
async fn serves_http_content_by_path() {
    let content = BTreeMap::from([
        ("/user-data".to_string(), b"#cloud-config\n".to_vec()),
        ("meta-data".to_string(), b"instance-id: i-1\n".to_vec()),
    ]);
    let server = HttpServer::start(&config(None, 8000, 9000), content, |_| {})
        .await
        .unwrap();
    let base = format!("http://{}", server.addr());
    let user = reqwest::get(format!("{base}/user-data")).await.unwrap();
    assert_eq!(user.content_length(), Some(14));
    assert_eq!(user.text().await.unwrap(), "#cloud-config\n");
    let meta = reqwest::get(format!("{base}/meta-data")).await.unwrap();
    assert_eq!(meta.text().await.unwrap(), "instance-id: i-1\n");
    let other = reqwest::get(format!("{base}/vendor-data")).await.unwrap();
    assert_eq!(other.status(), 404);
    server.stop().await;
}

#[tokio::test]
async fn takes_the_first_free_port_of_the_range_and_frees_it_when_stopped() {
    let p = free_pair();
    let taken = TcpListener::bind((LOCALHOST, p)).unwrap();
    let err = HttpServer::start(&config(None, p, p), BTreeMap::new(), |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, ServeError::NoFreePort { .. }));
    assert_eq!(
        err.to_string(),
        format!(
            "no free port between http_port_min {p} and http_port_max {p} on 127.0.0.1: widen the range or free a port"
        )
    );
    let server = HttpServer::start(&config(None, p, p + 1), BTreeMap::new(), |_| {})
        .await
        .unwrap();
    assert_eq!(server.port(), p + 1, "the taken port is skipped");
    server.stop().await;
    drop(taken);
    TcpListener::bind((LOCALHOST, p + 1)).expect("the port is free once the server stopped");
}

#[tokio::test]
async fn a_missing_directory_is_an_error_naming_it() {
    let err = HttpServer::start(
        &config(Some(Path::new("/nonexistent/kiln-www")), 8000, 9000),
        BTreeMap::new(),
        |_| {},
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("http_directory /nonexistent/kiln-www: No such file"),
        "{err}"
    );
}
