// colo-proxy dashboard client: draws what the daemon's /events stream sends. No build step,
// no dependencies besides uPlot (served by the daemon itself).

const WINDOW = 300; // points kept per chart (5 minutes at 1 tick/s)
const $ = (id) => document.getElementById(id);
const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
};
const fmt = (n) =>
  n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US", { maximumFractionDigits: 2 });
const PALETTE = ["#c62828", "#1565c0", "#ef6c00", "#6a1b9a", "#00838f", "#558b2f", "#ad1457", "#4e342e"];

function makeChart(target, series) {
  const opts = {
    width: 420,
    height: 200,
    legend: { show: true },
    scales: { x: { time: true } },
    series: [{}, ...series],
    axes: [{}, { size: 50 }],
  };
  return new uPlot(opts, [[], ...series.map(() => [])], target);
}

const state = {
  released: { data: [[], []] },
  requests: { data: [[]], reasons: [] },
  hold: { data: [[], [], [], []] },
  miscompares: [],
};
const charts = {
  released: makeChart($("chart-released"), [{ label: "released/s", stroke: "#2e7d32", width: 2 }]),
  requests: makeChart($("chart-requests"), []),
  hold: makeChart($("chart-hold"), [
    { label: "p50", stroke: "#1565c0", width: 2 },
    { label: "p90", stroke: "#ef6c00", width: 2 },
    { label: "p99", stroke: "#c62828", width: 2 },
  ]),
};
window.__colo = { state, charts, ticks: 0 };

function push(arrs, values) {
  for (let i = 0; i < values.length; i++) arrs[i].push(values[i]);
  if (arrs[0].length > WINDOW) for (const a of arrs) a.shift();
}

function renderStatus(st) {
  const s = $("status");
  s.replaceChildren();
  const add = (label, value, cls) => {
    const span = el("span");
    span.append(`${label}: `);
    span.append(el("b", cls, value));
    s.append(span);
  };
  add("role", st.role);
  add("mode", st.mode, `mode-${st.mode}`);
  add("epoch", String(st.checkpointEpoch));
  add("uptime", `${st.uptime}s`);
  for (const p of st.peers || []) add(p.name, p.state, p.state === "up" ? "mode-colo" : "mode-failover");
}

function renderTotals(t) {
  const box = $("totals");
  box.replaceChildren();
  for (const [label, v] of [
    ["released", t.totals.released],
    ["miscompares", t.totals.miscompares],
    ["checkpoint requests", t.totals.checkpointRequests],
    ["checkpoints", t.totals.checkpoints],
    ["bad input", t.totals.badInput],
    ["held (primary / secondary)", `${t.queues.primary} / ${t.queues.secondary}`],
  ]) {
    const d = el("div");
    d.append(el("b", "", typeof v === "number" ? fmt(v) : v), label);
    box.append(d);
  }
}

function renderConnections(rows, totalCount) {
  const body = $("connections").tBodies[0];
  body.replaceChildren();
  for (const c of rows) {
    const tr = el("tr", c.primaryQueued > 0 ? "held" : "");
    tr.append(
      el("td", "", c.flow),
      el("td", "", c.state),
      el("td", "num", fmt(c.primaryQueued)),
      el("td", "num", fmt(c.secondaryQueued)),
      el(
        "td",
        "num",
        c.oldestHeldMs === null || c.primaryQueued + c.secondaryQueued === 0
          ? "–"
          : `${fmt(c.oldestHeldMs)} ms`,
      ),
      el("td", "num", fmt(c.bytesCompared)),
    );
    body.append(tr);
  }
  $("conn-count").textContent =
    rows.length < totalCount ? `(${rows.length} of ${totalCount})` : `(${totalCount})`;
}

