//! The `?` overlay: every binding from the key table, so it is never out of date.

use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Padding, Row, Table};
use ratatui::Frame;

use crate::ui::keys::help_rows;
use crate::ui::theme::Theme;

pub fn render(frame: &mut Frame, area: Rect, theme: &Theme) {
    let rows = help_rows();
    let key_width = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0) as u16;
    let desc_width = rows.iter().map(|r| r.1.chars().count()).max().unwrap_or(0) as u16;
    // Borders (2) + one column gap + a space of padding each side.
    let width = (key_width + desc_width + 5).min(area.width);
    let height = (rows.len() as u16 + 2).min(area.height);
    let [popup] = Layout::horizontal([Constraint::Length(width)]).flex(Flex::Center).areas(area);
    let [popup] = Layout::vertical([Constraint::Length(height)]).flex(Flex::Center).areas(popup);

    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.title)
        .padding(Padding::horizontal(1))
        .title(Line::styled(" Keys ", theme.title))
        .title_bottom(Line::styled(" any key closes ", theme.dim).centered());
    let table_rows = rows.into_iter().map(|(keys, desc)| Row::new([Span::styled(keys, theme.key), Span::raw(desc)]));
    let table =
        Table::new(table_rows, [Constraint::Length(key_width), Constraint::Fill(1)]).column_spacing(1).block(block);
    frame.render_widget(Clear, popup);
    frame.render_widget(table, popup);
}
