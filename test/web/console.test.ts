import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import path from "node:path";
import type { Browser, Page } from "playwright-core";
import type { AgentDefinitionUnion } from "@azure/ai-projects";
import Fastify from "fastify";
import { consoleHandler } from "../../src/http/console.js";
import { ensureConsoleBuilt, launchChromium } from "../helpers/console.js";
import {
  adminRequest,
  httpsJson,
  removeDir,
  repoRoot,
  sdk,
  startServer,
  tempDir,
  type TestServer,
} from "../helpers/server.js";

const screenshots = path.join(repoRoot, "docs/screenshots");
const axeSource = readFileSync(path.join(repoRoot, "node_modules/axe-core/axe.min.js"), "utf8");

function get(server: TestServer, route: string, headers: Record<string, string> = {}) {
  return new Promise<{ status: number; headers: Record<string, unknown>; body: string }>(
    (resolve, reject) => {
      const req = httpsRequest(`${server.origin}${route}`, { ca: server.caPem, headers }, (res) => {
        let body = "";
        res.on("data", (d: Buffer) => (body += d.toString()));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      });
      req.on("error", reject);
      req.end();
    },
  );
}

let server: TestServer;
before(async () => {
  ensureConsoleBuilt();
  server = await startServer();
});
after(async () => {
  await server.stop();
  removeDir(server.dataDir);
});

describe("serving the console", () => {
  it("serves the page with a strict CSP and no-cache, and hashed assets immutable", async () => {
    const page = await get(server, "/", { accept: "text/html" });
    assert.equal(page.status, 200);
    assert.match(String(page.headers["content-type"]), /^text\/html/);
    assert.equal(page.headers["cache-control"], "no-cache");
    const csp = String(page.headers["content-security-policy"]);
    for (const directive of [
      "default-src 'self'",
      "script-src 'self'",
      "object-src 'none'",
      "frame-ancestors 'none'",
      "base-uri 'none'",
    ])
      assert.ok(csp.includes(directive), `${directive} in ${csp}`);
    // Only <style> elements (the terminal's) may be inline: no script, no style attribute.
    assert.ok(!/script-src[^;]*unsafe-inline/.test(csp), csp);
    assert.ok(/style-src 'self'(;|$)/.test(csp), csp);
    assert.equal(page.headers["x-content-type-options"], "nosniff");
    const script = /src="(\/assets\/[^"]+\.js)"/.exec(page.body)?.[1];
    assert.ok(script, page.body);
    assert.ok(!/<script>(?!<\/script>)/.test(page.body), "no inline script");
    const asset = await get(server, script);
    assert.equal(asset.status, 200);
    assert.match(String(asset.headers["content-type"]), /^text\/javascript/);
    assert.equal(asset.headers["cache-control"], "public, max-age=31536000, immutable");
    assert.equal(asset.headers["x-content-type-options"], "nosniff");
  });

  it("answers the page for client routes, JSON errors for the API and missing assets", async () => {
    const client = await get(server, "/agents/some-agent", { accept: "text/html,*/*" });
    assert.equal(client.status, 200);
    assert.match(client.body, /<div id="app">/);
    for (const route of ["/api/projects/default/nothing?api-version=v1", "/admin/nothing"]) {
      const api = await get(server, route, { accept: "text/html" });
      assert.equal(api.status, 404, route);
      assert.equal(JSON.parse(api.body).error.code, "not_found", route);
    }
    const missing = await get(server, "/assets/nothing.js", { accept: "text/html" });
    assert.equal(missing.status, 404);
    assert.equal(JSON.parse(missing.body).error.code, "not_found");
    const json = await get(server, "/unknown", { accept: "application/json" });
    assert.equal(json.status, 404);
    assert.equal(JSON.parse(json.body).error.code, "not_found");
  });
});

describe("without a built console", () => {
  it("answers / with a page saying to run npm run build", async () => {
    const dir = tempDir();
    const app = Fastify();
    const handler = consoleHandler(dir);
    handler.routes(app);
    const res = await app.inject({ method: "GET", url: "/" });
    assert.equal(res.statusCode, 503);
    assert.match(res.headers["content-type"] as string, /^text\/html/);
    assert.match(res.body, /npm run build/);
    assert.ok(String(res.headers["content-security-policy"]).includes("default-src 'self'"));
    await app.close();
    removeDir(dir);
  });
});

