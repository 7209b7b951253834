import { createRequire } from "node:module";
import type BetterSqlite3 from "better-sqlite3";

/**
 * The SQLite driver for the Node that runs the service: better-sqlite3 13 (Node-API, with
 * prebuilt binaries in its package) on Node 22 and later, 12 (built against Node's headers)
 * on Node 20. Each crashes where the other works: 13 does not load on Node 20, and 12 built
 * against Node 24.19+ headers aborts when a statement is collected. Same API.
 */
const require = createRequire(import.meta.url);
const major = Number(process.versions.node.split(".")[0]);

export const Database: typeof BetterSqlite3 = require(
  major >= 22 ? "better-sqlite3-napi" : "better-sqlite3",
);
