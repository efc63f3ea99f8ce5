//! Spool-file lines, as masters write them for perfdata processors.
//!
//! **Opsview**: `lastcheck||host||service||output||perfdata`. The first three `||` end
//! `lastcheck`, `host` and `service`; the last `||` starts the perfdata, so plugin output that
//! itself contains `||` is kept whole. `lastcheck` is the check time in epoch seconds.
//!
//! **Nagios / Naemon / Icinga / PNP4Nagios**: tab-separated `KEY::VALUE` fields (the value is
//! everything after the first `::`, so `check_multi`-style `a::b::c` labels survive), starting
//! with `DATATYPE::SERVICEPERFDATA` or `DATATYPE::HOSTPERFDATA`. Service lines need `TIMET`,
//! `HOSTNAME`, `SERVICEDESC` and `SERVICEPERFDATA`; host lines `TIMET`, `HOSTNAME` and
//! `HOSTPERFDATA`. `SERVICESTATE`/`HOSTSTATE` (names like `WARNING`, `DOWN`, or return codes) and
//! `SERVICEOUTPUT`/`HOSTOUTPUT` are read when present; other keys
//! (`SERVICECHECKCOMMAND`, `HOSTSTATETYPE`, …) are ignored.
//!
//! [`read`] tells the two apart line by line: a line starting with `DATATYPE::` is Nagios's,
//! any other line with `||` is Opsview's, anything else is refused.

use std::borrow::Cow;

use memchr::memmem;

use crate::{read_lines, CheckResult, EnvelopeError, Location, RecordResult};

const OPSVIEW_SEPARATOR: &str = "||";
const NAGIOS_PREFIX: &str = "DATATYPE::";

/// Reads spool lines of either format; blank lines are skipped.
pub fn read(text: &str) -> impl Iterator<Item = RecordResult<'_>> {
    read_lines(text, read_line)
}

/// Reads one spool line of either format.
pub fn read_line(line: &str, location: Location) -> RecordResult<'_> {
    if line.starts_with(NAGIOS_PREFIX) {
        read_nagios_line(line, location)
    } else if line.contains(OPSVIEW_SEPARATOR) {
        read_opsview_line(line, location)
    } else {
        Err(EnvelopeError::new(
            location,
            None,
            "neither an Opsview 'lastcheck||host||service||output||perfdata' line \
             nor a Nagios 'DATATYPE::…' line",
        ))
    }
}

/// Reads `lastcheck||host||service||output||perfdata`.
pub fn read_opsview_line(line: &str, location: Location) -> RecordResult<'_> {
    let error = |field: Option<&str>, message: String| EnvelopeError::new(location, field, message);
    let separators: Vec<usize> = memmem::find_iter(line.as_bytes(), OPSVIEW_SEPARATOR).collect();
    // `find_iter` does not overlap, so `|||` counts one separator, as a left-to-right split would.
    if separators.len() < 4 {
        return Err(error(
            None,
            format!(
                "expected 5 fields separated by '||' (lastcheck, host, service, output, perfdata), found {}",
                separators.len() + 1
            ),
        ));
    }
    let field = |from: usize, to: usize| &line[from..to];
    let width = OPSVIEW_SEPARATOR.len();
    let last = separators[separators.len() - 1];
    let lastcheck = field(0, separators[0]);
    let host = field(separators[0] + width, separators[1]);
    let service = field(separators[1] + width, separators[2]);
    let output = field(separators[2] + width, last);
    let perfdata = field(last + width, line.len());

    let timestamp = epoch_seconds(lastcheck).ok_or_else(|| {
        error(
            Some("lastcheck"),
            format!("not a time in epoch seconds: {lastcheck:?}"),
        )
    })?;
    if host.is_empty() {
        return Err(error(Some("host"), "host is empty".into()));
    }
    if service.is_empty() {
        return Err(error(Some("service"), "service is empty".into()));
    }
    Ok(CheckResult {
        host: Cow::Borrowed(host),
        service: Some(Cow::Borrowed(service)),
        timestamp,
        perfdata: Cow::Borrowed(perfdata),
        state: None,
        output: Some(Cow::Borrowed(output)),
    })
}

/// The fields of a Nagios spool line this reader uses, each as given.
#[derive(Default)]
struct NagiosFields<'a> {
    datatype: Option<&'a str>,
    timet: Option<&'a str>,
    hostname: Option<&'a str>,
    servicedesc: Option<&'a str>,
    serviceperfdata: Option<&'a str>,
    serviceoutput: Option<&'a str>,
    servicestate: Option<&'a str>,
    hostperfdata: Option<&'a str>,
    hostoutput: Option<&'a str>,
    hoststate: Option<&'a str>,
}

