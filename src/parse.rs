//! `perfpipe parse`: the perfdata reader seen from outside.
//!
//! Reads stdin in large chunks and cuts them into lines without copying; each line is one
//! perfdata string. Normal mode writes one JSON object a line (READING.md's schema; numbers are
//! printed shortest-round-trip, so they parse back to the same `f64`). `--summary` reads the
//! same way but only counts, so the reader's own speed can be measured from outside.
//!
//! A line that is not valid UTF-8 is answered with an error at the offset of its first bad byte
//! and no metrics; the lines around it are read as usual. Nothing here stops on bad input.

use std::io::{self, BufWriter, Read, Write};
use std::time::Instant;

use anyhow::Context;
use perfpipe_perfdata::Reader;
use serde::Serialize;

/// Bytes read from stdin at a time; lines are cut from each chunk in place.
const CHUNK_BYTES: usize = 8 << 20;

/// What `--summary` prints.
#[derive(Debug, Default, Serialize)]
struct Summary {
    lines: u64,
    metrics: u64,
    errors: u64,
    bytes: u64,
    seconds: f64,
    /// Throughput in decimal megabytes (10^6 bytes) per second, over the whole run.
    mb_per_s: f64,
}

/// The answer for a line that is not UTF-8, in the output schema.
#[derive(Serialize)]
struct InvalidLine {
    metrics: [(); 0],
    errors: [InvalidUtf8; 1],
}

#[derive(Serialize)]
struct InvalidUtf8 {
    offset: usize,
    message: &'static str,
}

/// What is done with each line: counted only, or answered with JSON as well.
trait LineSink {
    fn line(&mut self, text: &str, totals: &mut Summary) -> io::Result<()>;
    fn invalid_line(&mut self, valid_up_to: usize, totals: &mut Summary) -> io::Result<()>;
}

struct Counter;

impl LineSink for Counter {
    fn line(&mut self, text: &str, totals: &mut Summary) -> io::Result<()> {
        for item in Reader::new(text) {
            match item {
                Ok(_) => totals.metrics += 1,
                Err(_) => totals.errors += 1,
            }
        }
        Ok(())
    }

    fn invalid_line(&mut self, _valid_up_to: usize, totals: &mut Summary) -> io::Result<()> {
        totals.errors += 1;
        Ok(())
    }
}

struct JsonLines<W: Write>(W);

impl<W: Write> LineSink for JsonLines<W> {
    fn line(&mut self, text: &str, totals: &mut Summary) -> io::Result<()> {
        let read = perfpipe_perfdata::read(text);
        totals.metrics += read.metrics.len() as u64;
        totals.errors += read.errors.len() as u64;
        serde_json::to_writer(&mut self.0, &read)?;
        self.0.write_all(b"\n")
    }

    fn invalid_line(&mut self, valid_up_to: usize, totals: &mut Summary) -> io::Result<()> {
        totals.errors += 1;
        let invalid = InvalidLine {
            metrics: [],
            errors: [InvalidUtf8 {
                offset: valid_up_to,
                message: "invalid UTF-8",
            }],
        };
        serde_json::to_writer(&mut self.0, &invalid)?;
        self.0.write_all(b"\n")
    }
}

pub fn run(summary: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let stdin = io::stdin();
    let mut totals = Summary::default();
    if summary {
        read_lines(stdin.lock(), &mut Counter, &mut totals)?;
        totals.seconds = started.elapsed().as_secs_f64();
        totals.mb_per_s = totals.bytes as f64 / 1e6 / totals.seconds;
        println!("{}", serde_json::to_string(&totals)?);
    } else {
        let stdout = io::stdout();
        let mut sink = JsonLines(BufWriter::with_capacity(1 << 16, stdout.lock()));
        read_lines(stdin.lock(), &mut sink, &mut totals)?;
        sink.0.flush().context("writing stdout")?;
    }
    Ok(())
}

/// Feeds every line of `input` to `sink`. A final line without a newline is a line; a final
/// newline does not start one.
fn read_lines(
    mut input: impl Read,
    sink: &mut impl LineSink,
    totals: &mut Summary,
) -> anyhow::Result<()> {
    let mut buffer = vec![0u8; CHUNK_BYTES];
    let mut filled = 0;
    loop {
        if filled == buffer.len() {
            buffer.resize(buffer.len() * 2, 0); // a line longer than the buffer
        }
        let read = match input.read(&mut buffer[filled..]) {
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error).context("reading stdin"),
        };
        totals.bytes += read as u64;
        let at_end = read == 0;
        filled += read;
        let complete = if at_end {
            filled
        } else {
            match memchr::memrchr(b'\n', &buffer[..filled]) {
                Some(last_newline) => last_newline + 1,
                None => continue,
            }
        };
        read_chunk(&buffer[..complete], sink, totals).context("writing stdout")?;
        buffer.copy_within(complete..filled, 0);
        filled -= complete;
        if at_end {
            return Ok(());
        }
    }
}

/// Feeds the lines of a chunk that ends at a line end (or at the end of input) to `sink`.
/// The chunk is checked as UTF-8 once; only a chunk that fails is checked line by line.
fn read_chunk(chunk: &[u8], sink: &mut impl LineSink, totals: &mut Summary) -> io::Result<()> {
    let mut line_start = 0;
    let text = std::str::from_utf8(chunk).ok();
    let mut each_line = |start: usize, end: usize| -> io::Result<()> {
        totals.lines += 1;
        match text {
            // `start..end` lies between newlines, which are char boundaries.
            Some(text) => sink.line(&text[start..end], totals),
            None => match std::str::from_utf8(&chunk[start..end]) {
                Ok(line) => sink.line(line, totals),
                Err(error) => sink.invalid_line(error.valid_up_to(), totals),
            },
        }
    };
    for newline in memchr::memchr_iter(b'\n', chunk) {
        each_line(line_start, newline)?;
        line_start = newline + 1;
    }
    if line_start < chunk.len() {
        each_line(line_start, chunk.len())?;
    }
    Ok(())
}
