// Squall UI pages: plain DOM over the REST API (/api/v1, Storm's).
"use strict";
const squall = (() => {
  const REFRESH_MS = 3000;
  const params = new URLSearchParams(location.search);
  const $ = (id) => document.getElementById(id);
  const esc = (v) => String(v ?? "").replace(/[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));

  // With security on the API wants a bearer token (`squall token USER`):
  // asked for once, kept for the browser tab, asked again when refused.
  const TOKEN = "squall.token";
  let declined = false;
  async function api(path, method) {
    for (;;) {
      const headers = {};
      const token = sessionStorage.getItem(TOKEN);
      if (token) headers.Authorization = "Bearer " + token;
      const r = await fetch("/api/v1/" + path, { method: method || "GET", headers });
      const body = await r.json();
      if (r.status === 401 && !declined) {
        const entered = window.prompt(
          "This cluster needs a token (`squall token USER` prints one).\n" + (body.errorMessage || ""));
        if (entered && entered.trim()) {
          sessionStorage.setItem(TOKEN, entered.trim());
          continue;
        }
        declined = true;
      }
      if (!r.ok) throw new Error(body.errorMessage || r.statusText);
      return body;
    }
  }

  function message(text, isError) {
    const m = $("message");
    m.textContent = text || "";
    m.className = isError ? "error" : "";
  }

  // columns: [[heading, key or function(row) returning HTML]]
  function table(id, columns, rows) {
    const head = columns.map(([h]) => `<th>${esc(h)}</th>`).join("");
    const body = rows.map((r) => "<tr>" + columns.map(([, k]) =>
      `<td>${typeof k === "function" ? k(r) : esc(r[k])}</td>`).join("") + "</tr>").join("");
    return `<table id="${id}"><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`;
  }

  function capacityColour(c) {
    const x = Math.max(0, Math.min(1, Number(c) || 0));
    return `hsl(${Math.round(120 * (1 - x))}, 65%, 38%)`;
  }

  function errorCell(r) {
    if (!r.lastError) return "";
    const where = r.errorHost ? ` <span class="muted">(${esc(r.errorHost)}:${esc(r.errorPort)}, ${esc(r.errorLapsedSecs)} s ago)</span>` : "";
    return `<span class="error">${esc(r.lastError)}</span>${where}${logLink(r.errorWorkerLogLink, "error-log-link")}`;
  }

  // A link to a worker's log on its supervisor's log viewer, if it serves one.
  function logLink(href, cls) {
    return href ? ` <a class="${cls}" href="${esc(href)}">log</a>` : "";
  }

  // The Debug button (Storm's event sampling) of a topology or component
  // at API path `base`: asks for a sampling percentage to turn it on,
  // turns it off when on. `state()` is the page's latest {debug, samplingPct}.
  function debugButton(base, state) {
    const show = (s) => {
      $("btn-debug").textContent = s.debug ? "Stop debug" : "Debug";
      $("debug-state").textContent = s.debug ? `sampling ${s.samplingPct}% of emitted tuples` : "";
    };
    $("btn-debug").onclick = async () => {
      const now = state();
      let path = `${base}/debug/disable/0`;
      if (!now.debug) {
        const pct = window.prompt("Percentage of emitted tuples to sample (0-100]", "10");
        if (pct === null) return;
        path = `${base}/debug/enable/${encodeURIComponent(pct.trim())}`;
      }
      try {
        show(await api(path, "POST"));
        message("debug: done");
      } catch (e) { message(`debug failed: ${e.message}`, true); }
    };
    return show;
  }

  // A line chart in plain SVG: `lines` are {name, values: [[ms, v]]} over
  // the last `spanMs`; `marks` are [startMs, endMs] periods shaded as under
  // backpressure. Each line's path carries its largest value (data-max).
  const COLOURS = ["#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#ff7f0e", "#17becf", "#8c564b"];
  function lineChart(id, title, unit, lines, marks, now, spanMs) {
    const W = 460, H = 170, L = 48, R = 8, T = 22, B = 34;
    const max = Math.max(0, ...lines.flatMap((l) => l.values.map(([, v]) => v)));
    const top = max > 0 ? max * 1.1 : 1;
    const x = (t) => L + (W - L - R) * Math.max(0, Math.min(1, (t - (now - spanMs)) / spanMs));
    const y = (v) => T + (H - T - B) * (1 - v / top);
    const shaded = marks.map(([a, b]) =>
      `<rect class="backpressure" x="${x(a).toFixed(1)}" y="${T}" width="${Math.max(1, x(b) - x(a)).toFixed(1)}" height="${H - T - B}"><title>backpressure</title></rect>`).join("");
    const paths = lines.map((l, i) => {
      const d = l.values.map(([t, v], j) => `${j ? "L" : "M"}${x(t).toFixed(1)},${y(v).toFixed(1)}`).join("");
      const lineMax = Math.max(0, ...l.values.map(([, v]) => v));
      return `<path class="series" data-name="${esc(l.name)}" data-max="${lineMax}" d="${d}" stroke="${COLOURS[i % COLOURS.length]}"></path>`;
    }).join("");
    const legend = lines.map((l, i) =>
      `<tspan fill="${COLOURS[i % COLOURS.length]}">\u25A0 ${esc(l.name)}</tspan>`).join(" ");
    const ticks = [0, 0.5, 1].map((f) =>
      `<text class="tick" x="${L - 4}" y="${(y(top * f / 1.1) + 4).toFixed(1)}" text-anchor="end">${esc(+(top * f / 1.1).toPrecision(3))}</text>`).join("");
    return `<svg class="chart" id="${id}" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}">
      <text class="chart-title" x="${L}" y="14">${esc(title)} <tspan class="muted">(${esc(unit)})</tspan></text>
      ${shaded}<line class="axis" x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}"></line>
      <line class="axis" x1="${L}" y1="${T}" x2="${L}" y2="${H - B}"></line>${ticks}
      <text class="tick" x="${L}" y="${H - B + 14}">-10 min</text><text class="tick" x="${W - R}" y="${H - B + 14}" text-anchor="end">now</text>
      ${paths}<text class="legend" x="${L}" y="${H - 4}">${legend}</text></svg>`;
  }

  // The points of one component's series as [[ms, value]] for `key`.
  const pointsOf = (points, key) => points.map((p) => [p.time + p.spanMs / 2, p[key]]);
  // The periods any of `components` was under backpressure.
  const backpressureOf = (components) => components.flatMap((c) =>
    c.points.filter((p) => p.backpressure).map((p) => [p.time, p.time + p.spanMs]));
  // Pointwise sum (or max) of several series of the same times.
  const combine = (series, f) => series.length === 0 ? [] :
    series[0].map(([t], i) => [t, f(series.map((s) => s[i][1]))]);
  const sum = (vs) => vs.reduce((a, b) => a + b, 0);
  const most = (vs) => Math.max(...vs);

  // The topology page's charts: tuples per second, complete latency, and
  // each bolt's capacity with backpressure shaded.
  function topologyCharts(ts) {
    const now = Date.now(), span = ts.windowSecs * 1000;
    const all = Object.entries(ts.components);
    const spouts = all.filter(([, c]) => c.type === "spout").map(([, c]) => c.points);
    const bolts = all.filter(([, c]) => c.type === "bolt");
    return lineChart("chart-throughput", "Tuples per second", "tuples/s", [
      { name: "emitted", values: combine(all.map(([, c]) => pointsOf(c.points, "emittedPerSec")), sum) },
      { name: "acked", values: combine(spouts.map((p) => pointsOf(p, "ackedPerSec")), sum) },
      { name: "failed", values: combine(spouts.map((p) => pointsOf(p, "failedPerSec")), sum) }], [], now, span)
      + lineChart("chart-latency", "Complete latency", "ms", [
        { name: "p50", values: combine(spouts.map((p) => pointsOf(p, "completeLatencyP50")), most) },
        { name: "p99", values: combine(spouts.map((p) => pointsOf(p, "completeLatencyP99")), most) }], [], now, span)
      + lineChart("chart-capacity", "Capacity", "busy fraction; shaded: backpressure",
        bolts.map(([id, c]) => ({ name: id, values: pointsOf(c.points, "capacity") })),
        backpressureOf(all.map(([, c]) => c)), now, span);
  }

  // A component page's charts.
  function componentCharts(ts, id) {
    const c = ts.components[id];
    if (!c) return "";
    const now = Date.now(), span = ts.windowSecs * 1000;
    const spout = c.type === "spout";
    const rates = [["emitted", "emittedPerSec"], ["acked", "ackedPerSec"], ["failed", "failedPerSec"]]
      .concat(spout ? [] : [["executed", "executedPerSec"]])
      .map(([name, key]) => ({ name, values: pointsOf(c.points, key) }));
    const lat = spout ? ["completeLatencyP50", "completeLatencyP99"] : ["executeLatencyP50", "executeLatencyP99"];
    return lineChart("chart-throughput", "Tuples per second", "tuples/s", rates, [], now, span)
      + lineChart("chart-latency", spout ? "Complete latency" : "Execute latency", "ms",
        [{ name: "p50", values: pointsOf(c.points, lat[0]) }, { name: "p99", values: pointsOf(c.points, lat[1]) }], [], now, span)
      + (spout ? "" : lineChart("chart-capacity", "Capacity", "busy fraction; shaded: backpressure",
        [{ name: "capacity", values: pointsOf(c.points, "capacity") }], backpressureOf([c]), now, span));
  }

  function live(load) {
    const run = () => load().then(() => {}, (e) => message(e.message, true));
    run();
    setInterval(run, REFRESH_MS);
  }

  async function indexPage() {
    live(async () => {
      const [c, n, t, s] = await Promise.all([api("cluster/summary"), api("nimbus/summary"),
        api("topology/summary"), api("supervisor/summary")]);
      $("cluster").innerHTML = table("cluster-table", [["Version", "stormVersion"], ["Supervisors", "supervisors"],
        ["Used slots", "slotsUsed"], ["Free slots", "slotsFree"], ["Total slots", "slotsTotal"],
        ["Executors", "executorsTotal"], ["Tasks", "tasksTotal"]], [c]);
      $("nimbus").innerHTML = table("nimbus-table", [["Host", "host"], ["Port", "port"], ["Status", "status"],
        ["Uptime", "nimbusUpTime"]], n.nimbuses);
      $("topologies").innerHTML = table("topologies-table", [
        ["Name", (r) => `<a href="/topology.html?id=${encodeURIComponent(r.id)}">${esc(r.name)}</a>`],
        ["Id", "id"], ["Status", "status"], ["Uptime", "uptime"], ["Workers", "workersTotal"],
        ["Executors", "executorsTotal"], ["Tasks", "tasksTotal"]], t.topologies);
      $("supervisors").innerHTML = table("supervisors-table", [["Id", "id"], ["Host", "host"], ["Uptime", "uptime"],
        ["Slots", "slotsTotal"], ["Used slots", "slotsUsed"]], s.supervisors);
    });
  }

  const windowLinks = (id, current) => ["600", "10800", "86400", ":all-time"].map((w) =>
    w === current ? esc(w) : `<a href="?id=${encodeURIComponent(id)}&window=${encodeURIComponent(w)}">${esc(w)}</a>`).join(" | ");

  async function topologyPage() {
    const id = params.get("id");
    const win = params.get("window") || ":all-time";
    const q = "?window=" + encodeURIComponent(win);
    let name = id;
    const act = (op, path, question) => async () => {
      if (!confirm(`Do you really want to ${question} topology ${name}?`)) return;
      try {
        await api(`topology/${encodeURIComponent(id)}/${path}`, "POST");
        message(`${op}: done`);
      } catch (e) { message(`${op} failed: ${e.message}`, true); }
    };
    $("btn-activate").onclick = act("activate", "activate", "activate");
    $("btn-deactivate").onclick = act("deactivate", "deactivate", "deactivate");
    $("btn-rebalance").onclick = act("rebalance", "rebalance/0", "rebalance");
    $("btn-kill").onclick = act("kill", "kill/0", "kill");
    let debugState = { debug: false, samplingPct: 0 };
    const showDebug = debugButton(`topology/${encodeURIComponent(id)}`, () => debugState);
    live(async () => {
      const [t, v, lag, ts] = await Promise.all([api(`topology/${encodeURIComponent(id)}${q}`),
        api(`topology/${encodeURIComponent(id)}/visualization?window=600`),
        api(`topology/${encodeURIComponent(id)}/lag`), api(`topology/${encodeURIComponent(id)}/timeseries`)]);
      $("charts").innerHTML = topologyCharts(ts);
      name = t.name;
      debugState = t;
      showDebug(t);
      document.title = `${t.name} - Squall`;
      $("title").textContent = `Topology ${t.name}`;
      $("summary").innerHTML = table("summary-table", [["Name", "name"], ["Id", "id"],
        ["Status", (r) => `<span id="topology-status">${esc(r.status)}</span>`], ["Uptime", "uptime"],
        ["Workers", "workersTotal"], ["Executors", "executorsTotal"], ["Tasks", "tasksTotal"],
        ["Message timeout (s)", "msgTimeout"]], [t]);
      $("stats").innerHTML = table("stats-table", [["Window", "windowPretty"], ["Emitted", "emitted"],
        ["Transferred", "transferred"], ["Complete latency (ms)", "completeLatency"], ["Acked", "acked"],
        ["Failed", "failed"]], t.topologyStats);
      $("window-hint").innerHTML = `(${esc(t.windowHint)}: ${windowLinks(id, win)})`;
      const link = (c) => `<a href="/component.html?id=${encodeURIComponent(c)}&topology_id=${encodeURIComponent(id)}">${esc(c)}</a>`;
      $("spouts").innerHTML = table("spouts-table", [["Id", (r) => link(r.spoutId)], ["Executors", "executors"],
        ["Tasks", "tasks"], ["Emitted", "emitted"], ["Transferred", "transferred"],
        ["Complete latency (ms)", "completeLatency"], ["Acked", "acked"], ["Failed", "failed"],
        ["Last error", errorCell]], t.spouts);
      $("bolts").innerHTML = table("bolts-table", [["Id", (r) => link(r.boltId)], ["Executors", "executors"],
        ["Tasks", "tasks"], ["Emitted", "emitted"], ["Transferred", "transferred"],
        ["Capacity (last 10m)", (r) => `<span style="color:${capacityColour(r.capacity)}">${esc(r.capacity)}</span>`],
        ["Execute latency (ms)", "executeLatency"], ["Executed", "executed"],
        ["Process latency (ms)", "processLatency"], ["Acked", "acked"], ["Failed", "failed"],
        ["Last error", errorCell]], t.bolts);
      $("workers").innerHTML = table("workers-table", [["Host", "host"], ["Port", (r) => esc(r.port) + logLink(r.workerLogLink, "worker-log-link")], ["Uptime", "uptime"],
        ["Executors", "executorsTotal"],
        ["Tasks", (r) => esc(Object.entries(r.componentNumTasks).map(([c, n]) => `${c}: ${n}`).join(", "))]], t.workers);
      $("dag").innerHTML = drawDag(v, id);
      const lagRows = Object.values(lag).flatMap((s) => Object.entries(s.spoutLagResult).flatMap(([topic, parts]) =>
        Object.entries(parts).map(([partition, r]) => ({ spoutId: s.spoutId, topic, partition, ...r }))));
      $("lag-section").hidden = lagRows.length === 0;
      $("lag").innerHTML = table("lag-table", [["Spout", "spoutId"], ["Topic", "topic"], ["Partition", "partition"],
        ["Committed offset", "consumerCommittedOffset"], ["Log head offset", "logHeadOffset"], ["Lag", "lag"]], lagRows);
    });
  }

  // A layered drawing: spouts on the left, each bolt one layer right of
  // its furthest input; edges labelled with the source's rate on the
  // stream, nodes coloured by capacity.
  function drawDag(v, topologyId) {
    const ids = Object.keys(v).sort();
    const layer = {};
    const depth = (c, seen) => {
      if (layer[c] !== undefined) return layer[c];
      if (seen.has(c)) return 0;
      seen.add(c);
      const ins = (v[c][":inputs"] || []).filter((i) => v[i[":component"]]);
      const d = ins.length ? 1 + Math.max(...ins.map((i) => depth(i[":component"], seen))) : 0;
      return (layer[c] = d);
    };
    ids.forEach((c) => depth(c, new Set()));
    const columns = {};
    ids.forEach((c) => (columns[layer[c]] = columns[layer[c]] || []).push(c));
    const W = 150, H = 46, GX = 190, GY = 40, pos = {};
    let width = 0, height = 0;
    Object.entries(columns).forEach(([l, cs]) => cs.forEach((c, i) => {
      pos[c] = { x: 20 + l * (W + GX), y: 20 + i * (H + GY) };
      width = Math.max(width, pos[c].x + W + 20);
      height = Math.max(height, pos[c].y + H + 20);
    }));
    let edges = "", nodes = "";
    ids.forEach((c) => (v[c][":inputs"] || []).forEach((i) => {
      const src = i[":component"];
      if (!pos[src]) return;
      const secs = v[src][":window-secs"] || 0;
      const n = (v[src][":emitted"] || {})[i[":stream"]] || 0;
      const rate = secs > 0 ? n / secs : 0;
      const a = pos[src], b = pos[c];
      const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2, mx = (x1 + x2) / 2;
      edges += `<path class="edge" data-from="${esc(src)}" data-to="${esc(c)}" data-stream="${esc(i[":stream"])}" ` +
        `d="M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}" marker-end="url(#arrow)"/>` +
        `<text class="edge-label" x="${mx}" y="${(y1 + y2) / 2 - 4}" text-anchor="middle">` +
        `${esc(i[":stream"])} ${rate.toFixed(1)}/s</text>` +
        `<text class="edge-label" x="${mx}" y="${(y1 + y2) / 2 + 12}" text-anchor="middle">${esc(i[":grouping"])}</text>`;
      width = Math.max(width, mx + 80);
    }));
    ids.forEach((c) => {
      const d = v[c], p = pos[c];
      const cap = Number(d[":capacity"]) || 0;
      const fill = d[":type"] === "spout" ? "#2f6690" : capacityColour(cap);
      const sub = d[":type"] === "spout" ? `spout, ${Number(d[":latency"]).toFixed(2)} ms`
        : `capacity ${cap.toFixed(3)}`;
      nodes += `<g class="node" data-id="${esc(c)}" data-type="${esc(d[":type"])}">` +
        `<a href="/component.html?id=${encodeURIComponent(c)}&topology_id=${encodeURIComponent(topologyId)}">` +
        `<rect x="${p.x}" y="${p.y}" width="${W}" height="${H}" fill="${fill}"/>` +
        `<text x="${p.x + 8}" y="${p.y + 19}">${esc(c)}</text>` +
        `<text x="${p.x + 8}" y="${p.y + 36}">${esc(sub)}</text></a></g>`;
    });
    return `<svg id="topology-dag" width="${width}" height="${height}" xmlns="http://www.w3.org/2000/svg">` +
      `<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto">` +
      `<path d="M0,0 L10,5 L0,10 z" fill="#888"/></marker></defs>${edges}${nodes}</svg>`;
  }

  async function componentPage() {
    const id = params.get("id"), topo = params.get("topology_id");
    const win = params.get("window") || ":all-time";
    $("topology-link").href = `/topology.html?id=${encodeURIComponent(topo)}`;
    const base = `topology/${encodeURIComponent(topo)}/component/${encodeURIComponent(id)}`;
    let debugState = { debug: false, samplingPct: 0 };
    const showDebug = debugButton(base, () => debugState);
    live(async () => {
      const [c, ts] = await Promise.all([api(`${base}?window=${encodeURIComponent(win)}`),
        api(`topology/${encodeURIComponent(topo)}/timeseries`)]);
      $("charts").innerHTML = componentCharts(ts, id);
      debugState = c;
      showDebug(c);
      const events = $("event-log-link");
      events.hidden = !(c.debug && c.eventLogLink);
      if (c.eventLogLink) events.href = c.eventLogLink;
      $("title").textContent = `Component ${c.id} of ${c.name}`;
      $("summary").innerHTML = table("component-summary", [["Id", "id"], ["Topology", "name"],
        ["Type", "componentType"], ["Executors", "executors"], ["Tasks", "tasks"]], [c]);
      const spout = c.componentType === "spout";
      $("stats").innerHTML = spout
        ? table("stats-table", [["Window", "windowPretty"], ["Emitted", "emitted"], ["Transferred", "transferred"],
          ["Complete latency (ms)", "completeLatency"], ["Acked", "acked"], ["Failed", "failed"]], c.spoutSummary)
        : table("stats-table", [["Window", "windowPretty"], ["Emitted", "emitted"], ["Transferred", "transferred"],
          ["Execute latency (ms)", "executeLatency"], ["Executed", "executed"], ["Process latency (ms)", "processLatency"],
          ["Acked", "acked"], ["Failed", "failed"]], c.boltStats);
      $("inputs").innerHTML = spout ? "" : table("inputs-table", [["Component", "component"], ["Stream", "stream"],
        ["Grouping", "grouping"]], c.inputStats);
      $("outputs").innerHTML = table("outputs-table", [["Stream", "stream"], ["Emitted", "emitted"],
        ["Transferred", "transferred"]], c.outputStats);
      const cols = [["Id", "id"], ["Uptime", "uptime"], ["Host", "host"],
        ["Port", (r) => esc(r.port) + logLink(r.workerLogLink, "worker-log-link")], ["Emitted", "emitted"],
        ["Transferred", "transferred"]];
      $("executors").innerHTML = table("executors-table", spout
        ? cols.concat([["Complete latency (ms)", "completeLatency"], ["Acked", "acked"], ["Failed", "failed"]])
        : cols.concat([["Capacity", "capacity"], ["Execute latency (ms)", "executeLatency"], ["Executed", "executed"],
          ["Process latency (ms)", "processLatency"], ["Acked", "acked"], ["Failed", "failed"]]).concat(
          c.debug ? [["Sampled tuples", (r) => logLink(r.eventLogLink, "event-log-link")]] : []), c.executorStats);
      $("errors").innerHTML = table("errors-table", [["Time", (r) => esc(new Date(r.errorTime).toISOString())],
        ["Worker", (r) => esc(`${r.errorHost}:${r.errorPort}`) + logLink(r.errorWorkerLogLink, "error-log-link")],
        ["Task", "task"], ["Error", (r) => `<span class="error">${esc(r.error)}</span>`]], c.componentErrors);
    });
  }

  // A worker's log on its supervisor's log viewer: the tail, followed
  // every REFRESH_MS (from the start again when the file was rotated), and
  // a search whose matches open the log at their offset.
  async function logPage() {
    const file = params.get("file") || "";
    const PAGE = 51200, KEEP = 1 << 20;
    const q = (more) => `file=${encodeURIComponent(file)}${more}`;
    $("title").textContent = `Worker log ${file}`;
    document.title = `Squall log ${file}`;
    $("download").href = `/api/v1/download?${q("")}`;
    const pre = $("log-text");
    let next = null;
    const show = (c, append) => {
      pre.textContent = (append ? pre.textContent : "") + c.data;
      if (pre.textContent.length > KEEP) pre.textContent = pre.textContent.slice(-KEEP);
      next = c.start + c.length;
      $("size").textContent = `${c.size} bytes`;
    };
    const at = params.get("start");
    show(await api(`log?${q(at === null ? `&length=${PAGE}` : `&start=${at}&length=${PAGE}`)}`).catch((e) => {
      message(e.message, true);
      return { data: "", start: 0, length: 0, size: 0 };
    }), false);
    if (at !== null) $("follow").checked = false;
    setInterval(async () => {
      if (!$("follow").checked) return;
      try {
        const c = await api(`log?${q(`&start=${next}&length=${PAGE}`)}`);
        if (c.size < next) {
          show(await api(`log?${q(`&length=${PAGE}`)}`), false);
        } else if (c.length > 0) {
          show(c, true);
        }
        message("");
      } catch (e) { message(e.message, true); }
    }, REFRESH_MS);
    const search = async (text) => {
      const r = await api(`search?${q(`&search-string=${encodeURIComponent(text)}&num-matches=100`)}`);
      $("matches").innerHTML = r.matches.length === 0 ? `<p class="muted">No match for ${esc(text)}.</p>`
        : table("matches-table", [["Offset", (m) =>
          `<a href="/log?${q(`&start=${Math.max(0, m.byteOffset - 1024)}`)}">${esc(m.byteOffset)}</a>`],
        ["Match", (m) => `${esc(m.beforeString)}<mark>${esc(m.matchString)}</mark>${esc(m.afterString)}`]], r.matches);
    };
    $("search-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const text = $("search").value;
      if (text) search(text).catch((err) => message(err.message, true));
    });
    const wanted = params.get("search");
    if (wanted) {
      $("search").value = wanted;
      search(wanted).catch((err) => message(err.message, true));
    }
  }

  return { indexPage, topologyPage, componentPage, logPage, drawDag };
})();
