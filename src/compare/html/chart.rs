//! One benchmark's chart as inline SVG, drawn with plotters' SVG backend: a bar per level
//! at the median with a min–max whisker and the value on top, an empty slot saying why for
//! a level that measured nothing, and each published value as a dashed reference line
//! labelled "literature: …".
//!
//! plotters lays the y axis out (nice ticks, grid); the bars, whiskers and labels are drawn
//! in pixels on the root area so the slots line up exactly with the level names under them.
//! plotters is built without a font library (`default-features = false`): its fallback
//! font only estimates text extents, which is all the SVG backend needs, since the browser
//! lays the `<text>` out. The SVG backend escapes every text and attribute it writes, so a
//! label from the report cannot close the `<svg>` or open a tag.

use std::error::Error;

use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::fmt_value;

/// The SVG's own size; the page scales it to the figure's width through its viewBox.
const WIDTH: u32 = 600;
const HEIGHT: u32 = 360;
/// Average advance of a 12–13 px sans-serif character, for fitting labels into slots.
const CHAR_PX: f64 = 6.6;

const INK: RGBColor = RGBColor(0x1f, 0x29, 0x37);
const MUTED: RGBColor = RGBColor(0x6b, 0x72, 0x80);
const AXIS: RGBColor = RGBColor(0x9c, 0xa3, 0xaf);
const GRID: RGBColor = RGBColor(0xe5, 0xe7, 0xeb);
const MISSING_FILL: RGBColor = RGBColor(0xf3, 0xf4, 0xf6);
const REFERENCE: RGBColor = RGBColor(0xb4, 0x53, 0x09);

/// Each level's colour, the same in every chart and in the tables beside them.
const LEVEL_COLOURS: [(&str, RGBColor); 4] = [
    ("process", RGBColor(0x25, 0x63, 0xeb)),
    ("container", RGBColor(0x0d, 0x94, 0x88)),
    ("vm", RGBColor(0x7c, 0x3a, 0xed)),
    ("vm+container", RGBColor(0xdb, 0x27, 0x77)),
];
const OTHER_LEVEL: RGBColor = RGBColor(0x47, 0x55, 0x69);

/// What to draw for one benchmark.
pub(super) struct ChartInput<'a> {
    pub unit: &'a str,
    /// One per level, in the report's level order.
    pub slots: Vec<Slot<'a>>,
    /// Published values in the row's unit.
    pub references: Vec<Reference<'a>>,
}

pub(super) struct Slot<'a> {
    pub level: &'a str,
    pub data: SlotData<'a>,
}

pub(super) enum SlotData<'a> {
    /// All finite, with `min <= median <= max`.
    Measured { median: f64, min: f64, max: f64 },
    /// Nothing measured, and why when known.
    Missing(Option<&'a str>),
}

pub(super) struct Reference<'a> {
    pub label: &'a str,
    pub value: f64,
}

pub(super) fn level_colour(level: &str) -> RGBColor {
    LEVEL_COLOURS
        .iter()
        .find(|(name, _)| *name == level)
        .map_or(OTHER_LEVEL, |&(_, colour)| colour)
}

/// The level's colour as CSS, e.g. `#2563eb`.
pub(super) fn level_colour_hex(level: &str) -> String {
    let RGBColor(r, g, b) = level_colour(level);
    format!("#{r:02x}{g:02x}{b:02x}")
}

/// The chart as an `<svg>` element.
pub(super) fn svg(input: &ChartInput) -> Result<String, String> {
    let mut out = String::new();
    draw(&mut out, input).map_err(|e| e.to_string())?;
    Ok(out)
}

/// A font of `px` CSS pixels (the SVG backend writes `size / 1.24` as the font-size).
fn font(px: f64) -> TextStyle<'static> {
    ("sans-serif", px * 1.24).into_font().color(&INK)
}

