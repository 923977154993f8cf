// The platform choice, without a sidecar: which binary the client runs on
// each OS (process.platform injected through the options, never stubbed).
import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";

import { SasSidecar, SasSidecarError, sidecarBinaryName } from "../index.js";

test("the binary's file name per platform", () => {
  const cases = [
    [{ platform: "win32", arch: "x64" }, "sas-sidecar.exe"],
    [{ platform: "win32", arch: "arm64" }, "sas-sidecar.exe"],
    [{ platform: "darwin", arch: "arm64" }, "sas-sidecar"],
    [{ platform: "linux", arch: "x64" }, "sas-sidecar"],
    [{ platform: "win32", arch: "x64", release: true }, "sas-sidecar-windows-amd64.exe"],
    [{ platform: "win32", arch: "arm64", release: true }, "sas-sidecar-windows-arm64.exe"],
    [{ platform: "darwin", arch: "x64", release: true }, "sas-sidecar-darwin-universal"],
    [{ platform: "darwin", arch: "arm64", release: true }, "sas-sidecar-darwin-universal"],
    [{ platform: "linux", arch: "arm64", release: true }, "sas-sidecar-linux-arm64"],
  ];
  for (const [options, want] of cases) {
    assert.equal(sidecarBinaryName(/** @type {any} */ (options)), want, JSON.stringify(options));
  }
  assert.equal(sidecarBinaryName(), process.platform === "win32" ? "sas-sidecar.exe" : "sas-sidecar");
  assert.throws(
    () => sidecarBinaryName({ platform: "freebsd", arch: "x64", release: true }),
    (err) => err instanceof SasSidecarError && err.code === "unsupported_platform",
  );
});

test("spawn with binaryDir runs sas-sidecar.exe on Windows", async () => {
  const dir = join("/nonexistent", "resources");
  for (const [platform, file] of [
    ["win32", "sas-sidecar.exe"],
    ["linux", "sas-sidecar"],
  ]) {
    await assert.rejects(SasSidecar.spawn({ binaryDir: dir, platform: /** @type {any} */ (platform) }), (err) => {
      assert.ok(err instanceof SasSidecarError, String(err));
      assert.equal(err.code, "sidecar_exited");
      assert.ok(err.message.includes(join(dir, file)), `${platform}: ${err.message} names ${file}`);
      return true;
    });
  }
  assert.throws(() => SasSidecar.spawn(/** @type {any} */ ({})), TypeError);
});
