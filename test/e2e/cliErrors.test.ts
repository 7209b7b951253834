import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import {
  httpsJson,
  removeDir,
  repoRoot,
  startServer,
  tempDir,
  type TestServer,
} from "../helpers/server.js";

/*
 * The CLI as a newcomer meets it: help, --version, and every mistake answered by one line that
 * says what is wrong and what to do (exit 2 for usage, 1 for what the machine refuses), with
 * no stack unless --log-level debug.
 */

function agenthost(args: string[], env: Record<string, string> = {}, cwd = repoRoot) {
  return new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(
      process.execPath,
      [
        "--import",
        path.join(repoRoot, "node_modules/tsx/dist/esm/index.mjs"),
        path.join(repoRoot, "src/main.ts"),
        ...args,
      ],
      {
        cwd,
        timeout: 60_000,
        killSignal: "SIGKILL",
        env: {
          ...process.env,
          AGENTHOST_DATA_DIR: "",
          AGENTHOST_PORT: "0",
          AGENTHOST_LOG_LEVEL: "",
          AGENTHOST_MODEL_DISCOVERY: "off",
          ...env,
        },
      },
      (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/** One line, no stack, quotes balanced; nothing on stdout. */
function assertOneLine(r: { code: number; stdout: string; stderr: string }, code: number) {
  assert.equal(r.code, code, r.stderr);
  assert.match(r.stderr, /^agenthost: [^\n]+\n$/);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
  for (const quote of ["'", '"', "`"])
    assert.equal(r.stderr.split(quote).length % 2, 1, `balanced ${quote} in ${r.stderr}`);
  assert.equal(r.stdout, "");
  return r.stderr.slice("agenthost: ".length, -1);
}

let server: TestServer;
let scratch: string;

before(async () => {
  server = await startServer();
  scratch = tempDir();
});

after(async () => {
  await server.stop();
  removeDir(server.dataDir);
  removeDir(scratch);
});

it("`agenthost` alone prints the help on stderr and exits 2; --help exits 0; --version prints the version", async () => {
  const bare = await agenthost([]);
  assert.equal(bare.code, 2);
  assert.match(bare.stderr, /^Usage: agenthost COMMAND \[options\]\n/);
  assert.match(
    bare.stderr,
    /serve .*\n.*keys create\|list\|revoke .*\n.*deployments add\|list\|remove/,
  );
  assert.equal(bare.stdout, "");
  const help = await agenthost(["--help"]);
  assert.equal(help.code, 0);
  assert.equal(help.stdout, bare.stderr);
  const version = await agenthost(["--version"]);
  assert.equal(version.code, 0);
  const pkg = JSON.parse(readFileSync(path.join(repoRoot, "package.json"), "utf8"));
  assert.equal(version.stdout, `agenthost ${pkg.version}\n`);
});

it("every command's help says how to choose the data directory", async () => {
  const commands = [
    ["serve"],
    ["keys", "create"],
    ["keys", "list"],
    ["keys", "revoke"],
    ["deployments", "add"],
    ["deployments", "list"],
    ["deployments", "remove"],
  ];
  for (const command of commands) {
    const r = await agenthost([...command, "--help"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^Usage: agenthost ${command.join(" ")}`));
    assert.match(r.stdout, /--data-dir DIR/, command.join(" "));
    assert.match(r.stdout, /AGENTHOST_DATA_DIR/, command.join(" "));
  }
});

describe("offline commands need a database made by `agenthost serve`", () => {
  it("`keys list` in an empty directory refuses, says where it looked, and creates nothing", async () => {
    const empty = tempDir();
    try {
      // As the newcomer ran it: no setting, in some other directory (./data is the default).
      const r = await agenthost(["keys", "list"], {}, empty);
      const line = assertOneLine(r, 2);
      assert.equal(
        line,
        `no agenthost database in ${empty}/data (looked for ${empty}/data/agenthost.db); give the data directory of your service with --data-dir DIR (or AGENTHOST_DATA_DIR): only agenthost serve creates one`,
      );
      assert.deepEqual(readdirSync(empty), [], "no ./data was created");

      const named = await agenthost(["keys", "create"], { AGENTHOST_DATA_DIR: empty });
      assert.match(assertOneLine(named, 2), new RegExp(`^no agenthost database in ${empty} `));
      const deployments = await agenthost(["deployments", "list", "--data-dir", empty]);
      assert.match(assertOneLine(deployments, 2), /^no agenthost database in /);
      assert.deepEqual(readdirSync(empty), []);
    } finally {
      removeDir(empty);
    }
  });

  it("an unknown project is an error unless --create-project, as on the HTTP routes", async () => {
    const env = { AGENTHOST_DATA_DIR: server.dataDir };
    const typo = await agenthost(["keys", "create", "--project", "defualt"], env);
    assert.equal(
      assertOneLine(typo, 2),
      "project defualt was not found (projects: default); give --create-project to create it",
    );
    const list = await agenthost(["keys", "list", "--project", "defualt"], env);
    assertOneLine(list, 2);
    const projects = await fetchProjects();
    assert.ok(!projects.includes("defualt"), "the typo made no project");

    const made = await agenthost(
      ["keys", "create", "--project", "team-c", "--create-project"],
      env,
    );
    assert.equal(made.code, 0, made.stderr);
    assert.match(made.stdout, /^ahk_\S+\n# id key_\S+, project team-c\n$/);
    const listed = await agenthost(["keys", "list", "--project", "team-c"], env);
    assert.match(listed.stdout, /^ID\tPROJECT\tNAME\tROLE\nkey_\S+\tteam-c\tkey_\S+\tproject\n$/);
  });
});

/** The projects the running service knows, through its admin route. */
async function fetchProjects(): Promise<string[]> {
  const r = await httpsJson(server, "GET", `${server.origin}/admin/projects`, {
    headers: { authorization: `Bearer ${server.adminKey}` },
  });
  return (r.body.data as { name: string }[]).map((p) => p.name);
}

describe("each mistake is one line without a stack", () => {
  it("flags: a missing value, an unknown option, a value for a switch, a bad value, an unknown command", async () => {
    const cases: [string[], number, RegExp][] = [
      [["serve", "--port"], 2, /^--port needs a value: --port PORT; see agenthost serve --help$/],
      [["serve", "--port", "--no-tls"], 2, /^--port needs a value/],
      [["serve", "--frobnicate"], 2, /^unknown option --frobnicate; see agenthost serve --help$/],
      [
        ["keys", "list", "--port", "1"],
        2,
        /^unknown option --port; see agenthost keys list --help$/,
      ],
      [["serve", "--no-tls=yes"], 2, /^--no-tls takes no value/],
      [["serve", "--port", "99999"], 2, /^Invalid setting port \(--port or AGENTHOST_PORT\): /],
      [["serve", "extra"], 2, /^unexpected argument extra/],
      [["frobnicate"], 2, /^unknown command frobnicate; see agenthost --help$/],
      [
        ["keys", "frobnicate"],
        2,
        /^unknown command keys frobnicate; the commands are agenthost keys create\|list\|revoke$/,
      ],
      [["keys", "revoke"], 2, /^name the key: agenthost keys revoke --id KEY_ID/],
    ];
    for (const [args, code, message] of cases) {
      const r = await agenthost(args, { AGENTHOST_DATA_DIR: server.dataDir });
      assert.match(assertOneLine(r, code), message, args.join(" "));
    }
  });

  it("the data directory: a file, a path through a file, a read-only file system", async () => {
    const file = path.join(scratch, "a-file");
    writeFileSync(file, "");
    const notDir = await agenthost(["serve", "--data-dir", file]);
    assert.equal(
      assertOneLine(notDir, 2),
      `the data directory ${file} is not a directory; choose another with --data-dir DIR (or AGENTHOST_DATA_DIR)`,
    );
    const through = await agenthost(["serve", "--data-dir", path.join(file, "data")]);
    assert.match(
      assertOneLine(through, 2),
      /^a part of the data directory .*a-file is not a directory/,
    );

    const ro = path.join(scratch, "read-only");
    mkdirSync(ro);
    assert.equal(spawnSync("mount", ["-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", ro]).status, 0);
    try {
      const inside = await agenthost(["serve", "--data-dir", ro]);
      assert.equal(
        assertOneLine(inside, 1),
        `cannot write in the data directory ${ro}: read-only file system; make it writable or choose another with --data-dir DIR (or AGENTHOST_DATA_DIR)`,
      );
      const below = await agenthost(["serve", "--data-dir", path.join(ro, "data")]);
      assert.match(
        assertOneLine(below, 1),
        new RegExp(
          `^cannot create the data directory ${ro}/data: read-only file system; make ${ro} writable`,
        ),
      );
    } finally {
      spawnSync("umount", [ro]);
    }
  });

  it("a missing certificate file, before anything is created", async () => {
    const dir = path.join(scratch, "never-made");
    const r = await agenthost([
      "serve",
      "--data-dir",
      dir,
      "--tls-cert",
      "/nonexistent/cert.pem",
      "--tls-key",
      "/nonexistent/key.pem",
    ]);
    assert.equal(
      assertOneLine(r, 2),
      "cannot read the TLS certificate /nonexistent/cert.pem: no such file or directory; give a PEM file with --tls-cert FILE (or AGENTHOST_TLS_CERT), or leave both out for a local CA",
    );
    assert.ok(!readdirSync(scratch).includes("never-made"), "no data directory was made");
    const garbage = path.join(scratch, "garbage.pem");
    writeFileSync(garbage, "not a certificate\n");
    const bad = await agenthost([
      "serve",
      "--data-dir",
      dir,
      "--tls-cert",
      garbage,
      "--tls-key",
      garbage,
    ]);
    assert.match(assertOneLine(bad, 2), /^the TLS certificate .* and key .* cannot be used: /);
  });

  it("--log-level debug adds the stack", async () => {
    const file = path.join(scratch, "a-file");
    writeFileSync(file, "");
    const r = await agenthost(["serve", "--data-dir", file, "--log-level", "debug"]);
    assert.equal(r.code, 2);
    const [first, ...rest] = r.stderr.split("\n");
    assert.match(first!, /^agenthost: the data directory .* is not a directory/);
    assert.ok(
      rest.some((l) => /^\s+at /.test(l)),
      r.stderr,
    );
  });
});
