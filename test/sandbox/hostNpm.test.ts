import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { before, describe, it } from "node:test";
import { hostNpmSettings } from "../../src/build/dependencies.js";
import { tempDir } from "../helpers/server.js";

/**
 * Which registry and CA the builds' npm is given, read from the real npm of this machine with
 * npmrc files of the test's own. PREFIX stands for an npm installation's prefix (npm reads its
 * global npmrc from `<prefix>/etc/npmrc`).
 */
describe("the host npm's registry and CA for builds", () => {
  let dir: string;
  let emptyUser: string;
  let emptyGlobal: string;
  let machinePrefix: string;
  /** process.env without the npm settings `npm test` exports, plus the test's own. */
  let env: (extra: Record<string, string>) => NodeJS.ProcessEnv;

  before(() => {
    dir = tempDir("agenthost-npm-");
    emptyUser = path.join(dir, "empty-user-npmrc");
    emptyGlobal = path.join(dir, "empty-global-npmrc");
    writeFileSync(emptyUser, "");
    writeFileSync(emptyGlobal, "");
    machinePrefix = path.join(dir, "machine");
    mkdirSync(path.join(machinePrefix, "etc"), { recursive: true });
    writeFileSync(
      path.join(machinePrefix, "etc/npmrc"),
      `cafile=${path.join(dir, "machine-ca.pem")}\nregistry=https://mirror.invalid/npm/\n`,
    );
    const clean = Object.fromEntries(
      Object.entries(process.env).filter(
        ([key]) => !/^npm_/i.test(key) && key !== "NODE_EXTRA_CA_CERTS" && key !== "PREFIX",
      ),
    );
    env = (extra) => ({ ...clean, npm_config_userconfig: emptyUser, ...extra });
  });

  it("takes the CA and registry the npm on the service's PATH names", async () => {
    const user = path.join(dir, "user-npmrc");
    writeFileSync(user, `cafile=${dir}/user-ca.pem\nregistry=https://user.invalid/\n`);
    const got = await hostNpmSettings({
      env: env({ npm_config_userconfig: user, npm_config_globalconfig: emptyGlobal }),
    });
    assert.deepEqual(got, { registry: "https://user.invalid/", caFile: `${dir}/user-ca.pem` });
  });

  it("reads the machine npm's own config when the npm on PATH is another installation's", async () => {
    // What `npm test` exports when npm runs on a Node installed under another prefix (e.g.
    // the npm registry's node@24): that prefix and its global npmrc, which names no CA.
    const other = path.join(dir, "other-node");
    const got = await hostNpmSettings({
      env: env({
        PREFIX: machinePrefix,
        npm_config_prefix: other,
        npm_config_global_prefix: other,
        npm_config_globalconfig: emptyGlobal,
      }),
    });
    assert.deepEqual(got, {
      registry: "https://mirror.invalid/npm/",
      caFile: path.join(dir, "machine-ca.pem"),
    });
  });

  it("falls back to NODE_EXTRA_CA_CERTS when no npm names a CA", async () => {
    const got = await hostNpmSettings({
      env: env({
        PREFIX: path.join(dir, "no-such-prefix"),
        npm_config_globalconfig: emptyGlobal,
        NODE_EXTRA_CA_CERTS: `${dir}/extra.pem`,
      }),
    });
    assert.deepEqual(got, { registry: "https://registry.npmjs.org/", caFile: `${dir}/extra.pem` });
  });

  it("answers the defaults when there is no npm at all", async () => {
    const nowhere = path.join(dir, "empty-bin");
    mkdirSync(nowhere);
    const got = await hostNpmSettings({ env: env({ PATH: nowhere }), machinePath: nowhere });
    assert.deepEqual(got, { registry: "https://registry.npmjs.org/", caFile: undefined });
  });

  it("never reads the .npmrc of the directory the service was started in", async () => {
    const project = path.join(dir, "project");
    mkdirSync(project);
    writeFileSync(path.join(project, "package.json"), "{}");
    writeFileSync(path.join(project, ".npmrc"), `cafile=${project}/planted.pem\n`);
    const cwd = process.cwd();
    process.chdir(project);
    try {
      const got = await hostNpmSettings({
        env: env({
          PREFIX: machinePrefix,
          npm_config_globalconfig: path.join(machinePrefix, "etc/npmrc"),
        }),
      });
      assert.equal(got.caFile, path.join(dir, "machine-ca.pem"));
    } finally {
      process.chdir(cwd);
    }
  });
});
