import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import type { Browser, Page } from "playwright-core";
import { launchChromium } from "./console.js";
import { repoRoot } from "./server.js";

const axeSource = readFileSync(path.join(repoRoot, "node_modules/axe-core/axe.min.js"), "utf8");
const screenshots = path.join(repoRoot, "docs/screenshots");

export interface ConsoleBrowser {
  browser: Browser;
  page: Page;
  /** CSP violations Chromium reported so far. */
  cspViolations: string[];
  /**
   * Screenshot (docs/screenshots/<name>.png when `name` is given), axe (no serious or critical
   * violation), no CSP violation, and nothing wider than a 390 px phone screen.
   */
  check(label: string, screenshot?: string): Promise<void>;
}

/**
 * Debian's Chromium through playwright-core, a fresh profile, desktop-sized (1280×800),
 * trusting only `server`'s certificate key.
 */
export async function openConsoleBrowser(server: {
  origin: string;
  caPem: Buffer;
}): Promise<ConsoleBrowser> {
  const browser = await launchChromium(server);
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const cspViolations: string[] = [];
  page.on("console", (m) => {
    if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
  });
  // Revoke and remove ask to confirm; the tests say yes.
  page.on("dialog", (d) => void d.accept());
  const check = async (label: string, screenshot?: string) => {
    if (screenshot)
      await page.screenshot({ path: path.join(screenshots, `${screenshot}.png`), fullPage: true });
    await page.evaluate(axeSource);
    const result = (await page.evaluate(() =>
      (
        globalThis as unknown as {
          axe: { run: () => Promise<{ violations: { id: string; impact: string }[] }> };
        }
      ).axe.run(),
    )) as { violations: { id: string; impact: string }[] };
    const serious = result.violations.filter(
      (v) => v.impact === "serious" || v.impact === "critical",
    );
    assert.deepEqual(
      serious.map((v) => v.id),
      [],
      `${label}: ${JSON.stringify(serious, null, 1).slice(0, 2000)}`,
    );
    assert.deepEqual(cspViolations, [], label);
    await page.setViewportSize({ width: 390, height: 844 });
    try {
      const width = await page.evaluate(() => document.documentElement.scrollWidth);
      // What sticks out, for the failure message.
      const wide = await page.evaluate(() =>
        [...document.querySelectorAll("body *")]
          .filter((e) => e.getBoundingClientRect().right > 391)
          .map((e) => `${e.tagName}.${e.className}:${Math.round(e.getBoundingClientRect().right)}`),
      );
      assert.ok(width <= 390, `${label} is wider than a phone (${width}px): ${wide.join(" ")}`);
    } finally {
      await page.setViewportSize({ width: 1280, height: 800 });
    }
  };
  return { browser, page, cspViolations, check };
}

/** Signs in through the sign-in form and waits for the agents page. */
export async function signIn(page: Page, origin: string, key: string) {
  await page.goto(`${origin}/`);
  await page.getByLabel("API key").fill(key);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Agents" }).waitFor();
}