function onTick(t) {
  window.__colo.ticks++;
  renderStatus(t.status);
  renderTotals(t);
  renderConnections(t.connections, t.connectionsTotal);
  push(state.released.data, [t.t, t.releasedPerSec]);
  charts.released.setData(state.released.data);
  for (const reason of Object.keys(t.requestsPerSec)) {
    if (!state.requests.reasons.includes(reason)) {
      const color = PALETTE[state.requests.reasons.length % PALETTE.length];
      state.requests.reasons.push(reason);
      state.requests.data.push(state.requests.data[0].map(() => null));
      charts.requests.addSeries({ label: reason, stroke: color, width: 2 }, state.requests.reasons.length);
    }
  }
  const noRate = t.releasedPerSec === null ? null : 0;
  push(state.requests.data, [
    t.t,
    ...state.requests.reasons.map((r) => (r in t.requestsPerSec ? t.requestsPerSec[r] : noRate)),
  ]);
  charts.requests.setData(state.requests.data);
  push(state.hold.data, [t.t, t.holdMs.p50, t.holdMs.p90, t.holdMs.p99]);
  charts.hold.setData(state.hold.data);
}

/** Hexdump of one side as 16-byte rows; bytes that differ from `other` get class "d". */
function hexdump(win, other) {
  const pre = el("pre");
  const bytesOf = (w) => w.hex.replace(/\s+/g, "").match(/../g) || [];
  const bytes = bytesOf(win);
  const otherBytes = other ? bytesOf(other) : [];
  const shift = other ? win.offset - other.offset : 0;
  for (let row = 0; row < bytes.length; row += 16) {
    pre.append(`${String(win.offset + row).padStart(8, "0")}  `);
    let ascii = "";
    for (let i = row; i < row + 16; i++) {
      const b = bytes[i];
      if (b === undefined) {
        pre.append("   ");
        continue;
      }
      const differs = other !== undefined && otherBytes[i + shift] !== b;
      pre.append(differs ? el("span", "d", b) : b);
      pre.append(" ");
      const code = parseInt(b, 16);
      ascii += code >= 0x20 && code < 0x7f ? String.fromCharCode(code) : ".";
    }
    pre.append(` |${ascii}|\n`);
  }
  return pre;
}

function renderMiscompares() {
  const box = $("miscompares");
  box.replaceChildren();
  if (state.miscompares.length === 0) {
    box.append(el("p", "muted", "No miscompare yet."));
    return;
  }
  for (const m of [...state.miscompares].reverse()) {
    const card = el("div", "miscompare");
    card.append(
      el(
        "div",
        "head",
        `${new Date(m.timeMs).toISOString()} — ${m.reason}${m.flow ? ` — ${m.flow}` : ""}${m.offset !== undefined ? ` @ ${m.offset}` : ""}`,
      ),
      el("div", "expl", m.explanation),
    );
    if (m.primary || m.secondary) {
      const pair = el("div", "hexpair");
      for (const [title, win, other] of [
        ["primary (PVM)", m.primary, m.secondary],
        ["secondary (SVM)", m.secondary, m.primary],
      ]) {
        const side = el("div");
        side.append(el("div", "side-title", title));
        side.append(win ? hexdump(win, other) : el("pre", "muted", "(nothing)"));
        pair.append(side);
      }
      card.append(pair);
    }
    box.append(card);
  }
  $("mis-count").textContent = `(${state.miscompares.length})`;
}

function connect() {
  const es = new EventSource("/events");
  es.onopen = () => {
    $("link").textContent = "stream: live";
    $("link").className = "link up";
  };
  es.onerror = () => {
    $("link").textContent = "stream: reconnecting…";
    $("link").className = "link down";
  };
  es.addEventListener("hello", (e) => {
    const h = JSON.parse(e.data);
    state.miscompares = h.miscompares;
    renderMiscompares();
  });
  es.addEventListener("tick", (e) => onTick(JSON.parse(e.data)));
  es.addEventListener("miscompare", (e) => {
    state.miscompares.push(JSON.parse(e.data));
    if (state.miscompares.length > 20) state.miscompares.shift();
    renderMiscompares();
  });
}
connect();
