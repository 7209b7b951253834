import { AgentCard } from "@a2a-js/sdk";
import type { Agent, JsonObject } from "../../domain/model.js";

/** Where the card is served from: the agent's A2A endpoint as the caller reached it. */
export interface A2aEndpoint {
  /** `https://host:port` of the request. */
  origin: string;
  /** The `{project}` path segment as the caller wrote it (`_project` stays `_project`). */
  projectSegment: string;
  /** The `api-version` the caller sent; every URL of the card carries it. */
  apiVersion: string;
}

/** The protocol versions served at the one JSON-RPC URL (chosen by the `A2A-Version` header). */
export const servedVersions = ["1.0", "0.3"] as const;

export const endpointUrl = (agent: Pick<Agent, "name">, at: A2aEndpoint) =>
  `${at.origin}/api/projects/${encodeURIComponent(at.projectSegment)}/agents/${encodeURIComponent(
    agent.name,
  )}/endpoint/protocols/a2a?api-version=${encodeURIComponent(at.apiVersion)}`;

type CardSkill = {
  id: string;
  name: string;
  description?: string;
  tags?: string[];
  examples?: string[];
};

/**
 * The agent's A2A card (v1.0 model): its `agent_card` (version, description, skills) and
 * description, the JSON-RPC interface at this endpoint in both served protocol versions,
 * streaming, and the bearer key every call needs.
 */
export function agentCardOf(agent: Agent, at: A2aEndpoint | undefined): AgentCard {
  const card = (agent.agentCard ?? {}) as JsonObject;
  // Without where it was asked for (a call's own card, never shown), the URL is left empty.
  const url = at ? endpointUrl(agent, at) : "";
  const skills = Array.isArray(card.skills) ? (card.skills as CardSkill[]) : [];
  return {
    name: agent.name,
    description:
      (typeof card.description === "string" && card.description) || agent.latest.description,
    supportedInterfaces: servedVersions.map((protocolVersion) => ({
      url,
      protocolBinding: "JSONRPC",
      tenant: "",
      protocolVersion,
    })),
    provider: undefined,
    version: typeof card.version === "string" ? card.version : String(agent.latest.version),
    capabilities: {
      streaming: true,
      pushNotifications: false,
      extensions: [],
      extendedAgentCard: false,
    },
    securitySchemes: {
      bearer: {
        scheme: {
          $case: "httpAuthSecurityScheme",
          value: { description: "An agenthost API key.", scheme: "Bearer", bearerFormat: "" },
        },
      },
    },
    securityRequirements: [{ schemes: { bearer: { list: [] } } }],
    defaultInputModes: ["text/plain"],
    defaultOutputModes: ["text/plain"],
    skills: skills.map((s) => ({
      id: s.id,
      name: s.name,
      description: s.description ?? "",
      tags: s.tags ?? [],
      examples: s.examples ?? [],
      inputModes: [],
      outputModes: [],
      securityRequirements: [],
    })),
    signatures: [],
  };
}

/** True for a protocol version in [0.3, 1.0): what a request without `A2A-Version` means. */
export function isLegacyVersion(version: string | undefined): boolean {
  if (version === undefined || version.trim() === "") return true;
  const m = /^(\d+)\.(\d+)(?:\.\d+)?$/.exec(version.trim());
  return m !== null && Number(m[1]) === 0 && Number(m[2]) >= 3;
}

/**
 * The card as JSON for the protocol version asked for: v1.0 (`supportedInterfaces`) for
 * 1.0 and later, else the v0.3 shape (`url`, `preferredTransport`, `protocolVersion`), which
 * still lists the v1.0 interfaces for clients that read them.
 */
export function cardJson(card: AgentCard, a2aVersion: string | undefined): JsonObject {
  const v1 = AgentCard.toJSON(card) as JsonObject;
  if (!isLegacyVersion(a2aVersion)) return v1;
  const legacy = card.supportedInterfaces.find((i) => isLegacyVersion(i.protocolVersion))!;
  return {
    name: card.name,
    description: card.description,
    version: card.version,
    url: legacy.url,
    preferredTransport: legacy.protocolBinding,
    protocolVersion: "0.3.0",
    capabilities: { streaming: true, pushNotifications: false },
    defaultInputModes: card.defaultInputModes,
    defaultOutputModes: card.defaultOutputModes,
    skills: card.skills.map((s) => ({
      id: s.id,
      name: s.name,
      description: s.description,
      tags: s.tags,
      ...(s.examples.length > 0 ? { examples: s.examples } : {}),
    })),
    securitySchemes: {
      bearer: { type: "http", scheme: "bearer", description: "An agenthost API key." },
    },
    security: [{ bearer: [] }],
    supportedInterfaces: v1.supportedInterfaces ?? [],
  };
}
