//! JSON and timestamps the way the Python servers feedtop watches write them
//! (`json.dumps` with `": "` and `", "`, `datetime.isoformat()`), so the
//! simulators' frames are byte-for-byte what the real ones send.

use std::io;

use chrono::{NaiveDateTime, Timelike};
use serde::Serialize;

/// Python's `datetime.isoformat()`: microseconds, which it leaves out when they are zero.
pub fn python_isoformat(t: NaiveDateTime) -> String {
    if t.nanosecond() / 1000 == 0 {
        t.format("%Y-%m-%dT%H:%M:%S").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
    }
}

// ---------------------------------------------------------------------------
// Shared with the carbon simulator: Python-style JSON and the WebSocket plumbing.
// ---------------------------------------------------------------------------

/// Serialises like Python's `json.dumps` with default arguments: `": "` and
/// `", "` separators, non-ASCII escaped as `\uXXXX`. Field order is the
/// struct's declaration order.
pub fn py_json<T: Serialize + ?Sized>(value: &T) -> String {
    let mut out = Vec::with_capacity(256);
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, PyFormatter);
    // Our frame types have string keys only, so this cannot fail.
    if let Err(e) = value.serialize(&mut serializer) {
        tracing::error!(target: "feedtop::sim", "sim frame did not serialise: {e}");
    }
    String::from_utf8(out).unwrap_or_default()
}

struct PyFormatter;

impl serde_json::ser::Formatter for PyFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(&mut self, writer: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + io::Write>(&mut self, writer: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + io::Write>(&mut self, writer: &mut W, fragment: &str) -> io::Result<()> {
        if fragment.is_ascii() {
            return writer.write_all(fragment.as_bytes());
        }
        for c in fragment.chars() {
            if c.is_ascii() {
                writer.write_all(&[c as u8])?;
            } else {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(writer, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}
