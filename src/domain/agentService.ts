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
import type { AgentRepository, Clock, LiveSessions } from "./ports.js";
import { trafficRules } from "./trafficRules.js";

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

/** The agent and version operations of the control plane. */
export class AgentService {
  constructor(
    private readonly agents: AgentRepository,
    private readonly sessions: LiveSessions,
    private readonly validateEndpoint: EndpointValidator,
    private readonly clock: Clock,
  ) {}

  async get(project: string, name: string): Promise<Agent> {
    return (await this.agents.get(project, name)) ?? throwAgentNotFound(name);
  }

  list(project: string, page: PageRequest & { kind?: string }): Promise<Page<Agent>> {
    return this.agents.list(project, page);
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
    const result = await this.agents.appendVersion(project, name, this.newVersion(name, spec), {
      reuseIfUnchanged: true,
    });
    return result?.agent ?? throwAgentNotFound(name);
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
    if (!(await this.agents.delete(project, name))) throwAgentNotFound(name);
  }

  /** Always a new version; creates the agent when it does not exist. */
  async createVersion(project: string, name: string, spec: VersionSpec): Promise<Version> {
    if (spec.draft && !(await this.agents.get(project, name))) throw draftFirst();
    const { version } = await this.append(project, name, spec, {
      newAgent: { state: "enabled", agentEndpoint: null, agentCard: null },
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
    const outcome = await this.agents.deleteVersion(project, name, found.version);
    if (outcome === "missing")
      throw notFound(`Version '${version}' of agent '${name}'`, "agent_version");
    if (outcome === "in_use") {
      throw new AppError(
        "version_in_use",
        `Version '${version}' is named by the traffic rules of agent '${name}'; change agent_endpoint first.`,
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
  }

  private async append(
    project: string,
    name: string,
    spec: VersionSpec,
    options: { newAgent?: NewAgent; reuseIfUnchanged?: boolean },
  ) {
    const result = await this.agents.appendVersion(
      project,
      name,
      this.newVersion(name, spec),
      options,
    );
    return result ?? throwAgentNotFound(name);
  }

  private newVersion(name: string, spec: VersionSpec): NewVersion {
    const definition = { ...spec.definition };
    if (definition.kind === "external" && definition.otel_agent_id === undefined) {
      definition.otel_agent_id = name;
    }
    const metadata = spec.metadata ?? {};
    const description = spec.description ?? "";
    const blueprintReference = spec.blueprint_reference ?? null;
    const digitalWorkerType = spec.digital_worker_type ?? null;
    return {
      definition,
      metadata,
      description,
      draft: spec.draft ?? false,
      // Hosted versions must be provisioned before they can run; other kinds are ready at once.
      status: definition.kind === "hosted" ? "creating" : "active",
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

  private async respectSessions(
    project: string,
    name: string,
    version: number | undefined,
    force: boolean,
  ) {
    const live = await this.sessions.count(project, name, version);
    if (live === 0) return;
    if (!force) {
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
