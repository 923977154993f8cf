// Runs the client against the real sas-sidecar binary and `sas-gateway dev`
// (started by electron_test.go, which passes their locations in the
// environment). Run through scripts/test.
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { SasSidecar, SasSidecarError } from "../index.js";

const bin = process.env.SAS_SIDECAR_BIN;
const gateway = process.env.SAS_TEST_GATEWAY;
if (!bin || !gateway) throw new Error("SAS_SIDECAR_BIN and SAS_TEST_GATEWAY are not set: run scripts/test");

let home;
let env;
before(async () => {
  home = await mkdtemp(join("/tmp", "sas-node-"));
  await mkdir(join(home, "run"), { recursive: true });
  env = {
    PATH: process.env.PATH,
    HOME: home,
    XDG_CONFIG_HOME: join(home, "config"),
    XDG_RUNTIME_DIR: join(home, "run"),
    SAS_ISSUER: `${gateway}/dev/idp`,
    SAS_GATEWAY_URL: gateway,
    SAS_TOKEN_STORE: "file",
    SAS_REDIRECT_PORT: process.env.SAS_TEST_REDIRECT_PORT,
  };
});
after(async () => {
  await rm(home, { recursive: true, force: true });
});

// Plays the browser: follows the sign-in URL (the dev IdP auto-approves).
function browse(sidecar) {
  sidecar.once("loginStarted", async ({ url }) => {
    const res = await fetch(url);
    await res.text();
  });
}

test("sign in, call the gateway, stream, sign out — never holding a token", async () => {
  const logs = [];
  const sidecar = await SasSidecar.spawn({ binaryPath: bin, profile: "local", env, logger: (l) => logs.push(l) });
  try {
    assert.ok(sidecar.socketPath, "a socket path in the ready notification");
    assert.equal((await sidecar.status()).signedIn, false);

    const changed = new Promise((resolve) => sidecar.once("authChanged", resolve));
    browse(sidecar);
    const [a, b] = await Promise.all([sidecar.login(), sidecar.login()]); // the second joins the first
    assert.equal(a.signedIn, true);
    assert.equal(b.user.email, "dev@example.com");
    assert.equal((await changed).signedIn, true);

    const me = await sidecar.request({ path: "/v1/me" });
    assert.equal(me.status, 200);
    assert.equal(me.body.email, "dev@example.com");
    assert.equal(me.headers["content-type"], "application/json");

    const viaSocket = await sidecar.fetch("/v1/me");
    assert.equal(viaSocket.status, 200);
    assert.equal((await viaSocket.json()).id, me.body.id);

    // A streamed completion arrives in several reads.
    const res = await sidecar.fetch("/v1/chat/completions", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "gpt-4o-mini", stream: true, messages: [{ role: "user", content: "stream to node" }] }),
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "text/event-stream");
    let reads = 0;
    let text = "";
    for await (const chunk of res.body) {
      reads++;
      text += Buffer.from(chunk).toString();
    }
    assert.ok(reads >= 3, `the stream came in ${reads} read(s)`);
    assert.match(text, /data: \[DONE\]/);
    const said = [...text.matchAll(/"content":"([^"]*)"/g)].map((m) => m[1]).join("");
    assert.match(said, /You said: stream to node/);

    // The Responses API streams typed events through the same socket.
    const rres = await sidecar.fetch("/v1/responses", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "gpt-4o-mini", stream: true, instructions: "Be brief.", input: "respond to node" }),
    });
    assert.equal(rres.status, 200);
    let events = "";
    for await (const chunk of rres.body) events += Buffer.from(chunk).toString();
    const types = [...events.matchAll(/^event: (.+)$/gm)].map((m) => m[1]);
    assert.equal(types[0], "response.created");
    assert.equal(types.at(-1), "response.completed");
    const deltas = [...events.matchAll(/"delta":"([^"]*)"/g)].map((m) => m[1]).join("");
    assert.match(deltas, /You said: respond to node/);
    const plain = await sidecar.request({ method: "POST", path: "/v1/responses", body: { model: "gpt-4o-mini", input: "respond plainly" } });
    assert.equal(plain.status, 200);
    assert.equal(plain.body.object, "response");
    assert.match(plain.body.output[0].content[0].text, /You said: respond plainly/);

    // The server's prompt template, streamed and plain, through the typed helper.
    const tplEvents = [];
    let templated = "";
    for await (const ev of await sidecar.runTemplate("loop-idea", { bars: 8, key: "Am", style: "node lo-fi" }, { stream: true })) {
      tplEvents.push(ev.event);
      if (ev.event === "response.output_text.delta") templated += ev.data.delta;
    }
    assert.equal(tplEvents[0], "response.created");
    assert.equal(tplEvents.at(-1), "response.completed");
    assert.match(templated, /8-bar loop in Am for node lo-fi/);
    const once = await sidecar.runTemplate("loop-idea", { bars: 2, key: "C", style: "dub" });
    assert.equal(once.object, "response");
    assert.match(once.output[0].content[0].text, /2-bar loop in C for dub/);
    await assert.rejects(sidecar.runTemplate("loop-idea", { bars: 99, key: "C", style: "dub" }), (err) => {
      assert.equal(err.code, "bad_request");
      assert.equal(err.status, 400);
      assert.match(err.message, /"bars"/);
      return true;
    });
    await assert.rejects(sidecar.runTemplate("no-such-template"), (err) => err.code === "not_found" && err.status === 404);

    // Non-JSON bodies come back as text; errors as the gateway's envelope.
    const bad = await sidecar.request({ method: "POST", path: "/v1/chat/completions", body: { model: "gpt-4o" , messages: [{ role: "user", content: "x" }] } });
    assert.equal(bad.status, 403);
    assert.equal(bad.body.error.code, "model_not_allowed");

    // Nothing this process received contains the token.
    const { id_token: token } = JSON.parse(await readFile(join(home, "config", "sas", "tokens-local.json"), "utf8"));
    assert.ok(token.length > 100);
    for (const seen of [JSON.stringify([a, b, me, plain]), text, events, logs.join("\n")]) {
      assert.ok(!seen.includes(token), "the ID token reached the client");
    }

    const out = await sidecar.logout();
    assert.equal(out.signedIn, false);
    const after = await sidecar.request({ path: "/v1/me" });
    assert.equal(after.status, 401);
    assert.equal(after.body.error.code, "not_signed_in");
  } finally {
    await sidecar.close();
  }
});

