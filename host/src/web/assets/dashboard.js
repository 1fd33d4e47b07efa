// The live dashboard: polls the guarded API once a second while the page is visible.
const $ = (id) => document.getElementById(id);
const WINDOW = 300; // seconds of history in the charts
const samples = []; // {t, conn, inRate, outRate}
const versions = new Map(); // plugin -> version last seen
const history = [];
let last = null; // previous counters {t, in, out}
let token = sessionStorage.getItem("wasmgate.token") || "";

function headers(extra = {}) {
  return token ? { ...extra, Authorization: "Bearer " + token } : extra;
}

async function call(path, init = {}) {
  const res = await fetch(path, { ...init, headers: headers(init.headers) });
  if (res.status === 401 || res.status === 403) {
    const body = await res.json().catch(() => ({}));
    const err = new Error(body.msg || "HTTP " + res.status);
    err.auth = true;
    throw err;
  }
  return res;
}

async function api(op, system, body = {}) {
  const res = await call("/api/websocket/" + op, {
    method: "POST",
    headers: { "Content-Type": "application/json", systemId: system },
    body: JSON.stringify(body),
  });
  const j = await res.json();
  return j.data;
}

function parseMetrics(text) {
  const out = { conn: {}, in: 0, out: 0 };
  for (const line of text.split("\n")) {
    if (line.startsWith("#")) continue;
    let m = line.match(/^wasmgate_connections\{system="([^"]*)"\} (\S+)/);
    if (m) out.conn[m[1]] = Number(m[2]);
    m = line.match(/^wasmgate_messages_(in|out)_total(?:\{[^}]*\})? (\S+)/);
    if (m) out[m[1]] += Number(m[2]);
  }
  return out;
}

function text(tag, value, cls) {
  const el = document.createElement(tag);
  el.textContent = value;
  if (cls) el.className = cls;
  return el;
}

function fmtUs(us) {
  if (us == null) return "–";
  return us >= 1000 ? (us / 1000).toFixed(1) + " ms" : us + " µs";
}

function fmtTime(v) {
  if (v == null) return "–";
  const d = new Date(typeof v === "number" ? v : v);
  return isNaN(d) ? String(v) : d.toLocaleTimeString();
}

function renderPlugins(list) {
  const tb = $("plugins");
  tb.innerHTML = "";
  for (const p of list) {
    const tr = document.createElement("tr");
    tr.dataset.plugin = p.name;
    const seen = versions.get(p.name);
    if (seen && seen !== p.version) {
      history.unshift({ at: new Date(), name: p.name, from: seen, to: p.version });
    }
    versions.set(p.name, p.version);
    tr.append(
      text("td", p.name),
      text("td", (p.systems || []).join(", ")),
      text("td", String(p.version || "–").slice(0, 12), "mono version"),
      text("td", fmtTime(p.loadedAt)),
      text("td", p.reloads ?? 0, "num reloads"),
      text("td", p.eventsHandled ?? 0, "num"),
      text("td", p.traps ?? 0, "num"),
      text("td", fmtUs(p.p50Us), "num"),
      text("td", fmtUs(p.p99Us), "num"),
      text("td", p.lastError || "", "err"),
    );
    const td = document.createElement("td");
    const b = text("button", "Reload", "secondary");
    b.dataset.reload = p.name;
    b.onclick = async () => {
      b.disabled = true;
      try {
        const res = await call(`/api/plugins/${encodeURIComponent(p.name)}/reload`, { method: "POST" });
        const j = await res.json();
        if (j.code !== 0) showError(`reload ${p.name}: ${j.msg}`);
      } catch (e) {
        showError(e.message);
      } finally {
        b.disabled = false;
        refresh();
      }
    };
    td.append(b);
    tr.append(td);
    tb.append(tr);
  }
  const ul = $("history");
  if (history.length) {
    ul.innerHTML = "";
    for (const h of history.slice(0, 10)) {
      ul.append(text("li", `${h.at.toLocaleTimeString()} ${h.name}: ${h.from.slice(0, 12)} → ${h.to.slice(0, 12)}`));
    }
  }
}

