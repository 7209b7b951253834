/**
 * The console's agent pages in Chromium against the real service: creating a prompt agent,
 * deploying hosted code (real builds in real sandboxes), versions' definitions and their diff,
 * code download, delete with force. The one test double is the stand-in model server
 * (test/helpers/standInModel.ts) behind the project's deployment, since no real model runs
 * here; a prompt agent is only created and shown, never asked.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import path from "node:path";
import type { Page } from "playwright-core";
import type { AgentDefinitionUnion } from "@azure/ai-projects";
import { openConsoleBrowser, signIn, type ConsoleBrowser } from "../helpers/browser.js";
import { ensureConsoleBuilt } from "../helpers/console.js";
import { fixtureDir, zipFixture } from "../helpers/agents.js";
import { makeZip } from "../helpers/zip.js";
import { defaultZipLimits, inspectZip } from "../../src/build/zipArchive.js";
import {
  deployStandInModel,
  startStandInModel,
  type StandInModel,
} from "../helpers/standInModel.js";
import {
  httpsJson,
  removeDir,
  sdk,
  startServer,
  tempDir,
  type TestServer,
} from "../helpers/server.js";

let server: TestServer;
let model: StandInModel;
let ui: ConsoleBrowser;
let page: Page;
const files = tempDir("agenthost-web-files-");

const api = (method: string, route: string, body?: unknown) =>
  httpsJson(server, method, `${server.endpoint}${route}`, {
    headers: {
      authorization: `Bearer ${server.adminKey}`,
      ...(body === undefined ? {} : { "content-type": "application/json" }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });

/** A GET of bytes from the project's API. */
const httpsGet = (route: string) =>
  new Promise<{ status: number; body: Buffer }>((resolve, reject) => {
    const req = httpsRequest(
      `${server.endpoint}${route}`,
      { ca: server.caPem, headers: { authorization: `Bearer ${server.adminKey}` } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (d: Buffer) => chunks.push(d));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      },
    );
    req.on("error", reject);
    req.end();
  });

before(async () => {
  ensureConsoleBuilt();
  model = await startStandInModel();
  server = await startServer();
  ui = await openConsoleBrowser(server);
  page = ui.page;
  await signIn(page, server.origin, server.adminKey);
});

after(async () => {
  await ui?.browser.close();
  await server?.stop();
  removeDir(server.dataDir);
  removeDir(files);
  await model?.close();
});

/** The main text, for failure messages. */
const mainText = async () => page.locator("main").innerText();

async function waitForStatus(status: string, timeout = 180_000) {
  await page
    .getByTestId("build-status")
    .filter({ hasText: new RegExp(`^${status}$`) })
    .waitFor({ timeout })
    .catch(async (err: unknown) => {
      throw new Error(`${String(err)}\n${await mainText()}`);
    });
}

