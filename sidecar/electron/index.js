// @ts-check
// Client for sas-sidecar, for Electron's main process (or any Node.js
// program). It spawns `sas-sidecar serve --stdio`, speaks its JSON-RPC on
// stdin/stdout, and calls the gateway through the sidecar's Unix socket (a
// named pipe on Windows).
// The sidecar attaches the user's token to every gateway call: no token ever
// reaches this process, let alone a renderer. Zero dependencies.

import { spawn } from "node:child_process";
import { EventEmitter } from "node:events";
import http from "node:http";
import path from "node:path";
import readline from "node:readline";
import { Readable } from "node:stream";

/** An error from the sidecar, with the contract's code when there is one. */
export class SasSidecarError extends Error {
  /**
   * @param {string} message
   * @param {{ code?: string, rpcCode?: number }} [details]
   */
  constructor(message, details = {}) {
    super(message);
    this.name = "SasSidecarError";
    /** e.g. "not_signed_in", "gateway_unreachable", "sidecar_exited" */
    this.code = details.code ?? "sidecar_error";
    /** the JSON-RPC error code, when the error came from a call */
    this.rpcCode = details.rpcCode;
    /** the gateway's HTTP status, when the error is the gateway's answer */
    this.status = details.status;
  }
}

const READY_TIMEOUT_MS = 10_000;

/** Go's names for Node's process.platform and process.arch values. */
const GOOS = { win32: "windows", darwin: "darwin", linux: "linux" };
const GOARCH = { x64: "amd64", arm64: "arm64" };

/**
 * The sidecar binary's file name on platform: "sas-sidecar.exe" on Windows,
 * else "sas-sidecar" (the names in scripts/build-sidecar's per-platform
 * folders, dist/<os>-<arch>/). With release: true, the platform-suffixed
 * name of the release assets: "sas-sidecar-windows-amd64.exe",
 * "sas-sidecar-linux-arm64", "sas-sidecar-darwin-universal" (both Mac
 * architectures in one file).
 * @param {import("./index.d.ts").BinaryNameOptions} [options]
 * @returns {string}
 */
export function sidecarBinaryName({ platform = process.platform, arch = process.arch, release = false } = {}) {
  const exe = platform === "win32" ? ".exe" : "";
  if (!release) return `sas-sidecar${exe}`;
  const os = GOOS[/** @type {keyof typeof GOOS} */ (platform)];
  const cpu = platform === "darwin" ? "universal" : GOARCH[/** @type {keyof typeof GOARCH} */ (arch)];
  if (!os || !cpu) throw new SasSidecarError(`no sas-sidecar release for ${platform}/${arch}`, { code: "unsupported_platform" });
  return `sas-sidecar-${os}-${cpu}${exe}`;
}

/** The notifications the sidecar sends, re-emitted as events. */
const NOTIFICATIONS = new Set(["authChanged", "loginStarted"]);

export class SasSidecar extends EventEmitter {
  /**
   * Spawns the sidecar and resolves once it is ready.
   * @param {import("./index.d.ts").SpawnOptions} options
   * @returns {Promise<SasSidecar>}
   */
  static spawn({ binaryPath, binaryDir, platform, profile, env, args = [], logger } = /** @type {any} */ ({})) {
    if (!binaryPath && binaryDir) binaryPath = path.join(binaryDir, sidecarBinaryName({ platform }));
    if (!binaryPath) throw new TypeError("binaryPath or binaryDir is required");
    const argv = ["serve", "--stdio", ...(profile ? ["--profile", profile] : []), ...args];
    const child = spawn(binaryPath, argv, { env: env ?? process.env, stdio: ["pipe", "pipe", "pipe"] });
    const sidecar = new SasSidecar(child, logger);
    return sidecar.#ready;
  }

  /** @type {import("node:child_process").ChildProcessWithoutNullStreams} */
  #child;
  /** @type {Map<number, {resolve: (v: any) => void, reject: (e: Error) => void}>} */
  #pending = new Map();
  #nextId = 1;
  /** @type {string | null} */
  #socketPath = null;
  #version = "";
  /** @type {Error | null} */
  #exitError = null;
  /** @type {Promise<SasSidecar>} */
  #ready;
  /** @type {Promise<void>} */
  #exited;

