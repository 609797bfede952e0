//! The strike-off filter: a case-insensitive substring over every text field
//! a user might type (number, name, statuses, details, change kind). The pane
//! and the scroll bounds both use it, so they always agree on the row count.

use crate::model::{Model, StrikeOffChange};

/// Whether `change` matches `needle`, which must already be lower-case.
pub fn matches(change: &StrikeOffChange, needle: &str) -> bool {
    if needle.is_empty() {
        return true;
    }
    let fields = [
        Some(change.company_number.as_str()),
        Some(change.company_name.as_str()),
        Some(change.to_status.as_str()),
        change.to_detail.as_deref(),
        change.from_status.as_deref(),
        change.from_detail.as_deref(),
        Some(change.kind.as_str()),
    ];
    fields.into_iter().flatten().any(|f| f.to_lowercase().contains(needle))
}

/// The changes the pane shows, newest first.
pub fn visible<'a>(model: &'a Model, filter: &str) -> impl Iterator<Item = &'a StrikeOffChange> {
    let needle = filter.trim().to_lowercase();
    model.strike_offs.iter().filter(move |c| matches(c, &needle))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ChangeKind;
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
    fn matches_any_field_ignoring_case() {
        let c = change();
        for needle in ["", "1482", "brightwell", "dissolved", "proposal", "struck", "active"] {
            assert!(matches(&c, needle), "{needle}");
        }
        for needle in ["12007733", "withdrawn", "zzz"] {
            assert!(!matches(&c, needle), "{needle}");
        }
    }
}
