import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";

/** Where `npm run build` puts the web console, from src/http or dist/http alike. */
export const defaultConsoleDir = path.resolve(import.meta.dirname, "../../web/dist");

const contentSecurityPolicy = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  // The console's terminal (xterm.js) sizes itself with <style> elements it writes at run
  // time; style attributes stay refused (style-src).
  "style-src-elem 'self' 'unsafe-inline'",
  // File previews show an image from the bytes the API sent (a blob: URL).
  "img-src 'self' data: blob:",
  "connect-src 'self'",
  "object-src 'none'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
  "form-action 'self'",
].join("; ");

const types: Record<string, string> = {
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".json": "application/json",
  ".woff2": "font/woff2",
};

const missingPage = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>agenthost</title></head>
<body><h1>agenthost</h1><p>The web console is not built. Run <code>npm run build</code> and restart the service.</p></body></html>`;

/** Paths of the API, whose unknown routes stay JSON error envelopes. */
const apiPath = /^\/(api|admin|openai|caller)(\/|$|\?)/;

/**
 * The web console: `web/dist` served at `/`. Files are read once at start-up (only those, so no
 * request can name anything else); hashed assets are cached for good, the page never.
 */
export function consoleHandler(dir: string = defaultConsoleDir) {
  const indexPath = path.join(dir, "index.html");
  const index = existsSync(indexPath) ? readFileSync(indexPath) : undefined;
  const assets = new Map<string, Buffer>();
  const assetDir = path.join(dir, "assets");
  if (index && existsSync(assetDir))
    for (const name of readdirSync(assetDir))
      assets.set(name, readFileSync(path.join(assetDir, name)));

  const sendPage = (reply: FastifyReply) =>
    reply
      .code(index ? 200 : 503)
      .header("content-type", "text/html; charset=utf-8")
      .header("cache-control", "no-cache")
      .header("content-security-policy", contentSecurityPolicy)
      .header("x-content-type-options", "nosniff")
      .header("referrer-policy", "no-referrer")
      .send(index ?? missingPage);

  return {
    routes(app: FastifyInstance) {
      app.get("/", async (_request, reply) => sendPage(reply));
      app.get<{ Params: { file: string } }>("/assets/:file", async (request, reply) => {
        const body = assets.get(request.params.file);
        if (!body) return reply.callNotFound();
        return reply
          .header(
            "content-type",
            types[path.extname(request.params.file)] ?? "application/octet-stream",
          )
          .header("cache-control", "public, max-age=31536000, immutable")
          .header("x-content-type-options", "nosniff")
          .send(body);
      });
    },
    /** The page for an unknown GET that wants HTML and is not an API path (client routes). */
    fallback(request: FastifyRequest, reply: FastifyReply): boolean {
      if (request.method !== "GET" && request.method !== "HEAD") return false;
      if (apiPath.test(request.url) || request.url.startsWith("/assets/")) return false;
      if (!(request.headers.accept ?? "").includes("text/html")) return false;
      void sendPage(reply);
      return true;
    },
  };
}
