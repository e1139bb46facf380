//! The look of the window in one place: spacing, status colours, light and dark themes.

use egui::{Color32, Context, Theme};

/// Space between groups of widgets, in points.
pub const GAP: f32 = 8.0;
/// Width of the left sidebar, in points.
pub const SIDEBAR_WIDTH: f32 = 170.0;
/// How many console lines a failure card shows.
pub const ERROR_CARD_CONSOLE_LINES: usize = 12;

/// Colours with a meaning (state marks, error cards), chosen for the current theme.
#[derive(Debug, Clone, Copy)]
pub struct Palette {
    /// Done, fine.
    pub ok: Color32,
    /// Works with a limitation; skipped.
    pub warn: Color32,
    /// Failed.
    pub fail: Color32,
    /// Running now.
    pub running: Color32,
    /// Not started yet, secondary text.
    pub muted: Color32,
    /// Background of an error card.
    pub error_card: Color32,
    /// Background of a log line that matches the search.
    pub search_match: Color32,
    /// Background of the current search match.
    pub search_current: Color32,
}

/// The palette for a light or a dark theme.
pub fn palette(dark: bool) -> Palette {
    if dark {
        Palette {
            ok: Color32::from_rgb(0x6a, 0xc2, 0x6a),
            warn: Color32::from_rgb(0xe0, 0xb0, 0x40),
            fail: Color32::from_rgb(0xf0, 0x6a, 0x60),
            running: Color32::from_rgb(0x6a, 0xaa, 0xf0),
            muted: Color32::from_gray(0x90),
            error_card: Color32::from_rgb(0x4a, 0x1c, 0x1c),
            search_match: Color32::from_rgb(0x4a, 0x42, 0x14),
            search_current: Color32::from_rgb(0x8a, 0x6a, 0x10),
        }
    } else {
        Palette {
            ok: Color32::from_rgb(0x1e, 0x80, 0x2e),
            warn: Color32::from_rgb(0x9a, 0x66, 0x00),
            fail: Color32::from_rgb(0xc0, 0x20, 0x20),
            running: Color32::from_rgb(0x1a, 0x5f, 0xb4),
            muted: Color32::from_gray(0x70),
            error_card: Color32::from_rgb(0xfb, 0xe3, 0xe1),
            search_match: Color32::from_rgb(0xff, 0xf1, 0xa8),
            search_current: Color32::from_rgb(0xff, 0xc8, 0x40),
        }
    }
}

/// The palette for the theme `ctx` shows now.
pub fn current(ctx: &Context) -> Palette {
    palette(ctx.global_style().visuals.dark_mode)
}

/// Applies the light or the dark theme and kiln's spacing.
pub fn apply(ctx: &Context, dark: bool) {
    ctx.set_theme(if dark { Theme::Dark } else { Theme::Light });
    ctx.all_styles_mut(|style| {
        style.spacing.item_spacing = egui::vec2(GAP, GAP * 0.75);
        style.spacing.button_padding = egui::vec2(GAP, GAP * 0.5);
    });
}

/// Colours of the raw JSON view's syntax highlighting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyntaxColours {
    /// Object keys.
    pub key: Color32,
    /// String values.
    pub string: Color32,
    /// Numbers.
    pub number: Color32,
    /// `true`, `false`, `null`.
    pub literal: Color32,
    /// Brackets, braces, colons and commas.
    pub punct: Color32,
    /// What JSON does not allow (stray words, comments).
    pub invalid: Color32,
}

/// The syntax colours for a light or a dark theme.
pub fn syntax(dark: bool) -> SyntaxColours {
    let p = palette(dark);
    if dark {
        SyntaxColours {
            key: Color32::from_rgb(0x8c, 0xc8, 0xff),
            string: Color32::from_rgb(0xa8, 0xd8, 0x8c),
            number: Color32::from_rgb(0xf0, 0xa8, 0x6a),
            literal: Color32::from_rgb(0xd0, 0x98, 0xf0),
            punct: Color32::from_gray(0xb0),
            invalid: p.fail,
        }
    } else {
        SyntaxColours {
            key: Color32::from_rgb(0x1a, 0x4f, 0x9c),
            string: Color32::from_rgb(0x2a, 0x70, 0x1e),
            number: Color32::from_rgb(0xa0, 0x50, 0x00),
            literal: Color32::from_rgb(0x80, 0x30, 0xa0),
            punct: Color32::from_gray(0x50),
            invalid: p.fail,
        }
    }
}

/// The syntax colours for the theme `ctx` shows now.
pub fn current_syntax(ctx: &Context) -> SyntaxColours {
    syntax(ctx.global_style().visuals.dark_mode)
}
