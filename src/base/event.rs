//! Events: what a running build tells its front ends (GUI panels, CLI bars, log files).

use std::time::Duration;

use tokio::sync::mpsc;

use super::redact::Redactor;

/// Which stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// A child's standard output (provisioner, qemu-img, …).
    Stdout,
    /// A child's standard error.
    Stderr,
    /// kiln's own messages.
    Kiln,
}

/// The unit of a progress count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Bytes (downloads, conversion, uploads).
    Bytes,
    /// Countable items (scripts, files).
    Items,
}

/// How a step or a build ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It did its job.
    Done,
    /// It was not needed (e.g. a cached download, `skip_compaction`).
    Skipped(String),
    /// It failed; the message says what happened and what to do.
    Failed(String),
    /// The user cancelled it.
    Cancelled,
}

/// One thing that happened during a build.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The build began; `steps` names every step in order.
    BuildStarted {
        /// The build's name.
        build: String,
        /// Step names, in order.
        steps: Vec<String>,
    },
    /// Step `index` started.
    StepStarted {
        /// Position in the step list.
        index: usize,
        /// Its name.
        name: String,
    },
    /// Step `index` ended.
    StepFinished {
        /// Position in the step list.
        index: usize,
        /// How it ended.
        outcome: Outcome,
        /// How long it took.
        duration: Duration,
    },
    /// Progress of the running step.
    Progress {
        /// Position in the step list.
        index: usize,
        /// Done so far.
        done: u64,
        /// Total, when known.
        total: Option<u64>,
        /// What is counted.
        unit: Unit,
    },
    /// A log line (already redacted).
    Log {
        /// The step that produced it, if any.
        index: Option<usize>,
        /// Where it came from.
        stream: Stream,
        /// The line, without its newline.
        line: String,
    },
    /// Step `index` (a `breakpoint`) is paused until the front end continues it
    /// (`Resume::resume`).
    Paused {
        /// Position in the step list.
        index: usize,
        /// The breakpoint's `note`.
        note: Option<String>,
    },
    /// A line of the VM's serial console (already redacted).
    Console(String),
    /// Something worth attention that does not stop the build.
    Warning(String),
    /// A cleanup ran after the steps (what it removed or stopped).
    CleanedUp(String),
    /// An image test (`kiln-test`) check ended.
    Check {
        /// The check's name (`cloud_init`, or the command or script of a user check).
        name: String,
        /// Whether it passed.
        passed: bool,
        /// What it found: a one-line summary (the output goes to the log).
        detail: String,
    },
    /// The build ended.
    BuildFinished {
        /// How it ended.
        outcome: Outcome,
        /// Total time.
        duration: Duration,
    },
}

/// Sends events, redacting secrets from every line first. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EventSink {
    tx: mpsc::UnboundedSender<Event>,
    redactor: Redactor,
}

impl EventSink {
    /// A sink and the receiver front ends read from.
    pub fn channel(redactor: Redactor) -> (Self, mpsc::UnboundedReceiver<Event>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self { tx, redactor }, rx)
    }

    /// The redactor this sink uses.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// Sends an event, redacting the text it carries. A closed receiver is not an error: the
    /// build goes on even if nobody watches.
    pub fn send(&self, event: Event) {
        let event = match event {
            Event::Log {
                index,
                stream,
                line,
            } => Event::Log {
                index,
                stream,
                line: self.redactor.redact(&line),
            },
            Event::Console(line) => Event::Console(self.redactor.redact(&line)),
            Event::Paused { index, note } => Event::Paused {
                index,
                note: note.map(|n| self.redactor.redact(&n)),
            },
            Event::Warning(m) => Event::Warning(self.redactor.redact(&m)),
            Event::CleanedUp(m) => Event::CleanedUp(self.redactor.redact(&m)),
            Event::Check {
                name,
                passed,
                detail,
            } => Event::Check {
                name: self.redactor.redact(&name),
                passed,
                detail: self.redactor.redact(&detail),
            },
            Event::StepFinished {
                index,
                outcome: Outcome::Failed(m),
                duration,
            } => Event::StepFinished {
                index,
                outcome: Outcome::Failed(self.redactor.redact(&m)),
                duration,
            },
            Event::BuildFinished {
                outcome: Outcome::Failed(m),
                duration,
            } => Event::BuildFinished {
                outcome: Outcome::Failed(self.redactor.redact(&m)),
                duration,
            },
            other => other,
        };
        let _ = self.tx.send(event);
    }

    /// Sends a kiln log line for step `index`.
    pub fn log(&self, index: Option<usize>, line: impl Into<String>) {
        self.send(Event::Log {
            index,
            stream: Stream::Kiln,
            line: line.into(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_text_is_redacted() {
        let redactor = Redactor::new();
        redactor.register("TOPSECRET");
        let (sink, mut rx) = EventSink::channel(redactor);
        sink.log(Some(0), "key=TOPSECRET");
        sink.send(Event::Console("login TOPSECRET".into()));
        sink.send(Event::Warning("w TOPSECRET".into()));
        sink.send(Event::StepFinished {
            index: 0,
            outcome: Outcome::Failed("bad TOPSECRET".into()),
            duration: Duration::ZERO,
        });
        drop(sink);
        let mut texts = Vec::new();
        while let Ok(e) = rx.try_recv() {
            texts.push(format!("{e:?}"));
        }
        assert_eq!(texts.len(), 4);
        for t in texts {
            assert!(!t.contains("TOPSECRET"), "{t}");
            assert!(t.contains("********"), "{t}");
        }
    }
}
