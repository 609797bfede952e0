//! Reads a recording back: the header first (refused with one clear line
//! when it is not a recording or of another schema version), then messages
//! until the end, or until the first record that is cut or corrupt, which
//! is where a crash stopped the writer. What comes before it is intact.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use feedtop_proto::wire::{self, Record, RecordingHeader, WireError};
use feedtop_proto::FeedMsg;
use flate2::read::GzDecoder;

use super::RecordError;

/// The longest record read: far over any real message (a Companies House
/// line is a few KB), and a corrupt file cannot make a reader hold more.
const MAX_RECORD: u64 = 4 * 1024 * 1024;

/// Where and why reading stopped before the end of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop {
    /// The 1-based line of the first record not read (the header is line 1).
    pub line: u64,
    pub why: String,
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stopped at line {}: {}", self.line, self.why)
    }
}

pub struct Reader {
    input: Box<dyn BufRead + Send>,
    /// Lines read so far, the header included.
    line: u64,
    buf: Vec<u8>,
    done: bool,
}

impl Reader {
    /// Opens a recording and reads its header.
    pub fn open(path: &Path) -> Result<(RecordingHeader, Self), RecordError> {
        let file = File::open(path).map_err(|source| RecordError::Io { path: path.display().to_string(), source })?;
        let gz = GzDecoder::new(BufReader::new(file));
        Self::from_reader(Box::new(BufReader::new(gz)))
            .map_err(|why| RecordError::Format { path: path.display().to_string(), why })
    }

    /// Reads the header from an uncompressed stream of records.
    pub fn from_reader(input: Box<dyn BufRead + Send>) -> Result<(RecordingHeader, Self), String> {
        let mut reader = Self { input, line: 0, buf: Vec::new(), done: false };
        let not_one = "not a feedtop recording (record one with `feedtop record --to FILE`)";
        let header = match reader.next_record() {
            None => return Err(format!("{not_one}: it is empty")),
            Some(Err(stop)) if stop.why.contains("schema version") => return Err(stop.why),
            Some(Err(stop)) => return Err(format!("{not_one}: {}", stop.why)),
            Some(Ok(Record::Msg(_))) => return Err(format!("{not_one}: it does not start with a header")),
            Some(Ok(Record::Header(header))) => header,
        };
        Ok((header, reader))
    }

    /// Records read so far, the header included.
    pub fn lines_read(&self) -> u64 {
        self.line
    }

    fn next_record(&mut self) -> Option<Result<Record, Stop>> {
        if self.done {
            return None;
        }
        self.buf.clear();
        let read = (&mut self.input).take(MAX_RECORD + 1).read_until(b'\n', &mut self.buf);
        let line = self.line + 1;
        let stop = |why: String| Some(Err(Stop { line, why }));
        let result = match read {
            Ok(0) => {
                self.done = true;
                return None;
            }
            Err(e) => stop(format!("the file is cut or corrupt ({e})")),
            Ok(_) if self.buf.len() as u64 > MAX_RECORD => stop(format!("a record over {MAX_RECORD} bytes")),
            Ok(_) => match wire::decode_record(self.buf.strip_suffix(b"\n").unwrap_or(&self.buf)) {
                Ok(record) => {
                    self.line = line;
                    return Some(Ok(record));
                }
                Err(e @ WireError::Schema { .. }) => stop(e.to_string()),
                Err(WireError::Invalid(why)) => stop(format!("not a record ({why})")),
            },
        };
        self.done = true;
        result
    }
}

impl Iterator for Reader {
    type Item = Result<FeedMsg, Stop>;

    /// The next message; `Err` once, where the file stops being readable.
    fn next(&mut self) -> Option<Self::Item> {
        match self.next_record()? {
            Ok(Record::Msg(msg)) => Some(Ok(msg)),
            Ok(Record::Header(_)) => {
                self.done = true;
                Some(Err(Stop { line: self.line, why: "a second header: two recordings joined?".into() }))
            }
            Err(stop) => Some(Err(stop)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use feedtop_proto::{FeedKind, FeedMsgKind};

    fn header() -> String {
        let header = RecordingHeader {
            feeds: vec![feedtop_proto::FeedInfo::new("wig80", FeedKind::Sse)],
            started: Utc::now(),
            writer: "test".into(),
            strike_offs: false,
        };
        String::from_utf8(wire::encode_header(&header)).unwrap()
    }

    fn message() -> String {
        let msg = FeedMsg { feed: "wig80".into(), at: Utc::now(), kind: FeedMsgKind::KeepAlive };
        String::from_utf8(wire::encode(&msg)).unwrap()
    }

    fn read(text: String) -> Result<(usize, Option<Stop>), String> {
        let (_, reader) = Reader::from_reader(Box::new(std::io::Cursor::new(text.into_bytes())))?;
        let mut ok = 0;
        for item in reader {
            match item {
                Ok(_) => ok += 1,
                Err(stop) => return Ok((ok, Some(stop))),
            }
        }
        Ok((ok, None))
    }

    #[test]
    fn messages_are_read_to_the_end() {
        assert_eq!(read(format!("{}\n{}\n{}", header(), message(), message())), Ok((2, None)));
    }

    /// Each way a file goes bad stops the reading at that line, once, with
    /// what came before it read.
    #[test]
    fn reading_stops_at_the_first_bad_record_and_says_which() {
        let m = message();
        let cut = &m[..m.len() / 2];
        let newer = m.replacen("\"schema\":1", "\"schema\":2", 1);
        let cases = [
            (format!("{}\n{m}\n{cut}", header()), "not a record"),
            (format!("{}\n{m}\n{newer}\n{m}\n", header()), "schema version 2"),
            (format!("{}\n{m}\n{}\n", header(), header()), "a second header"),
            (format!("{}\n{m}\n{}\n", header(), "x".repeat(MAX_RECORD as usize + 10)), "a record over"),
        ];
        for (text, why) in cases {
            let (ok, stop) = read(text).unwrap();
            let stop = stop.unwrap_or_else(|| panic!("{why}: not stopped"));
            assert_eq!((ok, stop.line), (1, 3), "{why}");
            assert!(stop.why.contains(why), "{why}: {stop}");
        }
    }

    #[test]
    fn a_file_that_is_not_a_recording_is_refused() {
        for (text, why) in [
            (String::new(), "it is empty"),
            (message(), "does not start with a header"),
            ("hello".into(), "not a feedtop recording"),
            (header().replacen("\"schema\":1", "\"schema\":7", 1), "schema version 7"),
        ] {
            let e = read(text).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
    }
}