describe("GET /caller", () => {
  it("tells a key's project and whether it is an admin key", async () => {
    const admin = await httpsJson(server, "GET", `${server.origin}/caller`, {
      headers: { authorization: `Bearer ${server.adminKey}` },
    });
    assert.equal(admin.status, 200);
    assert.equal(admin.body.project, "*");
    assert.equal(admin.body.admin, true);
    const created = await adminRequest(server, "POST", "/keys", { project: "default" });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const own = await httpsJson(server, "GET", `${server.origin}/caller`, {
      headers: { authorization: `Bearer ${String(created.body.key)}` },
    });
    assert.equal(own.status, 200);
    assert.equal(own.body.project, "default");
    assert.equal(own.body.admin, false);
    const bad = await httpsJson(server, "GET", `${server.origin}/caller`, {
      headers: { authorization: "Bearer ahk_wrong" },
    });
    assert.equal(bad.status, 401);
    assert.equal((bad.body.error as { code: string }).code, "unauthorized");
  });
});

describe("the console in Chromium", () => {
  let browser: Browser;
  let page: Page;
  const cspViolations: string[] = [];
  before(async () => {
    // A fresh temporary profile each run (playwright's default for launch), trusting only
    // this service's certificate key.
    browser = await launchChromium(server);
    const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
    page = await context.newPage();
    page.on("console", (m) => {
      if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
    });
  });
  after(async () => {
    await browser?.close();
  });

  async function checkPage(name: string) {
    await page.screenshot({ path: path.join(screenshots, `${name}.png`), fullPage: true });
    await page.evaluate(axeSource);
    const result = (await page.evaluate(() =>
      (
        globalThis as unknown as {
          axe: { run: () => Promise<{ violations: { id: string; impact: string }[] }> };
        }
      ).axe.run(),
    )) as { violations: { id: string; impact: string; nodes?: unknown }[] };
    const serious = result.violations.filter(
      (v) => v.impact === "serious" || v.impact === "critical",
    );
    assert.deepEqual(
      serious.map((v) => v.id),
      [],
      `${name}: ${JSON.stringify(serious, null, 1).slice(0, 2000)}`,
    );
    assert.deepEqual(cspViolations, []);
    // Phone width (390 px): nothing wider than the screen.
    assert.ok(
      (await page.evaluate(() => document.documentElement.scrollWidth)) <= 390,
      `${name} is wider than a phone: ${await page.evaluate(() =>
        [...document.querySelectorAll("*")]
          .filter((e) => e.getBoundingClientRect().right > 390 || e.scrollWidth > 390)
          .map(
            (e) =>
              `${e.tagName}.${e.className}:${e.scrollWidth}/${e.getBoundingClientRect().right}`,
          )
          .join(" "),
      )}`,
    );
  }

  it("signs in: a bad key shows the API's error, the admin key shows project and admin", async () => {
    await page.goto(`${server.origin}/`);
    // By keyboard: the key field comes first, Enter submits.
    await page.keyboard.press("Tab");
    assert.equal(await page.evaluate(() => document.activeElement?.id), "key");
    await page.keyboard.type("ahk_not_a_key");
    await page.keyboard.press("Enter");
    const alert = page.getByRole("alert");
    await alert.waitFor();
    assert.match(await alert.innerText(), /unauthorized/);
    await checkPage("sign-in-error");
    await page.getByLabel("API key").fill(server.adminKey);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("heading", { name: "Agents" }).waitFor();
    assert.equal(await page.getByTestId("project").innerText(), "default");
    assert.ok(await page.getByText("admin key").isVisible());
    assert.equal(
      await page.evaluate(() => sessionStorage.getItem("agenthost.key")),
      server.adminKey,
    );
    assert.ok(!page.url().includes(server.adminKey));
    assert.deepEqual(await page.context().cookies(), []);
    await page.getByText("No agents in project default yet").waitFor();
    await checkPage("agents-empty");
  });

  it("lists an agent and sets a 70/30 traffic split, an invalid split shows the 400", async () => {
    const client = sdk(server, server.adminKey);
    const definition = { kind: "prompt", model: "gpt-test" } as AgentDefinitionUnion;
    await client.agents.createVersion("console-agent", definition);
    await client.agents.createVersion("console-agent", {
      ...definition,
      instructions: "Be brief.",
    } as AgentDefinitionUnion);
    await page.getByRole("link", { name: "Agents" }).click();
    await page.reload();
    const link = page.getByRole("link", { name: "console-agent" });
    await link.waitFor();
    await checkPage("agents");
    await link.click();
    await page.getByRole("heading", { name: "Agent console-agent" }).waitFor();
    assert.match(await page.getByTestId("definition").innerText(), /"instructions": "Be brief\."/);

    await page.getByLabel("Version 1 (%)").fill("70");
    await page.getByLabel("Version 2 (%)").fill("30");
    await page.getByRole("button", { name: "Save traffic split" }).click();
    await page.getByText("Traffic split saved.").waitFor();
    const raw = await httpsJson(
      server,
      "GET",
      `${server.endpoint}/agents/console-agent?api-version=v1`,
      { headers: { authorization: `Bearer ${server.adminKey}` } },
    );
    const saved = (
      raw.body.agent_endpoint as {
        version_selector: {
          version_selection_rules: { agent_version: string; traffic_percentage: number }[];
        };
      }
    ).version_selector.version_selection_rules
      .map((r) => [r.agent_version, r.traffic_percentage])
      .sort();
    assert.deepEqual(saved, [
      ["1", 70],
      ["2", 30],
    ]);
    await checkPage("agent");

    await page.getByRole("button", { name: "Disable" }).click();
    await page
      .getByRole("button", { name: "Enable" })
      .waitFor({ timeout: 5000 })
      .catch(async (err: unknown) => {
        throw new Error(`${String(err)}\n${await page.locator("main").innerText()}`);
      });
    assert.equal(await page.getByTestId("state").innerText(), "disabled");
    assert.equal((await client.agents.get("console-agent")).state, "disabled");
    await page.getByRole("button", { name: "Enable" }).click();
    await page.getByRole("button", { name: "Disable" }).waitFor();

    await page.getByRole("button", { name: "Show version 1" }).click();
    assert.doesNotMatch(await page.getByTestId("definition").innerText(), /instructions/);

    await page.getByLabel("Version 2 (%)").fill("20");
    await page.getByRole("button", { name: "Save traffic split" }).click();
    const alert = page.getByRole("alert");
    await alert.waitFor();
    const shown = await alert.innerText();
    assert.match(shown, /invalid_parameter/);
    assert.match(shown, /must sum to 100/);
    await checkPage("agent-invalid-split");
  });

  it("pages like the API, filters by kind and searches by name", async () => {
    const client = sdk(server, server.adminKey);
    for (let i = 0; i < 20; i++)
      await client.agents.createVersion(`page-agent-${String(i).padStart(2, "0")}`, {
        kind: "prompt",
        model: "gpt-test",
      } as AgentDefinitionUnion);
    await page.getByRole("link", { name: "Agents" }).click();
    await page.getByRole("link", { name: "page-agent-19" }).waitFor();
    assert.equal(await page.locator("tbody tr").count(), 20);
    assert.equal(await page.getByRole("link", { name: "console-agent" }).count(), 0);
    await page.getByRole("button", { name: "Next page" }).click();
    await page.getByRole("link", { name: "console-agent" }).waitFor();
    assert.equal(await page.locator("tbody tr").count(), 1);
    assert.ok(await page.getByRole("button", { name: "Next page" }).isDisabled());
    await page.getByRole("button", { name: "Previous page" }).click();
    await page.getByRole("link", { name: "page-agent-19" }).waitFor();

    await page.getByLabel("Search by name").fill("agent-05");
    assert.deepEqual(await page.locator("tbody tr td:first-child").allInnerTexts(), [
      "page-agent-05",
    ]);
    await page.getByLabel("Search by name").fill("");
    await page.getByLabel("Kind").selectOption("hosted");
    await page.getByText("No hosted agents in project default.").waitFor();
    await checkPage("agents-filtered-empty");
  });

  it("shows the API's error for a missing agent, and signs out", async () => {
    await page.goto(`${server.origin}/agents/no-such-agent`);
    const alert = page.getByRole("alert");
    await alert.waitFor();
    assert.match(await alert.innerText(), /not_found/);
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByLabel("API key").waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.length), 0);
  });
});