  /**
   * @param {import("node:child_process").ChildProcessWithoutNullStreams} child
   * @param {((line: string) => void) | { log: (line: string) => void } | undefined} logger
   */
  constructor(child, logger) {
    super();
    this.#child = child;
    const log = typeof logger === "function" ? logger : logger ? (/** @type {string} */ l) => logger.log(l) : null;
    /** @type {(s: SasSidecar) => void} */
    let readyResolve = () => {};
    /** @type {(e: Error) => void} */
    let readyReject = () => {};
    this.#ready = new Promise((resolve, reject) => {
      readyResolve = resolve;
      readyReject = reject;
    });
    const readyTimer = setTimeout(() => {
      readyReject(new SasSidecarError(`the sidecar was not ready within ${READY_TIMEOUT_MS} ms`, { code: "sidecar_not_ready" }));
      child.kill("SIGTERM");
    }, READY_TIMEOUT_MS);

    readline.createInterface({ input: child.stdout }).on("line", (line) => {
      /** @type {any} */
      let msg;
      try {
        msg = JSON.parse(line);
      } catch {
        log?.(`sas-sidecar: unparseable stdout line ignored`);
        return;
      }
      if (msg.method === "ready") {
        clearTimeout(readyTimer);
        this.#socketPath = msg.params?.socket ?? null;
        this.#version = msg.params?.version ?? "";
        readyResolve(this);
        return;
      }
      if (msg.id === undefined || msg.id === null) {
        // Only known names: emitting "error" without a listener would throw.
        if (NOTIFICATIONS.has(msg.method)) this.emit(msg.method, msg.params);
        return;
      }
      const call = this.#pending.get(msg.id);
      if (!call) return;
      this.#pending.delete(msg.id);
      if (msg.error) {
        call.reject(new SasSidecarError(msg.error.message, { code: msg.error.data?.code, rpcCode: msg.error.code }));
      } else {
        call.resolve(msg.result);
      }
    });
    if (log) readline.createInterface({ input: child.stderr }).on("line", log);
    else child.stderr.resume();

    this.#exited = new Promise((resolve) => {
      let gone = false;
      const onGone = (/** @type {Error} */ err) => {
        if (gone) return; // "error" then "close" report one death
        gone = true;
        clearTimeout(readyTimer);
        this.#exitError = err;
        readyReject(err);
        for (const call of this.#pending.values()) call.reject(err);
        this.#pending.clear();
        this.emit("exit", err);
        resolve();
      };
      child.on("error", (err) => onGone(new SasSidecarError(`could not start the sidecar: ${err.message}`, { code: "sidecar_exited" })));
      // "close", not "exit": answers still in the stdout pipe are read first.
      child.on("close", (code, signal) =>
        onGone(new SasSidecarError(`the sidecar exited (${signal ?? `code ${code}`})`, { code: "sidecar_exited" })),
      );
    });
    child.stdin.on("error", () => {}); // a dead sidecar: reported through "exit"
  }

  /**
   * The local API's address from the ready notification: a Unix socket
   * path, or on Windows a named pipe (\\.\pipe\sas-sidecar-<profile>-<SID>);
   * null when the sidecar could not serve it (its log says why): use
   * request().
   */
  get socketPath() {
    return this.#socketPath;
  }

  /** The sidecar's process id. */
  get pid() {
    return this.#child.pid;
  }

  /** The sidecar's build version. */
  get version() {
    return this.#version;
  }

  /**
   * @param {string} method
   * @param {unknown} [params]
   * @returns {Promise<any>}
   */
  #call(method, params) {
    if (this.#exitError) return Promise.reject(this.#exitError);
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      const msg = params === undefined ? { jsonrpc: "2.0", id, method } : { jsonrpc: "2.0", id, method, params };
      this.#child.stdin.write(JSON.stringify(msg) + "\n");
    });
  }

  /** @returns {Promise<import("./index.d.ts").Status>} */
  status() {
    return this.#call("status");
  }

  /**
   * Runs the browser sign-in; resolves when it is done. Calling it while a
   * sign-in runs joins that one (no second browser tab). The "loginStarted"
   * event carries the URL, to offer as a link if no browser opened.
   *
   * With { redirect: "app" } the provider sends the browser back to the
   * app's own URL scheme (sas://callback by default) instead of the loopback
   * listener: the app registers the scheme and passes the URL the OS hands
   * it to completeLogin().
   * @param {import("./index.d.ts").LoginOptions} [options]
   * @returns {Promise<import("./index.d.ts").Status>}
   */
  login(options) {
    return this.#call("login", options?.redirect ? { redirect: options.redirect } : undefined);
  }

  /**
   * Completes a sign-in started with login({ redirect: "app" }): url is the
   * sas://callback?… URL the OS handed the app (macOS "open-url", or the
   * argv of Windows' and Linux's "second-instance"). Resolves with the new
   * status; a URL of another attempt is refused and the sign-in goes on.
   * @param {string} url
   * @returns {Promise<import("./index.d.ts").Status>}
   */
  completeLogin(url) {
    return this.#call("completeLogin", { url });
  }

  /** @returns {Promise<import("./index.d.ts").Status>} */
  logout() {
    return this.#call("logout");
  }

  /**
   * Deletes the signed-in user's account for good (DELETE /v1/me: the
   * subscription cancelled at once, the sign-in account and its email
   * deleted), then signs out. Ask the user to confirm first. Rejects with
   * code "unavailable" when a step could not be done: calling again
   * finishes it.
   * @returns {Promise<import("./index.d.ts").Status>}
   */
  deleteAccount() {
    return this.#call("deleteAccount");
  }

  /**
   * A gateway call with the token attached; the whole answer at once.
   * @param {import("./index.d.ts").RequestInit} req
   * @returns {Promise<import("./index.d.ts").GatewayResponse>}
   */
  request({ method = "GET", path, headers, body }) {
    return this.#call("request", { method, path, ...(headers ? { headers } : {}), ...(body !== undefined ? { body } : {}) });
  }

  /**
   * A gateway call through the sidecar's socket (or named pipe: Node's
   * socketPath takes either), answered as a WHATWG
   * Response whose body streams (server-sent events arrive as they come).
   * Aborting init.signal cancels the call all the way to the upstream.
   * @param {string} path e.g. "/v1/chat/completions"
   * @param {import("./index.d.ts").FetchInit} [init]
   * @returns {Promise<Response>}
   */
  fetch(path, init = {}) {
    const socketPath = this.#socketPath;
    if (!socketPath) return Promise.reject(new SasSidecarError("the sidecar serves no socket (its log says why): use request()", { code: "no_socket" }));
    return new Promise((resolve, reject) => {
      const req = http.request(
        { socketPath, path, method: init.method ?? "GET", headers: { host: "sas", ...(init.headers ?? {}) }, signal: init.signal },
        (res) => {
          const headers = new Headers();
          for (const [k, v] of Object.entries(res.headers)) {
            if (v !== undefined) headers.set(k, Array.isArray(v) ? v.join(", ") : v);
          }
          const status = res.statusCode ?? 502;
          const nullBody = status === 204 || status === 304 || (init.method ?? "GET").toUpperCase() === "HEAD";
          resolve(
            new Response(nullBody ? null : /** @type {ReadableStream} */ (Readable.toWeb(res)), {
              status,
              statusText: res.statusMessage,
              headers,
            }),
          );
        },
      );
      req.on("error", (err) =>
        reject(err.name === "AbortError" ? err : new SasSidecarError(`sidecar socket: ${err.message}`, { code: "sidecar_unreachable" })),
      );
      if (init.body !== undefined && init.body !== null) req.write(init.body);
      req.end();
    });
  }

  /**
   * Runs one of the gateway's prompt templates (the app's prompts, kept on
   * the server): POST /v1/templates/{name} with the variables. Without
   * stream it resolves the endpoint's JSON answer (a Responses API response
   * or a chat completion); with stream it resolves an async iterable of the
   * server-sent events, each {event, data} with data parsed as JSON (a
   * chat stream's last is {event: "", data: "[DONE]"}). Streaming goes
   * through the socket; aborting signal cancels the call all the way to the
   * upstream. A refusal rejects with SasSidecarError carrying the gateway's
   * code (bad_request naming the variable, not_found, model_not_allowed,
   * quota_exceeded…) and status.
   * @param {string} name
   * @param {Record<string, unknown>} [variables]
   * @param {{stream?: boolean, signal?: AbortSignal}} [options]
   */
  async runTemplate(name, variables = {}, { stream = false, signal } = {}) {
    const path = `/v1/templates/${encodeURIComponent(name)}`;
    if (!stream) {
      const res = await this.request({ method: "POST", path, body: { variables } });
      if (res.status !== 200) throw gatewayError(res.status, res.body);
      return res.body;
    }
    const res = await this.fetch(path, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ variables, stream: true }),
      signal,
    });
    if (res.status !== 200) throw gatewayError(res.status, await res.json().catch(() => null));
    return serverSentEvents(/** @type {ReadableStream<Uint8Array>} */ (res.body));
  }

  /**
   * Stops the sidecar (closing its stdin, as when the app quits) and waits
   * for it to exit; after 3 s it is sent SIGTERM. Pending calls reject.
   * @returns {Promise<void>}
   */
  async close() {
    if (this.#exitError) return;
    this.#child.stdin.end();
    const timer = setTimeout(() => this.#child.kill("SIGTERM"), 3000);
    await this.#exited;
    clearTimeout(timer);
  }
}

/** A gateway error envelope (or anything else) as a SasSidecarError. */
function gatewayError(status, body) {
  const e = body && typeof body === "object" && body.error ? body.error : null;
  return new SasSidecarError(e?.message ?? `the gateway answered ${status}`, { code: e?.code ?? "gateway_error", status });
}

/**
 * The events of a text/event-stream body, as they arrive.
 * @param {ReadableStream<Uint8Array>} body
 */
async function* serverSentEvents(body) {
  const decoder = new TextDecoder();
  let buf = "";
  const parse = (block) => {
    let event = "";
    const data = [];
    for (const line of block.split(/\r?\n/)) {
      if (line.startsWith("event:")) event = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
    }
    if (data.length === 0) return null;
    const text = data.join("\n");
    try {
      return { event, data: JSON.parse(text) };
    } catch {
      return { event, data: text };
    }
  };
  for await (const chunk of body) {
    buf += decoder.decode(chunk, { stream: true });
    let end;
    while ((end = buf.search(/\r?\n\r?\n/)) >= 0) {
      const ev = parse(buf.slice(0, end));
      buf = buf.slice(end).replace(/^\r?\n\r?\n/, "");
      if (ev) yield ev;
    }
  }
  const last = parse(buf);
  if (last) yield last;
}