test("sign in through the app's URL scheme: the callback URL handed over", async () => {
  const sidecar = await SasSidecar.spawn({ binaryPath: bin, profile: "local", env });
  try {
    const started = new Promise((resolve) => sidecar.once("loginStarted", resolve));
    const login = sidecar.login({ redirect: "app" });
    const { url } = await started;
    assert.match(url, /redirect_uri=sas%3A%2F%2Fcallback/);
    // The browser's last hop: the provider redirects to sas://callback?…,
    // which the OS hands to the app (open-url / second-instance).
    const res = await fetch(url, { redirect: "manual" });
    await res.text();
    const callback = res.headers.get("location");
    assert.match(callback, /^sas:\/\/callback\?/);

    const forged = callback.replace("state=", "state=forged");
    await assert.rejects(sidecar.completeLogin(forged), (err) => err instanceof SasSidecarError && /another sign-in attempt/.test(err.message));
    const done = await sidecar.completeLogin(callback);
    assert.equal(done.signedIn, true);
    assert.equal((await login).user.email, "dev@example.com");
    await assert.rejects(sidecar.completeLogin(callback), SasSidecarError); // no sign-in waits any more
  } finally {
    await sidecar.close();
  }
});

test("delete the account: signed out, refused, and a new sign-in is a new account", async () => {
  const sidecar = await SasSidecar.spawn({ binaryPath: bin, profile: "local", env });
  try {
    browse(sidecar);
    await sidecar.login();
    const before = await sidecar.request({ path: "/v1/me" });
    assert.equal(before.status, 200);
    const changed = new Promise((resolve) => sidecar.once("authChanged", resolve));
    const st = await sidecar.deleteAccount();
    assert.equal(st.signedIn, false);
    assert.equal((await changed).signedIn, false);
    await assert.rejects(sidecar.deleteAccount(), (err) => err.code === "not_signed_in");
    // Signing up again with the same email makes a new account.
    browse(sidecar);
    await sidecar.login();
    const after = await sidecar.request({ path: "/v1/me" });
    assert.equal(after.status, 200);
    assert.notEqual(after.body.id, before.body.id);
    assert.equal(after.body.email, "dev@example.com");
  } finally {
    await sidecar.close();
  }
});

test("pending calls reject when the sidecar dies, and nothing restarts it", async () => {
  const sidecar = await SasSidecar.spawn({ binaryPath: bin, profile: "local", env });
  const exited = new Promise((resolve) => sidecar.once("exit", resolve));
  const pending = sidecar.login(); // nobody completes this sign-in
  await new Promise((resolve) => sidecar.once("loginStarted", resolve));
  process.kill(sidecar.pid, "SIGKILL");
  await assert.rejects(pending, (err) => err instanceof SasSidecarError && err.code === "sidecar_exited");
  await exited;
  await assert.rejects(sidecar.status(), (err) => err.code === "sidecar_exited");
});

test("a bad binary path rejects spawn", async () => {
  await assert.rejects(SasSidecar.spawn({ binaryPath: join(home, "no-such-binary"), env }), SasSidecarError);
});

