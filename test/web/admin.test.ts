import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { ensureConsoleBuilt } from "../helpers/console.js";
import { openConsoleBrowser, signIn, type ConsoleBrowser } from "../helpers/browser.js";
import { projectOpenAI } from "../helpers/openaiClient.js";
import { startStandInModel, type StandInModel } from "../helpers/standInModel.js";
import {
  adminRequest,
  httpsJson,
  removeDir,
  sdk,
  startServer,
  type TestServer,
} from "../helpers/server.js";

/*
 * The console's admin pages in Chromium against the real service over HTTPS. The model server
 * behind the deployments is a TEST DOUBLE (the stand-in model server,
 * test/helpers/standInModel.ts), which asks for an API key like a real upstream does.
 */

const upstreamKey = "sk-upstream-secret-4242";
let server: TestServer;
let model: StandInModel;
let ui: ConsoleBrowser;

before(async () => {
  ensureConsoleBuilt();
  model = await startStandInModel({ apiKey: upstreamKey });
  server = await startServer();
  ui = await openConsoleBrowser(server);
  await signIn(ui.page, server.origin, server.adminKey);
});

after(async () => {
  await ui?.browser.close();
  await server?.stop();
  removeDir(server.dataDir);
  await model?.close();
});

const callerStatus = async (key: string) =>
  (
    await httpsJson(server, "GET", `${server.origin}/caller`, {
      headers: { authorization: `Bearer ${key}` },
    })
  ).status;

