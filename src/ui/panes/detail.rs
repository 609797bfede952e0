//! The detail overlay: what a pane has no room for, over the panes between
//! the header and the footer (which stay). Each kind of detail is a list of
//! lines wrapped to the overlay's width (so nothing is cut with `…`), and the
//! overlay scrolls like the help: the view owns the scroll, this bounds it
//! and reports the lengths back for the next key.

use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Padding, Paragraph};
use ratatui::Frame;

use super::{company_detail, detail_feed, info, price_chart};
use crate::model::Model;
use crate::sanitize::for_terminal;
use crate::ui::theme::Theme;
use crate::ui::view::{Detail, Loaded, ViewState};

/// `text` in rows of at most `width` characters, broken at spaces where it
/// can and inside a word only when the word alone is wider. Never empty: an
/// empty text is one empty row.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut rows = Vec::new();
    let mut row = String::new();
    let mut row_len = 0;
    for word in text.split(' ') {
        let mut word: Vec<char> = word.chars().collect();
        // A word that does not fit after the row's text starts the next row.
        if row_len > 0 && row_len + 1 + word.len() > width {
            rows.push(std::mem::take(&mut row));
            row_len = 0;
        } else if row_len > 0 {
            row.push(' ');
            row_len += 1;
        }
        // Longer than a row: cut it across rows.
        while row_len + word.len() > width {
            let take = width - row_len;
            row.extend(word.drain(..take));
            rows.push(std::mem::take(&mut row));
            row_len = 0;
        }
        row_len += word.len();
        row.extend(word);
    }
    rows.push(row);
    rows
}

/// A heading line.
pub fn heading(text: impl Into<String>, theme: &Theme) -> Line<'static> {
    Line::styled(text.into(), theme.title)
}

/// `label  value`, the label in a column `label_width` wide and the value
/// wrapped beside it, continuation rows under the value. Feed text goes
/// through the sanitiser here, so callers pass it as it came.
pub fn field(
    out: &mut Vec<Line<'static>>,
    label: &str,
    label_width: usize,
    value: &str,
    value_style: Style,
    width: usize,
    theme: &Theme,
) {
    let room = width.saturating_sub(label_width + 1).max(1);
    for (i, row) in wrap(&for_terminal(value), room).into_iter().enumerate() {
        let label = if i == 0 { label } else { "" };
        let pad = " ".repeat(label_width.saturating_sub(label.chars().count()) + 1);
        out.push(Line::from(vec![
            Span::styled(label.to_string(), theme.dim),
            Span::raw(pad),
            Span::styled(row, value_style),
        ]));
    }
}

/// A paragraph of wrapped text, indented by `indent` columns.
pub fn paragraph(out: &mut Vec<Line<'static>>, text: &str, style: Style, indent: usize, width: usize) {
    let room = width.saturating_sub(indent).max(1);
    for row in wrap(&for_terminal(text), room) {
        out.push(Line::from(vec![Span::raw(" ".repeat(indent)), Span::styled(row, style)]));
    }
}

/// The title and the lines of `detail` at `width` columns.
fn content(
    detail: &Detail,
    model: &Model,
    view: &ViewState,
    width: usize,
    theme: &Theme,
) -> (String, Vec<Line<'static>>) {
    match detail {
        Detail::Feed(id) => match model.feed_index(id) {
            Some(i) => (
                format!(" Feed {} ", for_terminal(id)),
                detail_feed::lines(&model.feeds[i], model.now, &view.clock, width, theme),
            ),
            None => {
                (" Feed ".into(), vec![Line::styled(format!("{} is not configured", for_terminal(id)), theme.warn)])
            }
        },
        Detail::Company(number) => {
            let lines = match loaded(detail, view) {
                Some(Loaded::Company { detail: Some(company), officers, officers_fetched }) => {
                    let mut lines = company_detail::lines(company, &view.clock, theme);
                    lines.push(Line::default());
                    lines.extend(company_detail::officer_lines(
                        officers,
                        officers_fetched.as_deref(),
                        &view.clock,
                        theme,
                    ));
                    lines
                }
                Some(Loaded::Company { detail: None, .. }) => {
                    vec![Line::styled(format!("nothing is stored about {}", for_terminal(number)), theme.dim)]
                }
                Some(Loaded::Failed(why)) => failed(why, width, theme),
                Some(Loaded::NoDatabase) => no_database("history of this company", width, theme),
                _ => vec![Line::styled("reading the company's stored history…", theme.dim)],
            };
            (format!(" Company {} ", for_terminal(number)), lines)
        }
        // The chart itself is drawn by `render`; these are the lines when there is none.
        Detail::Ticker { feed, symbol } => {
            let lines = match loaded(detail, view) {
                Some(Loaded::Failed(why)) => failed(why, width, theme),
                Some(Loaded::NoDatabase) => no_database("price history", width, theme),
                _ => vec![Line::styled("reading the price history…", theme.dim)],
            };
            (format!(" {} {} {} ", for_terminal(symbol), theme.glyphs.dot, for_terminal(feed)), lines)
        }
        Detail::Info => (" In force ".into(), info::lines(view.run_info.as_ref(), model, &view.clock, width, theme)),
    }
}