describe("creating a prompt agent", () => {
  it("offers the project's deployments, checks tools as JSON, shows the API's 400 at its field", async () => {
    await page.getByRole("link", { name: "Create a prompt agent" }).first().click();
    await page.getByRole("heading", { name: "Create a prompt agent" }).waitFor();
    // No deployment yet: the page says how to add one.
    await page.getByText("Project default has no model deployments.").waitFor();
    await deployStandInModel(server, model);
    await page.reload();
    const modelSelect = page.getByLabel("Model (deployment)");
    await modelSelect.locator("option").first().waitFor({ state: "attached" });
    assert.deepEqual(await modelSelect.locator("option").allInnerTexts(), [
      "chat (stand-in-model)",
    ]);
    await page.getByLabel("Name", { exact: true }).fill("web-prompt");
    await page.getByLabel("Instructions").fill("Be brief.");
    await page.getByLabel(/^Temperature/).fill("0.5");

    // Not JSON: refused here, nothing sent.
    const tools = page.getByLabel(/^Tools/);
    await tools.fill("[{");
    await page.getByRole("button", { name: "Create agent" }).click();
    const problem = page.locator("#tools-problem");
    await problem.waitFor();
    assert.match(await problem.innerText(), /^Tools: not valid JSON/);
    assert.equal(await tools.getAttribute("aria-invalid"), "true");
    assert.equal((await api("GET", "/agents/web-prompt?api-version=v1")).status, 404);

    // JSON the API refuses: its 400, shown at the tools field, naming the field.
    await tools.fill('[{"name": "no type"}]');
    await page.getByRole("button", { name: "Create agent" }).click();
    await page.locator("#tools-problem", { hasText: "definition.tools" }).waitFor();
    const said = await problem.innerText();
    assert.match(said, /^(missing_parameter|invalid_parameter) \(definition\.tools/);
    assert.match(said, /type/);
    await ui.check("create-agent", "create-agent");

    await tools.fill('[{"type": "code_interpreter"}]');
    await page.getByRole("button", { name: "Create agent" }).click();
    await page.getByRole("heading", { name: "Agent web-prompt" }).waitFor();
    const saved = await api("GET", "/agents/web-prompt?api-version=v1");
    const definition = (saved.body.versions as { latest: { definition: Record<string, unknown> } })
      .latest.definition;
    assert.deepEqual(
      {
        model: definition.model,
        instructions: definition.instructions,
        temperature: definition.temperature,
        tools: definition.tools,
      },
      {
        model: "chat",
        instructions: "Be brief.",
        temperature: 0.5,
        tools: [{ type: "code_interpreter" }],
      },
    );
  });

  it("shows a version's definition highlighted and the diff between two versions", async () => {
    const client = sdk(server, server.adminKey);
    await client.agents.createVersion("web-prompt", {
      kind: "prompt",
      model: "chat",
      instructions: "Answer in French.",
      temperature: 0.5,
      tools: [{ type: "code_interpreter" }],
    } as AgentDefinitionUnion);
    await page.reload();
    await page.getByRole("heading", { name: "Agent web-prompt" }).waitFor();
    const definition = page.getByTestId("definition");
    await definition.waitFor();
    assert.match(await definition.innerText(), /"instructions": "Answer in French\."/);
    // Highlighted: keys and strings in spans of their own.
    assert.ok((await definition.locator("span.hljs-attr").count()) >= 4);
    assert.equal(
      await definition.locator("span.hljs-string", { hasText: "Answer in French." }).count(),
      1,
    );

    const diff = page.getByTestId("diff");
    assert.equal(await page.getByLabel("From version", { exact: true }).inputValue(), "1");
    assert.equal(await page.getByLabel("To version", { exact: true }).inputValue(), "2");
    assert.deepEqual(await diff.locator(".removed").allInnerTexts(), [
      '−   "instructions": "Be brief.",',
    ]);
    assert.deepEqual(await diff.locator(".added").allInnerTexts(), [
      '+   "instructions": "Answer in French.",',
    ]);
    // Unchanged lines are there too, unmarked.
    assert.ok((await diff.locator(".same", { hasText: '"model": "chat"' }).count()) === 1);
    await page.getByRole("heading", { name: "Compare versions" }).scrollIntoViewIfNeeded();
    await ui.check("diff", "diff");

    await page.getByLabel("To version", { exact: true }).selectOption("1");
    await page.getByText("The definitions of versions 1 and 1 are the same.").waitFor();
    assert.equal(await diff.locator(".added, .removed").count(), 0);
  });
});

describe("deploying hosted code", () => {
  const zip = zipFixture("echo-python");

  it("uploads a chosen zip with progress, streams the build log until the version is active", async () => {
    const zipFile = path.join(files, "echo-python.zip");
    writeFileSync(zipFile, zip);
    await page.getByRole("link", { name: "Deploy", exact: true }).click();
    await page.getByRole("heading", { name: "Deploy a hosted agent" }).waitFor();
    await page.getByLabel("Agent name (a new version if it exists)").fill("web-echo");
    await page.getByLabel("Code zip").setInputFiles(zipFile);
    assert.equal(
      await page.getByTestId("chosen").innerText(),
      `Chosen: echo-python.zip (${zip.length} bytes)`,
    );
    await page.getByRole("button", { name: "Deploy" }).click();
    await waitForStatus("active");
    const log = await page.getByTestId("build-log").innerText();
    assert.match(log, /^Connected to the version's build log/);
    assert.match(log, /build ended: active\s*$/);
    // The whole body went up: the bar is full, the bytes counted.
    assert.equal(await page.locator("progress").getAttribute("value"), "100");
    assert.match(await page.getByText(/bytes sent/).innerText(), /^(\d+) of \1 bytes sent$/);
    await ui.check("deploy", "deploy");
    const v = await api("GET", "/agents/web-echo/versions/1?api-version=v1");
    assert.equal(v.body.status, "active");
  });

  it("zips a chosen folder in the browser and deploys it", async () => {
    await page.reload();
    await page.getByLabel("Agent name (a new version if it exists)").fill("web-folder");
    await page
      .getByLabel("Or a folder (zipped here, in the browser)")
      .setInputFiles(fixtureDir("echo-python"));
    await page.getByTestId("chosen").filter({ hasText: "folder echo-python" }).waitFor();
    await page.getByRole("button", { name: "Deploy" }).click();
    await waitForStatus("active");
    // The zip made in the browser holds the folder's files at its root.
    const download = await httpsGet(`/agents/web-folder/code:download?api-version=v1`);
    assert.equal(download.status, 200);
    const saved = path.join(files, "browser-made.zip");
    writeFileSync(saved, download.body);
    // Read with the service's own checks: the browser's zip is also one it would accept.
    const { names } = await inspectZip(saved, defaultZipLimits);
    assert.ok(names.includes("main.py"), names.join(", "));
    assert.ok(
      names.every((n) => !n.startsWith("echo-python/")),
      names.join(", "),
    );
  });

  it("a dropped zip whose build fails shows failed and the reason", async () => {
    const failing = makeZip([
      { name: "main.py", data: "print('never runs')\n" },
      { name: "requirements.txt", data: "--no-index\nagenthost-no-such-package==9.9.9\n" },
    ]);
    await page.reload();
    await page.getByLabel("Agent name (a new version if it exists)").fill("web-broken");
    // Dropped onto the zone as a file from the desktop would be.
    const transfer = await page.evaluateHandle(
      (bytes: number[]) => {
        const t = new DataTransfer();
        t.items.add(new File([new Uint8Array(bytes)], "broken.zip", { type: "application/zip" }));
        return t;
      },
      [...failing],
    );
    await page.getByTestId("drop-zone").dispatchEvent("drop", { dataTransfer: transfer });
    await page.getByTestId("chosen").filter({ hasText: "broken.zip" }).waitFor();
    assert.ok(await page.getByLabel(/^Install dependencies/).isChecked());
    await page.getByRole("button", { name: "Deploy" }).click();
    await waitForStatus("failed");
    const reason = page.getByRole("alert");
    assert.match(await reason.innerText(), /^dependency_install_failed: Installing dependencies/);
    assert.match(await reason.innerText(), /agenthost-no-such-package/);
    assert.match(
      await page.getByTestId("build-log").innerText(),
      /build ended: failed \(dependency_install_failed\)\s*$/,
    );
    await ui.check("deploy-failed");
  });

  it("lists live sessions, downloads the exact code, and deletes with force naming the session", async () => {
    const created = await api("POST", "/agents/web-echo/endpoint/sessions?api-version=v1", {
      version_indicator: { type: "version_ref", agent_version: "1" },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const sessionId = String(created.body.agent_session_id);

    // Through the API: the count, and only the known include.
    const listed = await api("GET", "/agents?api-version=v1&include=live_session_count");
    const counts = Object.fromEntries(
      (listed.body.data as { name: string; live_session_count: number }[]).map((a) => [
        a.name,
        a.live_session_count,
      ]),
    );
    assert.deepEqual(counts, {
      "web-echo": 1,
      "web-broken": 0,
      "web-folder": 0,
      "web-prompt": 0,
    });
    const plain = await api("GET", "/agents?api-version=v1");
    assert.ok((plain.body.data as object[]).every((a) => !("live_session_count" in a)));
    const bad = await api("GET", "/agents?api-version=v1&include=everything");
    assert.equal(bad.status, 400);
    assert.equal((bad.body.error as { param: string }).param, "include");

    await page.getByRole("link", { name: "Agents", exact: true }).click();
    const row = page.locator("tbody tr", { hasText: "web-echo" });
    await row.waitFor();
    assert.deepEqual(await row.locator("td").allInnerTexts(), [
      "web-echo",
      "hosted",
      "enabled",
      "1",
      "1",
    ]);
    assert.equal(
      await page.locator("tbody tr", { hasText: "web-prompt" }).locator("td").last().innerText(),
      "0",
    );

    await row.getByRole("link", { name: "web-echo" }).click();
    await page.getByRole("heading", { name: "Agent web-echo" }).waitFor();
    const downloading = page.waitForEvent("download");
    await page.getByRole("button", { name: "Download code of version 1" }).click();
    const downloaded = await downloading;
    assert.equal(downloaded.suggestedFilename(), "web-echo-1.zip");
    const saved = path.join(files, "downloaded.zip");
    await downloaded.saveAs(saved);
    assert.ok(readFileSync(saved).equals(zip), "the downloaded bytes are the uploaded zip");

    await page.getByRole("button", { name: "Delete agent" }).click();
    const dialog = page.getByRole("dialog", { name: "Delete agent web-echo?" });
    await dialog.waitFor();
    assert.match(await dialog.innerText(), /This stops and deletes its 1 live session:/);
    assert.match(await page.getByTestId("live-sessions").innerText(), new RegExp(sessionId));
    await ui.check("delete-agent");
    await dialog.getByRole("button", { name: "Cancel" }).click();
    assert.equal((await api("GET", "/agents/web-echo?api-version=v1")).status, 200);

    await page.getByRole("button", { name: "Delete agent" }).click();
    await dialog.getByRole("button", { name: "Delete web-echo and end its sessions" }).click();
    await page.getByRole("heading", { name: "Agents", exact: true }).waitFor();
    await page.getByRole("link", { name: "web-prompt" }).waitFor();
    assert.equal(await page.getByRole("link", { name: "web-echo" }).count(), 0);
    assert.equal((await api("GET", "/agents/web-echo?api-version=v1")).status, 404);
    const again = await api("GET", "/agents?api-version=v1&include=live_session_count");
    assert.ok(!(again.body.data as { name: string }[]).some((a) => a.name === "web-echo"));
  });
});
