import net from "node:net";
import os from "node:os";

/** What the machine is called and where it can be reached: os.hostname(), its interfaces. */
export interface Machine {
  hostname: string;
  interfaces: NodeJS.Dict<os.NetworkInterfaceInfo[]>;
}

export const thisMachine = (): Machine => ({
  hostname: os.hostname(),
  interfaces: os.networkInterfaces(),
});

/**
 * The names a local certificate covers: `dns` and `ips` go into the certificate; `networks`
 * (CIDR) are what the CA may sign addresses in, so that a new address in the same network
 * needs a new certificate, not a new CA.
 */
export interface CertificateNames {
  dns: string[];
  ips: string[];
  networks: string[];
}

export const loopbackNames: CertificateNames = {
  dns: ["localhost"],
  ips: ["127.0.0.1", "::1"],
  networks: ["127.0.0.1/32", "::1/128"],
};

const dnsName =
  /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/i;

/** A name a certificate can carry: a DNS name (no wildcard) or an IP address. */
export const isServerName = (name: string) => net.isIP(name) !== 0 || dnsName.test(name);

const isWildcard = (host: string) => host === "0.0.0.0" || host === "::";
const isLoopback = (host: string) =>
  host === "localhost" || host === "::1" || (net.isIPv4(host) && host.startsWith("127."));

/**
 * The interface addresses a server bound to `host` is reachable at, loopback and link-local
 * ones left out (loopback is `localhost`; a link-local URL needs a zone): for `0.0.0.0` the
 * IPv4 ones, for `::` all (Node listens dual-stack), for a single address only itself.
 */
function addressesFor(host: string, machine: Machine): os.NetworkInterfaceInfo[] {
  const all = Object.values(machine.interfaces)
    .flat()
    .filter((i): i is os.NetworkInterfaceInfo => i !== undefined)
    .filter((i) => !i.internal && !isLoopback(i.address) && !/^fe[89ab]/i.test(i.address));
  if (host === "::") return all;
  if (host === "0.0.0.0") return all.filter((i) => i.family === "IPv4");
  return all.filter((i) => i.address === host);
}

/**
 * What the local certificate names for a server bound to `host`: always localhost,
 * 127.0.0.1 and ::1; for any other host also the machine's host name and every address of
 * its interfaces (and `host` itself); and the `extra` names (`--tls-san`).
 */
export function certificateNames(
  host: string,
  extra: readonly string[],
  machine: Machine = thisMachine(),
): CertificateNames {
  const names: CertificateNames = {
    dns: [...loopbackNames.dns],
    ips: [...loopbackNames.ips],
    networks: [...loopbackNames.networks],
  };
  const addIp = (ip: string, network: string) => {
    if (!names.ips.includes(ip)) names.ips.push(ip);
    if (!names.networks.includes(network)) names.networks.push(network);
  };
  const add = (name: string) => {
    if (net.isIP(name)) addIp(name, `${name}/${net.isIPv4(name) ? 32 : 128}`);
    else if (dnsName.test(name) && !names.dns.includes(name.toLowerCase()))
      names.dns.push(name.toLowerCase());
  };
  if (!isLoopback(host)) {
    add(machine.hostname);
    for (const i of addressesFor("::", machine)) addIp(i.address, i.cidr ?? `${i.address}/32`);
    if (!isWildcard(host)) add(host);
  }
  for (const name of extra) add(name);
  return names;
}

/**
 * Every URL a server bound to `host` answers at and its certificate covers: for `0.0.0.0`
 * and `::` localhost, the host name and each interface address; otherwise `host` itself.
 */
export function serverUrls(
  scheme: "http" | "https",
  host: string,
  port: number,
  machine: Machine = thisMachine(),
): string[] {
  const url = (h: string) => `${scheme}://${net.isIPv6(h) ? `[${h}]` : h}:${port}`;
  if (!isWildcard(host)) return [url(host)];
  const hosts = ["localhost"];
  if (dnsName.test(machine.hostname) && machine.hostname !== "localhost")
    hosts.push(machine.hostname);
  for (const i of addressesFor(host, machine)) hosts.push(i.address);
  return [...new Set(hosts)].map(url);
}
