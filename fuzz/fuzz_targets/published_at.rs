//! `published_at` as Companies House sends it (any string). A time it accepts
//! with a four-digit year prints back (RFC 3339) to a string it reads as the
//! same instant.
#![no_main]

use chrono::Datelike;
use feedtop_proto::time::parse_published_at;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Some(t) = parse_published_at(text) {
        if (0..=9999).contains(&t.year()) {
            let printed = t.to_rfc3339();
            assert_eq!(parse_published_at(&printed), Some(t), "{printed}");
        }
    }
});
