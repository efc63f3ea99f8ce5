//! `perfpipe parse`: the perfdata reader seen from outside.
//!
//! Reads stdin in large chunks and splits it into lines without copying; each line is one
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

/// A line that is not UTF-8, in the output schema.
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

pub fn run(summary: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let stdin = io::stdin();
    let mut input = stdin.lock();
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut totals = Summary::default();

    let mut handle_line = |line: &[u8], totals: &mut Summary| -> io::Result<()> {
        totals.lines += 1;
        let text = match std::str::from_utf8(line) {
            Ok(text) => text,
            Err(error) => {
                totals.errors += 1;
                if !summary {
                    let invalid = InvalidLine {
                        metrics: [],
                        errors: [InvalidUtf8 {
                            offset: error.valid_up_to(),
                            message: "invalid UTF-8",
                        }],
                    };
                    serde_json::to_writer(&mut out, &invalid)?;
                    out.write_all(b"\n")?;
                }
                return Ok(());
            }
        };
        if summary {
            for item in Reader::new(text) {
                match item {
                    Ok(_) => totals.metrics += 1,
                    Err(_) => totals.errors += 1,
                }
            }
        } else {
            let read = perfpipe_perfdata::read(text);
            totals.metrics += read.metrics.len() as u64;
            totals.errors += read.errors.len() as u64;
            serde_json::to_writer(&mut out, &read)?;
            out.write_all(b"\n")?;
        }
        Ok(())
    };

    let mut buffer = vec![0u8; CHUNK_BYTES];
    let mut filled = 0;
    loop {
        if filled == buffer.len() {
            buffer.resize(buffer.len() * 2, 0); // a line longer than the buffer
        }
        let read = input
            .read(&mut buffer[filled..])
            .context("reading stdin")?;
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
        let mut rest = &buffer[..complete];
        while !rest.is_empty() {
            let (line, next) = match memchr::memchr(b'\n', rest) {
                Some(newline) => (&rest[..newline], &rest[newline + 1..]),
                None => (rest, &rest[rest.len()..]),
            };
            handle_line(line, &mut totals).context("writing stdout")?;
            rest = next;
        }
        buffer.copy_within(complete..filled, 0);
        filled -= complete;
        if at_end {
            break;
        }
    }
    out.flush().context("writing stdout")?;
    drop(out);

    if summary {
        totals.seconds = started.elapsed().as_secs_f64();
        totals.mb_per_s = totals.bytes as f64 / 1e6 / totals.seconds;
        println!("{}", serde_json::to_string(&totals)?);
    }
    Ok(())
}
