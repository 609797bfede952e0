//! One wig80 WebSocket text frame. A decoded quote always has a symbol and a
//! finite price.
#![no_main]

use feedtop_proto::decode::wig80;
use feedtop_proto::quote::Decoded;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(Decoded::Quotes(quotes)) = wig80::decode(text) {
        for q in quotes {
            assert!(!q.symbol.is_empty() && q.price.is_finite());
        }
    }
});
