import { z } from "zod";
import { agentDefinition, agentKinds } from "./definitions.js";

/* Request bodies and query strings of the agent and version routes (contract §3.1, §3.2, §8). */

export const agentNamePattern = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;
export const agentName = z
  .string()
  .regex(
    agentNamePattern,
    "must be 1-63 letters, digits or hyphens, starting and ending with a letter or digit",
  );

export const metadata = z
  .record(z.string().min(1).max(64), z.string().max(512))
  .nullable()
  .refine((m) => m === null || Object.keys(m).length <= 16, "at most 16 metadata pairs")
  .transform((m) => m ?? {});

export const description = z
  .string()
  .max(512)
  .nullable()
  .transform((d) => d ?? "");

const blueprintReference = z.looseObject({
  type: z.literal("ManagedAgentIdentityBlueprint"),
  blueprint_id: z.string().min(1),
});

const agentCardSkill = z.looseObject({
  id: z.string().min(1).max(64),
  name: z.string().min(1).max(128),
  description: z.string().max(2048).optional(),
  tags: z.array(z.string().max(32)).max(5).optional(),
  examples: z.array(z.string().max(1024)).max(5).optional(),
});

export const agentCard = z.looseObject({
  version: z.string().min(1).max(32),
  description: z.string().max(2048).optional(),
  skills: z.array(agentCardSkill).min(1).max(16),
});

const versionSelectionRule = z.looseObject({
  type: z.literal("FixedRatio"),
  agent_version: z.string().min(1),
  traffic_percentage: z.number().int().min(0).max(100),
});

export const agentEndpoint = z.looseObject({
  version_selector: z
    .looseObject({ version_selection_rules: z.array(versionSelectionRule) })
    .refine(
      (s) =>
        s.version_selection_rules.length === 0 ||
        s.version_selection_rules.reduce((sum, r) => sum + r.traffic_percentage, 0) === 100,
      {
        message: "traffic_percentage of all rules must sum to 100",
        path: ["version_selection_rules"],
      },
    )
    .optional(),
  protocol_configuration: z.looseObject({}).optional(),
  authorization_schemes: z.array(z.looseObject({ type: z.string().min(1) })).optional(),
});

const versionFields = {
  definition: agentDefinition,
  metadata: metadata.optional(),
  description: description.optional(),
  blueprint_reference: blueprintReference.nullable().optional(),
  digital_worker_type: z.literal("m365").nullable().optional(),
};

export const createVersionBody = z.object({
  ...versionFields,
  draft: z.boolean().nullable().optional(),
});

export const createAgentBody = z.object({
  ...versionFields,
  name: agentName,
  state: z.enum(["enabled", "disabled"]).nullable().optional(),
  draft: z.boolean().nullable().optional(),
  agent_endpoint: agentEndpoint.nullable().optional(),
  agent_card: agentCard.nullable().optional(),
});

export const updateAgentBody = z.object(versionFields);

/** Merge patch of the agent object: only these two members may be patched. */
export const patchAgentBody = z.object({
  agent_endpoint: z.looseObject({}).nullable().optional(),
  agent_card: z.looseObject({}).nullable().optional(),
});

const booleanQuery = z.enum(["true", "false"]).transform((v) => v === "true");

export const pageQuery = {
  limit: z.coerce.number().int().min(1).max(100).default(20),
  order: z.enum(["asc", "desc"]).default("desc"),
  after: z.string().min(1).optional(),
  before: z.string().min(1).optional(),
};

export const listAgentsQuery = z.object({
  ...pageQuery,
  kind: z.enum(agentKinds).optional(),
  /** `live_session_count`: each agent also carries its count of live sessions. */
  include: z.enum(["live_session_count"]).optional(),
});
export const listVersionsQuery = z.object({
  ...pageQuery,
  include_drafts: booleanQuery.default(false),
});
export const forceQuery = z.object({ force: booleanQuery.default(false) });

/** Session files: `path` is relative to the home; "/" or "" is the home itself. */
export const filePathQuery = z.object({ path: z.string() });
export const listFilesQuery = z.object({
  ...pageQuery,
  order: z.enum(["asc", "desc"]).default("asc"),
  path: z.string().default(""),
});
export const deleteFileQuery = z.object({
  path: z.string(),
  recursive: booleanQuery.default(false),
});

export type CreateAgentBody = z.infer<typeof createAgentBody>;
export type CreateVersionBody = z.infer<typeof createVersionBody>;
export type UpdateAgentBody = z.infer<typeof updateAgentBody>;
export type PatchAgentBody = z.infer<typeof patchAgentBody>;

/* Manifests (contract §3.3) and their registration (agenthost's own routes). */

const parameterValues = z.record(z.string(), z.unknown());

export const importAgentBody = z.object({
  name: agentName,
  manifest_id: z.string().min(1),
  parameter_values: parameterValues,
  metadata: metadata.optional(),
  description: description.optional(),
});