fn draw(out: &mut String, input: &ChartInput) -> Result<(), Box<dyn Error>> {
    let root = SVGBackend::with_string(out, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;

    let (bottom, top) = y_range(input);
    let slots = input.slots.len().max(1);
    let mut chart = ChartBuilder::on(&root)
        .margin_top(14)
        .margin_right(18)
        .margin_left(6)
        .margin_bottom(6)
        .x_label_area_size(34)
        .y_label_area_size(74)
        .build_cartesian_2d(0.0..slots as f64, bottom..top)?;
    let y_label = |v: &f64| fmt_value(*v);
    let mut mesh = chart.configure_mesh();
    mesh.disable_x_mesh()
        .x_labels(0)
        .y_labels(6)
        .y_label_formatter(&y_label)
        .bold_line_style(GRID)
        .light_line_style(TRANSPARENT)
        .axis_style(AXIS)
        .label_style(font(12.0).color(&MUTED))
        .axis_desc_style(font(12.0).color(&MUTED));
    if !input.unit.is_empty() {
        mesh.y_desc(input.unit);
    }
    mesh.draw()?;

    let (xs, ys) = chart.plotting_area().get_pixel_range();
    let y = |v: f64| chart.backend_coord(&(0.0, v)).1;
    let slot_w = f64::from(xs.end - xs.start) / slots as f64;
    let slot_chars = ((slot_w - 8.0) / CHAR_PX).max(4.0) as usize;

    // Drawn last, over the reference lines: (text, x, baseline).
    let mut value_labels = Vec::new();
    for (i, slot) in input.slots.iter().enumerate() {
        let cx = xs.start + (slot_w * (i as f64 + 0.5)).round() as i32;
        let half = (slot_w * 0.28).round() as i32;
        match slot.data {
            SlotData::Measured { median, min, max } => {
                let colour = level_colour(slot.level);
                let base = y(0.0_f64.clamp(bottom, top));
                root.draw(&Rectangle::new(
                    [(cx - half, y(median)), (cx + half, base)],
                    colour.filled(),
                ))?;
                let whisker = INK.stroke_width(2);
                root.draw(&PathElement::new([(cx, y(min)), (cx, y(max))], whisker))?;
                for v in [min, max] {
                    root.draw(&PathElement::new(
                        [(cx - half / 3, y(v)), (cx + half / 3, y(v))],
                        whisker,
                    ))?;
                }
                value_labels.push((fmt_value(median), cx, y(max) - 5));
            }
            SlotData::Missing(why) => {
                let inset = (slot_w * 0.06).round() as i32;
                let left = xs.start + (slot_w * i as f64).round() as i32 + inset;
                let right = xs.start + (slot_w * (i + 1) as f64).round() as i32 - inset;
                root.draw(&Rectangle::new(
                    [(left, ys.start + 6), (right, ys.end - 1)],
                    MISSING_FILL.filled(),
                ))?;
                let mid = (ys.start + ys.end) / 2;
                root.draw(&Text::new(
                    "not run",
                    (cx, mid - 10),
                    font(13.0)
                        .color(&MUTED)
                        .pos(Pos::new(HPos::Center, VPos::Bottom)),
                ))?;
                let lines = why.map_or_else(Vec::new, |why| wrap(why, slot_chars, 4));
                for (n, line) in lines.into_iter().enumerate() {
                    root.draw(&Text::new(
                        line,
                        (cx, mid + 14 * n as i32),
                        font(11.0)
                            .color(&MUTED)
                            .pos(Pos::new(HPos::Center, VPos::Top)),
                    ))?;
                }
            }
        }
        root.draw(&Text::new(
            shorten(slot.level, slot_chars),
            (cx, ys.end + 9),
            font(13.0).pos(Pos::new(HPos::Center, VPos::Top)),
        ))?;
    }

    let label_chars = (f64::from(xs.end - xs.start) / CHAR_PX * 0.9) as usize;
    let mut reference_labels = Vec::new();
    for (n, reference) in input.references.iter().enumerate() {
        let ry = y(reference.value);
        root.draw(&DashedPathElement::new(
            [(xs.start, ry), (xs.end, ry)],
            7,
            5,
            REFERENCE.stroke_width(2),
        ))?;
        let label = shorten(&format!("literature: {}", reference.label), label_chars);
        // Alternate sides so two nearby lines do not stack their labels.
        let (x, h) = match n % 2 {
            0 => (xs.end - 4, HPos::Right),
            _ => (xs.start + 6, HPos::Left),
        };
        reference_labels.push((label, x, ry - 5, h));
    }

    for (text, x, y) in value_labels {
        halo(&root, &text, x, y, HPos::Center, 13.0)?;
        root.draw(&Text::new(
            text,
            (x, y),
            font(13.0).pos(Pos::new(HPos::Center, VPos::Bottom)),
        ))?;
    }
    for (text, x, y, h) in reference_labels {
        halo(&root, &text, x, y, h, 12.0)?;
        root.draw(&Text::new(
            text,
            (x, y),
            font(12.0).color(&REFERENCE).pos(Pos::new(h, VPos::Bottom)),
        ))?;
    }

    root.present()?;
    Ok(())
}

/// A translucent white box behind a label whose baseline is at `y`, so lines under it do
/// not cross its text. The width is estimated; the browser lays the text out.
fn halo<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    text: &str,
    x: i32,
    y: i32,
    h: HPos,
    px: f64,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let w = (text.chars().count() as f64 * px * 0.5).round() as i32 + 6;
    let (left, right) = match h {
        HPos::Left => (x - 3, x + w - 3),
        HPos::Right => (x - w + 3, x + 3),
        HPos::Center => (x - w / 2, x + w / 2),
    };
    let top = y - (px * 1.05).round() as i32;
    area.draw(&Rectangle::new(
        [(left, top), (right, y + 2)],
        WHITE.mix(0.8).filled(),
    ))
}

