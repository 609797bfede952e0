//! Micro-benchmarks of the per-event hot path: `cargo bench`.
//!
//! Timings are for comparison between versions on the same machine; no test
//! asserts on them. End-to-end figures come from `feedtop bench`.

use std::time::Duration;

use chrono::Utc;
use divan::{black_box, Bencher};
use feedtop::feeds::companies_house::parse_event;
use feedtop::feeds::lines::{Line, LineSplitter, DEFAULT_MAX_LINE};
use feedtop::feeds::{FeedInfo, FeedKind, FeedMsg, FeedMsgKind};
use feedtop::model::Model;
use feedtop::sim::company_gen::CompanyGen;

fn main() {
    divan::main();
}

/// Real-shaped company-profile lines (~1.4 KB each).
fn lines(n: usize) -> Vec<String> {
    let mut generator = CompanyGen::new(Some(7));
    (0..n).map(|_| generator.next_event(Utc::now())).collect()
}

#[divan::bench]
fn parse_one_event(bencher: Bencher) {
    let sample = lines(1000);
    let mut i = 0;
    bencher.bench_local(|| {
        i = (i + 1) % sample.len();
        black_box(parse_event(sample[i].as_bytes().to_vec()).ok())
    });
}

#[divan::bench]
fn split_64k_reads(bencher: Bencher) {
    let stream: Vec<u8> = lines(1000).join("\n").into_bytes();
    bencher.counter(divan::counter::BytesCount::new(stream.len())).bench_local(|| {
        let mut splitter = LineSplitter::new(DEFAULT_MAX_LINE);
        let mut out: Vec<Line> = Vec::new();
        for chunk in stream.chunks(64 * 1024) {
            splitter.push(chunk, &mut out);
        }
        black_box(out.len())
    });
}

#[divan::bench]
fn model_apply_event(bencher: Bencher) {
    let events: Vec<_> = lines(1000).into_iter().filter_map(|l| parse_event(l.into_bytes()).ok()).collect();
    let info = FeedInfo { name: "ch/companies".into(), kind: FeedKind::CompaniesHouse };
    let feed = info.name.clone();
    let mut model = Model::new(vec![info], Duration::from_secs(300), Utc::now());
    let mut facts = Vec::new();
    let mut i = 0;
    bencher.bench_local(|| {
        i = (i + 1) % events.len();
        let kind = FeedMsgKind::Event(Box::new(events[i].clone()));
        model.apply(FeedMsg { feed: feed.clone(), at: Utc::now(), kind }, &mut facts);
        facts.clear();
    });
}

#[divan::bench(args = [(80, 24), (200, 50)])]
fn draw_full_frame(bencher: Bencher, (w, h): (u16, u16)) {
    use ratatui::{backend::TestBackend, Terminal};
    let model = feedtop::bench::full_model();
    let theme = feedtop::ui::theme::Theme::new(true);
    let view = feedtop::ui::view::ViewState::new();
    let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
    bencher.bench_local(|| {
        terminal.draw(|f| feedtop::ui::draw(f, &model, &view, &theme)).unwrap();
    });
}
