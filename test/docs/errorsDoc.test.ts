import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { it } from "node:test";
import { errorCodes } from "../../src/contract/errorCodes.js";
import { repoRoot } from "../helpers/server.js";

it("docs/errors.md lists exactly the codes in errorCodes, with their statuses", () => {
  const doc = readFileSync(path.join(repoRoot, "docs/errors.md"), "utf8");
  const documented = new Map(
    [...doc.matchAll(/^\|\s*`([a-z_]+)`\s*\|\s*(\d{3})\s*\|/gm)].map((m) => [m[1]!, Number(m[2])]),
  );
  const actual = new Map(Object.entries(errorCodes).map(([code, { status }]) => [code, status]));
  assert.deepEqual(documented, actual);
});