/// Reads `DATATYPE::SERVICEPERFDATA\tTIMET::…\tHOSTNAME::…\tSERVICEDESC::…\tSERVICEPERFDATA::…`
/// and its host form.
pub fn read_nagios_line<'a>(line: &'a str, location: Location) -> RecordResult<'a> {
    let error = |field: &str, message: String| EnvelopeError::new(location, Some(field), message);
    let mut fields = NagiosFields::default();
    for (index, field) in line.split('\t').enumerate() {
        let Some((key, value)) = field.split_once("::") else {
            if field.trim().is_empty() {
                continue; // a trailing tab
            }
            return Err(EnvelopeError::new(
                location,
                None,
                format!("field {} is not KEY::VALUE: {field:?}", index + 1),
            ));
        };
        let slot = match key {
            "DATATYPE" => &mut fields.datatype,
            "TIMET" => &mut fields.timet,
            "HOSTNAME" => &mut fields.hostname,
            "SERVICEDESC" => &mut fields.servicedesc,
            "SERVICEPERFDATA" => &mut fields.serviceperfdata,
            "SERVICEOUTPUT" => &mut fields.serviceoutput,
            "SERVICESTATE" => &mut fields.servicestate,
            "HOSTPERFDATA" => &mut fields.hostperfdata,
            "HOSTOUTPUT" => &mut fields.hostoutput,
            "HOSTSTATE" => &mut fields.hoststate,
            _ => continue,
        };
        if slot.is_some() {
            return Err(error(key, "given twice".into()));
        }
        *slot = Some(value);
    }

    let required =
        |value: Option<&'a str>, key: &str| value.ok_or_else(|| error(key, "missing".into()));
    let is_service = match fields.datatype {
        Some("SERVICEPERFDATA") => true,
        Some("HOSTPERFDATA") => false,
        other => {
            return Err(error(
                "DATATYPE",
                format!(
                    "expected SERVICEPERFDATA or HOSTPERFDATA, found {:?}",
                    other.unwrap_or("")
                ),
            ))
        }
    };
    let timet = required(fields.timet, "TIMET")?;
    let timestamp = epoch_seconds(timet)
        .ok_or_else(|| error("TIMET", format!("not a time in epoch seconds: {timet:?}")))?;
    let host = required(fields.hostname, "HOSTNAME")?;
    if host.is_empty() {
        return Err(error("HOSTNAME", "host is empty".into()));
    }

    let (service, perfdata, output, state) = if is_service {
        let service = required(fields.servicedesc, "SERVICEDESC")?;
        if service.is_empty() {
            return Err(error("SERVICEDESC", "service is empty".into()));
        }
        let state = fields
            .servicestate
            .map(|text| {
                service_state(text)
                    .ok_or_else(|| error("SERVICESTATE", format!("unknown state {text:?}")))
            })
            .transpose()?;
        let perfdata = required(fields.serviceperfdata, "SERVICEPERFDATA")?;
        (
            Some(Cow::Borrowed(service)),
            perfdata,
            fields.serviceoutput,
            state,
        )
    } else {
        let state = fields
            .hoststate
            .map(|text| {
                host_state(text)
                    .ok_or_else(|| error("HOSTSTATE", format!("unknown state {text:?}")))
            })
            .transpose()?;
        let perfdata = required(fields.hostperfdata, "HOSTPERFDATA")?;
        (None, perfdata, fields.hostoutput, state)
    };
    Ok(CheckResult {
        host: Cow::Borrowed(host),
        service,
        timestamp,
        perfdata: Cow::Borrowed(perfdata),
        state,
        output: output.map(Cow::Borrowed),
    })
}

/// Epoch seconds as masters write them: ASCII digits only.
fn epoch_seconds(text: &str) -> Option<i64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn service_state(text: &str) -> Option<u8> {
    match text {
        "OK" | "0" => Some(0),
        "WARNING" | "1" => Some(1),
        "CRITICAL" | "2" => Some(2),
        "UNKNOWN" | "3" => Some(3),
        _ => None,
    }
}

fn host_state(text: &str) -> Option<u8> {
    match text {
        "UP" | "0" => Some(0),
        "DOWN" | "1" => Some(1),
        "UNREACHABLE" | "2" => Some(2),
        _ => None,
    }
}
