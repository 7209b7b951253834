import { parseCpu, parseMemoryBytes } from "../contract/definitions.js";
import { canonicalJson } from "../lib/canonicalJson.js";
import { mergePatch } from "../lib/mergePatch.js";
import { AppError, notFound } from "./errors.js";
import type {
  Agent,
  AgentState,
  JsonObject,
  NewAgent,
  NewVersion,
  Page,
  PageRequest,
  Version,
} from "./model.js";
import type { AgentRepository, Clock, FollowedLog, HostedCode, LiveSessions } from "./ports.js";
import { trafficRules } from "./trafficRules.js";
import { isObject } from "../lib/isObject.js";

/** A version as the caller describes it, already validated against the contract. */
export interface VersionSpec {
  definition: JsonObject & { kind: string };
  metadata?: Record<string, string>;
  description?: string;
  draft?: boolean | null;
  blueprint_reference?: JsonObject | null;
  digital_worker_type?: string | null;
}

export interface AgentSpec extends VersionSpec {
  name: string;
  state?: AgentState | null;
  agent_endpoint?: JsonObject | null;
  agent_card?: JsonObject | null;
}

/** Validates the result of a merge patch; throws an AppError naming the bad field. */
export type EndpointValidator = (patched: { agent_endpoint: unknown; agent_card: unknown }) => {
  agent_endpoint: JsonObject | null;
  agent_card: JsonObject | null;
};

/** The most a hosted version may ask of one machine. */
export interface VersionLimits {
  maxCpu: number;
  maxMemoryBytes: number;
}

export interface AgentServiceDeps {
  agents: AgentRepository;
  sessions: LiveSessions;
  code: HostedCode;
  validateEndpoint: EndpointValidator;
  clock: Clock;
  limits: VersionLimits;
}

/** The agent and version operations of the control plane. */
export class AgentService {
  private readonly agents: AgentRepository;
  private readonly sessions: LiveSessions;
  private readonly code: HostedCode;
  private readonly validateEndpoint: EndpointValidator;
  private readonly clock: Clock;
  private readonly limits: VersionLimits;

  constructor(deps: AgentServiceDeps) {
    ({
      agents: this.agents,
      sessions: this.sessions,
      code: this.code,
      validateEndpoint: this.validateEndpoint,
      clock: this.clock,
      limits: this.limits,
    } = deps);
  }

  async get(project: string, name: string): Promise<Agent> {
    return (await this.agents.get(project, name)) ?? throwAgentNotFound(name);
  }

  /**
   * The agent, if its endpoint lists `protocol`: the keys of
   * `agent_endpoint.protocol_configuration`, or `responses` alone when it lists none.
   */
  async requireProtocol(project: string, name: string, protocol: string): Promise<Agent> {
    const agent = await this.get(project, name);
    if (!enabledProtocols(agent).has(protocol))
      throw new AppError(
        "protocol_not_enabled",
        `Agent '${name}' does not serve the '${protocol}' protocol: its agent_endpoint.protocol_configuration does not list it.`,
        "protocol",
      );
    return agent;
  }

  list(project: string, page: PageRequest & { kind?: string }): Promise<Page<Agent>> {
    return this.agents.list(project, page);
  }

  /** A page of agents, each with its count of live (creating or active) sessions. */
  async listWithLiveSessions(
    project: string,
    page: PageRequest & { kind?: string },
  ): Promise<Page<{ agent: Agent; liveSessions: number }>> {
    const agents = await this.agents.list(project, page);
    const items = [];
    for (const agent of agents.items)
      items.push({ agent, liveSessions: await this.sessions.count(project, agent.name) });
    return { items, hasMore: agents.hasMore };
  }

