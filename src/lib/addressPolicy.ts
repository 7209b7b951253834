import net from "node:net";
import os from "node:os";

/**
 * Why the service must not connect to `address` (an IPv4 or IPv6 literal) for a caller, in
 * words ("a loopback address"), or undefined when it is public. Refused: loopback,
 * link-local (cloud metadata at 169.254.169.254 included), private (RFC 1918, CGNAT,
 * fc00::/7), unspecified, multicast, reserved, and this host's own addresses. An IPv4-mapped
 * IPv6 address counts as the IPv4 address it carries.
 */
export function nonPublicAddress(address: string): string | undefined {
  const family = net.isIP(address);
  if (family === 0) return "not an IP address";
  const type = family === 4 ? "ipv4" : "ipv6";
  for (const [kind, list] of ranges) if (list.check(address, type)) return kind;
  for (const own of Object.values(os.networkInterfaces()).flat())
    if (own && sameAddress(own.address, address)) return "one of this host's own addresses";
  return undefined;
}

const ranges: [string, net.BlockList][] = [
  [
    "an unspecified address",
    blockList([
      ["0.0.0.0", 8],
      ["::", 128],
    ]),
  ],
  [
    "a loopback address",
    blockList([
      ["127.0.0.0", 8],
      ["::1", 128],
    ]),
  ],
  [
    "a link-local address",
    blockList([
      ["169.254.0.0", 16],
      ["fe80::", 10],
    ]),
  ],
  [
    "a private address",
    blockList([
      ["10.0.0.0", 8],
      ["172.16.0.0", 12],
      ["192.168.0.0", 16],
      ["100.64.0.0", 10],
      ["fc00::", 7],
      ["fec0::", 10],
    ]),
  ],
  [
    "a multicast address",
    blockList([
      ["224.0.0.0", 4],
      ["ff00::", 8],
    ]),
  ],
  [
    "a reserved address",
    blockList([
      ["240.0.0.0", 4],
      ["192.0.0.0", 24],
      ["198.18.0.0", 15],
      // IPv4-compatible (deprecated) and NAT64 forms, which embed an IPv4 address.
      ["::", 96],
      ["64:ff9b::", 96],
      ["64:ff9b:1::", 48],
    ]),
  ],
];

function blockList(subnets: [string, number][]): net.BlockList {
  const list = new net.BlockList();
  for (const [prefix, bits] of subnets)
    list.addSubnet(prefix, bits, net.isIPv4(prefix) ? "ipv4" : "ipv6");
  return list;
}

function sameAddress(a: string, b: string): boolean {
  const family = net.isIP(a);
  if (family === 0) return false;
  const one = new net.BlockList();
  one.addAddress(a, family === 4 ? "ipv4" : "ipv6");
  return one.check(b, net.isIPv4(b) ? "ipv4" : "ipv6");
}
