//! The envelope readers over the spool and JSON fixtures, malformed records included: each bad
//! record is reported with its line or index and field, and the good ones around it are kept.

use perfpipe_checkresult::{json, output, spool, CheckResult, EnvelopeError, Location};

fn fixture(name: &str) -> String {
    let path = format!("{}/../../fixtures/spool/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn split<'a>(
    records: impl IntoIterator<Item = Result<CheckResult<'a>, EnvelopeError>>,
) -> (Vec<CheckResult<'a>>, Vec<EnvelopeError>) {
    let (good, bad): (Vec<_>, Vec<_>) = records.into_iter().partition(Result::is_ok);
    (
        good.into_iter().map(Result::unwrap).collect(),
        bad.into_iter().map(Result::unwrap_err).collect(),
    )
}

fn where_and_field(error: &EnvelopeError) -> (Location, Option<&str>) {
    (error.location, error.field.as_deref())
}

#[test]
fn opsview_lines() {
    let text = fixture("opsview.log");
    let (good, bad) = split(spool::read(&text));

    let hosts_services: Vec<(&str, &str, i64)> = good
        .iter()
        .map(|r| (&*r.host, r.service.as_deref().unwrap(), r.timestamp))
        .collect();
    assert_eq!(
        hosts_services,
        [
            ("web-01", "HTTP", 1764590400),
            ("web-01", "Disk: /var", 1764590401),
            ("db-02", "TCP/IP - LAN", 1764590402),
            ("db-02", "Pipes", 1764590405),
            ("gw-03", "Interface: Gi0/1", 1764590406),
        ]
    );
    assert_eq!(
        good[0].perfdata,
        "time=0.031204s;5.000000;10.000000;0.000000 size=5120B;;;0"
    );
    assert_eq!(
        good[2].perfdata, "",
        "a check without perfdata is still a result"
    );
    assert_eq!(
        good[3].output.as_deref(),
        Some("a||b||c"),
        "output keeps its own '||'"
    );
    assert_eq!(good[3].perfdata, "x=1;2;3");

    let located: Vec<_> = bad.iter().map(where_and_field).collect();
    assert_eq!(
        located,
        [
            (Location::Line(4), Some("lastcheck")),
            (Location::Line(5), None),
            (Location::Line(7), Some("host")),
        ]
    );
    assert!(bad[1].message.contains("found 4"), "{}", bad[1]);
    assert_eq!(
        bad[0].to_string(),
        "line 4, field lastcheck: not a time in epoch seconds: \"not-a-time\""
    );
}

#[test]
fn nagios_lines() {
    let text = fixture("nagios-perfdata.log");
    let (good, bad) = split(spool::read(&text));

    assert_eq!(good.len(), 3);
    assert_eq!(good[0].host, "web-01");
    assert_eq!(good[0].service.as_deref(), Some("Load"));
    assert_eq!(good[0].timestamp, 1764590400);
    assert_eq!(good[0].state, Some(1));
    assert_eq!(good[0].output.as_deref(), Some("LOAD WARNING"));
    assert!(good[0]
        .perfdata
        .starts_with("load1=0.390;8.000;12.000;0; load5="));

    assert_eq!(good[1].service, None, "host perfdata has no service");
    assert_eq!(good[1].state, Some(0));
    assert!(good[1].perfdata.starts_with("rta=0.298000ms"));

    assert_eq!(
        good[2].perfdata,
        "'check_multi::check_load::load1'=0.1;5;10;0"
    );

    let located: Vec<_> = bad.iter().map(where_and_field).collect();
    assert_eq!(
        located,
        [
            (Location::Line(4), Some("TIMET")),
            (Location::Line(5), Some("SERVICEDESC")),
            (Location::Line(6), Some("SERVICESTATE")),
            (Location::Line(7), Some("DATATYPE")),
            (Location::Line(8), None),
        ]
    );
    assert!(
        bad[4].message.contains("field 5 is not KEY::VALUE"),
        "{}",
        bad[4]
    );
}

#[test]
fn unrecognised_spool_lines_are_refused() {
    let error = spool::read_line("just some text", Location::Line(9)).unwrap_err();
    assert_eq!(error.location, Location::Line(9));
    assert!(error.message.contains("neither"));
}

#[test]
fn json_body() {
    let body = fixture("results.json");
    let records = json::read_body(&body).unwrap();
    assert_eq!(records.len(), 8);
    let (good, bad) = split(records);

    assert_eq!(good.len(), 3);
    assert_eq!(good[0].state, Some(0));
    assert_eq!(good[0].output.as_deref(), Some("HTTP OK"));
    assert_eq!(good[1].service, None);
    assert_eq!(
        good[1].timestamp, 1764590400,
        "fractions of a second are cut"
    );
    assert_eq!(good[2].service.as_deref(), Some("C:\\ Used \"Space\""));
    assert_eq!(good[2].state, None);

    let located: Vec<_> = bad.iter().map(where_and_field).collect();
    assert_eq!(
        located,
        [
            (Location::Result(2), Some("timestamp")),
            (Location::Result(3), None),
            (Location::Result(4), Some("state")),
            (Location::Result(5), Some("perfdta")),
            (Location::Result(6), Some("host")),
        ]
    );
    assert!(
        bad[1].message.contains("missing field `host`"),
        "{}",
        bad[1]
    );
    assert!(bad[2].message.contains("state 7"), "{}", bad[2]);
    assert!(
        bad[3].message.contains("unknown field `perfdta`"),
        "{}",
        bad[3]
    );
}

#[test]
fn json_body_that_is_not_a_results_object() {
    for body in [
        "",
        "[]",
        "{\"result\": []}",
        "{\"results\": [}",
        "{\"results\": 5}",
    ] {
        let error = json::read_body(body).unwrap_err();
        assert_eq!(error.location, Location::Body, "{body:?}");
    }
}

#[test]
fn ndjson_lines() {
    let text = fixture("results.ndjson");
    let (good, bad) = split(json::read_ndjson(&text));
    let hosts: Vec<(&str, i64)> = good.iter().map(|r| (&*r.host, r.timestamp)).collect();
    assert_eq!(hosts, [("web-01", 1764590400), ("web-02", 1764590404)]);
    let located: Vec<_> = bad.iter().map(where_and_field).collect();
    assert_eq!(
        located,
        [
            (Location::Line(3), Some("timestamp")),
            (Location::Line(4), None),
            (Location::Line(5), None),
            (Location::Line(6), Some("service")),
        ]
    );
    assert!(bad[1].message.contains("trailing"), "{}", bad[1]);
}

#[test]
fn plugin_output_split_as_nagios_core_does() {
    let single = output::split("DISK OK - 61% free | /var=5213MB;10650;11981;0;13313");
    assert_eq!(single.short_output, Some("DISK OK - 61% free"));
    assert_eq!(single.long_output, None);
    assert_eq!(single.perfdata, "/var=5213MB;10650;11981;0;13313");

    let multi = output::split(
        "LOAD OK | load1=0.1;\nper core:\ncore 0 idle | core0=5%;\n  core1=7%;\n\ncore2=1%;",
    );
    assert_eq!(multi.short_output, Some("LOAD OK"));
    assert_eq!(multi.long_output, Some("per core:\ncore 0 idle "));
    assert_eq!(multi.perfdata, "load1=0.1; core0=5%; core1=7%; core2=1%;");

    let late = output::split("PROCS OK\nlist follows | procs=12;");
    assert_eq!(late.short_output, Some("PROCS OK"));
    assert_eq!(late.long_output, Some("list follows "));
    assert_eq!(late.perfdata, "procs=12;");

    let only_perfdata = output::split("|a=1\n|b=2");
    assert_eq!(only_perfdata.short_output, Some(""));
    assert_eq!(only_perfdata.long_output, None);
    assert_eq!(only_perfdata.perfdata, "a=1 b=2");

    let none = output::split("");
    assert_eq!((none.short_output, none.long_output), (None, None));
    assert_eq!(none.perfdata, "");

    let text_only = output::split("OK\nsecond line");
    assert_eq!(text_only.long_output, Some("second line"));
    assert_eq!(text_only.perfdata, "");
}
