import { generateKeyPairSync, randomBytes, X509Certificate } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import forge from "node-forge";
import { loopbackNames, type CertificateNames } from "./serverNames.js";

export interface TlsFiles {
  /** The CA to trust (NODE_EXTRA_CA_CERTS); undefined for a user-supplied certificate. */
  caFile?: string;
  /** An earlier CA was replaced by this start (it did not permit the names): trust ca.pem anew. */
  caReplaced?: boolean;
  cert: string;
  key: string;
}

/**
 * A local certificate authority and a server certificate for `names` (by default localhost,
 * 127.0.0.1 and ::1), kept in `<dir>`: ca.pem (trust this), ca-key.pem, server.pem,
 * server-key.pem. The server certificate is re-issued when missing, within 30 days of expiry,
 * or when the names differ from those it carries. The CA carries a critical name constraint
 * to the names it was made for (addresses: their whole networks), so that trusting it trusts
 * nothing but this service; it is made once and kept as long as it permits every name asked
 * for (a new address in a known network needs only a new server certificate), and made again
 * when it does not.
 */
export function ensureLocalTls(dir: string, names: CertificateNames = loopbackNames): TlsFiles {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = (name: string) => path.join(dir, name);
  let caReplaced = false;
  let reissue = false;
  if (
    !existsSync(file("ca.pem")) ||
    !existsSync(file("ca-key.pem")) ||
    !permits(forge.pki.certificateFromPem(readFileSync(file("ca.pem"), "utf8")), names)
  ) {
    caReplaced = existsSync(file("ca.pem"));
    const ca = issue({ commonName: "agenthost local CA", isCa: true, days: 3650, names });
    writeFileSync(file("ca-key.pem"), ca.keyPem, { mode: 0o600 });
    writeFileSync(file("ca.pem"), ca.certPem);
    reissue = true;
  }
  if (
    reissue ||
    !existsSync(file("server.pem")) ||
    !existsSync(file("server-key.pem")) ||
    !current(file("server.pem"), file("ca.pem"), names)
  ) {
    const signer = {
      cert: forge.pki.certificateFromPem(readFileSync(file("ca.pem"), "utf8")),
      key: forge.pki.privateKeyFromPem(readFileSync(file("ca-key.pem"), "utf8")),
    };
    const server = issue({ commonName: "localhost", isCa: false, days: 365, signer, names });
    writeFileSync(file("server-key.pem"), server.keyPem, { mode: 0o600 });
    writeFileSync(file("server.pem"), server.certPem);
  }
  return {
    caFile: file("ca.pem"),
    caReplaced,
    cert: readFileSync(file("server.pem"), "utf8"),
    key: readFileSync(file("server-key.pem"), "utf8"),
  };
}

/** The server certificate is the CA's, not expiring within 30 days, and names exactly `names`. */
function current(certFile: string, caFile: string, names: CertificateNames): boolean {
  const cert = new X509Certificate(readFileSync(certFile));
  const ca = new X509Certificate(readFileSync(caFile));
  if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) return false;
  if (new Date(cert.validTo).getTime() - Date.now() < 30 * 24 * 3600 * 1000) return false;
  const carried = cert.subjectAltName?.split(", ").length ?? 0;
  return (
    carried === names.dns.length + names.ips.length &&
    names.dns.every((d) => cert.checkHost(d, { wildcards: false, subject: "never" }) === d) &&
    names.ips.every((ip) => cert.checkIP(ip) !== undefined)
  );
}

/** An address as bytes. */
function ipBytes(ip: string): Buffer {
  return ip.includes(".")
    ? Buffer.from(ip.split(".").map(Number))
    : Buffer.from(expandIpv6(ip), "hex");
}

/** A CIDR network as the address and mask bytes of a name constraint. */
function networkBytes(cidr: string): Buffer {
  const [ip = "", bits = ""] = cidr.split("/");
  const address = ipBytes(ip);
  const prefix = Number(bits);
  const mask = Buffer.alloc(address.length);
  for (let i = 0; i < mask.length; i++)
    mask[i] = 0xff & (0xff << (8 - Math.max(0, Math.min(8, prefix - 8 * i))));
  for (let i = 0; i < address.length; i++) address[i]! &= mask[i]!;
  return Buffer.concat([address, mask]);
}

/** NameConstraints (RFC 5280 4.2.1.10): permitted subtrees for `names`' DNS names and networks. */
function nameConstraints(names: CertificateNames): forge.asn1.Asn1 {
  const { asn1 } = forge;
  const subtree = (tag: number, value: string) =>
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
      asn1.create(asn1.Class.CONTEXT_SPECIFIC, tag, false, value),
    ]);
  return asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
    asn1.create(asn1.Class.CONTEXT_SPECIFIC, 0, true, [
      ...names.dns.map((name) => subtree(2, name)),
      ...names.networks.map((n) => subtree(7, networkBytes(n).toString("binary"))),
    ]),
  ]);
}

/**
 * Whether a CA's permitted subtrees cover every name and address of `names` (a DNS
 * constraint covers the name and the names below it; an address must lie in a network).
 */
function permits(ca: forge.pki.Certificate, names: CertificateNames): boolean {
  const extension = (ca.extensions as { id?: string; value?: string }[]).find(
    (e) => e.id === "2.5.29.30",
  );
  if (!extension?.value) return false;
  const dns: string[] = [];
  const networks: Buffer[] = [];
  const root = forge.asn1.fromDer(extension.value);
  for (const group of root.value as forge.asn1.Asn1[]) {
    if (group.type !== 0) continue; // excluded subtrees: none are made
    for (const subtree of group.value as forge.asn1.Asn1[]) {
      const name = (subtree.value as forge.asn1.Asn1[])[0];
      if (name?.type === 2) dns.push(String(name.value).toLowerCase());
      if (name?.type === 7) networks.push(Buffer.from(String(name.value), "binary"));
    }
  }
  const inNetwork = (ip: string) => {
    const address = ipBytes(ip);
    return networks.some(
      (n) =>
        n.length === address.length * 2 &&
        address.every((b, i) => (b & n[address.length + i]!) === (n[i]! & n[address.length + i]!)),
    );
  };
  return (
    names.dns.every((d) => dns.some((c) => d === c || d.endsWith(`.${c}`))) &&
    names.ips.every(inNetwork)
  );
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
  names: CertificateNames;
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
          { id: "2.5.29.30", critical: true, value: nameConstraints(options.names) },
        ]
      : [
          { name: "basicConstraints", cA: false },
          { name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true },
          { name: "extKeyUsage", serverAuth: true },
          {
            name: "subjectAltName",
            altNames: [
              ...options.names.dns.map((value) => ({ type: 2, value })),
              ...options.names.ips.map((ip) => ({ type: 7, ip })),
            ],
          },
        ],
  );
  cert.sign((options.signer?.key ?? key) as forge.pki.rsa.PrivateKey, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem };
}
