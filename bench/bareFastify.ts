import Fastify from "fastify";
import { ensureLocalTls } from "../src/tls/localCa.js";

/*
 * The baseline for bench/agentsHttp.ts: the least a Fastify 5 HTTPS server does per request.
 * Same framework, same TLS setup (a localhost certificate from the service's own local CA code),
 * same loader; only the application work is missing.
 *
 *   node --import tsx bench/bareFastify.ts <tls-dir>
 */

const tlsDir = process.argv[2];
if (!tlsDir) throw new Error("usage: bareFastify.ts <tls-dir>");
const tls = ensureLocalTls(tlsDir);

const app = Fastify({ https: { cert: tls.cert, key: tls.key }, logger: false });
app.get("/", async () => ({ hello: "world" }));

const origin = await app.listen({ host: "127.0.0.1", port: 0 });
process.stdout.write(`bare fastify listening on ${origin}\n`);

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => void app.close().then(() => process.exit(0)));
}