describe("the admin pages", () => {
  it("creates a key shown once, lists it without its secret, and revokes it", async () => {
    const { page } = ui;
    await page.getByRole("link", { name: "Admin" }).click();
    await page.getByRole("heading", { name: "API keys" }).waitFor();
    await page.getByLabel("Name", { exact: true }).fill("ci-robot");
    await page.getByRole("button", { name: "Create key" }).click();
    const shown = await page.getByTestId("new-key").innerText();
    assert.match(shown, /^ahk_/);
    assert.equal(await callerStatus(shown), 200, "the key shown works");
    await page
      .context()
      .grantPermissions(["clipboard-read", "clipboard-write"], { origin: server.origin });
    await page.getByRole("button", { name: "Copy key" }).click();
    await page.getByText("Copied.").waitFor();
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), shown);
    const row = page.getByRole("row").filter({ hasText: "ci-robot" });
    await row.waitFor();
    assert.ok(!(await row.innerText()).includes(shown), "the list never shows the secret");
    await page.getByRole("button", { name: "Done" }).click();
    assert.ok(!(await page.locator("main").innerText()).includes(shown), "shown once only");
    await page.reload();
    await row.waitFor();
    assert.ok(!(await page.content()).includes(shown));
    await ui.check("keys", "admin-keys");

    await page.getByRole("button", { name: "Revoke ci-robot" }).click();
    await row.waitFor({ state: "detached" });
    assert.equal(await callerStatus(shown), 401, "a revoked key is refused");
    const listed = await adminRequest(server, "GET", "/keys");
    assert.ok(
      !(listed.body.data as { name: string }[]).some((k) => k.name === "ci-robot"),
      "revoked in the API too",
    );
  });

  it("adds a deployment without showing its key back, tests it through the gateway, removes it", async () => {
    const { page } = ui;
    await page.getByRole("link", { name: "Deployments" }).click();
    await page.getByRole("heading", { name: "Deployments of default" }).waitFor();
    await page.getByText("No deployments in default").waitFor();
    const add = async (name: string, key: string) => {
      await page.getByLabel("Name", { exact: true }).fill(name);
      await page.getByLabel("Model", { exact: true }).fill("stand-in-model");
      await page.getByLabel("Base URL").fill(model.baseUrl);
      await page.getByLabel("API key (stored encrypted)").fill(key);
      await page.getByRole("button", { name: "Add deployment" }).click();
      await page.getByRole("row").filter({ hasText: name }).waitFor();
    };
    await add("good-model", upstreamKey);
    await add("wrong-key", "sk-not-the-key");
    assert.equal(await page.getByLabel("API key (stored encrypted)").inputValue(), "");
    const html = await page.content();
    assert.ok(!html.includes(upstreamKey) && !html.includes("sk-not-the-key"), "keys not shown");
    assert.match(
      await page.getByRole("row").filter({ hasText: "good-model" }).innerText(),
      /\bset\b/,
    );
    const stored = await adminRequest(server, "GET", "/projects/default/deployments/good-model");
    assert.equal(stored.body.api_key, "set");

    model.answer(() => ({ text: "OK" }));
    await page.getByRole("button", { name: "Test good-model" }).click();
    const result = page.getByTestId("test-result");
    await result.getByText("Test of good-model: Answered: OK").waitFor();
    assert.equal(model.requests.at(-1)!.headers.authorization, `Bearer ${upstreamKey}`);
    await page.getByRole("button", { name: "Test wrong-key" }).click();
    await result.getByText(/Test of wrong-key: upstream_error/).waitFor();
    await ui.check("deployments", "admin-deployments");

    await page.getByRole("button", { name: "Remove wrong-key" }).click();
    await page.getByRole("row").filter({ hasText: "wrong-key" }).waitFor({ state: "detached" });
    const gone = await adminRequest(server, "GET", "/projects/default/deployments/wrong-key");
    assert.equal(gone.status, 404);
  });

  it("charts the usage per agent and version after some calls", async () => {
    const { page } = ui;
    const client = sdk(server, server.adminKey);
    await client.agents.createVersion("counted", { kind: "prompt", model: "good-model" } as never);
    await client.agents.createVersion("counted", {
      kind: "prompt",
      model: "good-model",
      instructions: "Two.",
    } as never);
    const openai = projectOpenAI(client, server);
    model.answer(() => ({ text: "fine", usage: { prompt_tokens: 10, completion_tokens: 2 } }));
    for (const version of ["1", "1", "2"])
      await openai.responses.create({ input: "count me" }, {
        body: { agent: { name: "counted", type: "agent_reference", version } },
      } as never);
    await page.getByRole("link", { name: "Usage" }).click();
    await page.getByRole("heading", { name: "Usage of default" }).waitFor();
    await page.locator(".chart canvas").waitFor();
    const legend = await page.locator(".chart").innerText();
    assert.match(legend, /counted v1/);
    assert.match(legend, /counted v2/);
    const v1 = page
      .getByRole("table", { name: "Totals by agent version" })
      .getByRole("row")
      .filter({ hasText: "counted" })
      .first();
    assert.deepEqual(
      (await v1.locator("td").allInnerTexts()).map((t) => t.trim()),
      ["counted", "1", "2", "20", "4", "24"],
    );
    await page.getByLabel("Period").selectOption("1 hour");
    await page.locator(".chart canvas").waitFor();
    await ui.check("usage", "usage");
  });

  it("explains to a project key that these pages need an admin key", async () => {
    const { page } = ui;
    const created = await adminRequest(server, "POST", "/keys", { project: "default" });
    await page.getByRole("button", { name: "Sign out" }).click();
    await signIn(page, server.origin, created.body.key as string);
    assert.equal(await page.getByRole("link", { name: "Admin" }).count(), 0);
    for (const [route, heading] of [
      ["/manage/keys", "API keys"],
      ["/manage/deployments", "Deployments of default"],
      ["/manage/usage", "Usage of default"],
    ] as const) {
      await page.goto(`${server.origin}${route}`);
      await page.getByRole("heading", { name: heading }).waitFor();
      await page.getByText("are managed with an admin key").waitFor();
      assert.equal(await page.getByRole("table").count(), 0);
    }
    await ui.check("admin pages for a project key");
  });
});
