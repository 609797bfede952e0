//! Writes a recording: the header, then one record per feed message, on the
//! core loop's thread. Memory stays bounded (a fixed buffer in front of the
//! compressor, nothing queued); the stream is flushed about once a second,
//! so a crash loses at most that much, and finished (the gzip trailer) at
//! shutdown, so a clean exit loses nothing.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use feedtop_proto::wire::{self, RecordingHeader};
use feedtop_proto::{FeedInfo, FeedMsg};
use flate2::write::GzEncoder;
use flate2::Compression;

use super::RecordError;

/// How often what is buffered goes to the file.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// The buffer in front of the compressor.
const BUFFER: usize = 64 * 1024;

/// What a finished recording holds, for the exit message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSummary {
    pub path: PathBuf,
    pub messages: u64,
}

pub struct Recorder {
    path: PathBuf,
    out: Option<BufWriter<GzEncoder<File>>>,
    messages: u64,
    flushed: Instant,
    /// The first write error: recording stops there (the feeds do not), and
    /// the exit reports it.
    error: Option<String>,
}

impl Recorder {
    /// Creates (or replaces) `path` and writes the header.
    pub fn create(
        path: &Path,
        feeds: Vec<FeedInfo>,
        started: chrono::DateTime<chrono::Utc>,
    ) -> Result<Self, RecordError> {
        let io = |source| RecordError::Io { path: path.display().to_string(), source };
        let file = File::create(path).map_err(io)?;
        let mut out = BufWriter::with_capacity(BUFFER, GzEncoder::new(file, Compression::default()));
        let header = RecordingHeader {
            feeds,
            started,
            writer: format!("feedtop {}", env!("CARGO_PKG_VERSION")),
            strike_offs: true,
        };
        out.write_all(&wire::encode_header(&header)).and_then(|()| out.write_all(b"\n")).map_err(io)?;
        Ok(Self { path: path.to_path_buf(), out: Some(out), messages: 0, flushed: Instant::now(), error: None })
    }

    /// Appends one message.
    pub fn write(&mut self, msg: &FeedMsg) {
        let Some(out) = self.out.as_mut() else { return };
        let record = wire::encode(msg);
        match out.write_all(&record).and_then(|()| out.write_all(b"\n")) {
            Ok(()) => self.messages += 1,
            Err(e) => self.fail(e),
        }
    }

    /// Pushes what is buffered to the file if a second has passed, so a
    /// recording cut by a crash still replays up to about then.
    pub fn flush_if_due(&mut self) {
        if self.flushed.elapsed() < FLUSH_EVERY {
            return;
        }
        self.flushed = Instant::now();
        let Some(out) = self.out.as_mut() else { return };
        // The compressor's flush is a sync flush: everything so far becomes
        // decodable without ending the stream.
        if let Err(e) = out.flush().and_then(|()| out.get_mut().flush()) {
            self.fail(e);
        }
    }

    fn fail(&mut self, e: std::io::Error) {
        tracing::error!("recording {}: {e}; recording stopped after {} messages", self.path.display(), self.messages);
        self.error = Some(format!("recording {}: {e}", self.path.display()));
        self.out = None;
    }

    /// Ends the compressed stream and syncs the file.
    pub fn finish(mut self) -> Result<RecordSummary, String> {
        if let Some(out) = self.out.take() {
            let finished = out
                .into_inner()
                .map_err(|e| e.into_error())
                .and_then(|gz| gz.finish())
                .and_then(|file| file.sync_all());
            if let Err(e) = finished {
                self.error.get_or_insert(format!("recording {}: {e}", self.path.display()));
            }
        }
        match self.error {
            Some(e) => Err(e),
            None => Ok(RecordSummary { path: self.path, messages: self.messages }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use feedtop_proto::{FeedKind, FeedMsgKind};

    /// What is written comes back, the raw line of an event included, and
    /// the finished file is a whole gzip stream.
    #[test]
    fn a_finished_recording_reads_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.gz");
        let feeds = vec![FeedInfo::new("ch/companies", FeedKind::CompaniesHouse)];
        let mut rec = Recorder::create(&path, feeds.clone(), Utc::now()).unwrap();
        let line = r#"{"resource_kind":"company-profile","resource_id":"01234567","data":{"company_number":"01234567","company_name":"A LTD","company_status":"active"},"event":{"timepoint":5,"published_at":"2026-11-30T16:59:59","type":"changed"}}"#;
        let event = feedtop_proto::ch::parse_event(line.as_bytes().to_vec()).unwrap();
        let at = Utc::now();
        rec.write(&FeedMsg { feed: "ch/companies".into(), at, kind: FeedMsgKind::Event(Box::new(event)) });
        rec.write(&FeedMsg { feed: "ch/companies".into(), at, kind: FeedMsgKind::KeepAlive });
        let summary = rec.finish().unwrap();
        assert_eq!(summary.messages, 2);
        let (header, reader) = super::super::Reader::open(&path).unwrap();
        assert_eq!(header.feeds, feeds);
        let msgs: Vec<FeedMsg> = reader.map(Result::unwrap).collect();
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0].at, at);
        assert_eq!(msgs[0].kind.event().map(|e| e.raw.as_str()), Some(line));
    }

    #[test]
    fn a_file_that_cannot_be_created_is_one_line_naming_it() {
        let e = Recorder::create(Path::new("/nonexistent-dir/r.gz"), Vec::new(), Utc::now()).err().unwrap();
        assert!(e.to_string().starts_with("recording /nonexistent-dir/r.gz: "), "{e}");
    }
}