/// The stored data of `detail`, when what the view holds is for it.
fn loaded<'a>(detail: &Detail, view: &'a ViewState) -> Option<&'a Loaded> {
    view.detail_data.as_ref().filter(|(shown, _)| shown == detail).map(|(_, loaded)| loaded)
}

fn failed(why: &str, width: usize, theme: &Theme) -> Vec<Line<'static>> {
    let mut out = Vec::new();
    paragraph(&mut out, &format!("the database could not be read: {why}"), theme.warn, 0, width);
    out
}

fn no_database(what: &str, width: usize, theme: &Theme) -> Vec<Line<'static>> {
    let mut out = Vec::new();
    let text = format!(
        "this viewer keeps no database, so it has no {what} to show: \
         start it with --db PATH to keep what it receives"
    );
    paragraph(&mut out, &text, theme.dim, 0, width);
    out
}

/// Draws the open detail into `area` from the view's scroll (bounded here
/// too: the terminal may have grown) and records its lengths in the view.
pub fn render(frame: &mut Frame, area: Rect, model: &Model, view: &ViewState, theme: &Theme) {
    let Some(detail) = &view.detail else { return };
    // Borders (2) and a space of padding each side.
    let width = usize::from(area.width.saturating_sub(4));
    let (title, lines) = content(detail, model, view, width, theme);
    let shown = usize::from(area.height.saturating_sub(2));
    let first = view.detail_scroll.min(lines.len().saturating_sub(shown));
    let below = first + shown < lines.len();
    view.detail_lines.set(lines.len());
    view.detail_rows_shown.set(shown);
    let hint = match (first > 0, below) {
        (false, false) => " Enter / Esc closes ".to_string(),
        (up, down) => {
            let arrows = [(up, "↑"), (down, "↓")].iter().filter(|a| a.0).map(|a| a.1).collect::<String>();
            format!(" {arrows} more · j/k PgDn scroll · Esc closes ")
        }
    };
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.title)
        .padding(Padding::horizontal(1))
        .title(Line::styled(title, theme.title))
        .title_bottom(Line::styled(hint, theme.dim).centered());
    frame.render_widget(Clear, area);
    if let (Detail::Ticker { feed, symbol }, Some(Loaded::Prices(points))) = (detail, loaded(detail, view)) {
        // A chart fills the overlay and does not scroll.
        view.detail_lines.set(0);
        let inner = block.inner(area);
        frame.render_widget(block, area);
        price_chart::render(frame, inner, feed, symbol, points, &view.clock, theme);
        return;
    }
    let text: Vec<Line> = lines.into_iter().skip(first).take(shown).collect();
    frame.render_widget(Paragraph::new(text).block(block), area);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_keeps_every_character() {
        let cases: [(&str, usize, &[&str]); 6] = [
            ("HTTP 429: rate limited", 10, &["HTTP 429:", "rate", "limited"]),
            ("", 5, &[""]),
            ("abcdefghij", 4, &["abcd", "efgh", "ij"]),
            ("a abcdefgh", 4, &["a", "abcd", "efgh"]),
            ("ab  cd", 10, &["ab  cd"]),
            ("x", 0, &["x"]),
        ];
        for (text, width, want) in cases {
            assert_eq!(wrap(text, width), want, "{text:?} at {width}");
        }
    }
}
