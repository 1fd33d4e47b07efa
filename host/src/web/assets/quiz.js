// The quiz demo: only the client library and the quiz plugin's protocol (plugins/quiz).
import { connect } from "/client/wasmgate.js";

const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
const show = (id, on) => $(id).classList.toggle("hidden", !on);
const ui = { name: "", room: "", players: new Map(), deadline: 0, questionMs: 1, tick: null, picked: -1 };
window.quiz = ui; // for tests and the curious

function error(text) {
  $("error").textContent = text;
  show("error", !!text);
}

function state(s, detail) {
  const pill = $("state");
  pill.className = "pill " + (s === "connected" ? "ok" : s === "connecting" ? "wait" : "bad");
  pill.textContent =
    s === "disconnected" ? `disconnected (${detail.code}${detail.reason ? " " + detail.reason : ""}) — reconnecting…` : s;
}

function explain(err) {
  switch (err.kind) {
    case "unknown-system": return `This gateway has no system "${system}" — is the quiz plugin (quiz.wasm) installed? (${err.message})`;
    case "unauthorized": return `The gateway refused the token: ${err.message}`;
    case "unreachable": return `The gateway is unreachable (server gone?): ${err.message}`;
    default: return `Could not connect: ${err.message}`;
  }
}

const system = params.get("system") || "quiz";
let client;
try {
  state("connecting", {});
  client = await connect({
    url: params.get("gateway") || location.origin,
    systemId: system,
    token: params.get("token") || undefined,
    pingIntervalMs: 10000,
    pongTimeoutMs: 5000,
  });
  ui.client = client;
  $("client-id").textContent = client.clientId;
  state("connected", {});
  client.on("state", (s, d) => {
    state(s, d);
    if (s === "connected") {
      $("client-id").textContent = client.clientId;
      error("");
      if (ui.room) client.request("join", { room: ui.room, name: ui.name }).catch(() => {});
    } else if (s === "disconnected") {
      error(d.error ? explain(d.error) : `Connection lost (${d.code} ${d.reason || ""}) — reconnecting…`);
    }
  });
} catch (err) {
  state("closed", {});
  error(explain(err));
  $("join-btn").disabled = true;
  await new Promise(() => {}); // nothing more to do on this page

}

$("name").value = params.get("name") || sessionStorage.getItem("quiz.name") || "";
$("room").value = params.get("room") || "lobby";

function renderPlayers() {
  $("players").innerHTML = "";
  for (const label of ui.players.values()) {
    const s = document.createElement("span");
    s.textContent = label;
    $("players").append(s);
  }
}

function renderBoard(board) {
  const ol = $("board");
  ol.innerHTML = "";
  if (!board.length) {
    ol.innerHTML = '<li class="muted"><span class="name">No scores yet</span></li>';
    return;
  }
  for (const { name, score } of board) {
    const li = document.createElement("li");
    if (name === ui.name) li.className = "me";
    const n = document.createElement("span");
    n.className = "name";
    n.textContent = name;
    const s = document.createElement("span");
    s.className = "score";
    s.textContent = score;
    li.append(n, s);
    ol.append(li);
  }
}

$("join-btn").onclick = async () => {
  const name = $("name").value.trim();
  const room = $("room").value.trim();
  if (!name || !room) return error("Pick a nickname and a room.");
  try {
    const data = await client.request("join", { room, name });
    ui.name = data.name;
    ui.room = data.room;
    sessionStorage.setItem("quiz.name", name);
    error("");
    ui.players.set(client.clientId, ui.name + " (you)");
    renderPlayers();
    $("room-name").textContent = ui.room;
    show("join", false);
    show("lobby", !data.running);
    if (data.running) $("lobby-text").textContent = "A game is running: you join at the next question.";
  } catch (e) {
    error(e.status === 409 ? `The name "${name}" is taken in this gateway: pick another.` : e.message);
  }
};

$("start-btn").onclick = async () => {
  const opts = { room: ui.room, name: ui.name };
  if (params.get("questionMs")) opts.questionMs = Number(params.get("questionMs"));
  if (params.get("pauseMs")) opts.pauseMs = Number(params.get("pauseMs"));
  try {
    await client.request("start", opts);
    error("");
  } catch (e) {
    error(e.message);
  }
};

$("again-btn").onclick = () => {
  show("over", false);
  show("lobby", true);
};

// The gateway's 1001/1002 notices tell who enters and leaves the room (by client id: the quiz
// binds names as uids, which notices do not carry).
client.on("join-notice", (d) => {
  if (d && d.clientId) ui.players.set(d.clientId, d.userId || "player " + d.clientId.slice(-4));
  renderPlayers();
});
client.on("leave-notice", (d) => {
  if (d && d.clientId) ui.players.delete(d.clientId);
  renderPlayers();
});

function tick() {
  const left = Math.max(0, ui.deadline - Date.now());
  $("countdown").textContent = (left / 1000).toFixed(1) + "s";
  $("bar").style.width = (100 * left) / ui.questionMs + "%";
  if (left <= 0) clearInterval(ui.tick);
}

client.on("question", (q) => {
  show("lobby", false);
  show("over", false);
  show("play", true);
  ui.picked = -1;
  ui.index = q.index;
  ui.deadline = q.deadlineMs;
  ui.questionMs = q.questionMs;
  $("qnum").textContent = `Question ${q.index + 1} of ${q.count}`;
  $("qtext").textContent = q.text;
  $("play-note").textContent = "Faster correct answers score more.";
  const box = $("choices");
  box.innerHTML = "";
  q.choices.forEach((c, i) => {
    const b = document.createElement("button");
    b.textContent = c;
    b.dataset.choice = i;
    b.onclick = async () => {
      if (ui.picked >= 0) return;
      ui.picked = i;
      b.classList.add("picked");
      for (const x of box.children) x.disabled = x !== b;
      try {
        await client.request("answer", { choice: i });
        $("play-note").textContent = "Answer in. Waiting for the others…";
      } catch (e) {
        $("play-note").textContent = e.message;
      }
    };
    box.append(b);
  });
  clearInterval(ui.tick);
  ui.tick = setInterval(tick, 100);
  tick();
});

client.on("result", (r) => {
  clearInterval(ui.tick);
  $("countdown").textContent = "";
  $("bar").style.width = "0%";
  [...$("choices").children].forEach((b, i) => {
    b.disabled = true;
    if (i === r.correct) b.classList.add("correct");
    else if (i === ui.picked) b.classList.add("wrong");
  });
  const mine = r.scores && r.scores[ui.name];
  $("play-note").textContent =
    ui.picked === r.correct ? `Correct! +${mine ?? 0} points` : ui.picked < 0 ? "Time's up." : "Not this time.";
  renderBoard(r.leaderboard || []);
});

client.on("gameover", (g) => {
  clearInterval(ui.tick);
  renderBoard(g.leaderboard || []);
  show("play", false);
  show("over", true);
  const top = g.leaderboard && g.leaderboard[0];
  $("over-text").textContent = top ? `Game over — ${top.name} wins with ${top.score} points!` : "Game over";
});
