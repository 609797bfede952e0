//! `text/event-stream` bytes cut into reads → `SseParser` → each event through
//! `decode_event`. The first input byte picks the event limit and the second
//! how the rest is cut. Checked: no panic, the same items however the bytes
//! are cut, and event data within the limit (times three: U+FFFD).
#![no_main]

use feedtop_proto::decode::sse::{decode_event, SseItem, SseParser};
use libfuzzer_sys::fuzz_target;

fn parse(max: usize, chunks: &[&[u8]]) -> Vec<SseItem> {
    let mut parser = SseParser::new(max);
    let mut out = Vec::new();
    for chunk in chunks {
        parser.push(chunk, &mut out);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let [limit, cut, rest @ ..] = data else { return };
    let max = match limit {
        0 => 0,
        255 => 4 << 20,
        n => usize::from(*n),
    };
    let step = usize::from(*cut).max(1);
    let chunks: Vec<&[u8]> = rest.chunks(step).collect();
    let whole = parse(max, &[rest]);
    assert_eq!(parse(max, &chunks), whole, "chunking changed the events");
    for item in whole {
        if let SseItem::Event(event) = item {
            // Each received byte decodes to at most three (U+FFFD).
            assert!(event.data.len() <= 3 * max);
            let _ = decode_event(&event);
        }
    }
});
