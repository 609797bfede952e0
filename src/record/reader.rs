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