  /**
   * Creates an agent with its first version. On an existing name this is an update that also
   * sets the given agent-level fields: a new version only if the version changed.
   */
  async create(project: string, spec: AgentSpec): Promise<Agent> {
    const existing = await this.agents.get(project, spec.name);
    if (!existing && spec.draft) throw draftFirst();
    if (spec.agent_endpoint) {
      await this.checkRulesNameVersions(project, spec.name, spec.agent_endpoint, !existing);
    }
    const { agent } = await this.append(project, spec.name, spec, {
      newAgent: {
        state: spec.state ?? "enabled",
        agentEndpoint: spec.agent_endpoint ?? null,
        agentCard: spec.agent_card ?? null,
      },
      reuseIfUnchanged: !spec.draft,
    });
    if (!existing) return agent;
    let result = agent;
    if (spec.state && spec.state !== result.state) {
      result = (await this.agents.setState(project, spec.name, spec.state)) ?? result;
    }
    if (spec.agent_endpoint !== undefined || spec.agent_card !== undefined) {
      result =
        (await this.agents.setEndpoint(project, spec.name, {
          agentEndpoint:
            spec.agent_endpoint === undefined ? result.agentEndpoint : spec.agent_endpoint,
          agentCard: spec.agent_card === undefined ? result.agentCard : spec.agent_card,
        })) ?? result;
    }
    return result;
  }

  /** Adds a version only when definition, description or metadata changed. */
  async update(project: string, name: string, spec: VersionSpec): Promise<Agent> {
    return (await this.append(project, name, spec, { reuseIfUnchanged: true })).agent;
  }

  /** RFC 7396 merge patch of `agent_endpoint` and `agent_card`. */
  async patch(
    project: string,
    name: string,
    patch: { agent_endpoint?: JsonObject | null; agent_card?: JsonObject | null },
  ): Promise<Agent> {
    const agent = await this.get(project, name);
    const patched = this.validateEndpoint({
      agent_endpoint:
        patch.agent_endpoint === undefined
          ? agent.agentEndpoint
          : mergePatch(agent.agentEndpoint, patch.agent_endpoint),
      agent_card:
        patch.agent_card === undefined
          ? agent.agentCard
          : mergePatch(agent.agentCard, patch.agent_card),
    });
    if (patched.agent_endpoint)
      await this.checkRulesNameVersions(project, name, patched.agent_endpoint, false);
    const updated = await this.agents.setEndpoint(project, name, {
      agentEndpoint: patched.agent_endpoint,
      agentCard: patched.agent_card,
    });
    return updated ?? throwAgentNotFound(name);
  }

  async setState(project: string, name: string, state: AgentState): Promise<void> {
    if (!(await this.agents.setState(project, name, state))) throwAgentNotFound(name);
  }

  async delete(project: string, name: string, force: boolean): Promise<void> {
    await this.get(project, name);
    await this.respectSessions(project, name, undefined, force);
    const versions = await this.agents.allVersions(project, name);
    if (!(await this.agents.delete(project, name))) throwAgentNotFound(name);
    await this.code.discard(versions);
  }

  /**
   * A new version, creating the agent when it does not exist. With `reuseIfUnchanged` (code
   * uploads), the same definition and zip as the latest version return that version.
   */
  async createVersion(
    project: string,
    name: string,
    spec: VersionSpec,
    options: { reuseIfUnchanged?: boolean } = {},
  ): Promise<Version> {
    if (spec.draft && !(await this.agents.get(project, name))) throw draftFirst();
    const { version } = await this.append(project, name, spec, {
      newAgent: { state: "enabled", agentEndpoint: null, agentCard: null },
      reuseIfUnchanged: options.reuseIfUnchanged === true && !spec.draft,
    });
    return version;
  }

  async getVersion(project: string, name: string, version: string): Promise<Version> {
    const number = parseVersion(version);
    const found =
      number === undefined ? undefined : await this.agents.getVersion(project, name, number);
    if (found) return found;
    await this.get(project, name);
    throw notFound(`Version '${version}' of agent '${name}'`, "agent_version");
  }

  /** A code-based version's build log, followed while it builds and read after. */
  async buildLog(project: string, name: string, version: string): Promise<FollowedLog> {
    const found = await this.getVersion(project, name, version);
    if (!found.contentHash)
      throw new AppError(
        "not_found",
        `Version '${version}' of agent '${name}' has no build: it is not code-based.`,
        "agent_version",
      );
    return this.code.followBuild(found);
  }

