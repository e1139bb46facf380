//! Search in a log view: the lines that hold the query (case-insensitive unless the query has
//! a capital letter), found incrementally — a bounded number of lines per frame, and only the
//! new ones as the log grows — so typing into the search field stays smooth at a million
//! lines. Matches are kept as absolute line numbers, so a capped buffer (the serial console)
//! dropping its oldest lines does not shift them.

use super::log_buffer::LogBuffer;

/// Time a frame spends searching at most (a little more: it is checked every
/// [`SCAN_CHUNK`] lines); the rest is searched in the next frames.
pub const SCAN_TIME_PER_FRAME: std::time::Duration = std::time::Duration::from_millis(4);

/// Lines searched between two looks at the clock.
pub const SCAN_CHUNK: usize = 4096;

/// The search of one log view.
#[derive(Debug, Clone, Default)]
pub struct LogSearch {
    /// What the user typed.
    pub query: String,
    /// The query the matches are for, and the log they are in.
    searched: Option<(String, u64)>,
    /// Absolute numbers of the lines that match, ascending.
    matches: Vec<usize>,
    /// Absolute number of the next line to scan.
    scanned: usize,
    /// Index into `matches` of the current one.
    current: Option<usize>,
    /// The view should bring the current match into sight.
    pub reveal: bool,
}

impl LogSearch {
    /// A search for `query`, nothing scanned yet.
    pub fn for_query(query: impl Into<String>) -> Self {
        Self {
            query: query.into(),
            ..Self::default()
        }
    }

    /// Brings the matches up to date with `log` (identified by `log_key`: another build or
    /// another tab starts over); scans at most `budget` lines. Returns whether lines are left
    /// to scan (the caller asks for another frame).
    pub fn update(&mut self, log: &LogBuffer, log_key: u64, budget: usize) -> bool {
        if self.query.is_empty() {
            self.searched = None;
            self.matches.clear();
            self.current = None;
            return false;
        }
        let wanted = (self.query.clone(), log_key);
        if self.searched.as_ref() != Some(&wanted) {
            self.searched = Some(wanted);
            self.matches.clear();
            self.current = None;
            self.scanned = log.dropped();
        }
        let first = log.dropped();
        // Matches that the buffer dropped are gone.
        let gone = self.matches.partition_point(|m| *m < first);
        if gone > 0 {
            self.matches.drain(..gone);
            self.current = self.current.map(|c| c.saturating_sub(gone));
        }
        self.scanned = self.scanned.max(first);
        let end = first + log.len();
        let stop = end.min(self.scanned.saturating_add(budget));
        let exact = self.query.chars().any(char::is_uppercase);
        let finder = memchr::memmem::Finder::new(self.query.as_bytes());
        let needle = self.query.as_bytes();
        for absolute in self.scanned..stop {
            let line = log.line(absolute - first).unwrap_or_default().as_bytes();
            let found = if exact {
                finder.find(line).is_some()
            } else {
                contains_ignoring_ascii_case(line, needle)
            };
            if found {
                self.matches.push(absolute);
            }
        }
        self.scanned = stop;
        if self.current.is_none() && !self.matches.is_empty() {
            self.current = Some(0);
            self.reveal = true;
        }
        stop < end
    }

    /// Like [`update`](Self::update), searching chunks of [`SCAN_CHUNK`] lines until `time`
    /// has passed: a frame never waits for a whole long log.
    pub fn update_within(
        &mut self,
        log: &LogBuffer,
        log_key: u64,
        time: std::time::Duration,
    ) -> bool {
        let start = std::time::Instant::now();
        loop {
            let more = self.update(log, log_key, SCAN_CHUNK);
            if !more || start.elapsed() >= time {
                return more;
            }
        }
    }

    /// How many lines match so far.
    pub fn count(&self) -> usize {
        self.matches.len()
    }

    /// The current match's position among the matches (0-based), if any.
    pub fn current(&self) -> Option<usize> {
        self.current
    }

    /// The current match as a row of `log`.
    pub fn current_row(&self, log: &LogBuffer) -> Option<usize> {
        let absolute = self.matches.get(self.current?)?;
        absolute.checked_sub(log.dropped())
    }

    /// Whether row `row` of `log` matches.
    pub fn is_match(&self, log: &LogBuffer, row: usize) -> bool {
        self.matches.binary_search(&(row + log.dropped())).is_ok()
    }

    /// Moves to the next match (wrapping) and asks the view to show it.
    pub fn next(&mut self) {
        if !self.matches.is_empty() {
            self.current = Some(self.current.map_or(0, |c| (c + 1) % self.matches.len()));
            self.reveal = true;
        }
    }