async function renderSystems(conn) {
  const tb = $("systems");
  const rows = [];
  for (const system of Object.keys(conn).sort()) {
    let groups = [];
    try {
      const g = await api("get_all_groups", system);
      for (const name of (g && g.list) || []) {
        const c = await api("get_client_count_by_group", system, { groupName: name });
        groups.push(`${name} (${c ? c.count : "?"})`);
      }
    } catch (e) {
      if (e.auth) throw e;
    }
    const tr = document.createElement("tr");
    tr.append(text("td", system), text("td", conn[system], "num"), text("td", groups.join(", ") || "–", "muted"));
    rows.push(tr);
  }
  tb.replaceChildren(...rows);
}

function chart(svg, series, colors) {
  const W = 600, H = 160, pad = 22;
  const now = Date.now() / 1000;
  // The span grows from one minute to WINDOW as samples accumulate.
  const oldest = samples.length ? samples[0].t : now;
  const span = Math.min(WINDOW, Math.max(60, now - oldest));
  let max = 1;
  for (const s of series) for (const p of s) max = Math.max(max, p[1]);
  max = niceMax(max);
  const x = (t) => W - ((now - t) / span) * W;
  const y = (v) => H - pad - (v / max) * (H - pad - 8);
  let out = "";
  for (const f of [0, 0.5, 1]) {
    out += `<line x1="0" x2="${W}" y1="${y(max * f)}" y2="${y(max * f)}" stroke="#26304a" stroke-width="1"/>`;
    out += `<text x="4" y="${y(max * f) - 3}">${Math.round(max * f)}</text>`;
  }
  out += `<text x="4" y="${H - 4}">-${span >= 120 ? Math.round(span / 60) + " min" : Math.round(span) + " s"}</text><text x="${W - 28}" y="${H - 4}">now</text>`;
  series.forEach((s, i) => {
    if (s.length < 2) return;
    const pts = s.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    out += `<polyline fill="none" stroke="${colors[i]}" stroke-width="2" vector-effect="non-scaling-stroke" points="${pts}"/>`;
  });
  svg.innerHTML = out;
}

function niceMax(v) {
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return v;
}

function showError(msg) {
  $("error").textContent = msg;
  $("error").classList.toggle("hidden", !msg);
}

function setLive(ok, label) {
  $("live").className = "pill " + (ok ? "ok" : "bad");
  $("live").textContent = label;
}

let busy = false;
async function refresh() {
  if (busy) return;
  busy = true;
  try {
    const [mres, pres] = await Promise.all([call("/metrics"), call("/api/plugins")]);
    const m = parseMetrics(await mres.text());
    const pj = pres.ok ? await pres.json() : { data: { list: [] } };
    const plugins = (pj.data && pj.data.list) || [];
    const t = Date.now() / 1000;
    let inRate = 0, outRate = 0;
    if (last && t > last.t) {
      inRate = Math.max(0, (m.in - last.in) / (t - last.t));
      outRate = Math.max(0, (m.out - last.out) / (t - last.t));
    }
    last = { t, in: m.in, out: m.out };
    const conn = Object.values(m.conn).reduce((a, b) => a + b, 0);
    samples.push({ t, conn, inRate, outRate });
    while (samples.length && samples[0].t < t - WINDOW) samples.shift();
    $("s-conn").textContent = conn;
    $("s-in").textContent = inRate.toFixed(1);
    $("s-out").textContent = outRate.toFixed(1);
    $("s-plugins").textContent = plugins.length;
    renderPlugins(plugins);
    await renderSystems(m.conn);
    chart($("chart-conn"), [samples.map((s) => [s.t, s.conn])], ["#5b8cff"]);
    chart($("chart-rate"), [samples.map((s) => [s.t, s.inRate]), samples.map((s) => [s.t, s.outRate])], ["#2fbf71", "#f0b429"]);
    setLive(true, "live");
    showError("");
  } catch (e) {
    if (e.auth) {
      $("token-box").classList.remove("hidden");
      setLive(false, "needs API token");
      showError("The API refused this page: " + e.message + ". Enter the gateway's api_token.");
    } else {
      setLive(false, "gateway unreachable");
      showError("Cannot reach the gateway (stopped?): " + e.message + ". Retrying every second.");
    }
  } finally {
    busy = false;
  }
}

$("token-btn").onclick = () => {
  token = $("token").value.trim();
  sessionStorage.setItem("wasmgate.token", token);
  refresh();
};

setInterval(() => {
  if (!document.hidden) refresh();
}, 1000);
refresh();
