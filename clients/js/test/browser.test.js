// The quiz demo and the dashboard in real headless Chromium (Debian's /usr/bin/chromium through
// playwright-core): two players, a hot reload of quiz.wasm mid-game, errors a page must show.
// Writes docs/screenshots/{quiz,dashboard}-{desktop,phone}.png.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { Gateway } from "./gateway.js";

const shots = resolve(dirname(fileURLToPath(import.meta.url)), "../../../docs/screenshots");
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
const TIMEOUT = 15000;

let gw, browser;
before(async () => {
  mkdirSync(shots, { recursive: true });
  gw = await Gateway.start();
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
});
after(async () => {
  await browser?.close();
  await gw?.cleanup();
});

async function page(viewport, path) {
  const ctx = await browser.newContext({ viewport, deviceScaleFactor: 1 });
  const p = await ctx.newPage();
  p.setDefaultTimeout(TIMEOUT);
  p.on("pageerror", (e) => console.error("page error:", e.message));
  await p.goto(gw.url + path);
  return p;
}

async function board(p) {
  return p.locator("[data-testid=leaderboard] li .name").allTextContents();
}

async function joinRoom(p, name) {
  await p.waitForSelector("[data-testid=state].ok");
  await p.fill("#name", name);
  await p.fill("#room", "arena");
  await p.click("#join-btn");
  await p.waitForSelector("#lobby:not(.hidden)");
  return p.textContent("[data-testid=client-id]");
}

async function question(p, text) {
  await p.waitForFunction((t) => document.querySelector("[data-testid=question]")?.textContent === t
    && document.querySelector("#choices button:not([disabled])"), text);
}

test("two players, a hot reload mid-game, a live dashboard", async () => {
  const ada = await page(DESKTOP, "/demo/quiz");
  const bob = await page(PHONE, "/demo/quiz");
  const dash = await page(DESKTOP, "/dashboard");
  const adaId = await joinRoom(ada, "ada");
  const bobId = await joinRoom(bob, "bob");
  assert.match(adaId, /^[0-9a-f]{32}$/);
  await ada.waitForFunction(() => document.querySelectorAll("#players span").length === 2);

  const before = (await gw.plugin("quiz")).version;
  await dash.waitForSelector(`tr[data-plugin=quiz] .version:text("${before.slice(0, 12)}")`);

  await ada.click("[data-testid=start]");
  await question(ada, "What is 2 + 2?");
  await question(bob, "What is 2 + 2?");
  assert.match(await bob.textContent("[data-testid=countdown]"), /^\d+\.\ds$/);
  await ada.click("#choices button[data-choice='1']"); // right, first
  await ada.waitForSelector("#play-note:text('Answer in')");
  await bob.click("#choices button[data-choice='0']"); // wrong
  await bob.waitForSelector("#choices button.correct");
  await ada.waitForFunction(() => document.querySelectorAll("[data-testid=leaderboard] li").length === 2);
  assert.deepEqual(await board(ada), ["ada", "bob"]);
  assert.deepEqual(await board(bob), ["ada", "bob"]);

  // A new quiz.wasm (another content hash) while the game runs.
  await gw.replaceQuiz("v2");
  let after = before;
  for (let i = 0; i < 300 && after === before; i++) {
    await new Promise((r) => setTimeout(r, 100));
    after = (await gw.plugin("quiz")).version;
  }
  assert.notEqual(after, before, "the gateway loaded the new quiz.wasm");
  await dash.waitForSelector(`tr[data-plugin=quiz] .version:text("${after.slice(0, 12)}")`);
  await dash.waitForSelector(`[data-testid=history] li:has-text("quiz: ${before.slice(0, 12)} → ${after.slice(0, 12)}")`);

  // The game goes on in the same pages, on the same connections.
  await question(ada, "Which planet is called the red planet?");
  await question(bob, "Which planet is called the red planet?");
  await ada.screenshot({ path: join(shots, "quiz-desktop.png") });
  await bob.screenshot({ path: join(shots, "quiz-phone.png") });
  await ada.click("#choices button[data-choice='2']");
  await ada.waitForSelector("#play-note:text('Answer in')");
  await bob.click("#choices button[data-choice='2']");
  await ada.waitForSelector("#over:not(.hidden)");
  await bob.waitForSelector("#over:not(.hidden)");
  assert.match(await ada.textContent("#over-text"), /ada wins/);
  assert.deepEqual(await board(bob), ["ada", "bob"]);
  assert.equal(await ada.textContent("[data-testid=client-id]"), adaId, "ada kept her connection");
  assert.equal(await bob.textContent("[data-testid=client-id]"), bobId, "bob kept his connection");
  assert.equal(await ada.evaluate(() => window.quiz.client.clientId), adaId);
  assert.equal(await bob.textContent("[data-testid=state]"), "connected");

  // The first load counts as one: the swap makes two.
  await dash.waitForSelector("tr[data-plugin=quiz] .reloads:text-is('2')");
  await dash.waitForFunction(() => [...document.querySelectorAll("[data-testid=systems] td")].some((td) => td.textContent.includes("arena")));
  await new Promise((r) => setTimeout(r, 1200)); // a chart with a few points
  await dash.screenshot({ path: join(shots, "dashboard-desktop.png") });
  await dash.setViewportSize(PHONE);
  await dash.screenshot({ path: join(shots, "dashboard-phone.png"), fullPage: false });

  // Server gone: every page says so.
  await gw.stop();
  await ada.waitForSelector("[data-testid=error]:not(.hidden)");
  assert.match(await ada.textContent("[data-testid=state]"), /disconnected/);
  await dash.waitForSelector("[data-testid=error]:has-text('Cannot reach the gateway')");
  for (const p of [ada, bob, dash]) await p.context().close();
});

test("a page shows unknown systems and bad tokens clearly", async () => {
  const gw2 = gw;
  gw = await Gateway.start();
  try {
    const unknown = await page(PHONE, "/demo/quiz?system=nope");
    await unknown.waitForSelector("[data-testid=error]:has-text('no system \"nope\"')");
    assert.match(await unknown.textContent("[data-testid=error]"), /unknown system: nope/);
    const bad = await page(PHONE, "/demo/quiz?system=secure&token=forged");
    await bad.waitForSelector("[data-testid=error]:has-text('refused the token')");
    assert.match(await bad.textContent("[data-testid=error]"), /invalid or expired token/);
    await bad.screenshot({ path: join(shots, "quiz-error-phone.png") });
    for (const p of [unknown, bad]) await p.context().close();
  } finally {
    await gw.cleanup();
    gw = gw2;
  }
});
