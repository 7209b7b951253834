import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { generateKeyPairSync, randomBytes, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import https from "node:https";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import tls from "node:tls";
import { after, before, describe, it } from "node:test";
import forge from "node-forge";
import { ensureLocalTls, type TlsFiles } from "../../src/tls/localCa.js";
import { certificateNames, serverUrls, type Machine } from "../../src/tls/serverNames.js";
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

/** A machine with these interface addresses (CIDR) and host name, as os reports them. */
function machine(hostname: string, cidrs: string[]): Machine {
  return {
    hostname,
    interfaces: {
      lo: [
        {
          address: "127.0.0.1",
          netmask: "255.0.0.0",
          family: "IPv4",
          mac: "00:00:00:00:00:00",
          internal: true,
          cidr: "127.0.0.1/8",
        },
      ],
      eth0: cidrs.map((cidr) => {
        const address = cidr.split("/")[0]!;
        const v4 = address.includes(".");
        return {
          address,
          netmask: v4 ? "255.255.255.0" : "ffff:ffff:ffff:ffff::",
          family: v4 ? "IPv4" : "IPv6",
          mac: "02:00:00:00:00:01",
          internal: false,
          cidr,
          ...(v4 ? {} : { scopeid: 0 }),
        } as os.NetworkInterfaceInfo;
      }),
    },
  };
}

/** The first non-loopback, non-link-local address of this host, if it has one. */
function hostAddress(): string | undefined {
  return Object.values(os.networkInterfaces())
    .flat()
    .find((i) => i && !i.internal && i.family === "IPv4")?.address;
}

/** A TLS handshake to `host` with Node's own identity check (as any client does). */
function verifiedHandshake(
  port: number,
  ca: string,
  host: string,
  servername?: string,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host, port, servername, ca });
    socket.once("secureConnect", () => {
      socket.end();
      resolve();
    });
    socket.once("error", reject);
  });
}

describe("local certificate for other hosts", () => {
  const dirs: string[] = [];
  const servers: https.Server[] = [];
  const fresh = () => {
    const dir = tempDir("agenthost-ca-");
    dirs.push(dir);
    return dir;
  };
  after(() => {
    for (const s of servers) s.close();
    for (const d of dirs) removeDir(d);
  });

  it("names the host name and every address for 0.0.0.0 and ::, only loopback for localhost", () => {
    const m = machine("box", ["192.0.2.2/24", "fd00::2/64", "fe80::1/64"]);
    for (const host of ["0.0.0.0", "::"]) {
      const names = certificateNames(host, [], m);
      assert.deepEqual(names.dns, ["localhost", "box"]);
      assert.deepEqual(names.ips, ["127.0.0.1", "::1", "192.0.2.2", "fd00::2"]);
      assert.deepEqual(names.networks.slice(2), ["192.0.2.2/24", "fd00::2/64"]);
    }
    assert.deepEqual(certificateNames("localhost", [], m).dns, ["localhost"]);
    assert.deepEqual(certificateNames("127.0.0.1", [], m).ips, ["127.0.0.1", "::1"]);
    assert.deepEqual(certificateNames("localhost", ["a.test", "10.1.2.3"], m), {
      dns: ["localhost", "a.test"],
      ips: ["127.0.0.1", "::1", "10.1.2.3"],
      networks: ["127.0.0.1/32", "::1/128", "10.1.2.3/32"],
    });
    assert.deepEqual(serverUrls("https", "0.0.0.0", 8443, m), [
      "https://localhost:8443",
      "https://box:8443",
      "https://192.0.2.2:8443",
    ]);
    assert.deepEqual(serverUrls("https", "::", 1, m), [
      "https://localhost:1",
      "https://box:1",
      "https://192.0.2.2:1",
      "https://[fd00::2]:1",
    ]);
    assert.deepEqual(serverUrls("https", "localhost", 1, m), ["https://localhost:1"]);
  });

  it("a certificate for 0.0.0.0 verifies against the host's address and name, and --tls-san names", async (t) => {
    const address = hostAddress();
    if (!address) return t.skip("this host has no non-loopback IPv4 address");
    const dir = fresh();
    const files = ensureLocalTls(dir, certificateNames("0.0.0.0", ["extra.example.test"]));
    const ca = readFileSync(files.caFile!, "utf8");
    const server = https.createServer(files, (_, res) => res.end("ok"));
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, "0.0.0.0", resolve));
    const port = (server.address() as AddressInfo).port;
    await verifiedHandshake(port, ca, address);
    await verifiedHandshake(port, ca, "127.0.0.1", os.hostname());
    await verifiedHandshake(port, ca, "127.0.0.1", "extra.example.test");
    await verifiedHandshake(port, ca, "127.0.0.1", "localhost");
    await assert.rejects(
      verifiedHandshake(port, ca, "127.0.0.1", "not-named.example.test"),
      /ERR_TLS_CERT_ALTNAME_INVALID|does not match/,
    );
    // A client trusting the CA through NODE_EXTRA_CA_CERTS (OpenSSL checks the constraint).
    assert.equal(await fetchTrusting(files.caFile!, `https://${address}:${port}/`), "status 200");
  });

  it("re-issues only the server certificate when an address changes within its network", () => {
    const dir = fresh();
    const read = (f: string) => readFileSync(path.join(dir, f), "utf8");
    const first = ensureLocalTls(dir, certificateNames("::", [], machine("box", ["192.0.2.2/24"])));
    const [ca1, leaf1] = [read("ca.pem"), read("server.pem")];
    assert.equal(first.caReplaced, false);
    // The same names: nothing is made again.
    ensureLocalTls(dir, certificateNames("::", [], machine("box", ["192.0.2.2/24"])));
    assert.equal(read("server.pem"), leaf1);
    // A new address in the same network: a new server certificate, the same CA.
    const moved = ensureLocalTls(dir, certificateNames("::", [], machine("box", ["192.0.2.9/24"])));
    assert.equal(moved.caReplaced, false);
    assert.equal(read("ca.pem"), ca1);
    const leaf2 = new X509Certificate(read("server.pem"));
    assert.notEqual(read("server.pem"), leaf1);
    assert.ok(leaf2.checkIP("192.0.2.9"));
    assert.equal(leaf2.checkIP("192.0.2.2"), undefined);
    assert.ok(leaf2.checkIssued(new X509Certificate(ca1)));
  });

  it("makes a new CA when the old one does not permit a name, and still refuses the rest", async () => {
    const dir = fresh();
    ensureLocalTls(dir);
    const ca1 = readFileSync(path.join(dir, "ca.pem"), "utf8");
    const files = ensureLocalTls(dir, certificateNames("localhost", ["extra.example.test"]));
    assert.equal(files.caReplaced, true);
    const ca = readFileSync(files.caFile!, "utf8");
    assert.notEqual(ca, ca1);
    // The new CA signs for what it was made for, and for nothing else.
    const good = await serve(leafFor(dir, { dns: ["extra.example.test", "localhost"] }));
    servers.push(good);
    await handshake(good, ca, "extra.example.test");
    for (const names of [{ dns: ["example.com"] }, { ips: ["192.0.2.77"] }]) {
      const bad = await serve(leafFor(dir, names));
      servers.push(bad);
      await assert.rejects(handshake(bad, ca, names.dns?.[0] ?? "x"), /subtree violation/i);
    }
  });
});