  async listVersions(
    project: string,
    name: string,
    page: PageRequest & { includeDrafts: boolean },
  ): Promise<Page<Version>> {
    return (await this.agents.listVersions(project, name, page)) ?? throwAgentNotFound(name);
  }

  async deleteVersion(
    project: string,
    name: string,
    version: string,
    force: boolean,
  ): Promise<void> {
    const found = await this.getVersion(project, name, version);
    await this.respectSessions(project, name, found.version, force);
    // With force, as with sessions: the version leaves the traffic rules (the rest rescaled).
    const outcome = await this.agents.deleteVersion(project, name, found.version, {
      leaveRules: force,
    });
    if (outcome === "missing")
      throw notFound(`Version '${version}' of agent '${name}'`, "agent_version");
    if (outcome === "in_use") {
      throw new AppError(
        "version_in_use",
        `Version '${version}' is named by the traffic rules of agent '${name}'; change agent_endpoint first, or repeat with force=true to take it out of them.`,
        "agent_version",
      );
    }
    if (outcome === "last_published") {
      throw new AppError(
        "last_published_version",
        `Version '${version}' is the last non-draft version of agent '${name}'; delete the agent instead.`,
        "agent_version",
      );
    }
    await this.code.discard([found]);
  }

  private async append(
    project: string,
    name: string,
    spec: VersionSpec,
    options: { newAgent?: NewAgent; reuseIfUnchanged?: boolean },
  ) {
    const version = await this.newVersion(project, name, spec);
    const result = await this.agents.appendVersion(project, name, version, options);
    if (!result) throwAgentNotFound(name);
    if (result.created && result.version.status === "creating") this.code.provision(result.version);
    return result;
  }

  /** A hosted version may not ask for more cpu or memory than the service allows. */
  private checkLimits(definition: JsonObject): void {
    const { cpu, memory } = definition as { cpu?: string; memory?: string };
    if (cpu !== undefined && parseCpu(cpu) > this.limits.maxCpu)
      throw new AppError(
        "invalid_parameter",
        `cpu '${cpu}' is more than this service allows (${this.limits.maxCpu}).`,
        "definition.cpu",
      );
    if (memory !== undefined && parseMemoryBytes(memory) > this.limits.maxMemoryBytes)
      throw new AppError(
        "invalid_parameter",
        `memory '${memory}' is more than this service allows (${Math.floor(this.limits.maxMemoryBytes / 2 ** 20)}Mi).`,
        "definition.memory",
      );
  }

  private async newVersion(project: string, name: string, spec: VersionSpec): Promise<NewVersion> {
    const definition = { ...spec.definition };
    if (definition.kind === "hosted") this.checkLimits(definition);
    if (definition.kind === "external" && definition.otel_agent_id === undefined) {
      definition.otel_agent_id = name;
    }
    let contentHash: string | null = null;
    if (definition.kind === "hosted" && isObject(definition.code_configuration)) {
      contentHash = await this.codeOf(project, name, definition.code_configuration);
      definition.code_configuration = {
        ...definition.code_configuration,
        content_hash: contentHash,
      };
    }
    const { status, statusReason } = initialStatus(definition);
    const metadata = spec.metadata ?? {};
    const description = spec.description ?? "";
    const blueprintReference = spec.blueprint_reference ?? null;
    const digitalWorkerType = spec.digital_worker_type ?? null;
    return {
      definition,
      metadata,
      description,
      draft: spec.draft ?? false,
      status,
      statusReason,
      contentHash,
      blueprintReference,
      digitalWorkerType,
      fingerprint: canonicalJson({
        definition,
        metadata,
        description,
        blueprintReference,
        digitalWorkerType,
      }),
      createdAt: this.clock(),
    };
  }