/// The y axis: from zero (or below the lowest value if any is negative) to a little above
/// the highest whisker or reference, leaving room for the value labels.
fn y_range(input: &ChartInput) -> (f64, f64) {
    let values = input
        .slots
        .iter()
        .flat_map(|s| match s.data {
            SlotData::Measured { min, max, .. } => vec![min, max],
            SlotData::Missing(_) => vec![],
        })
        .chain(input.references.iter().map(|r| r.value))
        .filter(|v| v.is_finite());
    let (lo, hi) = values.fold((0.0_f64, 0.0_f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let span = if hi > lo { hi - lo } else { 1.0 };
    let bottom = if lo < 0.0 { lo - span * 0.05 } else { 0.0 };
    (bottom, hi + span * 0.14)
}

/// `text` cut to `max` characters, with an ellipsis when cut.
fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
    s.truncate(s.trim_end().len());
    s.push('…');
    s
}

/// `text` word-wrapped to lines of at most `width` characters, at most `max_lines` of
/// them, the last ending in an ellipsis when the text did not fit.
fn wrap(text: &str, width: usize, max_lines: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for word in text.split_whitespace() {
        let word = shorten(word, width);
        if current.is_empty() {
            current = word;
        } else if current.chars().count() + 1 + word.chars().count() <= width {
            current.push(' ');
            current.push_str(&word);
        } else {
            lines.push(std::mem::replace(&mut current, word));
        }
    }
    if !current.is_empty() {
        lines.push(current);
    }
    if lines.len() > max_lines {
        lines.truncate(max_lines);
        if let Some(last) = lines.last_mut() {
            let mut cut: String = last.chars().take(width.saturating_sub(1)).collect();
            cut.truncate(cut.trim_end_matches(['…', ' ']).len());
            cut.push('…');
            *last = cut;
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_keeps_lines_within_width_and_marks_the_cut() {
        let lines = wrap(
            "this host's KVM is PVM (a paravirtualised KVM), which cannot boot Linux guests",
            16,
            3,
        );
        assert_eq!(lines.len(), 3);
        assert!(lines.iter().all(|l| l.chars().count() <= 16), "{lines:?}");
        assert!(lines[2].ends_with('…'), "{lines:?}");
        assert_eq!(wrap("fits", 16, 3), vec!["fits"]);
    }

    #[test]
    fn shorten_cuts_with_an_ellipsis_only_when_needed() {
        assert_eq!(shorten("container", 9), "container");
        assert_eq!(shorten("vm+container", 6), "vm+co…");
    }

    #[test]
    fn y_range_covers_whiskers_and_references_with_headroom() {
        let input = ChartInput {
            unit: "ns",
            slots: vec![Slot {
                level: "process",
                data: SlotData::Measured {
                    median: 50.0,
                    min: 40.0,
                    max: 80.0,
                },
            }],
            references: vec![Reference {
                label: "paper",
                value: 100.0,
            }],
        };
        let (bottom, top) = y_range(&input);
        assert_eq!(bottom, 0.0);
        assert!(top > 100.0);
    }

    #[test]
    fn charts_with_one_level_or_none_still_draw() {
        for slots in [0, 1] {
            let input = ChartInput {
                unit: "",
                slots: (0..slots)
                    .map(|_| Slot {
                        level: "process",
                        data: SlotData::Missing(None),
                    })
                    .collect(),
                references: vec![],
            };
            assert!(svg(&input).unwrap().starts_with("<svg"));
        }
    }

    #[test]
    fn known_levels_have_their_own_colours() {
        assert_eq!(level_colour_hex("process"), "#2563eb");
        assert_eq!(level_colour_hex("something else"), "#475569");
    }
}
