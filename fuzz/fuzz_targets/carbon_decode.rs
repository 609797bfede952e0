//! One carbon WebSocket text frame (or SSE event data). A decoded quote
//! always has a symbol and a finite price.
#![no_main]

use feedtop_proto::decode::carbon;
use feedtop_proto::quote::Decoded;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(Decoded::Quotes(quotes)) = carbon::decode(text) {
        for q in quotes {
            assert!(!q.symbol.is_empty() && q.price.is_finite());
        }
    }
});
