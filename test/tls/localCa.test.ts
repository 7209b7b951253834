import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import https from "node:https";
import type { AddressInfo } from "node:net";
import path from "node:path";
import tls from "node:tls";
import { after, before, describe, it } from "node:test";
import forge from "node-forge";
import { ensureLocalTls, type TlsFiles } from "../../src/tls/localCa.js";
import { removeDir, tempDir } from "../helpers/server.js";

/** A certificate for `names`, signed with the local CA's key (as a stolen key would sign). */
function leafFor(dir: string, names: { dns?: string[]; ips?: string[] }) {
  const caCert = forge.pki.certificateFromPem(readFileSync(path.join(dir, "ca.pem"), "utf8"));
  const caKey = forge.pki.privateKeyFromPem(readFileSync(path.join(dir, "ca-key.pem"), "utf8"));
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const keyPem = privateKey.export({ type: "pkcs8", format: "pem" }).toString();
  const key = forge.pki.privateKeyFromPem(keyPem) as forge.pki.rsa.PrivateKey;
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.setRsaPublicKey(key.n, key.e);
  cert.serialNumber = "01" + randomBytes(15).toString("hex");
  cert.validity.notBefore = new Date(Date.now() - 60_000);
  cert.validity.notAfter = new Date(Date.now() + 24 * 3600 * 1000);
  cert.setSubject([{ name: "commonName", value: names.dns?.[0] ?? "x" }]);
  cert.setIssuer(caCert.subject.attributes);
  cert.setExtensions([
    { name: "basicConstraints", cA: false },
    { name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true },
    { name: "extKeyUsage", serverAuth: true },
    {
      name: "subjectAltName",
      altNames: [
        ...(names.dns ?? []).map((value) => ({ type: 2, value })),
        ...(names.ips ?? []).map((ip) => ({ type: 7, ip })),
      ],
    },
  ]);
  cert.sign(caKey as forge.pki.rsa.PrivateKey, forge.md.sha256.create());
  return { cert: forge.pki.certificateToPem(cert), key: keyPem };
}

async function serve(pair: { cert: string; key: string }): Promise<https.Server> {
  const server = https.createServer(pair, (_, res) => res.end("ok"));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return server;
}

/** A TLS handshake to 127.0.0.1 naming `servername`, trusting only the CA. */
function handshake(server: https.Server, ca: string, servername: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: "127.0.0.1",
      port: (server.address() as AddressInfo).port,
      servername,
      ca,
      // The chain is what is under test; names are checked by the constraint alone.
      checkServerIdentity: () => undefined,
    });
    socket.once("secureConnect", () => {
      socket.end();
      resolve();
    });
    socket.once("error", reject);
  });
}

/** An HTTPS request from a fresh Node that trusts the CA through NODE_EXTRA_CA_CERTS. */
function fetchTrusting(caFile: string, url: string): Promise<string> {
  const script = `require("node:https").get(process.argv[1], { rejectUnauthorized: true }, (r) => { r.resume(); console.log("status " + r.statusCode); }).on("error", (e) => { console.log("error " + e.code + " " + e.message); });`;
  return new Promise((resolve, reject) =>
    execFile(
      process.execPath,
      ["-e", script, url],
      { env: { PATH: process.env.PATH, NODE_EXTRA_CA_CERTS: caFile } },
      (err, stdout) => (err ? reject(err) : resolve(stdout.trim())),
    ),
  );
}

describe("local CA", () => {
  const dir = tempDir("agenthost-ca-");
  let files: TlsFiles;
  let ca: string;
  const servers: https.Server[] = [];

  before(() => {
    files = ensureLocalTls(dir);
    ca = readFileSync(files.caFile!, "utf8");
  });

  after(() => {
    for (const s of servers) s.close();
    removeDir(dir);
  });

  it("verifies its own server certificate, also trusted through NODE_EXTRA_CA_CERTS", async () => {
    const server = await serve(files);
    servers.push(server);
    await handshake(server, ca, "localhost");
    const port = (server.address() as AddressInfo).port;
    assert.equal(await fetchTrusting(files.caFile!, `https://localhost:${port}/`), "status 200");
  });

  it("is refused as the issuer of a certificate for any other name", async () => {
    for (const names of [
      { dns: ["example.com"] },
      { dns: ["localhost.evil.test"] },
      { ips: ["10.0.0.1"] },
    ]) {
      const server = await serve(leafFor(dir, names));
      servers.push(server);
      await assert.rejects(
        handshake(server, ca, names.dns?.[0] ?? "x"),
        /subtree violation/i,
        JSON.stringify(names),
      );
      const port = (server.address() as AddressInfo).port;
      assert.match(await fetchTrusting(files.caFile!, `https://127.0.0.1:${port}/`), /^error /);
    }
  });

  it("still signs for the names it covers", async () => {
    const server = await serve(leafFor(dir, { dns: ["localhost"], ips: ["127.0.0.1", "::1"] }));
    servers.push(server);
    await handshake(server, ca, "localhost");
  });
});
