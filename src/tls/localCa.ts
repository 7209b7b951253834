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
