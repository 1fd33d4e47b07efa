// The live dashboard: reads the gateway's Server-Sent Events feed (/dashboard/events, one
// snapshot a second) through fetch, so the API token can go in an Authorization header.
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

function renderSystems(systems) {
  const rows = [];
  for (const name of Object.keys(systems).sort()) {
    const sys = systems[name];
    const shown = (sys.groups || []).map(([g, n]) => `${g} (${n})`);
    if (sys.groupCount > shown.length) shown.push(`… ${sys.groupCount - shown.length} more`);
    const tr = document.createElement("tr");
    tr.append(text("td", name), text("td", sys.connections, "num"), text("td", shown.join(", ") || "–", "muted"));
    rows.push(tr);
  }
  $("systems").replaceChildren(...rows);
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

function apply(snap) {
  const t = snap.t;
  let inRate = 0, outRate = 0;
  if (last && t > last.t) {
    inRate = Math.max(0, (snap.messagesIn - last.in) / (t - last.t));
    outRate = Math.max(0, (snap.messagesOut - last.out) / (t - last.t));
  }
  last = { t, in: snap.messagesIn, out: snap.messagesOut };
  const conn = Object.values(snap.systems).reduce((a, s) => a + s.connections, 0);
  samples.push({ t, conn, inRate, outRate });
  while (samples.length && samples[0].t < t - WINDOW) samples.shift();
  $("s-conn").textContent = conn;
  $("s-in").textContent = inRate.toFixed(1);
  $("s-out").textContent = outRate.toFixed(1);
  $("s-plugins").textContent = snap.plugins.length;
  renderPlugins(snap.plugins);
  renderSystems(snap.systems);
  chart($("chart-conn"), [samples.map((s) => [s.t, s.conn])], ["#5b8cff"]);
  chart($("chart-rate"), [samples.map((s) => [s.t, s.inRate]), samples.map((s) => [s.t, s.outRate])], ["#2fbf71", "#f0b429"]);
}

// One stream at a time; it is reopened a second after it ends (gateway restarted, network).
let feed = null;
async function stream() {
  const ctl = new AbortController();
  feed = ctl;
  try {
    const res = await call("/dashboard/events", { signal: ctl.signal, headers: { Accept: "text/event-stream" } });
    if (!res.ok) {
      const body = await res.json().catch(() => ({}));
      throw new Error(body.msg || "HTTP " + res.status);
    }
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error("the live feed ended");
      buf += value;
      let end;
      while ((end = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, end);
        buf = buf.slice(end + 2);
        const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
        if (!data) continue; // keep-alive comment
        apply(JSON.parse(data));
        setLive(true, "live");
        showError("");
      }
    }
  } catch (e) {
    if (ctl.signal.aborted) return;
    if (e.auth) {
      $("token-box").classList.remove("hidden");
      setLive(false, "needs API token");
      showError("The API refused this page: " + e.message + ". Enter the gateway's api_token.");
      return; // wait for a token
    }
    setLive(false, "gateway unreachable");
    showError("Cannot reach the gateway (stopped?): " + e.message + ". Retrying every second.");
  }
  if (feed === ctl) setTimeout(() => { if (feed === ctl) stream(); }, 1000);
}

$("token-btn").onclick = () => {
  token = $("token").value.trim();
  sessionStorage.setItem("wasmgate.token", token);
  if (feed) feed.abort();
  stream();
};

stream();
