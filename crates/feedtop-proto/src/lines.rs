//! Byte stream → lines.
//!
//! Companies House flushes one JSON object per `\n`-terminated line, but TCP
//! reads cut anywhere: an event may arrive in many chunks and a chunk may hold
//! many events. Blank lines are the server's keep-alives. A line longer than
//! the limit is dropped whole (counted) instead of growing the buffer forever.

/// One complete item out of the splitter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A non-blank line, without its `\n` or trailing `\r`.
    Data(Vec<u8>),
    /// An empty (or whitespace-only) line: a keep-alive.
    Blank,
    /// A line that exceeded the limit; its bytes were discarded.
    TooLong,
}

/// Incremental line splitter with a maximum line size.
#[derive(Debug)]
pub struct LineSplitter {
    buf: Vec<u8>,
    max_line: usize,
    /// True while skipping the rest of an over-long line.
    discarding: bool,
}

/// Default maximum line size: real company profiles are ~2 KB, so 4 MiB is
/// generous for legitimate data and still bounds memory.
pub const DEFAULT_MAX_LINE: usize = 4 * 1024 * 1024;

impl LineSplitter {
    pub fn new(max_line: usize) -> Self {
        Self { buf: Vec::new(), max_line, discarding: false }
    }

    /// Bytes held for an incomplete line.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Feeds one chunk; complete lines are appended to `out` in order.
    pub fn push(&mut self, mut chunk: &[u8], out: &mut Vec<Line>) {
        while !chunk.is_empty() {
            match memchr::memchr(b'\n', chunk) {
                Some(pos) => {
                    let (head, rest) = chunk.split_at(pos);
                    chunk = &rest[1..];
                    if self.discarding {
                        self.discarding = false;
                        continue;
                    }
                    if self.buf.len() + head.len() > self.max_line {
                        self.buf.clear();
                        out.push(Line::TooLong);
                        continue;
                    }
                    let line = if self.buf.is_empty() {
                        head.to_vec()
                    } else {
                        let mut l = std::mem::take(&mut self.buf);
                        l.extend_from_slice(head);
                        l
                    };
                    out.push(classify(line));
                }
                None => {
                    if !self.discarding {
                        if self.buf.len() + chunk.len() > self.max_line {
                            self.buf = Vec::new();
                            self.discarding = true;
                            out.push(Line::TooLong);
                        } else {
                            self.buf.extend_from_slice(chunk);
                        }
                    }
                    return;
                }
            }
        }
    }

    /// Forgets a partial line (used after a disconnect: a line cut mid-way is
    /// never completed by the next connection).
    pub fn reset(&mut self) -> bool {
        let had_partial = !self.buf.is_empty() || self.discarding;
        self.buf.clear();
        self.discarding = false;
        had_partial
    }
}

fn classify(mut line: Vec<u8>) -> Line {
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    if line.iter().all(|b| b.is_ascii_whitespace()) {
        Line::Blank
    } else {
        Line::Data(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_all(chunks: &[&[u8]], max: usize) -> Vec<Line> {
        let mut s = LineSplitter::new(max);
        let mut out = Vec::new();
        for c in chunks {
            s.push(c, &mut out);
        }
        out
    }

    fn data(s: &str) -> Line {
        Line::Data(s.as_bytes().to_vec())
    }

    #[test]
    fn event_split_across_reads_is_joined() {
        let out = split_all(&[b"{\"a\":", b"1", b"}\n{\"b\"", b":2}\n"], 100);
        assert_eq!(out, vec![data("{\"a\":1}"), data("{\"b\":2}")]);
    }

    #[test]
    fn many_events_in_one_read() {
        let out = split_all(&[b"x\ny\nz\n"], 100);
        assert_eq!(out, vec![data("x"), data("y"), data("z")]);
    }

    #[test]
    fn crlf_is_stripped_even_when_cr_and_lf_arrive_apart() {
        let out = split_all(&[b"abc\r", b"\nd\r\n"], 100);
        assert_eq!(out, vec![data("abc"), data("d")]);
    }

    #[test]
    fn blank_lines_are_keepalives() {
        let out = split_all(&[b"\n\r\n  \nq\n"], 100);
        assert_eq!(out, vec![Line::Blank, Line::Blank, Line::Blank, data("q")]);
    }

    #[test]
    fn incomplete_line_is_held_not_emitted() {
        let mut s = LineSplitter::new(100);
        let mut out = Vec::new();
        s.push(b"partial", &mut out);
        assert!(out.is_empty());
        assert_eq!(s.pending(), 7);
        assert!(s.reset());
        s.push(b"next\n", &mut out);
        assert_eq!(out, vec![data("next")]);
    }

    #[test]
    fn long_line_in_one_chunk_is_skipped_and_next_survives() {
        let out = split_all(&[b"0123456789ABC\nok\n"], 10);
        assert_eq!(out, vec![Line::TooLong, data("ok")]);
    }

    #[test]
    fn long_line_across_chunks_is_reported_once_and_skipped() {
        let out = split_all(&[b"01234", b"56789", b"ABCDE", b"FGH\nok\n"], 10);
        assert_eq!(out, vec![Line::TooLong, data("ok")]);
    }

    #[test]
    fn line_exactly_at_limit_is_kept() {
        let out = split_all(&[b"01234", b"56789\n"], 10);
        assert_eq!(out, vec![data("0123456789")]);
    }

    #[test]
    fn byte_at_a_time_drip() {
        let input = b"{\"k\":1}\r\n\n{\"k\":2}\n";
        let chunks: Vec<&[u8]> = input.chunks(1).collect();
        let out = split_all(&chunks, 100);
        assert_eq!(out, vec![data("{\"k\":1}"), Line::Blank, data("{\"k\":2}")]);
    }
}
