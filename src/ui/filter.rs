//! The `/` filter, shared by the strike-off and ticker lists, and which
//! strike-off changes the pane shows in which order.
//!
//! What is typed is always a regular expression, matched case-insensitively
//! anywhere in a field (as k9s does), so a plain word still works as a
//! case-insensitive substring; a leading `!` keeps the rows that do *not*
//! match. A pattern that does not compile (`(` alone) filters nothing out
//! and the footer says why. Patterns are size-limited: one typed by mistake
//! cannot make every frame slow.
//!
//! The pane and the scroll bounds both use [`visible`], so they always agree
//! on the row count.

use regex::{Regex, RegexBuilder};

use crate::model::{ChangeKind, Model, StrikeOffChange};

/// The compiled program's size limit: far above any name search, far below
/// what would cost noticeable time per frame.
const REGEX_SIZE_LIMIT: usize = 1 << 18;

#[derive(Debug, Clone)]
enum Pattern {
    /// No filter: every row.
    All,
    Regex(Regex),
    /// Does not compile: every row, and the reason for the footer.
    Invalid(String),
}

/// A filter as typed, compiled once per frame or key press.
#[derive(Debug, Clone)]
pub struct Filter {
    text: String,
    inverse: bool,
    pattern: Pattern,
}

impl Filter {
    pub fn new(text: &str) -> Self {
        let text = text.trim();
        let (inverse, pattern) = match text.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let pattern = if pattern.is_empty() {
            Pattern::All
        } else {
            match RegexBuilder::new(pattern)
                .case_insensitive(true)
                .size_limit(REGEX_SIZE_LIMIT)
                .dfa_size_limit(REGEX_SIZE_LIMIT)
                .build()
            {
                Ok(re) => Pattern::Regex(re),
                Err(e) => Pattern::Invalid(reason(&e)),
            }
        };
        Self { text: text.to_string(), inverse, pattern }
    }

    /// What was typed (trimmed); empty when there is no filter.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Why the pattern filters nothing out, when it does not compile.
    pub fn error(&self) -> Option<&str> {
        match &self.pattern {
            Pattern::Invalid(why) => Some(why),
            _ => None,
        }
    }

    /// Whether a row with these fields is shown.
    pub fn matches<'a>(&self, fields: impl IntoIterator<Item = &'a str>) -> bool {
        match &self.pattern {
            Pattern::All | Pattern::Invalid(_) => true,
            Pattern::Regex(re) => fields.into_iter().any(|f| re.is_match(f)) != self.inverse,
        }
    }
}

impl From<&str> for Filter {
    fn from(text: &str) -> Self {
        Self::new(text)
    }
}

/// One line for the footer: the regex crate's message spans several lines
/// (the pattern, a caret, then `error: …`); the last one says what is wrong.
fn reason(e: &regex::Error) -> String {
    match e {
        regex::Error::CompiledTooBig(_) => "pattern too large".to_string(),
        e => {
            let text = e.to_string();
            let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("invalid pattern");
            last.trim().trim_start_matches("error: ").to_string()
        }
    }
}

/// Whether `change` is shown: any text field a user might type (number,
/// name, statuses, details, change kind).
pub fn matches(change: &StrikeOffChange, filter: &Filter) -> bool {
    let fields = [
        Some(change.company_number.as_str()),
        Some(change.company_name.as_str()),
        Some(change.to_status.as_str()),
        change.to_detail.as_deref(),
        change.from_status.as_deref(),
        change.from_detail.as_deref(),
        Some(change.kind.as_str()),
    ];
    filter.matches(fields.into_iter().flatten())
}

/// The strike-off list's orders (`s` cycles them while it has focus).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StrikeSort {
    /// Newest first, as they came.
    #[default]
    Time,
    /// By company name A to Z, then number.
    Company,
    /// Entered, withdrawn, struck off; newest first within each.
    Change,
}

impl StrikeSort {
    pub fn next(self) -> Self {
        match self {
            StrikeSort::Time => StrikeSort::Company,
            StrikeSort::Company => StrikeSort::Change,
            StrikeSort::Change => StrikeSort::Time,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            StrikeSort::Time => "time",
            StrikeSort::Company => "company",
            StrikeSort::Change => "change",
        }
    }
}

fn kind_rank(kind: ChangeKind) -> u8 {
    match kind {
        ChangeKind::Entered => 0,
        ChangeKind::Withdrawn => 1,
        ChangeKind::StruckOff => 2,
    }
}

/// The changes the pane shows, in the chosen order (`reversed`: upside down).
pub fn visible<'a>(model: &'a Model, filter: &Filter, sort: StrikeSort, reversed: bool) -> Vec<&'a StrikeOffChange> {
    // The model keeps them newest first, and the sorts are stable.
    let mut rows: Vec<&StrikeOffChange> = model.strike_offs.iter().filter(|c| matches(c, filter)).collect();
    match sort {
        StrikeSort::Time => {}
        StrikeSort::Company => {
            rows.sort_by_cached_key(|c| (c.company_name.to_lowercase(), c.company_number.clone()));
        }
        StrikeSort::Change => rows.sort_by_key(|c| kind_rank(c.kind)),
    }
    if reversed {
        rows.reverse();
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn change() -> StrikeOffChange {
        StrikeOffChange {
            kind: ChangeKind::StruckOff,
            company_number: "14829301".into(),
            company_name: "BRIGHTWELL CONSULTING LTD".into(),
            from_status: Some("active".into()),
            from_detail: Some("active-proposal-to-strike-off".into()),
            to_status: "dissolved".into(),
            to_detail: None,
            published_at: None,
            timepoint: 1,
            received_at: Utc::now(),
        }
    }

    #[test]
    fn a_plain_word_matches_any_field_ignoring_case() {
        let c = change();
        for text in ["", "1482", "brightwell", "Dissolved", "PROPOSAL", "struck", "active", "  well con  "] {
            assert!(matches(&c, &text.into()), "{text}");
        }
        for text in ["12007733", "withdrawn", "zzz"] {
            assert!(!matches(&c, &text.into()), "{text}");
        }
    }

    #[test]
    fn regex_inverse_and_invalid() {
        let c = change();
        assert!(matches(&c, &"^bright.*ltd$".into()));
        assert!(matches(&c, &"^1482\\d+$".into()));
        assert!(!matches(&c, &"^ltd".into()));
        assert!(matches(&c, &"withdrawn|struck".into()));
        // `!`: the rows that do not match.
        assert!(!matches(&c, &"!brightwell".into()));
        assert!(matches(&c, &"!withdrawn".into()));
        assert!(matches(&c, &"!".into()), "`!` alone filters nothing yet");
        // Invalid: nothing filtered out, and one line saying why.
        let bad = Filter::new("brightwell (");
        assert!(matches(&c, &bad));
        assert_eq!(bad.error(), Some("unclosed group"));
        assert!(Filter::new("!(").error().is_some());
        assert_eq!(Filter::new("a").error(), None);
        // A pattern whose program is huge is refused, not compiled.
        let huge = Filter::new(&"\\w{1000}".repeat(3));
        assert_eq!(huge.error(), Some("pattern too large"));
    }
}
