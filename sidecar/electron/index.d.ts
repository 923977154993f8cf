import { EventEmitter } from "node:events";

export interface SpawnOptions {
  /** Path to the sas-sidecar binary (electron-builder extraResources). */
  binaryPath?: string;
  /**
   * Instead of binaryPath: the directory holding the binary, e.g.
   * process.resourcesPath; the file is sidecarBinaryName({ platform }).
   */
  binaryDir?: string;
  /** process.platform unless given (tests): "win32" picks sas-sidecar.exe. */
  platform?: NodeJS.Platform;
  /** prod (default), dev or local. */
  profile?: "prod" | "dev" | "local";
  /** The sidecar's environment (default: process.env). */
  env?: NodeJS.ProcessEnv;
  /** Extra `serve` flags, e.g. ["--token-store", "file"]. */
  args?: string[];
  /** Receives the sidecar's stderr log lines (JSON). */
  logger?: ((line: string) => void) | { log(line: string): void };
}

export interface BinaryNameOptions {
  /** Default process.platform. */
  platform?: NodeJS.Platform;
  /** Default process.arch (ignored on darwin: the release binary is universal). */
  arch?: NodeJS.Architecture;
  /** The platform-suffixed release asset name, e.g. "sas-sidecar-windows-arm64.exe". */
  release?: boolean;
}

/** "sas-sidecar.exe" on win32, else "sas-sidecar"; see BinaryNameOptions.release. */
export function sidecarBinaryName(options?: BinaryNameOptions): string;

export interface User {
  id: string;
  email: string;
  username: string;
}

export interface Status {
  signedIn: boolean;
  user: User | null;
  /** RFC 3339 */
  expiresAt: string | null;
}

export interface LoginOptions {
  /**
   * "loopback" (default): the browser returns to the sidecar's listener on
   * 127.0.0.1. "app": it returns to the app's URL scheme (sas://callback);
   * pass that URL to completeLogin().
   */
  redirect?: "loopback" | "app";
}

export interface RequestInit {
  method?: string;
  /** A gateway path under /v1/, e.g. "/v1/me". */
  path: string;
  headers?: Record<string, string>;
  /** A string is sent as is; any other JSON value is sent as JSON. */
  body?: unknown;
}

export interface GatewayResponse {
  status: number;
  /** Lower-case header names. */
  headers: Record<string, string>;
  /** Parsed when the gateway answered JSON, else the text. */
  body: unknown;
}

export interface FetchInit {
  method?: string;
  headers?: Record<string, string>;
  body?: string | Uint8Array;
  signal?: AbortSignal;
}

export class SasSidecarError extends Error {
  /** e.g. "not_signed_in", "sign_in_failed", "cancelled", "gateway_unreachable", "sidecar_exited"; from runTemplate, the gateway's code ("bad_request", "not_found", "quota_exceeded"…). */
  code: string;
  rpcCode?: number;
  /** The gateway's HTTP status (runTemplate's refusals). */
  status?: number;
}

export interface RunTemplateOptions {
  /** Stream the answer as server-sent events (through the socket). */
  stream?: boolean;
  signal?: AbortSignal;
}

/** One server-sent event: data parsed as JSON when it is JSON (a chat stream ends with "[DONE]"). */
export interface TemplateEvent {
  event: string;
  data: any;
}

export class SasSidecar extends EventEmitter {
  static spawn(options: SpawnOptions): Promise<SasSidecar>;
  /** A Unix socket path, or a named pipe (\\.\pipe\…) on Windows; null when none is served. */
  readonly socketPath: string | null;
  readonly version: string;
  readonly pid: number | undefined;
  status(): Promise<Status>;
  login(options?: LoginOptions): Promise<Status>;
  completeLogin(url: string): Promise<Status>;
  logout(): Promise<Status>;
  deleteAccount(): Promise<Status>;
  request(req: RequestInit): Promise<GatewayResponse>;
  fetch(path: string, init?: FetchInit): Promise<Response>;
  /** Runs a server prompt template: the endpoint's JSON answer, or its events when streamed. */
  runTemplate(name: string, variables?: Record<string, unknown>): Promise<any>;
  runTemplate(name: string, variables: Record<string, unknown>, options: RunTemplateOptions & { stream: true }): Promise<AsyncIterable<TemplateEvent>>;
  runTemplate(name: string, variables?: Record<string, unknown>, options?: RunTemplateOptions): Promise<any>;
  close(): Promise<void>;
  on(event: "authChanged", listener: (e: { signedIn: boolean; user: User | null }) => void): this;
  on(event: "loginStarted", listener: (e: { url: string }) => void): this;
  on(event: "exit", listener: (err: SasSidecarError) => void): this;
  on(event: string, listener: (...args: any[]) => void): this;
}
