//! A QMP client: JSON commands over qemu's control socket, events on a broadcast channel.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::{broadcast, mpsc};

/// A QMP failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QmpError {
    /// The socket did not come up in time.
    #[error(
        "qemu's control socket {0} did not appear within {1:?}: qemu probably failed to start (see its output)"
    )]
    NotReady(String, Duration),
    /// The connection broke (qemu exited).
    #[error("qemu's control connection closed: {0}")]
    Closed(String),
    /// qemu answered with an error.
    #[error("qemu refused `{command}`: {message}")]
    Command {
        /// The command sent.
        command: String,
        /// qemu's description.
        message: String,
    },
    /// Something that is not QMP arrived.
    #[error("unexpected data on qemu's control socket: {0}")]
    Protocol(String),
}

/// A QMP event (`SHUTDOWN`, `STOP`, `RESET`, …).
#[derive(Debug, Clone, PartialEq)]
pub struct QmpEvent {
    /// The event name.
    pub name: String,
    /// Its data, if any.
    pub data: Value,
}

/// A connected QMP session in command mode.
pub struct Qmp {
    writer: OwnedWriteHalf,
    replies: mpsc::UnboundedReceiver<Value>,
    events: broadcast::Sender<QmpEvent>,
}

impl std::fmt::Debug for Qmp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Qmp")
    }
}

impl Qmp {
    /// Connects to `socket`, retrying until it appears or `timeout` passes, and enters
    /// command mode.
    pub async fn connect(socket: &Path, timeout: Duration) -> Result<Qmp, QmpError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let stream = loop {
            match UnixStream::connect(socket).await {
                Ok(s) => break s,
                Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(_) => {
                    return Err(QmpError::NotReady(socket.display().to_string(), timeout));
                }
            }
        };
        let (read, writer) = stream.into_split();
        let (reply_tx, replies) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(64);
        let event_tx = events.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(value) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if let Some(name) = value.get("event").and_then(Value::as_str) {
                    let _ = event_tx.send(QmpEvent {
                        name: name.to_string(),
                        data: value.get("data").cloned().unwrap_or(Value::Null),
                    });
                } else if reply_tx.send(value).is_err() {
                    break;
                }
            }
        });
        let mut qmp = Qmp {
            writer,
            replies,
            events,
        };
        let greeting = qmp
            .replies
            .recv()
            .await
            .ok_or_else(|| QmpError::Closed("before the greeting".into()))?;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Protocol(greeting.to_string()));
        }
        qmp.execute("qmp_capabilities", None).await?;
        Ok(qmp)
    }

    /// Subscribes to events from now on.
    pub fn events(&self) -> broadcast::Receiver<QmpEvent> {
        self.events.subscribe()
    }

    /// Runs one command and returns its `return` value.
    pub async fn execute(
        &mut self,
        command: &str,
        arguments: Option<Value>,
    ) -> Result<Value, QmpError> {
        let mut request = json!({ "execute": command });
        if let Some(arguments) = arguments {
            request["arguments"] = arguments;
        }
        let mut line = request.to_string();
        line.push('\n');
        self.writer
            .write_all(line.as_bytes())
            .await
            .map_err(|e| QmpError::Closed(e.to_string()))?;
        let reply = self
            .replies
            .recv()
            .await
            .ok_or_else(|| QmpError::Closed(format!("while waiting for `{command}`")))?;
        if let Some(value) = reply.get("return") {
            return Ok(value.clone());
        }
        if let Some(error) = reply.get("error") {
            return Err(QmpError::Command {
                command: command.to_string(),
                message: error
                    .get("desc")
                    .and_then(Value::as_str)
                    .unwrap_or("no description")
                    .to_string(),
            });
        }
        Err(QmpError::Protocol(reply.to_string()))
    }

    /// The VM's run state (`running`, `paused`, `internal-error`, `shutdown`, …).
    pub async fn status(&mut self) -> Result<String, QmpError> {
        let value = self.execute("query-status", None).await?;
        value
            .get("status")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| QmpError::Protocol(value.to_string()))
    }

    /// Presses the virtual power button (ACPI).
    pub async fn powerdown(&mut self) -> Result<(), QmpError> {
        self.execute("system_powerdown", None).await.map(|_| ())
    }

    /// Presses (`down`) or releases keys, in order, as one batch of keyboard events; each
    /// key is a QMP `QKeyCode` name (`a`, `shift`, `ret`).
    pub async fn key_events(&mut self, events: &[(&str, bool)]) -> Result<(), QmpError> {
        let events: Vec<Value> = events
            .iter()
            .map(|(key, down)| {
                json!({
                    "type": "key",
                    "data": { "down": down, "key": { "type": "qcode", "data": key } }
                })
            })
            .collect();
        self.execute("input-send-event", Some(json!({ "events": events })))
            .await
            .map(|_| ())
    }

    /// Stops qemu at once.
    pub async fn quit(&mut self) -> Result<(), QmpError> {
        match self.execute("quit", None).await {
            Ok(_) | Err(QmpError::Closed(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
