//! A compact store of log lines: one string and the offsets where lines start, so a
//! million lines cost their bytes plus eight bytes each (not a `String` per line).

/// Append-only lines, optionally keeping only the newest `cap` of them.
#[derive(Debug, Clone, Default)]
pub struct LogBuffer {
    text: String,
    starts: Vec<usize>,
    /// Index of the first kept line in `starts` (older lines are dropped lazily).
    first: usize,
    cap: Option<usize>,
    /// Lines dropped from the front over the buffer's life (a capped buffer's oldest).
    dropped: usize,
}

impl LogBuffer {
    /// An unbounded buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// A buffer that keeps only the newest `cap` lines (the serial console).
    pub fn with_cap(cap: usize) -> Self {
        Self {
            cap: Some(cap.max(1)),
            ..Self::default()
        }
    }

    /// Appends one line (a trailing newline, if any, is dropped; inner ones split lines).
    pub fn push(&mut self, line: &str) {
        for part in line.trim_end_matches(['\n', '\r']).split('\n') {
            self.starts.push(self.text.len());
            self.text.push_str(part.trim_end_matches('\r'));
        }
        if let Some(cap) = self.cap
            && self.len() > cap
        {
            self.dropped += self.len() - cap;
            self.first = self.starts.len() - cap;
            // Compact once the dropped part is as large as the kept one.
            if self.first >= cap {
                let cut = self.starts[self.first];
                self.text.drain(..cut);
                self.starts.drain(..self.first);
                for s in &mut self.starts {
                    *s -= cut;
                }
                self.first = 0;
            }
        }
    }

    /// How many lines are kept.
    pub fn len(&self) -> usize {
        self.starts.len() - self.first
    }

    /// Whether there is no line.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Line `index` (0 is the oldest kept line).
    pub fn line(&self, index: usize) -> Option<&str> {
        let at = self.first + index;
        let start = *self.starts.get(at)?;
        let end = self.starts.get(at + 1).copied().unwrap_or(self.text.len());
        Some(&self.text[start..end])
    }

    /// How many lines were dropped from the front so far: line `i` is the buffer's
    /// `dropped() + i`-th line ever, which stays true as more are dropped.
    pub fn dropped(&self) -> usize {
        self.dropped
    }

    /// Every kept line, joined with newlines (Copy all).
    pub fn text(&self) -> String {
        let from = self
            .starts
            .get(self.first)
            .copied()
            .unwrap_or(self.text.len());
        let mut out = String::with_capacity(self.text.len() - from + self.len());
        for i in 0..self.len() {
            if i > 0 {
                out.push('\n');
            }
            out.push_str(self.line(i).unwrap_or_default());
        }
        out
    }

    /// The newest `n` lines, oldest first.
    pub fn tail(&self, n: usize) -> impl Iterator<Item = &str> {
        let from = self.len().saturating_sub(n);
        (from..self.len()).filter_map(|i| self.line(i))
    }

    /// Bytes held (text and offsets), for the memory measurement.
    pub fn heap_bytes(&self) -> usize {
        self.text.capacity() + self.starts.capacity() * std::mem::size_of::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_come_back_in_order() {
        let mut log = LogBuffer::new();
        log.push("one");
        log.push("two\n");
        log.push("three\r\nfour");
        assert_eq!(log.len(), 4);
        assert_eq!(log.line(0), Some("one"));
        assert_eq!(log.line(1), Some("two"));
        assert_eq!(log.line(2), Some("three"));
        assert_eq!(log.line(3), Some("four"));
        assert_eq!(log.line(4), None);
        assert_eq!(log.tail(2).collect::<Vec<_>>(), ["three", "four"]);
    }

    #[test]
    fn a_capped_buffer_keeps_the_newest_lines() {
        let mut log = LogBuffer::with_cap(3);
        for i in 0..10 {
            log.push(&format!("line {i}"));
        }
        assert_eq!(log.len(), 3);
        assert_eq!(
            (0..3).map(|i| log.line(i).unwrap()).collect::<Vec<_>>(),
            ["line 7", "line 8", "line 9"]
        );
        assert_eq!(log.dropped(), 7);
        assert_eq!(log.text(), "line 7\nline 8\nline 9");
        assert!(
            log.text.len() < 10 * 6,
            "old text is dropped: {}",
            log.text.len()
        );
    }

    #[test]
    fn empty_lines_are_lines() {
        let mut log = LogBuffer::new();
        log.push("");
        log.push("x");
        assert_eq!(log.len(), 2);
        assert_eq!(log.line(0), Some(""));
    }
}
