import { generateKeyPairSync, randomBytes, X509Certificate } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import forge from "node-forge";

export interface TlsFiles {
  /** The CA to trust (NODE_EXTRA_CA_CERTS); undefined for a user-supplied certificate. */
  caFile?: string;
  cert: string;
  key: string;
}

const serverNames = { dns: ["localhost"], ips: ["127.0.0.1", "::1"] };

/**
 * A local certificate authority and a server certificate for localhost, 127.0.0.1 and ::1,
 * kept in `<dir>`: ca.pem (trust this), ca-key.pem, server.pem, server-key.pem. The CA is made
 * once and reused; the server certificate is re-issued when missing or within 30 days of expiry.
 * The CA carries a critical name constraint to those same names: a certificate it signed for
 * any other name fails verification, so trusting it trusts nothing but this service.
 */
export function ensureLocalTls(dir: string): TlsFiles {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = (name: string) => path.join(dir, name);
  if (!existsSync(file("ca.pem")) || !existsSync(file("ca-key.pem"))) {
    const ca = issue({ commonName: "agenthost local CA", isCa: true, days: 3650 });
    writeFileSync(file("ca-key.pem"), ca.keyPem, { mode: 0o600 });
    writeFileSync(file("ca.pem"), ca.certPem);
  }
  if (
    !existsSync(file("server.pem")) ||
    !existsSync(file("server-key.pem")) ||
    expiresSoon(file("server.pem"))
  ) {
    const signer = {
      cert: forge.pki.certificateFromPem(readFileSync(file("ca.pem"), "utf8")),
      key: forge.pki.privateKeyFromPem(readFileSync(file("ca-key.pem"), "utf8")),
    };
    const server = issue({ commonName: "localhost", isCa: false, days: 365, signer });
    writeFileSync(file("server-key.pem"), server.keyPem, { mode: 0o600 });
    writeFileSync(file("server.pem"), server.certPem);
  }
  return {
    caFile: file("ca.pem"),
    cert: readFileSync(file("server.pem"), "utf8"),
    key: readFileSync(file("server-key.pem"), "utf8"),
  };
}

function expiresSoon(certFile: string): boolean {
  const cert = new X509Certificate(readFileSync(certFile));
  return new Date(cert.validTo).getTime() - Date.now() < 30 * 24 * 3600 * 1000;
}

/** NameConstraints (RFC 5280 4.2.1.10): permitted subtrees for exactly `serverNames`. */
function nameConstraints(): forge.asn1.Asn1 {
  const { asn1 } = forge;
  const subtree = (tag: number, value: string) =>
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
      asn1.create(asn1.Class.CONTEXT_SPECIFIC, tag, false, value),
    ]);
  const bytes = (b: Buffer) => b.toString("binary");
  const ips = serverNames.ips.map((ip) => {
    // An address and its mask: every bit must match.
    const v4 = ip.includes(".");
    const address = v4
      ? Buffer.from(ip.split(".").map(Number))
      : Buffer.from(forge.util.hexToBytes(expandIpv6(ip)), "binary");
    return subtree(7, bytes(Buffer.concat([address, Buffer.alloc(address.length, 0xff)])));
  });
  return asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
    asn1.create(asn1.Class.CONTEXT_SPECIFIC, 0, true, [
      ...serverNames.dns.map((name) => subtree(2, name)),
      ...ips,
    ]),
  ]);
}

/** An IPv6 address as 32 hex digits ("::1" → "000…0001"). */
function expandIpv6(ip: string): string {
  const [head = "", tail = ""] = ip.split("::");
  const groups = (s: string) => (s ? s.split(":") : []);
  const missing = 8 - groups(head).length - groups(tail).length;
  return [...groups(head), ...Array<string>(missing).fill("0"), ...groups(tail)]
    .map((g) => g.padStart(4, "0"))
    .join("");
}

function issue(options: {
  commonName: string;
  isCa: boolean;
  days: number;
  signer?: { cert: forge.pki.Certificate; key: forge.pki.PrivateKey };
}): { certPem: string; keyPem: string } {
  // Node generates the key (fast, native); forge only assembles and signs the certificate.
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const keyPem = privateKey.export({ type: "pkcs8", format: "pem" }).toString();
  const key = forge.pki.privateKeyFromPem(keyPem) as forge.pki.rsa.PrivateKey;
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.setRsaPublicKey(key.n, key.e);
  cert.serialNumber = "01" + randomBytes(15).toString("hex");
  cert.validity.notBefore = new Date(Date.now() - 60_000);
  cert.validity.notAfter = new Date(Date.now() + options.days * 24 * 3600 * 1000);
  const subject = [
    { name: "commonName", value: options.commonName },
    { name: "organizationName", value: "agenthost" },
  ];
  cert.setSubject(subject);
  cert.setIssuer(options.signer ? options.signer.cert.subject.attributes : subject);
  cert.setExtensions(
    options.isCa
      ? [
          { name: "basicConstraints", cA: true, critical: true },
          { name: "keyUsage", keyCertSign: true, cRLSign: true, critical: true },
          { name: "subjectKeyIdentifier" },
          { id: "2.5.29.30", critical: true, value: nameConstraints() },
        ]
      : [
          { name: "basicConstraints", cA: false },
          { name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true },
          { name: "extKeyUsage", serverAuth: true },
          {
            name: "subjectAltName",
            altNames: [
              ...serverNames.dns.map((value) => ({ type: 2, value })),
              ...serverNames.ips.map((ip) => ({ type: 7, ip })),
            ],
          },
        ],
  );
  cert.sign((options.signer?.key ?? key) as forge.pki.rsa.PrivateKey, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem };
}
