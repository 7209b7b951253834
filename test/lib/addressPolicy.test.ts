import assert from "node:assert/strict";
import os from "node:os";
import { it } from "node:test";
import { nonPublicAddress } from "../../src/lib/addressPolicy.js";

/* Which destinations the MCP client refuses by default (AGENTHOST_MCP_ALLOW_PRIVATE_NETWORKS). */

it("refuses loopback, link-local, private, unspecified, multicast and reserved addresses", () => {
  const refused: [string, string][] = [
    ["127.0.0.1", "a loopback address"],
    ["127.255.0.9", "a loopback address"],
    ["::1", "a loopback address"],
    ["::ffff:7f00:1", "a loopback address"],
    ["::ffff:127.0.0.1", "a loopback address"],
    ["169.254.169.254", "a link-local address"],
    ["fe80::1", "a link-local address"],
    ["10.0.0.1", "a private address"],
    ["172.16.0.1", "a private address"],
    ["172.31.255.255", "a private address"],
    ["192.168.1.1", "a private address"],
    ["::ffff:10.1.2.3", "a private address"],
    ["100.64.0.1", "a private address"],
    ["fc00::1", "a private address"],
    ["fd12:3456::1", "a private address"],
    ["0.0.0.0", "an unspecified address"],
    ["::", "an unspecified address"],
    ["224.0.0.1", "a multicast address"],
    ["ff02::1", "a multicast address"],
    ["255.255.255.255", "a reserved address"],
    ["::7f00:1", "a reserved address"],
    ["64:ff9b::7f00:1", "a reserved address"],
  ];
  for (const [address, why] of refused) assert.equal(nonPublicAddress(address), why, address);
});

it("lets public addresses through", () => {
  for (const address of [
    "8.8.8.8",
    "1.1.1.1",
    "172.32.0.1",
    "11.0.0.1",
    "::ffff:8.8.8.8",
    "2606:4700:4700::1111",
    "2001:4860:4860::8888",
  ])
    assert.equal(nonPublicAddress(address), undefined, address);
});

it("refuses every address of this host's own interfaces", () => {
  const own = Object.values(os.networkInterfaces())
    .flat()
    .map((i) => i!.address);
  assert.ok(own.length > 0);
  for (const address of own) assert.ok(nonPublicAddress(address), address);
});

it("refuses what is not an IP address", () => {
  assert.equal(nonPublicAddress("localhost"), "not an IP address");
});
