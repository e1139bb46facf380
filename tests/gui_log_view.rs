//! The output view with 1,000,000 lines: memory held by the lines, and the time of a frame
//! while scrolling (egui's layout and tessellation, measured in-process with egui_kittest; no
//! GPU upload). Prints the numbers; fails if the view lays out more than the visible rows, if
//! a frame with a million lines costs clearly more than one with ten thousand, or, in a release
//! build, if the 95th-percentile frame takes longer than 16 ms.

use std::time::{Duration, Instant};

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use kiln::gui::build_panel::log_view_ui;
use kiln::gui::log_buffer::LogBuffer;

const LINES: usize = 1_000_000;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_million_lines_scroll_within_a_frame_budget() {
    let rss_before = rss_kib();
    let log = make_log(LINES);
    let rss_after = rss_kib();
    let held = log.heap_bytes();
    println!(
        "1,000,000 lines: {:.1} MiB held by the buffer, process RSS grew {:.1} MiB",
        held as f64 / (1 << 20) as f64,
        (rss_after.saturating_sub(rss_before)) as f64 / 1024.0
    );
    assert!(held < 200 << 20, "the buffer holds {held} bytes");

    let frames = scroll_frames(log, true);
    let small = scroll_frames(make_log(10_000), false);
    let median = |f: &[Duration]| f[f.len() / 2];
    let p95 = frames[frames.len() * 95 / 100];
    println!(
        "frame while scrolling ({} build): 1,000,000 lines median {:?}, p95 {p95:?}, max {:?}; 10,000 lines median {:?}; RSS {:.1} MiB",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        median(&frames),
        frames.last().unwrap(),
        median(&small),
        rss_kib() as f64 / 1024.0
    );
    // Virtualised: a million lines cost about what ten thousand do (the machine's load varies,
    // so compare, rather than trust a fixed number in an unoptimised build).
    assert!(
        median(&frames) <= median(&small) * 3 + Duration::from_millis(5),
        "1,000,000 lines: median {:?}; 10,000 lines: {:?}",
        median(&frames),
        median(&small)
    );
    if !cfg!(debug_assertions) {
        assert!(
            p95 <= Duration::from_millis(16),
            "p95 frame {p95:?} over 16 ms"
        );
    }
}

fn make_log(lines: usize) -> LogBuffer {
    let mut log = LogBuffer::new();
    for i in 0..lines {
        log.push(&format!(
            "{i:>7} Setting up package-{} (1.{}.{}-2) ... unpacking and configuring",
            i % 997,
            i % 13,
            i % 7
        ));
    }
    log
}

/// Frame times (sorted) while scrolling up 60 pages and down 20: fresh rows every frame for
/// both sizes (10,000 lines are 250 pages), so the comparison is fair.
fn scroll_frames(log: LogBuffer, check_tail: bool) -> Vec<Duration> {
    let last = format!("{:>7} Setting up", log.len() - 1);
    let mut harness = Harness::builder()
        .with_size([1000.0, 700.0])
        .with_max_steps(10)
        .build_ui(move |ui| log_view_ui(ui, &log, "output"));
    harness.step();
    harness.step();
    // Follows the tail: the newest line is drawn; only the visible rows are laid out.
    harness.get_by_label_contains(&last);
    let drawn = harness.query_all_by_label_contains("Setting up").count();
    if check_tail {
        println!("rows laid out in a 700 pt view: {drawn}");
    }
    assert!(drawn > 10 && drawn < 100, "{drawn} rows laid out");
    harness.hover_at(egui::pos2(500.0, 350.0));
    let mut frames = Vec::new();
    for i in 0..80 {
        let delta = if i < 60 { 1.0 } else { -1.0 };
        harness.event(egui::Event::MouseWheel {
            unit: egui::MouseWheelUnit::Page,
            delta: egui::vec2(0.0, delta),
            phase: egui::TouchPhase::Move,
            source: egui::MouseWheelSource::Unknown,
            modifiers: egui::Modifiers::NONE,
        });
        let start = Instant::now();
        harness.step();
        frames.push(start.elapsed());
    }
    if check_tail {
        assert!(
            harness.query_by_label_contains(&last).is_none(),
            "scrolling up left the tail"
        );
    }
    frames.sort();
    frames
}

/// Searching a million lines: each frame searches for about 4 ms and the rest goes to the
/// next frames, so no frame waits for the whole log. Prints the time of the longest frame's
/// search and of the whole log; in a release build a frame's share must fit in 16 ms.
#[test]
fn searching_a_million_lines_costs_a_bounded_share_per_frame() {
    use kiln::gui::log_search::{LogSearch, SCAN_TIME_PER_FRAME};
    let log = make_log(LINES);
    // About one line in 997 matches, and only its package number does.
    let mut search = LogSearch::for_query("PACKAGE-996 ".to_lowercase());
    let mut frames = Vec::new();
    let whole = Instant::now();
    loop {
        let start = Instant::now();
        let more = search.update_within(&log, 1, SCAN_TIME_PER_FRAME);
        frames.push(start.elapsed());
        if !more {
            break;
        }
    }
    let whole = whole.elapsed();
    assert_eq!(search.count(), LINES / 997 + usize::from(LINES % 997 > 996));
    assert_eq!(search.current_row(&log), Some(996));
    frames.sort();
    let worst = *frames.last().unwrap();
    println!(
        "search of 1,000,000 lines ({} build): {} frames, worst frame's share {worst:?}, whole log {whole:?}, {} matches",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        frames.len(),
        search.count()
    );
    // Spread over frames, never all in one (a chunk is far smaller than the log).
    assert!(frames.len() > 1 || whole < SCAN_TIME_PER_FRAME * 2);
    // New lines are searched on their own, not the whole log again.
    let mut grown = log;
    grown.push("one more package-996 line");
    let start = Instant::now();
    assert!(!search.update_within(&grown, 1, SCAN_TIME_PER_FRAME));
    let one = start.elapsed();
    assert_eq!(search.count(), LINES / 997 + 1);
    println!("one new line searched in {one:?}");
    if !cfg!(debug_assertions) {
        assert!(
            worst <= Duration::from_millis(16),
            "a frame searched for {worst:?}, over a 16 ms frame"
        );
    }
}
