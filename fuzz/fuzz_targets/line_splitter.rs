//! The Companies House path: bytes cut into reads → `LineSplitter` → each
//! line through `parse_event`. The first input byte picks the line limit and
//! the second how the rest is cut into reads. Checked: no panic, memory held
//! never above the limit, and the same lines however the bytes are cut.
#![no_main]

use feedtop_proto::ch::parse_event;
use feedtop_proto::lines::{Line, LineSplitter, DEFAULT_MAX_LINE};
use libfuzzer_sys::fuzz_target;

fn split(max: usize, chunks: &[&[u8]]) -> Vec<Line> {
    let mut splitter = LineSplitter::new(max);
    let mut out = Vec::new();
    for chunk in chunks {
        splitter.push(chunk, &mut out);
        assert!(splitter.pending() <= max);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let [limit, cut, rest @ ..] = data else { return };
    let max = match limit {
        0 => 0,
        255 => DEFAULT_MAX_LINE,
        n => usize::from(*n),
    };
    let step = usize::from(*cut).max(1);
    let chunks: Vec<&[u8]> = rest.chunks(step).collect();
    let whole = split(max, &[rest]);
    assert_eq!(split(max, &chunks), whole, "chunking changed the lines");
    for line in whole {
        if let Line::Data(bytes) = line {
            assert!(bytes.len() <= max);
            let _ = parse_event(bytes);
        }
    }
});
