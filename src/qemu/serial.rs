//! The VM's serial console: qemu connects to a socket kiln listens on; every line goes to
//! the build's `serial.log` (raw) and out as a console event (without terminal escapes), and
//! the last lines are kept for error messages.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::task::JoinHandle;

use crate::base::event::{Event, EventSink};

/// How many console lines are kept for error messages.
pub const TAIL_LINES: usize = 200;

/// A listening serial console; dropping it stops listening.
pub struct SerialConsole {
    tail: Arc<Mutex<VecDeque<String>>>,
    task: JoinHandle<()>,
}

impl Drop for SerialConsole {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Removes ANSI/VT100 escape sequences (colours, cursor moves) and other control characters
/// except tabs.
pub fn strip_terminal_escapes(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            match chars.peek() {
                Some('[') => {
                    chars.next();
                    // CSI: parameters and intermediates, then one final byte in @..~.
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                Some(_) => {
                    chars.next();
                }
                None => {}
            }
        } else if !c.is_control() || c == '\t' {
            out.push(c);
        }
    }
    out
}

impl SerialConsole {
    /// Listens on `socket` (removed first if stale) and appends to `log`.
    pub fn listen(socket: &Path, log: &Path, events: EventSink) -> std::io::Result<SerialConsole> {
        let _ = std::fs::remove_file(socket);
        let listener = UnixListener::bind(socket)?;
        let log_path = log.to_path_buf();
        let tail: Arc<Mutex<VecDeque<String>>> = Arc::default();
        let task_tail = tail.clone();
        let task = tokio::spawn(async move {
            let Ok(mut log) = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .await
            else {
                events.send(Event::Warning(format!(
                    "cannot write the serial log {}",
                    log_path.display()
                )));
                return;
            };
            // One connection per qemu start; a restarted VM connects again.
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut pending: Vec<u8> = Vec::new();
                let mut buf = vec![0u8; 8192];
                loop {
                    let n = match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    pending.extend_from_slice(&buf[..n]);
                    while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                        let raw: Vec<u8> = pending.drain(..=end).collect();
                        let (logged, line) = prepare(&events, &raw);
                        // tokio's File buffers: flush so the line is on disk before the
                        // event announces it.
                        let _ = log.write_all(logged.as_bytes()).await;
                        let _ = log.flush().await;
                        publish(&events, &task_tail, line);
                    }
                }
                if !pending.is_empty() {
                    let (logged, line) = prepare(&events, &pending);
                    let _ = log.write_all(logged.as_bytes()).await;
                    let _ = log.flush().await;
                    publish(&events, &task_tail, line);
                }
                let _ = log.flush().await;
            }
        });
        Ok(SerialConsole { tail, task })
    }

    /// The last `n` console lines (oldest first).
    pub fn tail(&self, n: usize) -> Vec<String> {
        let tail = self.tail.lock().map(|t| t.clone()).unwrap_or_default();
        let skip = tail.len().saturating_sub(n);
        tail.into_iter().skip(skip).collect()
    }
}

/// What one console line becomes: the text for `serial.log` (as the guest wrote it,
/// terminal escapes included, secrets masked) and the line for events (escapes removed).
/// The log is written before the event is sent, so whoever sees the event finds the line
/// in the log.
fn prepare(events: &EventSink, raw: &[u8]) -> (String, String) {
    let logged = events.redactor().redact(&String::from_utf8_lossy(raw));
    let line = strip_terminal_escapes(logged.trim_end_matches(['\n', '\r']));
    (logged, line)
}

/// Keeps `line` in the tail and sends it as a console event.
fn publish(events: &EventSink, tail: &Mutex<VecDeque<String>>, line: String) {
    if let Ok(mut t) = tail.lock() {
        if t.len() == TAIL_LINES {
            t.pop_front();
        }
        t.push_back(line.clone());
    }
    events.send(Event::Console(line));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::redact::Redactor;
    use tokio::net::UnixStream;

    #[test]
    fn escapes_are_stripped() {
        assert_eq!(
            strip_terminal_escapes(
                "[\u{1b}[0;32m  OK  \u{1b}[0m] Started \u{1b}[0;1;39mssh.service\u{1b}[0m\r"
            ),
            "[  OK  ] Started ssh.service"
        );
        assert_eq!(strip_terminal_escapes("a\tb\u{7}"), "a\tb");
    }

    #[tokio::test]
    async fn lines_reach_events_log_and_tail() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("serial.sock");
        let log = dir.path().join("serial.log");
        let redactor = Redactor::new();
        redactor.register("hunter2secret");
        let (sink, mut rx) = EventSink::channel(redactor);
        let console = SerialConsole::listen(&socket, &log, sink).unwrap();
        let mut guest = UnixStream::connect(&socket).await.unwrap();
        guest
            .write_all(b"Booting\r\n\x1b[32mOK\x1b[0m pass=hunter2secret\nlogin: ")
            .await
            .unwrap();
        drop(guest);
        let mut lines = Vec::new();
        while lines.len() < 3 {
            match tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv()).await {
                Ok(Some(Event::Console(l))) => lines.push(l),
                Ok(Some(_)) => {}
                other => panic!("no console line: {other:?}"),
            }
        }
        assert_eq!(lines, ["Booting", "OK pass=********", "login: "]);
        assert_eq!(console.tail(2), ["OK pass=********", "login: "]);
        drop(console);
        let raw = std::fs::read_to_string(&log).unwrap();
        assert_eq!(raw, "Booting\r\n\x1b[32mOK\x1b[0m pass=********\nlogin: ");
    }
}
