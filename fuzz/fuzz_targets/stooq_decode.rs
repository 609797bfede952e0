//! One stooq light-quote CSV body. A decoded quote always has a symbol and a
//! finite price, and no more rows come back than the decoder reads.
#![no_main]

use feedtop_proto::decode::stooq;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    if let Ok(snapshot) = stooq::decode(body) {
        assert!(snapshot.quotes.len() + snapshot.no_data.len() <= stooq::MAX_ROWS);
        for q in snapshot.quotes {
            assert!(!q.symbol.is_empty() && q.price.is_finite());
        }
    }
});
