// Starts a real wasmgate binary with the example quiz and chat plugins for the tests.
// WEBTEST_BIN (default: target/debug/wasmgate) and WEBTEST_PLUGINS (a folder with quiz.wasm
// and chat.wasm, default: plugins/) say where they are; scripts/test-web.sh builds both.
import { spawn } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { createHmac } from "node:crypto";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
export const BIN = process.env.WEBTEST_BIN || join(root, "target/debug/wasmgate");
export const PLUGINS = process.env.WEBTEST_PLUGINS || join(root, "plugins");
export const JWT_SECRET = "web-test-secret";

/** Two questions whose answers the tests know. */
export const QUESTIONS = [
  { text: "What is 2 + 2?", choices: ["3", "4", "5", "22"], answer: 1 },
  { text: "Which planet is called the red planet?", choices: ["Venus", "Jupiter", "Mars", "Mercury"], answer: 2 },
];

function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
    s.on("error", rej);
  });
}

/** A JWT (HS256) for the `secure` system. */
export function jwt(sub, secret = JWT_SECRET, expSeconds = 600) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const head = b64({ alg: "HS256", typ: "JWT" });
  const body = b64({ sub, exp: Math.floor(Date.now() / 1000) + expSeconds });
  const sig = createHmac("sha256", secret).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

/**
 * The quiz component with a custom section appended: same behaviour, another content hash (the
 * way tests/tests/plugin_support makes plugin versions).
 */
export function variant(bytes, tag) {
  const leb = (n) => {
    const out = [];
    do {
      let b = n & 0x7f;
      n >>>= 7;
      if (n) b |= 0x80;
      out.push(b);
    } while (n);
    return out;
  };
  const name = Buffer.from("wasmgate-web-test");
  const payload = Buffer.concat([Buffer.from(leb(name.length)), name, Buffer.from(tag)]);
  return Buffer.concat([bytes, Buffer.from([0, ...leb(payload.length)]), payload]);
}

export class Gateway {
  static async start({ apiToken } = {}) {
    const gw = new Gateway();
    gw.dir = mkdtempSync(join(tmpdir(), "wasmgate-web-"));
    gw.pluginsDir = join(gw.dir, "plugins");
    mkdirSync(gw.pluginsDir);
    for (const name of ["quiz", "chat"]) {
      copyFileSync(join(PLUGINS, name + ".wasm"), join(gw.pluginsDir, name + ".wasm"));
    }
    gw.port = await freePort();
    gw.url = `http://127.0.0.1:${gw.port}`;
    const cache = process.env.WEBTEST_CACHE || join(root, "target/web-test-cache");
    const toml = [
      `listen = "127.0.0.1:${gw.port}"`,
      `plugins_dir = ${JSON.stringify(gw.pluginsDir)}`,
      `cache_dir = ${JSON.stringify(cache)}`,
      `log_level = "error"`,
      apiToken ? `api_token = ${JSON.stringify(apiToken)}` : "",
      `drain_timeout = "1s"`,
      `[systems.app]`,
      `[systems.secure]`,
      `jwt_secret = ${JSON.stringify(JWT_SECRET)}`,
      `[plugins.quiz]`,
      `config = ${JSON.stringify(JSON.stringify({ questions: QUESTIONS, questionMs: 20000, pauseMs: 800 }))}`,
    ].join("\n");
    writeFileSync(join(gw.dir, "wasmgate.toml"), toml);
    gw.proc = spawn(BIN, ["--config", join(gw.dir, "wasmgate.toml")], {
      stdio: ["ignore", "inherit", "inherit"],
      // WASMGATE_* variables are configuration: none from the caller's environment.
      env: Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("WASMGATE_"))),
    });
    gw.exited = new Promise((res) => gw.proc.on("exit", res));
    gw.proc.on("error", (e) => console.error("wasmgate:", e.message));
    try {
      await gw.waitReady();
    } catch (e) {
      await gw.cleanup();
      throw e;
    }
    return gw;
  }

  async waitReady(timeoutMs = 60000) {
    const until = Date.now() + timeoutMs;
    while (Date.now() < until) {
      if (this.proc.exitCode !== null || this.proc.signalCode !== null) {
        throw new Error(`wasmgate exited (${this.proc.exitCode ?? this.proc.signalCode}) before it was ready`);
      }
      try {
        const res = await fetch(this.url + "/api/plugins", { headers: this.auth() });
        if (res.ok) {
          const j = await res.json();
          const names = j.data.list.filter((p) => p.version).map((p) => p.name);
          if (names.includes("quiz") && names.includes("chat")) return;
        }
      } catch {
        /* not listening yet */
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error("gateway not ready in time");
  }

  auth() {
    return {};
  }

  async plugin(name) {
    const res = await fetch(this.url + "/api/plugins", { headers: this.auth() });
    const j = await res.json();
    return j.data.list.find((p) => p.name === name);
  }

  /** Replace quiz.wasm by a version with another hash (write then rename, as a deploy does). */
  replaceQuiz(tag) {
    const bytes = readFileSync(join(PLUGINS, "quiz.wasm"));
    const tmp = join(this.pluginsDir, ".quiz.wasm.tmp");
    writeFileSync(tmp, variant(bytes, tag));
    return import("node:fs").then((fs) => fs.renameSync(tmp, join(this.pluginsDir, "quiz.wasm")));
  }

  async stop() {
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill("SIGTERM");
      await this.exited;
    }
  }

  async cleanup() {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