export const importVersionBody = z.object({
  manifest_id: z.string().min(1),
  parameter_values: parameterValues,
  metadata: metadata.optional(),
  description: description.optional(),
});

export const registerManifestBody = z.object({
  name: agentName,
  description: z.string().max(2048).optional(),
  parameters: z.record(
    z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "must be an identifier"),
    z.looseObject({}),
  ),
  definition: z.looseObject({ kind: z.enum(agentKinds) }),
});

export const sessionIdPattern = /^[A-Za-z0-9_-]{8,128}$/;

export const createSessionBody = z.object({
  version_indicator: z.looseObject({
    type: z.literal("version_ref"),
    agent_version: z.string().regex(/^[1-9]\d{0,9}$/, 'must be a version number such as "1"'),
  }),
  agent_session_id: z.string().regex(sessionIdPattern, "must be 8-128 of [A-Za-z0-9_-]").optional(),
});

export const listSessionsQuery = z.object({
  ...pageQuery,
  /** Admin only: filters. */
  status: z.enum(["creating", "active", "idle", "failed", "expired"]).optional(),
  agent_version: z
    .string()
    .regex(/^[1-9]\d{0,9}$/)
    .optional(),
});

/** `GET {project}/sessions`: cursors are `<agent_name>/<agent_session_id>`. */
export const listProjectSessionsQuery = listSessionsQuery.extend({
  after: z
    .string()
    .regex(/^[^/]+\/[^/]+$/, "must be <agent_name>/<agent_session_id>")
    .optional(),
  before: z
    .string()
    .regex(/^[^/]+\/[^/]+$/, "must be <agent_name>/<agent_session_id>")
    .optional(),
  agent_name: z.string().min(1).max(256).optional(),
  /** Admin only. */
  owner: z.string().min(1).max(512).optional(),
});

export type CreateSessionBody = z.infer<typeof createSessionBody>;

/** `POST …/sessions/{id}:exec` (docs/api.md "Exec into a session"). */
export const execLimits = {
  maxArgs: 256,
  maxArgvBytes: 64 * 1024,
  maxStdinBytes: 256 * 1024,
  maxEnv: 64,
  /** The command and env as JSON: the helper's frame limit (256 KiB) less room for the rest. */
  maxEncodedStartBytes: 240 * 1024,
  defaultTimeoutSeconds: 60,
  maxTimeoutSeconds: 600,
} as const;

const noNul = (s: string) => !s.includes("\0");

export const execSessionBody = z
  .strictObject({
    command: z
      .array(z.string().max(execLimits.maxArgvBytes).refine(noNul, "must not contain NUL"))
      .min(1)
      .max(execLimits.maxArgs)
      .refine((a) => a[0] !== "", "the program (the first word) must not be empty")
      .refine(
        (a) => a.reduce((n, s) => n + Buffer.byteLength(s) + 1, 0) <= execLimits.maxArgvBytes,
        `must be at most ${execLimits.maxArgvBytes} bytes in all`,
      ),
    stdin: z
      .string()
      .refine(
        (s) => Buffer.byteLength(s) <= execLimits.maxStdinBytes,
        `must be at most ${execLimits.maxStdinBytes} bytes`,
      )
      .optional(),
    timeout_seconds: z
      .number()
      .int()
      .min(1)
      .max(execLimits.maxTimeoutSeconds)
      .default(execLimits.defaultTimeoutSeconds),
    env: z
      .record(
        z
          .string()
          .regex(
            /^[A-Za-z_][A-Za-z0-9_]{0,127}$/,
            "names must be 1-128 of [A-Za-z0-9_], not starting with a digit",
          ),
        z.string().max(4096).refine(noNul, "must not contain NUL"),
      )
      .refine(
        (e) => Object.keys(e).length <= execLimits.maxEnv,
        `at most ${execLimits.maxEnv} variables`,
      )
      .optional(),
  })
  .superRefine((body, ctx) => {
    // What the sandbox's exec helper is handed (one frame of at most 256 KiB) holds the
    // command and the environment as JSON, with room kept for the rest.
    const encoded = (value: unknown) => Buffer.byteLength(JSON.stringify(value));
    const argv = encoded(body.command);
    if (argv > execLimits.maxEncodedStartBytes)
      ctx.addIssue({
        code: "custom",
        path: ["command"],
        message: `must be at most ${execLimits.maxEncodedStartBytes} bytes as JSON`,
      });
    else if (argv + encoded(body.env ?? {}) > execLimits.maxEncodedStartBytes)
      ctx.addIssue({
        code: "custom",
        path: ["env"],
        message: `must be at most ${execLimits.maxEncodedStartBytes} bytes as JSON with the command`,
      });
  });

export type ExecSessionBody = z.infer<typeof execSessionBody>;
