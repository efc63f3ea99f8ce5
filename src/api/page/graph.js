// The graph page of perfpipe: browses the catalogue (hosts, services, metrics), plots the chosen
// series, raw or as rollups, on a canvas drawn here, and keeps the view in the URL.
//
// Data comes only from the node's API: GET /api/v1/hosts, /api/v1/hosts/{host}/metrics (units,
// thresholds) and /api/v1/query. A query token, when the node wants one, is taken once from
// ?token= (then dropped from the address bar) or from the form shown after a 401, and kept in
// sessionStorage; it never goes into the link to the view.
//
// For tests and scripts, window.perfpipeGraph exposes what is plotted (series(), range(),
// thresholds(), axes(), idle()); errors thrown anywhere on the page land in
// window.perfpipeErrors.
"use strict";

window.perfpipeErrors = window.perfpipeErrors || [];
window.addEventListener("error", (event) => {
  window.perfpipeErrors.push(String(event.message || event.error || event));
});
window.addEventListener("unhandledrejection", (event) => {
  window.perfpipeErrors.push("unhandled rejection: " + String(event.reason));
});

(function () {
  const LEVELS = { H: "hourly", D: "daily", W: "weekly", M: "monthly" };
  const PERIODS = { H: 3600, D: 86400, W: 604800, M: 2678400 };
  const METHODS = ["avg", "min", "max"];
  const AGGREGATE = /^(.*)\/([HDWM])\/(avg|max|min)(\/weekend)?$/;
  const COLORS = ["#2462c9", "#2e9d5b", "#8e44ad", "#d35400", "#0f8b8d", "#b83b5e",
    "#6d6a00", "#5b6ee1", "#7f5539", "#c2185b"];
  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  const DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
  const TOKEN_KEY = "perfpipe-token";
  const MIN_SPAN = 10;

  const $ = (id) => document.getElementById(id);
  const el = (tag, props, children) => {
    const node = document.createElement(tag);
    Object.assign(node, props || {});
    for (const child of children || []) {
      node.append(child);
    }
    return node;
  };

  // ---- State and the URL ------------------------------------------------------------------

  const state = {
    hsms: [], // base series, host::service::metric
    start: "-24h", // epoch seconds or an offset such as -24h
    end: "now",
    rollup: "",
    methods: ["avg"],
    weekend: false,
    fit: true,
  };
  let zoomBase = null; // the range before the first zoom, for "Reset zoom"
  let token = sessionStorage.getItem(TOKEN_KEY) || "";

  function readUrl() {
    const params = new URLSearchParams(location.search);
    if (params.has("token")) {
      token = params.get("token");
      sessionStorage.setItem(TOKEN_KEY, token);
    }
    state.hsms = params.getAll("hsm").filter((hsm) => hsm.split("::").length >= 3);
    // A time is epoch seconds, now, or an offset the node reads too (-90m, -24h, -7d, -2w).
    const time = (text, fallback) => {
      if (/^\d+$/.test(text || "")) return Number(text);
      return text === "now" || /^-\d+[smhdw]$/.test(text || "") ? text : fallback;
    };
    state.start = time(params.get("start"), "-24h");
    state.end = time(params.get("end"), "now");
    const rollup = params.get("rollup") || "";
    state.rollup = LEVELS[rollup] ? rollup : "";
    const methods = (params.get("agg") || "avg").split(",").filter((m) => METHODS.includes(m));
    state.methods = methods.length ? methods : ["avg"];
    state.weekend = params.get("weekend") === "1";
    state.fit = params.get("fit") !== "0";
  }

  // The view as URL parameters; with `range`, its times as epoch seconds.
  function stateParams(range) {
    const params = new URLSearchParams();
    for (const hsm of state.hsms) params.append("hsm", hsm);
    params.set("start", String(range ? range.start : state.start));
    params.set("end", String(range ? range.end : state.end));
    if (state.rollup) {
      params.set("rollup", state.rollup);
      params.set("agg", state.methods.join(","));
      if (state.weekend) params.set("weekend", "1");
    }
    if (!state.fit) params.set("fit", "0");
    return params;
  }

  // The address bar keeps the state as chosen (a preset stays relative); the link has the
  // range plotted (`range`, else the state's resolved now) in epoch seconds.
  function writeUrl(range) {
    history.replaceState(null, "", "?" + stateParams(null).toString());
    $("permalink").href = location.pathname + "?" + stateParams(range || resolveRange()).toString();
  }

  // The node's clock minus this browser's, in seconds, from the Date of the node's last answer
  // (kept at 0 unless they differ by 2 s or more: the header has whole seconds).
  let clockOffset = 0;

  // Epoch seconds of the view, offsets resolved against the node's clock now.
  function resolveRange() {
    const now = Math.floor(Date.now() / 1000 + clockOffset);
    const resolve = (value) => {
      if (typeof value === "number") return value;
      if (value === "now") return now;
      const match = /^-(\d+)([smhdw])$/.exec(value);
      const unit = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };
      return match ? now - Number(match[1]) * unit[match[2]] : now - 86400;
    };
    return { start: resolve(state.start), end: resolve(state.end) };
  }

  // ---- The API ----------------------------------------------------------------------------

  async function api(path) {
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = "Bearer " + token;
    const response = await fetch(path, { headers });
    const date = Date.parse(response.headers.get("Date") || "");
    if (isFinite(date)) {
      const offset = (date - Date.now()) / 1000;
      clockOffset = Math.abs(offset) >= 2 ? Math.round(offset) : 0;
    }
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    if (!response.ok) {
      const error = new Error((body && body.error) || response.status + " " + response.statusText);
      error.status = response.status;
      if (response.status === 401 || response.status === 403) $("token-form").hidden = false;
      throw error;
    }
    return body;
  }

  function setStatus(id, text, isError) {
    const node = $(id);
    node.textContent = text || "";
    node.classList.toggle("error", Boolean(isError));
  }

  // ---- The catalogue: hosts, their metrics, search ----------------------------------------

  let hosts = []; // [{host, series, last_seen}]
  const metricsOf = new Map(); // host -> [metric of the listing] (aggregates left out)
  const rollupsOf = new Map(); // base hsm -> Set of aggregate hsms
  const infoOf = new Map(); // hsm -> metric of the listing
  const loading = new Map(); // host -> Promise
  const openHosts = new Set();
  let pending = 0;

  function splitHsm(hsm) {
    const first = hsm.indexOf("::");
    const last = hsm.lastIndexOf("::");
    return { host: hsm.slice(0, first), service: hsm.slice(first + 2, last), metric: hsm.slice(last + 2) };
  }

  function loadMetrics(host) {
    if (metricsOf.has(host)) return Promise.resolve(metricsOf.get(host));
    if (loading.has(host)) return loading.get(host);
    pending++;
    const promise = api("/api/v1/hosts/" + encodeURIComponent(host) + "/metrics")
      .then((answer) => {
        const plain = [];
        for (const metric of answer.metrics || []) {
          infoOf.set(metric.hsm, metric);
          const aggregate = AGGREGATE.exec(metric.service);
          if (aggregate) {
            const base = host + "::" + aggregate[1] + "::" + metric.metric;
            if (!rollupsOf.has(base)) rollupsOf.set(base, new Set());
            rollupsOf.get(base).add(metric.hsm);
          } else {
            plain.push(metric);
          }
        }
        metricsOf.set(host, plain);
        return plain;
      })
      .catch((error) => {
        setStatus("hosts-status", "metrics of " + host + ": " + error.message, true);
        return [];
      })
      .finally(() => {
        loading.delete(host);
        pending--;
      });
    loading.set(host, promise);
    return promise;
  }

  async function loadHosts() {
    pending++;
    try {
      setStatus("hosts-status", "loading hosts…");
      const answer = await api("/api/v1/hosts");
      hosts = answer.hosts || [];
      let text = hosts.length + (hosts.length === 1 ? " host" : " hosts");
      if (answer.partial) text += " (some nodes did not answer)";
      setStatus("hosts-status", text);
    } catch (error) {
      setStatus("hosts-status", "hosts: " + error.message, true);
    } finally {
      pending--;
    }
    renderHosts();
  }

  function query() {
    return $("search").value.trim().toLowerCase();
  }

  // Metrics of `host` that the search shows, or null when the host is not shown at all.
  function visibleMetrics(host) {
    const text = query();
    const metrics = metricsOf.get(host.host);
    if (!text || host.host.toLowerCase().includes(text)) return metrics || [];
    if (!metrics) return null;
    const found = metrics.filter((m) =>
      m.service.toLowerCase().includes(text) || m.metric.toLowerCase().includes(text));
    return found.length ? found : null;
  }

  function renderHosts() {
    const list = $("hosts");
    // Rebuilt whole: keyboard focus goes back to the same control afterwards.
    const focused = document.activeElement;
    const focusHost = focused && focused.closest && focused.closest(".host") ? focused.closest(".host").dataset.host : null;
    const focusHsm = focused && focused.dataset ? focused.dataset.hsm : null;
    list.replaceChildren();
    const text = query();
    let shown = 0;
    for (const host of hosts) {
      const metrics = visibleMetrics(host);
      if (metrics === null) continue;
      shown++;
      const open = openHosts.has(host.host) ||
        (text !== "" && !host.host.toLowerCase().includes(text));
      const item = el("li", { className: "host" + (open ? " open" : "") });
      item.dataset.host = host.host;
      const toggle = el("button", { type: "button" }, [
        el("span", { className: "name", textContent: host.host }),
        el("span", { className: "count", textContent: String(host.series) }),
      ]);
      toggle.setAttribute("aria-expanded", String(open));
      toggle.addEventListener("click", () => {
        if (openHosts.has(host.host)) {
          openHosts.delete(host.host);
          renderHosts();
        } else {
          openHosts.add(host.host);
          loadMetrics(host.host).then(renderHosts);
          renderHosts();
        }
      });
      item.append(toggle);
      if (open) item.append(renderMetrics(host.host, metrics));
      list.append(item);
    }
    if (hosts.length && !shown) {
      list.append(el("li", { className: "status", textContent: "nothing matches" }));
    }
    if (focusHsm) {
      const box = [...list.querySelectorAll("input[data-hsm]")].find((b) => b.dataset.hsm === focusHsm);
      if (box) box.focus();
    } else if (focusHost) {
      const item = [...list.children].find((li) => li.dataset.host === focusHost);
      if (item) item.querySelector("button").focus();
    }
  }

  function renderMetrics(host, metrics) {
    const services = el("ul");
    if (!metricsOf.has(host)) {
      services.append(el("li", { className: "status", textContent: "loading…" }));
      return services;
    }
    let current = null;
    let group = null;
    for (const metric of metrics) {
      if (metric.service !== current) {
        current = metric.service;
        group = el("ul");
        services.append(el("li", { className: "service" }, [
          el("span", { textContent: metric.service }), group]));
      }
      const box = el("input", { type: "checkbox", checked: state.hsms.includes(metric.hsm) });
      box.dataset.hsm = metric.hsm;
      box.addEventListener("change", () => {
        if (box.checked) {
          if (!state.hsms.includes(metric.hsm)) state.hsms.push(metric.hsm);
        } else {
          state.hsms = state.hsms.filter((hsm) => hsm !== metric.hsm);
        }
        changed();
      });
      const levels = [...(rollupsOf.get(metric.hsm) || [])]
        .map((hsm) => AGGREGATE.exec(splitHsm(hsm).service)[2]);
      const parts = [box, el("span", { textContent: metric.metric })];
      if (metric.uom) parts.push(el("span", { className: "uom", textContent: metric.uom }));
      if (levels.length) {
        const badge = [...new Set(levels)].sort((a, b) => "HDWM".indexOf(a) - "HDWM".indexOf(b));
        parts.push(el("span", { className: "uom", title: "rollups", textContent: "⟳" + badge.join("") }));
      }
      group.append(el("li", { className: "metric" }, [el("label", {}, parts)]));
    }
    return services;
  }

  let searchTimer = null;
  function searched() {
    renderHosts();
    clearTimeout(searchTimer);
    // Searching services and metrics needs the listings: fetched for up to 200 hosts.
    searchTimer = setTimeout(() => {
      if (!query() || hosts.length > 200) return;
      const missing = hosts.filter((h) => !metricsOf.has(h.host)).map((h) => loadMetrics(h.host));
      if (missing.length) Promise.all(missing).then(renderHosts);
    }, 150);
  }

  // ---- Reading the series -----------------------------------------------------------------

  let plotted = []; // what series() answers
  let view = null; // {start, end} of what is plotted
  let sequence = 0;

  // The series to ask for: each base series, or its aggregates of the chosen level.
  function wanted() {
    const list = [];
    const notes = [];
    for (const base of state.hsms) {
      if (!state.rollup) {
        list.push({ hsm: base, base, label: base });
        continue;
      }
      const { host, service, metric } = splitHsm(base);
      const known = rollupsOf.get(base);
      let any = false;
      for (const method of state.methods) {
        for (const weekend of state.weekend ? ["", "/weekend"] : [""]) {
          const hsm = host + "::" + service + "/" + state.rollup + "/" + method + weekend + "::" + metric;
          if (known && !known.has(hsm)) continue;
          any = true;
          list.push({
            hsm, base, method, weekend: weekend !== "",
            label: base + " · " + LEVELS[state.rollup] + " " + method + (weekend ? " (weekend)" : ""),
          });
        }
      }
      if (!any) notes.push("no " + LEVELS[state.rollup] + " rollup of " + base);
    }
    return { list, notes };
  }

  async function refresh() {
    const mine = ++sequence;
    writeUrl();
    renderControls();
    pending++;
    try {
      await Promise.all([...new Set(state.hsms.map((hsm) => splitHsm(hsm).host))].map(loadMetrics));
      const { list, notes } = wanted();
      let answer = { series: [] };
      if (list.length) {
        const params = new URLSearchParams();
        for (const series of list) params.append("hsm", series.hsm);
        // Offsets go as they are: the node resolves them on its own clock, which also picks
        // the finest archive that holds the whole span.
        params.set("start", String(state.start));
        params.set("end", String(state.end));
        answer = await api("/api/v1/query?" + params.toString());
      }
      if (mine !== sequence) return;
      const range = resolveRange();
      plotted = list.map((wish, index) => {
        const got = answer.series[index] || {};
        const base = infoOf.get(wish.base) || {};
        const points = [];
        (got.values || []).forEach((value, i) => {
          if (value !== null && value !== undefined) points.push([got.start + i * got.step, value]);
        });
        return {
          hsm: wish.hsm,
          base: wish.base,
          label: wish.label,
          rollup: state.rollup || (AGGREGATE.exec(splitHsm(wish.hsm).service) || [])[2] || null,
          method: wish.method || null,
          uom: got.uom !== undefined && got.uom !== null ? got.uom : (base.uom || ""),
          step: got.step || 60,
          warn: base.warn || null,
          crit: base.crit || null,
          error: got.error || null,
          points,
          color: COLORS[index % COLORS.length],
        };
      });
      view = range;
      writeUrl(view);
      renderControls();
      const units = [...new Set(plotted.map((s) => s.uom))];
      if (units.length > 2) {
        notes.push("only two units at once: " + units.slice(2).map((u) => u || "(none)").join(", ") + " not plotted");
      }
      const errors = plotted.filter((s) => s.error).map((s) => s.hsm + ": " + s.error);
      setStatus("chart-status", notes.concat(errors).join("; "), errors.length > 0);
      if (answer.partial) setStatus("chart-status", "some nodes did not answer; " + $("chart-status").textContent, true);
      draw();
      renderLegend();
    } catch (error) {
      if (mine === sequence) {
        plotted = [];
        view = resolveRange();
        setStatus("chart-status", "query: " + error.message, true);
        renderLegend();
        draw();
      }
    } finally {
      pending--;
    }
  }

  // ---- Number and time formatting ---------------------------------------------------------

  const TIME_UNITS = { us: 1e-6, ms: 1e-3, s: 1 };
  const BYTE_UNITS = { B: 1, KB: 1024, MB: 1048576, GB: 1073741824, TB: 1099511627776 };

  // How values of `uom` are shown at the size of `magnitude`: a divisor and a suffix.
  function scaleFor(uom, magnitude) {
    const size = Math.abs(magnitude);
    if (size === 0) return { divisor: 1, suffix: uom === "%" ? "%" : uom ? " " + uom : "" };
    if (TIME_UNITS[uom] !== undefined) {
      const seconds = size * TIME_UNITS[uom];
      const pick = seconds >= 1 || seconds === 0 ? ["s", 1] : seconds >= 1e-3 ? ["ms", 1e-3] : ["µs", 1e-6];
      return { divisor: pick[1] / TIME_UNITS[uom], suffix: " " + pick[0] };
    }
    if (BYTE_UNITS[uom] !== undefined) {
      const bytes = size * BYTE_UNITS[uom];
      let pick = ["B", 1];
      for (const [name, factor] of Object.entries(BYTE_UNITS)) if (bytes >= factor) pick = [name, factor];
      return { divisor: pick[1] / BYTE_UNITS[uom], suffix: " " + pick[0] };
    }
    if (uom === "%") return { divisor: 1, suffix: "%" };
    const unit = uom ? " " + uom : "";
    const prefixes = [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]];
    for (const [factor, prefix] of prefixes) {
      if (size >= factor) return { divisor: factor, suffix: (uom ? " " + prefix + uom : prefix) };
    }
    if (uom && size > 0 && size < 1) {
      if (size >= 1e-3) return { divisor: 1e-3, suffix: " m" + uom };
      return { divisor: 1e-6, suffix: " µ" + uom };
    }
    return { divisor: 1, suffix: unit };
  }

  function trimNumber(text) {
    return text.includes(".") ? text.replace(/\.?0+$/, "") : text;
  }

  // A value on its own (tooltip, legend): four significant digits.
  function formatValue(value, uom) {
    if (value === null || value === undefined || !isFinite(value)) return "–";
    const scale = scaleFor(uom, value);
    const scaled = value / scale.divisor;
    const digits = Math.max(0, 3 - Math.floor(Math.log10(Math.abs(scaled) || 1)));
    return trimNumber(scaled.toFixed(Math.min(digits, 6))) + scale.suffix;
  }

  function pad(n) {
    return n < 10 ? "0" + n : String(n);
  }

  function formatTime(t, withDate) {
    const d = new Date(t * 1000);
    const clock = pad(d.getHours()) + ":" + pad(d.getMinutes());
    if (!withDate) return clock;
    return d.getDate() + " " + MONTHS[d.getMonth()] + " " + d.getFullYear() + " " + clock;
  }

  function formatSpan(seconds) {
    if (seconds % 86400 === 0) return seconds / 86400 + "d";
    if (seconds % 3600 === 0) return seconds / 3600 + "h";
    if (seconds >= 3600) return (seconds / 3600).toFixed(1) + "h";
    return Math.round(seconds / 60) + "min";
  }

  // ---- Ticks ------------------------------------------------------------------------------

  function niceStep(span, count) {
    const rough = span / Math.max(1, count);
    const magnitude = Math.pow(10, Math.floor(Math.log10(rough)));
    const norm = rough / magnitude;
    return (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * magnitude;
  }

  // Ticks in the unit the axis shows (1.40 GB, 1.42 GB, … rather than steps of bytes).
  function valueTicks(min, max, count, uom) {
    const scale = scaleFor(uom, Math.max(Math.abs(min), Math.abs(max)));
    const low = min / scale.divisor;
    const high = max / scale.divisor;
    const step = niceStep(high - low, count);
    const decimals = Math.max(0, Math.min(6, -Math.floor(Math.log10(step) + 1e-9)));
    const ticks = [];
    for (let i = Math.ceil(low / step - 1e-9); i * step <= high + step * 1e-9; i++) {
      const shown = i * step;
      ticks.push({ value: shown * scale.divisor, label: (shown === 0 ? 0 : shown).toFixed(decimals) + scale.suffix });
    }
    return ticks;
  }

  const TIME_STEPS = [60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200,
    86400, 172800, 604800, 1209600];

  function timeTicks(start, end, width) {
    const most = Math.max(2, Math.floor(width / 90));
    const span = end - start;
    const ticks = [];
    if (span / 2592000 > most / 2) {
      // Months: the first of each (every n-th month).
      const every = Math.ceil(span / 2629800 / most);
      const d = new Date(start * 1000);
      d.setDate(1);
      d.setHours(0, 0, 0, 0);
      while (d.getTime() / 1000 <= end) {
        const t = d.getTime() / 1000;
        if (t >= start && d.getMonth() % every === 0) {
          ticks.push({ t, label: MONTHS[d.getMonth()] + " " + d.getFullYear(), major: true });
        }
        d.setMonth(d.getMonth() + 1);
      }
      return ticks;
    }
    const step = TIME_STEPS.find((s) => span / s <= most) || 2592000;
    // Aligned on the local clock: midnight for days, whole multiples of the step within a day.
    const origin = new Date(start * 1000);
    origin.setHours(0, 0, 0, 0);
    let t = origin.getTime() / 1000;
    if (step >= 86400) {
      const d = new Date(t * 1000);
      while (d.getTime() / 1000 <= end) {
        const at = d.getTime() / 1000;
        if (at >= start) {
          ticks.push({ t: at, label: DAYS[d.getDay()] + " " + d.getDate() + " " + MONTHS[d.getMonth()], major: true });
        }
        d.setDate(d.getDate() + step / 86400);
      }
      return ticks;
    }
    t += Math.ceil((start - t) / step) * step;
    let lastDay = null;
    for (; t <= end; t += step) {
      const d = new Date(t * 1000);
      const day = d.getDate() + " " + MONTHS[d.getMonth()];
      const major = day !== lastDay;
      ticks.push({ t, label: formatTime(t, false), sub: major ? day : "", major });
      lastDay = day;
    }
    return ticks;
  }

  // ---- Drawing ----------------------------------------------------------------------------

  const canvas = $("canvas");
  const context = canvas.getContext("2d");
  let layout = null; // plot area and scales of the last drawing
  let drawnThresholds = [];
  let drawnAxes = [];
  let hover = null; // x in CSS pixels
  let drag = null; // {from, to} in CSS pixels

  function thresholdValues(series) {
    const lines = [];
    for (const level of ["warn", "crit"]) {
      const range = series[level];
      if (!range) continue;
      if (range.start !== null && !(range.start === 0 && !range.inside)) {
        lines.push({ level, value: range.start });
      }
      if (range.end !== null) lines.push({ level, value: range.end });
    }
    return lines;
  }

  function computeAxes(series) {
    const units = [];
    for (const s of series) if (!units.includes(s.uom)) units.push(s.uom);
    const axes = units.slice(0, 2).map((uom, index) => ({ uom, side: index === 0 ? "left" : "right", series: [] }));
    for (const s of series) {
      const axis = axes.find((a) => a.uom === s.uom);
      s.axis = axis ? axis.side : null;
      if (axis) axis.series.push(s);
    }
    for (const axis of axes) {
      let min = Infinity;
      let max = -Infinity;
      for (const s of axis.series) {
        for (const [, v] of s.points) {
          if (v < min) min = v;
          if (v > max) max = v;
        }
        if (state.fit) {
          for (const line of thresholdValues(s)) {
            if (line.value < min) min = line.value;
            if (line.value > max) max = line.value;
          }
        }
      }
      if (min === Infinity) {
        min = 0;
        max = 1;
      }
      if (min >= 0 && min <= max * 0.3) min = 0;
      if (min === max) {
        const room = Math.abs(min) * 0.1 || 1;
        min -= room;
        max += room;
      } else {
        const room = (max - min) * 0.05;
        max += room;
        if (min !== 0) min -= room;
      }
      axis.min = min;
      axis.max = max;
    }
    return axes;
  }

  // Sizes the canvas to its box (sharp on high-density screens) and clears it.
  function prepareCanvas() {
    const box = canvas.getBoundingClientRect();
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(200, Math.round(box.width));
    const height = Math.max(150, Math.round(box.height));
    if (canvas.width !== width * ratio || canvas.height !== height * ratio) {
      canvas.width = width * ratio;
      canvas.height = height * ratio;
    }
    context.setTransform(ratio, 0, 0, ratio, 0, 0);
    context.clearRect(0, 0, width, height);
    return { width, height };
  }

  function draw() {
    const { width, height } = prepareCanvas();
    $("chart-empty").hidden = state.hsms.length > 0;
    if (!view) return;
    const axes = computeAxes(plotted);
    const right = axes.length > 1 ? 70 : 20;
    const plot = { x: 70, y: 26, w: width - 70 - right, h: height - 26 - 44 };
    const style = getComputedStyle(document.documentElement);
    const color = (name, fallback) => style.getPropertyValue(name).trim() || fallback;
    const frame = {
      plot,
      width,
      x: (t) => plot.x + ((t - view.start) / (view.end - view.start)) * plot.w,
      yOf: (axis) => (v) => plot.y + plot.h - ((v - axis.min) / (axis.max - axis.min)) * plot.h,
      axisOf: (series) => axes.find((a) => a.side === series.axis),
      ink: color("--ink", "#1d2330"),
      muted: color("--muted", "#5f6675"),
      grid: color("--line", "#d9dce3"),
      warn: color("--warn", "#c98a00"),
      crit: color("--crit", "#c62828"),
    };
    layout = { plot, width, height };
    context.font = "12px system-ui, sans-serif";
    context.lineWidth = 1;

    drawTimeAxis(frame);
    drawnAxes = axes.map((axis) => drawValueAxis(frame, axis));
    context.strokeStyle = frame.grid;
    context.strokeRect(plot.x + 0.5, plot.y + 0.5, plot.w - 1, plot.h - 1);
    context.save();
    context.beginPath();
    context.rect(plot.x, plot.y, plot.w, plot.h);
    context.clip();
    const labels = drawThresholds(frame);
    for (const series of plotted) drawSeries(frame, series);
    drawLabels(labels);
    context.restore();
    drawPointer(frame);
    canvas.setAttribute("aria-label", "Graph of " + plotted.map((s) => s.label).join(", ") +
      " from " + formatTime(view.start, true) + " to " + formatTime(view.end, true));
  }

  // Grid lines and time labels (with the date under the first tick of each day).
  function drawTimeAxis({ plot, x, grid, muted }) {
    context.textAlign = "center";
    context.textBaseline = "top";
    for (const tick of timeTicks(view.start, view.end, plot.w)) {
      const px = Math.round(x(tick.t)) + 0.5;
      context.strokeStyle = grid;
      context.beginPath();
      context.moveTo(px, plot.y);
      context.lineTo(px, plot.y + plot.h);
      context.stroke();
      context.fillStyle = muted;
      context.fillText(tick.label, px, plot.y + plot.h + 6);
      if (tick.sub) context.fillText(tick.sub, px, plot.y + plot.h + 22);
    }
  }

  // One value axis: its ticks in its unit, its unit as its title (grid lines for the left one).
  function drawValueAxis({ plot, width, yOf, grid, muted, ink }, axis) {
    const y = yOf(axis);
    const ticks = valueTicks(axis.min, axis.max, Math.max(2, Math.floor(plot.h / 45)), axis.uom);
    const atLeft = axis.side === "left";
    context.textAlign = atLeft ? "right" : "left";
    context.textBaseline = "middle";
    for (const tick of ticks) {
      const py = Math.round(y(tick.value)) + 0.5;
      if (atLeft) {
        context.strokeStyle = grid;
        context.beginPath();
        context.moveTo(plot.x, py);
        context.lineTo(plot.x + plot.w, py);
        context.stroke();
      }
      context.fillStyle = muted;
      context.fillText(tick.label, atLeft ? plot.x - 6 : plot.x + plot.w + 6, py);
    }
    const title = axis.uom || "(no unit)";
    context.fillStyle = ink;
    context.textBaseline = "bottom";
    context.textAlign = atLeft ? "left" : "right";
    context.fillText(title, atLeft ? 6 : width - 6, plot.y - 8);
    return { side: axis.side, uom: axis.uom, title, min: axis.min, max: axis.max, ticks };
  }

  // Thresholds: dashed, amber for warning, red for critical, once per value and axis. Returns
  // their labels, placed at the right end and moved left of any label already at that height,
  // for drawLabels to draw over the series.
  function drawThresholds(frame) {
    const { plot, yOf, axisOf } = frame;
    drawnThresholds = [];
    const seen = new Set();
    const placed = [];
    for (const s of plotted) {
      const axis = axisOf(s);
      if (!axis) continue;
      for (const line of thresholdValues(s)) {
        const y = yOf(axis)(line.value);
        drawnThresholds.push({ hsm: s.hsm, level: line.level, value: line.value, axis: axis.side, y,
          visible: y >= plot.y && y <= plot.y + plot.h });
        const key = axis.side + line.level + line.value;
        if (seen.has(key)) continue;
        seen.add(key);
        const color = frame[line.level];
        context.strokeStyle = color;
        context.setLineDash([6, 4]);
        context.lineWidth = 1.5;
        context.beginPath();
        context.moveTo(plot.x, Math.round(y) + 0.5);
        context.lineTo(plot.x + plot.w, Math.round(y) + 0.5);
        context.stroke();
        context.setLineDash([]);
        const name = plotted.length > 1 ? " · " + splitHsm(s.base).metric : "";
        const text = line.level + " " + formatValue(line.value, s.uom) + name;
        const textWidth = context.measureText(text).width;
        let right = plot.x + plot.w - 4;
        for (let moved = true; moved;) {
          moved = false;
          for (const other of placed) {
            if (Math.abs(other.y - y) < 14 && right > other.left - 10 && right - textWidth < other.right + 10) {
              right = other.left - 10;
              moved = true;
            }
          }
        }
        placed.push({ y, left: right - textWidth, right, text, color });
      }
    }
    return placed;
  }

  // One series: a line broken where points are missing (more than a step and a half apart, or
  // for rollups a period and a half: their stores keep finer slots than their periods), dashed
  // for min and max aggregates, with dots where points are sparse.
  function drawSeries({ plot, x, yOf, axisOf }, s) {
    const axis = axisOf(s);
    if (!axis) return;
    const y = yOf(axis);
    context.strokeStyle = s.color;
    context.fillStyle = s.color;
    context.lineWidth = 1.75;
    context.lineJoin = "round";
    context.setLineDash(s.method === "min" || s.method === "max" ? [2, 2] : []);
    const gap = Math.max(s.step, s.rollup ? PERIODS[s.rollup] : 0) * 1.5;
    context.beginPath();
    let previous = null;
    for (const [t, v] of s.points) {
      if (previous === null || t - previous > gap) context.moveTo(x(t), y(v));
      else context.lineTo(x(t), y(v));
      previous = t;
    }
    context.stroke();
    context.setLineDash([]);
    if (s.points.length && s.points.length < plot.w / 10) {
      for (const [t, v] of s.points) {
        context.beginPath();
        context.arc(x(t), y(v), 2.5, 0, Math.PI * 2);
        context.fill();
      }
    }
  }

  // Threshold labels, over the lines on a light ground.
  function drawLabels(labels) {
    context.textAlign = "right";
    context.textBaseline = "bottom";
    for (const label of labels) {
      context.fillStyle = "rgba(255, 255, 255, 0.85)";
      context.fillRect(label.left - 2, label.y - 16, label.right - label.left + 4, 14);
      context.fillStyle = label.color;
      context.fillText(label.text, label.right, label.y - 2);
    }
  }

  // The span being dragged, or the line under the pointer.
  function drawPointer({ plot, muted }) {
    if (drag && Math.abs(drag.to - drag.from) > 1) {
      context.fillStyle = "rgba(36, 98, 201, 0.15)";
      const from = Math.max(plot.x, Math.min(drag.from, drag.to));
      const to = Math.min(plot.x + plot.w, Math.max(drag.from, drag.to));
      context.fillRect(from, plot.y, to - from, plot.h);
    } else if (hover !== null) {
      context.strokeStyle = muted;
      context.beginPath();
      context.moveTo(Math.round(hover) + 0.5, plot.y);
      context.lineTo(Math.round(hover) + 0.5, plot.y + plot.h);
      context.stroke();
    }
  }

  function renderLegend() {
    const legend = $("legend");
    legend.replaceChildren();
    for (const s of plotted) {
      const last = s.points.length ? s.points[s.points.length - 1][1] : null;
      const parts = [
        el("span", { className: "swatch" }),
        el("span", { className: "label", textContent: s.label }),
        el("span", { className: "uom", textContent: "last " + formatValue(last, s.uom) }),
      ];
      parts[0].style.background = s.color;
      for (const level of ["warn", "crit"]) {
        const range = s[level];
        if (!range) continue;
        const text = (range.inside ? "@" : "") + (range.start === null ? "~" : range.start) + ":" +
          (range.end === null ? "" : range.end);
        parts.push(el("span", { className: "thresholds " + level, textContent: level + " " + text }));
      }
      if (s.error) parts.push(el("span", { className: "thresholds crit", textContent: s.error }));
      if (s.axis === null) parts.push(el("span", { className: "thresholds", textContent: "(not plotted: a third unit)" }));
      const item = el("li", {}, parts);
      item.dataset.hsm = s.hsm;
      legend.append(item);
    }
  }

  // ---- Hover, zoom ------------------------------------------------------------------------

  function nearest(points, t) {
    let low = 0;
    let high = points.length - 1;
    if (high < 0) return null;
    while (low < high) {
      const middle = (low + high) >> 1;
      if (points[middle][0] < t) low = middle + 1;
      else high = middle;
    }
    if (low > 0 && Math.abs(points[low - 1][0] - t) < Math.abs(points[low][0] - t)) low--;
    return points[low];
  }

  function timeAt(px) {
    const { plot } = layout;
    const share = Math.max(0, Math.min(1, (px - plot.x) / plot.w));
    return view.start + share * (view.end - view.start);
  }

  function inPlot(px, py) {
    if (!layout) return false;
    const { plot } = layout;
    return px >= plot.x && px <= plot.x + plot.w && py >= plot.y && py <= plot.y + plot.h;
  }

  function showTooltip(px, py) {
    const tooltip = $("tooltip");
    if (!layout || !plotted.length || !inPlot(px, py)) {
      tooltip.hidden = true;
      return;
    }
    const t = timeAt(px);
    const rows = [];
    let at = null;
    for (const s of plotted) {
      const point = nearest(s.points, t);
      if (!point || Math.abs(point[0] - t) > Math.max(s.step, (view.end - view.start) / layout.plot.w * 12)) continue;
      if (at === null) at = point[0];
      const swatch = el("span", { className: "swatch" });
      swatch.style.background = s.color;
      rows.push(el("div", {}, [swatch, s.label + ": " + formatValue(point[1], s.uom)]));
    }
    if (!rows.length) {
      tooltip.hidden = true;
      return;
    }
    tooltip.replaceChildren(el("div", { textContent: formatTime(at, true) }), ...rows);
    tooltip.hidden = false;
    const room = layout.width - px;
    tooltip.style.left = (room < tooltip.offsetWidth + 24 ? px - tooltip.offsetWidth - 12 : px + 12) + "px";
    tooltip.style.top = Math.max(4, py - tooltip.offsetHeight - 8) + "px";
  }

  function pointerX(event) {
    const box = canvas.getBoundingClientRect();
    return [event.clientX - box.left, event.clientY - box.top];
  }

  canvas.addEventListener("pointerdown", (event) => {
    const [px, py] = pointerX(event);
    if (event.button !== 0 || !inPlot(px, py) || !view) return;
    drag = { from: px, to: px };
    canvas.setPointerCapture(event.pointerId);
    $("tooltip").hidden = true;
  });
  canvas.addEventListener("pointermove", (event) => {
    const [px, py] = pointerX(event);
    if (drag) {
      drag.to = px;
    } else {
      hover = inPlot(px, py) ? px : null;
      showTooltip(px, py);
    }
    if (view) draw();
  });
  canvas.addEventListener("pointerup", (event) => {
    if (!drag) return;
    const [px] = pointerX(event);
    const from = Math.min(drag.from, px);
    const to = Math.max(drag.from, px);
    drag = null;
    if (to - from < 5) {
      draw();
      return;
    }
    const start = Math.floor(timeAt(from));
    const end = Math.ceil(timeAt(to));
    if (end - start < MIN_SPAN) {
      draw();
      return;
    }
    if (!zoomBase) zoomBase = { start: state.start, end: state.end };
    state.start = start;
    state.end = end;
    changed();
  });
  canvas.addEventListener("pointerleave", () => {
    hover = null;
    $("tooltip").hidden = true;
    if (view && !drag) draw();
  });
  window.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && drag) {
      drag = null;
      draw();
    }
  });

  // ---- Controls ---------------------------------------------------------------------------

  function toLocalInput(t) {
    const d = new Date(t * 1000);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + "T" +
      pad(d.getHours()) + ":" + pad(d.getMinutes());
  }

  function renderControls() {
    for (const button of document.querySelectorAll("[data-range]")) {
      const active = state.end === "now" && state.start === "-" + button.dataset.range;
      button.classList.toggle("active", active);
      button.setAttribute("aria-pressed", String(active));
    }
    const range = resolveRange();
    if (document.activeElement !== $("from") && document.activeElement !== $("to")) {
      $("from").value = toLocalInput(range.start);
      $("to").value = toLocalInput(range.end);
    }
    $("reset-zoom").disabled = zoomBase === null;
    $("rollup").value = state.rollup;
    $("methods").disabled = !state.rollup;
    for (const box of $("methods").querySelectorAll("input")) {
      box.checked = box.value === "weekend" ? state.weekend : state.methods.includes(box.value);
    }
    $("fit-thresholds").checked = state.fit;
    const relative = typeof state.start === "string" ? " (last " + state.start.slice(1) + ")" : "";
    $("range-label").textContent = formatTime(range.start, true) + " – " + formatTime(range.end, true) +
      relative + (zoomBase ? " · zoomed" : "") + " · " + formatSpan(range.end - range.start);
  }

  function changed() {
    refresh();
    renderHosts();
  }

  for (const button of document.querySelectorAll("[data-range]")) {
    button.addEventListener("click", () => {
      state.start = "-" + button.dataset.range;
      state.end = "now";
      zoomBase = null;
      changed();
    });
  }
  $("custom-range").addEventListener("submit", (event) => {
    event.preventDefault();
    const start = Math.floor(new Date($("from").value).getTime() / 1000);
    const end = Math.floor(new Date($("to").value).getTime() / 1000);
    if (!isFinite(start) || !isFinite(end) || end - start < MIN_SPAN) {
      setStatus("chart-status", "the range must run forward, by at least " + MIN_SPAN + " s", true);
      return;
    }
    state.start = start;
    state.end = end;
    zoomBase = null;
    changed();
  });
  $("reset-zoom").addEventListener("click", () => {
    if (!zoomBase) return;
    state.start = zoomBase.start;
    state.end = zoomBase.end;
    zoomBase = null;
    changed();
  });
  $("rollup").addEventListener("change", () => {
    state.rollup = $("rollup").value;
    changed();
  });
  $("methods").addEventListener("change", () => {
    const boxes = [...$("methods").querySelectorAll("input")];
    state.methods = boxes.filter((b) => b.checked && b.value !== "weekend").map((b) => b.value);
    if (!state.methods.length) state.methods = ["avg"];
    state.weekend = $("weekend").checked;
    changed();
  });
  $("fit-thresholds").addEventListener("change", () => {
    state.fit = $("fit-thresholds").checked;
    writeUrl();
    draw();
  });
  // input: typing; change: a field cleared by a script or a driver (no input event then).
  $("search").addEventListener("input", searched);
  $("search").addEventListener("change", searched);
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    token = $("token").value.trim();
    sessionStorage.setItem(TOKEN_KEY, token);
    $("token-form").hidden = true;
    metricsOf.clear();
    loadHosts();
    refresh();
  });
  if (window.ResizeObserver) {
    new ResizeObserver(() => draw()).observe($("chart"));
  } else {
    window.addEventListener("resize", draw);
  }

  // ---- For tests and scripts ------------------------------------------------------------

  const copy = (value) => JSON.parse(JSON.stringify(value));
  window.perfpipeGraph = {
    series: () => copy(plotted.map((s) => ({
      hsm: s.hsm, base: s.base, label: s.label, uom: s.uom, axis: s.axis || null,
      color: s.color, rollup: s.rollup, method: s.method, warn: s.warn, crit: s.crit,
      error: s.error, points: s.points,
    }))),
    range: () => (view ? { start: view.start, end: view.end } : null),
    thresholds: () => copy(drawnThresholds),
    axes: () => copy(drawnAxes),
    state: () => copy(state),
    idle: () => pending === 0 && loading.size === 0,
    formatValue,
  };

  // ---- Start ------------------------------------------------------------------------------

  readUrl();
  for (const hsm of state.hsms) openHosts.add(splitHsm(hsm).host);
  loadHosts().then(() => {
    for (const host of openHosts) loadMetrics(host).then(renderHosts);
  });
  refresh();
})();