  /**
   * The code zip of a code-based version: the uploaded one (content_hash set by the upload),
   * else the latest version's, so a JSON update can change settings without re-uploading.
   */
  private async codeOf(
    project: string,
    name: string,
    codeConfiguration: JsonObject,
  ): Promise<string> {
    const given = codeConfiguration.content_hash;
    if (typeof given === "string") {
      const hash = given.toLowerCase();
      if (await this.code.has(hash)) return hash;
      throw new AppError(
        "invalid_parameter",
        `No uploaded code has SHA-256 '${given}'; upload the zip as multipart/form-data.`,
        "definition.code_configuration.content_hash",
      );
    }
    const latest = (await this.agents.get(project, name))?.latest;
    if (latest?.contentHash) return latest.contentHash;
    throw new AppError(
      "invalid_parameter",
      "A code-based hosted version needs its code: upload the zip as multipart/form-data with the x-ms-code-zip-sha256 header.",
      "definition.code_configuration",
    );
  }

  private async respectSessions(
    project: string,
    name: string,
    version: number | undefined,
    force: boolean,
  ) {
    const live = await this.sessions.count(project, name, version);
    if (live > 0 && !force) {
      const what =
        version === undefined ? `Agent '${name}'` : `Version '${version}' of agent '${name}'`;
      throw new AppError(
        "agent_has_live_sessions",
        `${what} has ${live} live session(s); repeat with force=true to stop and delete them.`,
        "force",
      );
    }
    await this.sessions.terminate(project, name, version);
  }

  /** Traffic rules may only name versions that exist (on a new agent: the first one, "1"). */
  private async checkRulesNameVersions(
    project: string,
    name: string,
    endpoint: JsonObject,
    newAgent: boolean,
  ) {
    const rules = trafficRules(endpoint);
    const agentExists = !newAgent;
    for (const [i, rule] of rules.entries()) {
      const number = parseVersion(rule.agent_version);
      const exists = !agentExists
        ? number === 1
        : number !== undefined &&
          (await this.agents.getVersion(project, name, number)) !== undefined;
      if (!exists) {
        throw new AppError(
          "invalid_parameter",
          `agent_version '${rule.agent_version}' does not exist for agent '${name}'.`,
          `agent_endpoint.version_selector.version_selection_rules[${i}].agent_version`,
        );
      }
    }
  }
}

/** "1", "2", … → number; anything else names no version. */
export function parseVersion(version: string): number | undefined {
  return /^[1-9][0-9]{0,14}$/.test(version) ? Number(version) : undefined;
}

/** Hosted code must be provisioned before it runs; images need a container driver. */
function initialStatus(definition: JsonObject): Pick<NewVersion, "status" | "statusReason"> {
  if (definition.kind !== "hosted") return { status: "active", statusReason: null };
  if (isObject(definition.code_configuration)) {
    return {
      status: "creating",
      statusReason: { code: "provisioning", message: "The code is being unpacked and built." },
    };
  }
  return {
    status: "failed",
    statusReason: {
      code: "container_driver_unavailable",
      message:
        "Image-based hosted agents need a container driver, which this server does not have; the version is stored but cannot run. Deploy code (code_configuration) instead.",
    },
  };
}

function throwAgentNotFound(name: string): never {
  throw notFound(`Agent '${name}'`, "agent_name");
}

function draftFirst() {
  return new AppError(
    "invalid_parameter",
    "A new agent's first version cannot be a draft: create a published version first.",
    "draft",
  );
}

/** The protocols an agent's endpoint lists (`responses` alone when it lists none: no
 * `protocol_configuration`, an empty one, or only null values). */
export function enabledProtocols(agent: Pick<Agent, "agentEndpoint">): Set<string> {
  const config = agent.agentEndpoint?.protocol_configuration;
  const listed =
    config === null || typeof config !== "object" || Array.isArray(config)
      ? []
      : Object.entries(config)
          .filter(([, value]) => value !== null && value !== false)
          .map(([key]) => key);
  return new Set(listed.length === 0 ? ["responses"] : listed);
}
