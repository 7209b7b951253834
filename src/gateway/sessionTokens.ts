import { randomBytes } from "node:crypto";
import { hashSecret, type Caller } from "../domain/keyService.js";

/** What a session's token stands for: the session, its owner and the sandbox it was given to. */
export interface SessionGrant {
  project: string;
  agentName: string;
  version: number;
  sessionId: string;
  /** The session's owner (its `Caller.subject`): the agent's calls are made as this identity. */
  owner: string;
  /** The sandbox the token was given to: only a request through its relay may present it. */
  sandboxId: string;
  /** Unix seconds. */
  issuedAt: number;
}

/**
 * The tokens of running sessions' sandboxes, in memory only (a restart forgets them all),
 * each kept as its SHA-256. One token per sandbox: issuing again for a sandbox replaces its
 * token, and it is revoked when the sandbox ends.
 */
export class SessionTokens {
  private readonly byHash = new Map<string, SessionGrant>();
  private readonly hashOfSandbox = new Map<string, string>();

  /** A new random token for `grant`'s sandbox (shown to that sandbox only). */
  issue(grant: SessionGrant): string {
    this.revoke(grant.sandboxId);
    const token = `ahs_${randomBytes(32).toString("base64url")}`;
    const hash = hashSecret(token);
    this.byHash.set(hash, { ...grant });
    this.hashOfSandbox.set(grant.sandboxId, hash);
    return token;
  }

  /** The sandbox's token stops working (nothing happens when it has none). */
  revoke(sandboxId: string): void {
    const hash = this.hashOfSandbox.get(sandboxId);
    if (hash === undefined) return;
    this.byHash.delete(hash);
    this.hashOfSandbox.delete(sandboxId);
  }

  /** The grant of `token`, when it is live and was issued to the sandbox `sandboxId`. */
  find(token: string | undefined, sandboxId: string): SessionGrant | undefined {
    if (!token) return undefined;
    const grant = this.byHash.get(hashSecret(token));
    return grant?.sandboxId === sandboxId ? grant : undefined;
  }

  /** Live tokens. */
  get size(): number {
    return this.byHash.size;
  }
}

/**
 * The caller a session's token makes: the session's owner, through a key that is not an
 * admin's, cannot act for users and works in the session's project only.
 */
export function sessionCaller(grant: SessionGrant): Caller {
  return {
    key: {
      id: `session:${grant.sessionId}`,
      project: grant.project,
      name: `session ${grant.agentName}/${grant.sessionId}`,
      admin: false,
      actForUsers: false,
      createdAt: grant.issuedAt,
    },
    // What a sandbox creates is the session's own: it never acts as its owner on the
    // owner's other responses and conversations.
    subject: `session:${grant.agentName}/${grant.sessionId}`,
    session: {
      agentName: grant.agentName,
      id: grant.sessionId,
      version: grant.version,
      owner: grant.owner,
    },
  };
}
