//! Progress bars for `kiln build` on a terminal: one indicatif bar per long step (download,
//! conversion, compaction, upload) with bytes, rate and ETA. Without a terminal, or with
//! `CI=true`, there are no bars and the plain percentage lines are printed instead.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::build::event::{Event, Unit};

/// Whether bars are drawn: standard error is a terminal and `CI` is not `true`.
pub fn bars_wanted() -> bool {
    std::io::stderr().is_terminal() && !std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The bar of the running step, if it reports progress.
pub struct Bars {
    enabled: bool,
    names: Vec<String>,
    current: Option<(usize, ProgressBar)>,
}

impl Bars {
    /// Bars drawn on standard error when `enabled`; otherwise every call is a no-op.
    pub fn new(enabled: bool) -> Bars {
        Bars {
            enabled,
            names: Vec::new(),
            current: None,
        }
    }

    /// Whether bars are drawn (and plain progress lines are then left out).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Follows `event`: starts, moves or clears the bar.
    pub fn update(&mut self, event: &Event) {
        if !self.enabled {
            return;
        }
        match event {
            Event::BuildStarted { steps, .. } => self.names = steps.clone(),
            Event::Progress {
                index,
                done,
                total: Some(total),
                unit,
            } if *total > 0 => {
                let bar = self.bar(*index, *unit);
                bar.set_length(*total);
                bar.set_position(*done);
            }
            Event::StepFinished { .. } | Event::BuildFinished { .. } => self.clear(),
            _ => {}
        }
    }

    /// Runs `print` with the bar hidden, so a line never tears through it.
    pub fn suspend<R>(&self, print: impl FnOnce() -> R) -> R {
        match &self.current {
            Some((_, bar)) => bar.suspend(print),
            None => print(),
        }
    }

    fn bar(&mut self, index: usize, unit: Unit) -> &ProgressBar {
        if self.current.as_ref().is_some_and(|(i, _)| *i != index) {
            self.clear();
        }
        let name = self.names.get(index).cloned().unwrap_or_default();
        &self
            .current
            .get_or_insert_with(|| (index, new_bar(name, unit)))
            .1
    }

    fn clear(&mut self) {
        if let Some((_, bar)) = self.current.take() {
            bar.finish_and_clear();
        }
    }
}

fn new_bar(name: String, unit: Unit) -> ProgressBar {
    let template = match unit {
        Unit::Bytes => "    {msg:<12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        Unit::Items => "    {msg:<12} [{bar:30}] {pos}/{len}",
    };
    let style = ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
        .with_style(style)
        .with_message(name);
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}

impl Drop for Bars {
    fn drop(&mut self) {
        self.clear();
    }
}
