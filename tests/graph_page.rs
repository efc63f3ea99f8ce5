//! The graph page in a real browser: a node with known points (two hosts, units, warning and
//! critical thresholds, hour rollups) and Debian's headless Chromium driven through
//! `chromedriver` with the W3C WebDriver protocol (a small client here, over `ureq`). The page
//! is checked through what it plots (`window.perfpipeGraph`) and through its controls as a user
//! works them: the host list and search, ticking metrics, the unit on the axis, the threshold
//! lines, the tooltip, the link that reproduces the view, drag-to-zoom and reset, a custom range,
//! the rollups, values in their unit's scale, the token, and no JavaScript error or console error
//! anywhere. A screenshot is kept in `target/test-artifacts/graph-page.png` (docs/graph-page.png
//! is a copy of one). Chromium runs in UTC, so local times in the page are UTC.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian's `chromium` and
//! `chromium-driver`; `scripts/test` installs them).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::{config, free_port, now, temp_dir, Node};
use serde_json::{json, Value};

/// A chromedriver process with one browser session; both end when it is dropped.
struct Browser {
    driver: Child,
    agent: ureq::Agent,
    base: String,
    session: String,
}

impl Browser {
    fn start(profile: &Path) -> Browser {
        let port = free_port();
        let driver = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .env("TZ", "UTC")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver runs (Debian's chromium-driver)");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let mut browser = Browser {
            driver,
            agent,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while browser.send("GET", "/status", None).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,800",
                         format!("--user-data-dir={}", profile.display())],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let created = browser.command("POST", "/session", Some(capabilities));
        browser.session = created["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        browser
    }

    /// One WebDriver request: the status and the answer's JSON.
    fn send(&self, method: &str, path: &str, body: Option<Value>) -> Result<(u16, Value), String> {
        let url = format!("{}{path}", self.base);
        let answer = match body {
            Some(body) => self
                .agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(body.to_string()),
            None if method == "DELETE" => self.agent.delete(&url).call(),
            None => self.agent.get(&url).call(),
        };
        let mut answer = answer.map_err(|error| error.to_string())?;
        let status = answer.status().as_u16();
        let text = answer
            .body_mut()
            .read_to_string()
            .map_err(|e| e.to_string())?;
        let json = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
        Ok((status, json))
    }

    /// A request that must succeed; its `value`.
    fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, answer) = self
            .send(method, path, body)
            .unwrap_or_else(|error| panic!("{method} {path}: {error}"));
        assert_eq!(status, 200, "{method} {path}: {answer}");
        answer["value"].clone()
    }

    fn in_session(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.command(method, &format!("/session/{}{path}", self.session), body)
    }

    fn go(&self, url: &str) {
        self.in_session("POST", "/url", Some(json!({ "url": url })));
    }

    /// Runs `script` (a function body; `arguments` are `args`) and returns what it returns.
    fn run(&self, script: &str, args: Value) -> Value {
        self.in_session(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    fn eval(&self, expression: &str) -> Value {
        self.run(&format!("return {expression};"), json!([]))
    }

    /// Waits until `expression` is true in the page.
    fn wait_for(&self, expression: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.eval(&format!("Boolean({expression})")) == json!(true) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not true in time: {expression}; page errors: {}",
                self.eval("window.perfpipeErrors")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the page has fetched and drawn everything it asked for.
    fn settle(&self) {
        self.wait_for("window.perfpipeGraph && window.perfpipeGraph.idle()");
        // One more turn of the event loop for the renders that follow the answers.
        std::thread::sleep(Duration::from_millis(100));
        self.wait_for("window.perfpipeGraph.idle()");
    }

    fn find(&self, css: &str) -> Value {
        self.in_session(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        )
    }

    fn element_id(element: &Value) -> String {
        element
            .as_object()
            .and_then(|object| object.values().next())
            .and_then(Value::as_str)
            .expect("an element reference")
            .to_owned()
    }

    fn click(&self, css: &str) {
        let id = Browser::element_id(&self.find(css));
        self.in_session("POST", &format!("/element/{id}/click"), Some(json!({})));
    }

    fn type_into(&self, css: &str, text: &str) {
        let id = Browser::element_id(&self.find(css));
        self.in_session("POST", &format!("/element/{id}/clear"), Some(json!({})));
        if !text.is_empty() {
            self.in_session(
                "POST",
                &format!("/element/{id}/value"),
                Some(json!({ "text": text })),
            );
        }
    }

    /// A mouse drag across `element` from `from` to `to` (x offsets from its centre).
    fn drag(&self, element: &Value, from: i64, to: i64) {
        let actions = json!({"actions": [{
        "type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
        "actions": [
            {"type": "pointerMove", "duration": 0, "origin": element, "x": from, "y": 0},
            {"type": "pointerDown", "button": 0},
            {"type": "pointerMove", "duration": 150, "origin": element, "x": (from + to) / 2, "y": 0},
            {"type": "pointerMove", "duration": 150, "origin": element, "x": to, "y": 0},
            {"type": "pointerUp", "button": 0},
        ]}]});
        self.in_session("POST", "/actions", Some(actions));
        self.in_session("DELETE", "/actions", None);
    }

    fn hover(&self, element: &Value, x: i64, y: i64) {
        let actions = json!({"actions": [{
            "type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
            "actions": [{"type": "pointerMove", "duration": 0, "origin": element, "x": x, "y": y}]}]});
        self.in_session("POST", "/actions", Some(actions));
    }

    fn screenshot(&self) -> Vec<u8> {
        let encoded = self.in_session("GET", "/screenshot", None);
        base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().expect("base64 text"))
            .expect("a PNG in base64")
    }

    /// Fails on any JavaScript error the page caught and any severe message in the browser's
    /// console (failed loads included).
    fn assert_no_errors(&self) {
        let errors = self.eval("window.perfpipeErrors");
        assert_eq!(errors, json!([]), "JavaScript errors");
        let severe: Vec<Value> = self
            .browser_log()
            .into_iter()
            .filter(|entry| entry["level"] == "SEVERE")
            .collect();
        assert!(severe.is_empty(), "console errors: {severe:?}");
    }

    /// The browser console's messages since the last call (chromedriver's log endpoint, not
    /// W3C; none when a driver lacks it).
    fn browser_log(&self) -> Vec<Value> {
        match self.send(
            "POST",
            &format!("/session/{}/se/log", self.session),
            Some(json!({"type": "browser"})),
        ) {
            Ok((200, log)) => log["value"].as_array().cloned().unwrap_or_default(),
            _ => Vec::new(),
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.send("DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Where test artifacts go: `<target dir>/test-artifacts`.
fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn rta(i: i64) -> f64 {
    20.5 + (i % 30) as f64 * 2.0
}

fn load1(i: i64) -> f64 {
    0.25 * (i % 13) as f64
}

/// A node with two hosts' points, one a minute over the last three hours (and a bit), and
/// hour rollups of web-01. Returns the node and the points' times. The finest Whisper archive
/// holds three days, so that views of up to a day read the points as written.
fn node_with_data(dir: &Path, extra_config: &str) -> (Node, Vec<i64>) {
    let config = config(
        dir,
        &format!(
            "data_dir = {:?}\n{extra_config}\n[enqueuer]\nmax_batch_age = \"100ms\"\n\
             [whisper]\nretentions = \"60s:3d,5m:30d\"\n\
             [[rollups]]\nmatch = \"web-01/*\"\nmethods = [\"avg\", \"max\", \"min\"]\n\
             useweekend = true\ntimezone = \"UTC\"\n",
            dir.join("data").display().to_string()
        ),
    );
    let node = Node::start(&["--config", config.to_str().unwrap()]);
    let first = (now() / 3600 - 3) * 3600;
    let times: Vec<i64> = (first..now() - 60).step_by(60).collect();
    (node, times)
}

fn write_points(node: &Node, times: &[i64], token: Option<&str>) {
    for chunk in times.chunks(60) {
        let lines: String = chunk
            .iter()
            .map(|&t| {
                let i = (t - times[0]) / 60;
                format!(
                    "{t}||web-01||PING||OK||rta={}ms;60;90;0 pl={}%;20;60\n\
                     {t}||db-02||Load||OK||load1={};4;@8:10\n\
                     {t}||db-02||Disk||OK||used={}B\n",
                    rta(i),
                    i % 3,
                    load1(i),
                    1_500_000_000 + i * 1_000_000,
                )
            })
            .collect();
        match token {
            None => {
                let answer = node.post("/api/v1/write", "text/plain", &lines);
                assert_eq!(answer.status, 200, "{}", answer.body);
            }
            Some(token) => {
                let answer = raw_request(
                    node,
                    &format!(
                        "POST /api/v1/write HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\
                         Content-Type: text/plain\r\nAuthorization: Bearer {token}\r\n\
                         Content-Length: {}\r\n\r\n{lines}",
                        lines.len()
                    ),
                );
                assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
            }
        }
    }
}

/// Sends `request` as it is and returns the whole answer.
fn raw_request(node: &Node, request: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(&node.address).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

/// Waits until the node answers `hsm` with a value at `t`.
fn wait_stored(node: &Node, hsm: &str, t: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = node
            .get(&format!(
                "/api/v1/query?hsm={hsm}&start={}&end={}",
                t - 60,
                t + 60
            ))
            .json();
        let series = &answer["series"][0];
        if let (Some(start), Some(step)) = (series["start"].as_i64(), series["step"].as_i64()) {
            if series["values"][((t - start) / step) as usize].is_number() {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{hsm} at {t} not stored: {answer}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether the UTC day of `t` is Saturday or Sunday (1970-01-01 was a Thursday).
fn weekend(t: i64) -> bool {
    matches!((t.div_euclid(86_400) + 4) % 7, 0 | 6)
}

fn points_of(series: &Value) -> Vec<(i64, f64)> {
    series["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_i64().unwrap(), p[1].as_f64().unwrap()))
        .collect()
}

fn series_named<'a>(all: &'a Value, hsm: &str) -> &'a Value {
    all.as_array()
        .unwrap()
        .iter()
        .find(|s| s["hsm"] == hsm)
        .unwrap_or_else(|| panic!("{hsm} not plotted: {all}"))
}

fn visible_hosts(browser: &Browser) -> Value {
    browser.eval("[...document.querySelectorAll('#hosts li.host')].map(li => li.dataset.host)")
}

#[test]
fn the_page_plots_what_was_written() {
    let dir = temp_dir("graph-page");
    let (node, times) = node_with_data(&dir, "");
    write_points(&node, &times, None);
    let last = *times.last().unwrap();
    wait_stored(&node, "web-01::PING::rta", last);
    wait_stored(&node, "db-02::Load::load1", last);
    // Two whole hours closed before the last: their aggregates.
    let hours: Vec<i64> = (1..3).map(|n| times[0] + n * 3600 - 3600).collect();
    let suffix = |hour: i64| if weekend(hour) { "/weekend" } else { "" };
    for &hour in &hours {
        wait_stored(
            &node,
            &format!("web-01::PING/H/avg{}::rta", suffix(hour)),
            hour,
        );
    }
    // The listing carries the thresholds the page draws.
    let listing = node.get("/api/v1/hosts/db-02/metrics").json();
    let load = listing["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["metric"] == "load1")
        .unwrap();
    assert_eq!(
        load["warn"],
        json!({"start": 0.0, "end": 4.0, "inside": false})
    );
    assert_eq!(
        load["crit"],
        json!({"start": 8.0, "end": 10.0, "inside": true})
    );

    let profile = dir.join("chromium");
    let browser = Browser::start(&profile);
    let page = format!("http://{}/", node.address);
    browser.go(&page);
    browser.settle();
    assert_eq!(visible_hosts(&browser), json!(["db-02", "web-01"]));
    assert_eq!(browser.eval("window.perfpipeGraph.series()"), json!([]));

    // Search: by host name, then by a metric name (which opens the host that has it).
    browser.type_into("#search", "web");
    assert_eq!(visible_hosts(&browser), json!(["web-01"]));
    browser.type_into("#search", "load1");
    browser.settle();
    browser.wait_for("document.querySelectorAll('#hosts li.host').length === 1");
    assert_eq!(visible_hosts(&browser), json!(["db-02"]));
    let shown = browser
        .eval("[...document.querySelectorAll('#hosts input[data-hsm]')].map(b => b.dataset.hsm)");
    assert_eq!(shown, json!(["db-02::Load::load1"]));
    browser.type_into("#search", "nothing-like-this");
    assert_eq!(visible_hosts(&browser), json!([]));
    browser.type_into("#search", "");
    assert_eq!(visible_hosts(&browser), json!(["db-02", "web-01"]));

    // Open web-01, tick rta; tick db-02's load1.
    browser.click("#hosts li.host[data-host='web-01'] > button");
    browser.wait_for("document.querySelector(\"input[data-hsm='web-01::PING::rta']\")");
    // Rollup series are not listed as metrics of their own.
    let listed = browser
        .eval("[...document.querySelectorAll('#hosts input[data-hsm]')].map(b => b.dataset.hsm)");
    assert_eq!(
        listed,
        json!(["web-01::PING::pl", "web-01::PING::rta"]),
        "{listed}"
    );
    browser.click("input[data-hsm='web-01::PING::rta']");
    browser.settle();
    browser.click("#hosts li.host[data-host='db-02'] > button");
    browser.wait_for("document.querySelector(\"input[data-hsm='db-02::Load::load1']\")");
    browser.click("input[data-hsm='db-02::Load::load1']");
    browser.settle();

    let series = browser.eval("window.perfpipeGraph.series()");
    assert_eq!(series.as_array().unwrap().len(), 2, "{series}");
    let expected_rta: Vec<(i64, f64)> = times
        .iter()
        .map(|&t| (t, rta((t - times[0]) / 60)))
        .collect();
    let expected_load: Vec<(i64, f64)> = times
        .iter()
        .map(|&t| (t, load1((t - times[0]) / 60)))
        .collect();
    let rta_series = series_named(&series, "web-01::PING::rta");
    let load_series = series_named(&series, "db-02::Load::load1");
    assert_eq!(points_of(rta_series), expected_rta);
    assert_eq!(points_of(load_series), expected_load);
    assert_eq!(rta_series["uom"], "ms");
    assert_eq!(load_series["uom"], "");

    // The unit on the axes: ms on the left, the unitless load on the right.
    let axes = browser.eval("window.perfpipeGraph.axes()");
    assert_eq!(axes[0]["side"], "left", "{axes}");
    assert_eq!(axes[0]["title"], "ms", "{axes}");
    assert_eq!(axes[1]["title"], "(no unit)", "{axes}");
    let labels: Vec<&str> = axes[0]["ticks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["label"].as_str().unwrap())
        .collect();
    assert!(
        labels.len() >= 3 && labels.iter().all(|l| l.ends_with(" ms")),
        "{labels:?}"
    );
    assert!(labels.contains(&"0 ms"), "{labels:?}");

    // Warning and critical lines, inside the plot.
    let lines = browser.eval("window.perfpipeGraph.thresholds()");
    let line = |hsm: &str, level: &str| -> Vec<f64> {
        lines
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["hsm"] == hsm && l["level"] == level && l["visible"] == true)
            .map(|l| l["value"].as_f64().unwrap())
            .collect()
    };
    assert_eq!(line("web-01::PING::rta", "warn"), [60.0], "{lines}");
    assert_eq!(line("web-01::PING::rta", "crit"), [90.0], "{lines}");
    assert_eq!(line("db-02::Load::load1", "warn"), [4.0], "{lines}");
    assert_eq!(line("db-02::Load::load1", "crit"), [8.0, 10.0], "{lines}");
    let legend = browser.eval("document.getElementById('legend').textContent");
    assert!(legend.as_str().unwrap().contains("warn 0:60"), "{legend}");
    browser.assert_no_errors();

    // The tooltip names the time and the values under the pointer (near the right end, where
    // the data is).
    let canvas = browser.find("#canvas");
    let width = browser
        .eval("document.getElementById('canvas').getBoundingClientRect().width")
        .as_f64()
        .unwrap() as i64;
    browser.hover(&canvas, width / 2 - 70 - 30, -40);
    browser.wait_for("!document.getElementById('tooltip').hidden");
    let tooltip = browser.eval("document.getElementById('tooltip').textContent");
    assert!(
        tooltip.as_str().unwrap().contains("web-01::PING::rta: ")
            && tooltip.as_str().unwrap().contains(" ms"),
        "{tooltip}"
    );
    // The last 6 hours for the screenshot (the 24 h view holds 3 hours of data).
    browser.click("button[data-range='6h']");
    browser.settle();
    browser.hover(&canvas, width / 10, 40);
    browser.wait_for("!document.getElementById('tooltip').hidden");
    let png = browser.screenshot();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000);
    std::fs::write(artifacts().join("graph-page.png"), &png).unwrap();

    // The link reproduces the view in a fresh load.
    let before_series = browser.eval("window.perfpipeGraph.series()");
    let before_range = browser.eval("window.perfpipeGraph.range()");
    let link = browser.eval("document.getElementById('permalink').href");
    let link = link.as_str().unwrap().to_owned();
    assert!(
        link.contains("hsm=web-01%3A%3APING%3A%3Arta") && link.contains("hsm=db-02"),
        "{link}"
    );
    browser.go("about:blank");
    browser.go(&link);
    browser.settle();
    assert_eq!(browser.eval("window.perfpipeGraph.range()"), before_range);
    assert_eq!(browser.eval("window.perfpipeGraph.series()"), before_series);
    // The hosts of the plotted series are open with their boxes ticked.
    browser.wait_for("document.querySelector(\"input[data-hsm='web-01::PING::rta']\")");
    assert_eq!(
        browser.eval("document.querySelector(\"input[data-hsm='web-01::PING::rta']\").checked"),
        json!(true)
    );
    browser.assert_no_errors();

    // Drag across the middle of the chart: the range narrows to the dragged span, the points
    // plotted are those in it, and Reset zoom brings the range back.
    let canvas = browser.find("#canvas");
    let old = browser.eval("window.perfpipeGraph.range()");
    let (old_start, old_end) = (old["start"].as_i64().unwrap(), old["end"].as_i64().unwrap());
    browser.drag(&canvas, -width / 5, width / 5);
    browser.wait_for(&format!(
        "window.perfpipeGraph.range().start !== {old_start}"
    ));
    browser.settle();
    let zoomed = browser.eval("window.perfpipeGraph.range()");
    let (start, end) = (
        zoomed["start"].as_i64().unwrap(),
        zoomed["end"].as_i64().unwrap(),
    );
    let plot_share = 2.0 * (width / 5) as f64 / (width - 140) as f64;
    let expected_span = plot_share * (old_end - old_start) as f64;
    assert!(start > old_start && end < old_end, "{old} -> {zoomed}");
    assert!(
        ((end - start) as f64 - expected_span).abs() < expected_span * 0.05,
        "span {} for {expected_span}",
        end - start
    );
    let zoomed_series = browser.eval("window.perfpipeGraph.series()");
    let rta_zoomed = points_of(series_named(&zoomed_series, "web-01::PING::rta"));
    let expected_zoomed: Vec<(i64, f64)> = expected_rta
        .iter()
        .copied()
        .filter(|&(t, _)| t >= start && t <= end)
        .collect();
    assert!(!expected_zoomed.is_empty());
    // The store answers whole steps: the first and last may round outwards.
    assert!(
        rta_zoomed
            .iter()
            .all(|&(t, _)| t >= start - 60 && t <= end + 60),
        "{rta_zoomed:?}"
    );
    for point in &expected_zoomed {
        assert!(rta_zoomed.contains(point), "{point:?} missing");
    }
    let url = browser.eval("location.search");
    assert!(
        url.as_str().unwrap().contains(&format!("start={start}")),
        "{url}"
    );
    assert_eq!(
        browser.eval("document.getElementById('reset-zoom').disabled"),
        json!(false)
    );
    browser.click("#reset-zoom");
    browser.wait_for(&format!(
        "window.perfpipeGraph.range().start === {old_start}"
    ));
    browser.settle();
    assert_eq!(browser.eval("window.perfpipeGraph.range()"), old);
    assert_eq!(
        browser.eval("document.getElementById('reset-zoom').disabled"),
        json!(true)
    );
    browser.assert_no_errors();

    // A custom range (local time: the browser runs in UTC here) replaces the preset.
    let (from, to) = (times[60], times[120]);
    let local = |t: i64| {
        chrono::DateTime::from_timestamp(t, 0)
            .unwrap()
            .format("%Y-%m-%dT%H:%M")
            .to_string()
    };
    browser.run(
        "document.getElementById('from').value = arguments[0];\
         document.getElementById('to').value = arguments[1];",
        json!([local(from), local(to)]),
    );
    browser.click("#custom-range button[type='submit']");
    browser.wait_for(&format!("window.perfpipeGraph.range().start === {from}"));
    browser.settle();
    assert_eq!(
        browser.eval("window.perfpipeGraph.range()"),
        json!({"start": from, "end": to})
    );
    let custom = browser.eval("window.perfpipeGraph.series()");
    let rta_custom = points_of(series_named(&custom, "web-01::PING::rta"));
    let inside: Vec<(i64, f64)> = expected_rta
        .iter()
        .copied()
        .filter(|&(t, _)| t > from && t < to)
        .collect();
    assert_eq!(inside.len(), 59);
    for point in &inside {
        assert!(rta_custom.contains(point), "{point:?} missing");
    }
    assert!(
        rta_custom.iter().all(|&(t, _)| t >= from && t <= to),
        "{rta_custom:?}"
    );
    assert_eq!(
        browser.eval("document.querySelector('button.active')"),
        Value::Null,
        "no preset is active"
    );
    browser.assert_no_errors();

    // Rollups, chosen with the controls: the hour averages and maxima of rta, as computed from
    // the points written (weekend hours are in series of their own).
    browser.go(&format!("{page}?hsm=web-01::PING::rta&start=-6h&end=now"));
    browser.settle();
    browser.click("#rollup option[value='H']");
    browser.settle();
    browser.click("#methods input[value='max']");
    browser.settle();
    browser.click("#weekend");
    browser.settle();
    let address = browser.eval("location.search");
    assert!(
        address
            .as_str()
            .unwrap()
            .ends_with("&rollup=H&agg=avg%2Cmax&weekend=1"),
        "{address}"
    );
    let rolled = browser.eval("window.perfpipeGraph.series()");
    for &hour in &hours {
        let values: Vec<f64> = expected_rta
            .iter()
            .filter(|&&(t, _)| t >= hour && t < hour + 3600)
            .map(|&(_, v)| v)
            .collect();
        let average = values.iter().sum::<f64>() / values.len() as f64;
        let maximum = values.iter().cloned().fold(f64::MIN, f64::max);
        for (method, expected) in [("avg", average), ("max", maximum)] {
            let hsm = format!("web-01::PING/H/{method}{}::rta", suffix(hour));
            let points = points_of(series_named(&rolled, &hsm));
            let found = points
                .iter()
                .find(|&&(t, _)| t == hour)
                .unwrap_or_else(|| panic!("{hsm} has no point at {hour}: {points:?}"));
            assert!(
                (found.1 - expected).abs() < 1e-9,
                "{hsm}: {found:?} != {expected}"
            );
        }
    }
    // Aggregates keep the thresholds of their series.
    let avg_hsm = format!("web-01::PING/H/avg{}::rta", suffix(hours[0]));
    let warn = &series_named(&rolled, &avg_hsm)["warn"];
    assert_eq!(
        (
            warn["start"].as_f64(),
            warn["end"].as_f64(),
            &warn["inside"]
        ),
        (Some(0.0), Some(60.0), &json!(false)),
        "{warn}"
    );
    assert!(
        rolled
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["rollup"] == "H" && s["method"] != "min"),
        "{rolled}"
    );
    browser.assert_no_errors();

    // Values are shown in their unit's scale.
    for (value, uom, shown) in [
        ("0.0015", "s", "1.5 ms"),
        ("2500", "ms", "2.5 s"),
        ("1536", "B", "1.5 KB"),
        ("3221225472", "B", "3 GB"),
        ("1500", "", "1.5k"),
        ("12.5", "%", "12.5%"),
        ("0.25", "", "0.25"),
        ("2000000", "c", "2 Mc"),
    ] {
        assert_eq!(
            browser.eval(&format!(
                "window.perfpipeGraph.formatValue({value}, {uom:?})"
            )),
            shown,
            "{value} {uom}"
        );
    }
}

#[test]
fn the_page_needs_no_token_and_sends_the_users() {
    let dir = temp_dir("graph-page-token");
    let (node, times) = node_with_data(
        &dir,
        "[auth]\nquery_tokens = [\"reader-1\"]\nwrite_tokens = [\"writer-1\"]\n",
    );
    let times = &times[times.len() - 5..];
    write_points(&node, times, Some("writer-1"));

    // The files: no token needed, their types, caching and tags.
    let page = node.get("/");
    assert_eq!(page.status, 200, "{}", page.head);
    let head = page.head.to_lowercase();
    assert!(
        head.contains("content-type: text/html; charset=utf-8"),
        "{head}"
    );
    assert!(head.contains("cache-control: no-cache"), "{head}");
    assert!(
        head.contains("content-security-policy: default-src 'self';"),
        "{head}"
    );
    let script_path = page
        .body
        .split("src=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page names its script")
        .to_owned();
    assert!(
        script_path.starts_with("/page/graph.js?v="),
        "{script_path}"
    );
    let script = node.get(&script_path);
    assert_eq!(script.status, 200);
    let head = script.head.to_lowercase();
    assert!(head.contains("content-type: text/javascript"), "{head}");
    assert!(
        head.contains("cache-control: public, max-age=86400"),
        "{head}"
    );
    let etag = script
        .head
        .lines()
        .find_map(|line| line.strip_prefix("etag: ").or(line.strip_prefix("ETag: ")))
        .expect("an ETag")
        .to_owned();
    let again = raw_request(
        &node,
        &format!(
            "GET {script_path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\
             If-None-Match: {etag}\r\n\r\n"
        ),
    );
    assert!(again.starts_with("HTTP/1.1 304"), "{again}");
    let style = node.get("/page/graph.css");
    assert!(style.head.to_lowercase().contains("content-type: text/css"));
    assert_eq!(node.get("/page/other.js").status, 404);
    // The data stays behind the token.
    assert_eq!(node.get("/api/v1/hosts").status, 401);

    let browser = Browser::start(&dir.join("chromium"));
    let page = format!("http://{}/", node.address);
    // Without a token: the form asks for one; given, the hosts are listed.
    browser.go(&page);
    browser.settle();
    assert_eq!(visible_hosts(&browser), json!([]));
    browser.wait_for("!document.getElementById('token-form').hidden");
    browser.type_into("#token", "reader-1");
    browser.click("#token-form button");
    browser.settle();
    assert_eq!(visible_hosts(&browser), json!(["db-02", "web-01"]));
    // The only console errors were the 401 answers before the token was given (which also
    // shows the console is read: assert_no_errors would see other errors).
    let log = browser.browser_log();
    assert!(
        log.iter()
            .any(|entry| entry["message"].as_str().unwrap_or("").contains("401")),
        "{log:?}"
    );
    assert!(
        log.iter()
            .filter(|entry| entry["level"] == "SEVERE")
            .all(|entry| entry["message"].as_str().unwrap_or("").contains("401")),
        "{log:?}"
    );
    browser.assert_no_errors();

    // Given in the address: kept for the session, dropped from the address and the link.
    browser.run("sessionStorage.clear();", json!([]));
    browser.go(&format!(
        "{page}?token=reader-1&hsm=web-01::PING::rta&start=-1h&end=now"
    ));
    browser.settle();
    let series = browser.eval("window.perfpipeGraph.series()");
    let last = *times.last().unwrap();
    let points = points_of(series_named(&series, "web-01::PING::rta"));
    assert!(
        points.contains(&(last, rta((last - times[0]) / 60))),
        "{points:?}"
    );
    let address = browser.eval("location.href");
    let link = browser.eval("document.getElementById('permalink').href");
    assert!(!address.as_str().unwrap().contains("reader-1"), "{address}");
    assert!(!link.as_str().unwrap().contains("reader-1"), "{link}");
    browser.assert_no_errors();
}