    /// Moves to the previous match (wrapping) and asks the view to show it.
    pub fn previous(&mut self) {
        if !self.matches.is_empty() {
            let n = self.matches.len();
            self.current = Some(self.current.map_or(n - 1, |c| (c + n - 1) % n));
            self.reveal = true;
        }
    }
}

/// Whether `hay` contains `needle`, ASCII letters compared without case (no allocation):
/// `memchr` finds the candidates for the first byte in either case, then they are compared.
fn contains_ignoring_ascii_case(hay: &[u8], needle: &[u8]) -> bool {
    let Some(&first) = needle.first() else {
        return true;
    };
    let (lower, upper) = (first.to_ascii_lowercase(), first.to_ascii_uppercase());
    let mut from = 0;
    while let Some(i) = memchr::memchr2(lower, upper, &hay[from..]) {
        let start = from + i;
        match hay.get(start..start + needle.len()) {
            Some(window) if window.eq_ignore_ascii_case(needle) => return true,
            Some(_) => from = start + 1,
            None => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(lines: &[&str]) -> LogBuffer {
        let mut log = LogBuffer::new();
        for l in lines {
            log.push(l);
        }
        log
    }

    #[test]
    fn matches_are_found_without_case_unless_the_query_has_capitals() {
        let log = log(&["Error: disk full", "ok", "error again", "ERROR"]);
        let mut search = LogSearch {
            query: "error".into(),
            ..LogSearch::default()
        };
        assert!(!search.update(&log, 1, 100));
        assert_eq!(search.count(), 3);
        assert_eq!(search.current_row(&log), Some(0));
        search.query = "Error".into();
        search.update(&log, 1, 100);
        assert_eq!(search.count(), 1, "a capital letter makes it exact");
        assert!(search.is_match(&log, 0));
        assert!(!search.is_match(&log, 2));
    }

    #[test]
    fn next_and_previous_wrap_around() {
        let log = log(&["a x", "b", "c x", "d x"]);
        let mut search = LogSearch {
            query: "x".into(),
            ..LogSearch::default()
        };
        search.update(&log, 1, 100);
        assert_eq!(search.current_row(&log), Some(0));
        search.next();
        assert_eq!(search.current_row(&log), Some(2));
        search.next();
        search.next();
        assert_eq!(search.current_row(&log), Some(0), "wraps to the first");
        search.previous();
        assert_eq!(search.current_row(&log), Some(3), "wraps to the last");
        assert!(search.reveal);
    }

    #[test]
    fn a_long_log_is_scanned_a_slice_per_frame_and_new_lines_are_added() {
        let mut log = LogBuffer::new();
        for i in 0..1000 {
            log.push(&format!("line {i}"));
        }
        let mut search = LogSearch {
            query: "line 9".into(),
            ..LogSearch::default()
        };
        assert!(search.update(&log, 1, 400), "more to scan");
        assert_eq!(search.count(), 11, "9 and 90-99 in the first 400 lines");
        while search.update(&log, 1, 400) {}
        assert_eq!(search.count(), 111, "9, 90-99, 900-999");
        log.push("line 9 again");
        search.update(&log, 1, 400);
        assert_eq!(search.count(), 112, "only the new line was scanned");
        // Another log (another build or tab) starts over.
        let other = self::log(&["line 9"]);
        search.update(&other, 2, 400);
        assert_eq!(search.count(), 1);
    }

    #[test]
    fn a_capped_log_dropping_lines_keeps_the_matches_on_their_lines() {
        let mut log = LogBuffer::with_cap(4);
        for l in ["x0", "a", "x2", "b"] {
            log.push(l);
        }
        let mut search = LogSearch {
            query: "x".into(),
            ..LogSearch::default()
        };
        search.update(&log, 7, 100);
        assert_eq!(search.count(), 2);
        log.push("x4");
        log.push("c");
        search.update(&log, 7, 100);
        // "x0" and "a" fell off: x2 is row 0 now, x4 row 2.
        assert_eq!(search.count(), 2);
        assert!(search.is_match(&log, 0) && search.is_match(&log, 2));
        assert_eq!(search.current_row(&log), Some(0));
    }

    #[test]
    fn an_empty_query_matches_nothing() {
        let log = log(&["a"]);
        let mut search = LogSearch::default();
        assert!(!search.update(&log, 1, 100));
        assert_eq!(search.count(), 0);
        assert_eq!(search.current_row(&log), None);
    }
}
