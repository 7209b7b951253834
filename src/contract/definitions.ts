import { z } from "zod";

/*
 * Agent definitions, one schema per kind (contract §4.3). Objects are "loose": fields this
 * server does not know (new tool types, preview options) are stored and echoed unchanged.
 */

const nullableNumber = (min: number, max: number) => z.number().min(min).max(max).nullable();

const raiConfig = z.looseObject({
  rai_policy_name: z.string().min(1),
  invocations_moderation: z
    .looseObject({ response_mode: z.enum(["non_streaming", "streaming", "both"]) })
    .optional(),
});

const common = { rai_config: raiConfig.optional() };

/** A tool is any object with a `type`; unknown types are kept verbatim. */
const tool = z.looseObject({ type: z.string().min(1) });

export const promptDefinition = z.looseObject({
  kind: z.literal("prompt"),
  ...common,
  model: z.string().min(1),
  instructions: z.string().nullable().optional(),
  temperature: nullableNumber(0, 2).optional(),
  top_p: nullableNumber(0, 1).optional(),
  reasoning: z.looseObject({}).nullable().optional(),
  tools: z.array(tool).optional(),
  tool_choice: z.union([z.string(), z.looseObject({})]).optional(),
  text: z.looseObject({}).nullable().optional(),
  structured_inputs: z.record(z.string(), z.looseObject({})).optional(),
  harness: z.looseObject({ type: z.string() }).optional(),
  skills: z
    .array(z.looseObject({ name: z.string().min(1), version: z.string().optional() }))
    .optional(),
});

/** Kubernetes-style quantities as Foundry uses them: "0.5", "1", "250m" cores; "512Mi", "1Gi". */
const cpuQuantity = z
  .string()
  .regex(/^(?:\d+(?:\.\d+)?|\d+m)$/, 'must be a CPU quantity such as "0.5", "1" or "250m"')
  .refine((s) => parseCpu(s) > 0, "must be greater than zero");
const memoryQuantity = z
  .string()
  .regex(/^\d+(?:\.\d+)?(?:Mi|Gi)$/, 'must be a memory quantity such as "512Mi" or "1Gi"')
  .refine((s) => parseMemoryBytes(s) > 0, "must be greater than zero");

export function parseCpu(quantity: string): number {
  return quantity.endsWith("m") ? Number(quantity.slice(0, -1)) / 1000 : Number(quantity);
}

export function parseMemoryBytes(quantity: string): number {
  const unit = quantity.endsWith("Gi") ? 1024 ** 3 : 1024 ** 2;
  return Math.round(Number(quantity.slice(0, -2)) * unit);
}

const codeConfiguration = z.looseObject({
  runtime: z.string().min(1),
  entry_point: z.array(z.string().min(1)).min(1),
  dependency_resolution: z.enum(["bundled", "remote_build"]).default("bundled"),
  content_hash: z.string().optional(),
});

const telemetryEndpoint = z.looseObject({
  kind: z.literal("OTLP"),
  data: z.array(z.enum(["ContainerStdoutStderr", "ContainerOtel", "Metrics"])),
  endpoint: z.url(),
  protocol: z.enum(["Http", "Grpc"]),
  auth: z
    .looseObject({
      type: z.literal("header"),
      header_name: z.string().min(1),
      secret_id: z.string().min(1),
      secret_key: z.string().min(1),
    })
    .optional(),
});

export const hostedDefinition = z
  .looseObject({
    kind: z.literal("hosted"),
    ...common,
    cpu: cpuQuantity,
    memory: memoryQuantity,
    container_configuration: z
      .looseObject({ image: z.string().min(1), registry_connection_id: z.string().optional() })
      .optional(),
    code_configuration: codeConfiguration.optional(),
    protocol_versions: z
      .array(z.looseObject({ protocol: z.string().min(1), version: z.string().min(1) }))
      .optional(),
    environment_variables: z.record(z.string(), z.string()).optional(),
    telemetry_config: z
      .looseObject({ endpoints: z.array(telemetryEndpoint).min(1).max(3) })
      .optional(),
    session_configuration: z
      .looseObject({ idle_timeout_seconds: z.number().int().min(120).max(3600).optional() })
      .optional(),
  })
  .superRefine((d, ctx) => {
    const both = d.container_configuration !== undefined && d.code_configuration !== undefined;
    const neither = d.container_configuration === undefined && d.code_configuration === undefined;
    if (both || neither) {
      ctx.addIssue({
        code: "custom",
        path: [neither ? "code_configuration" : "container_configuration"],
        message: "exactly one of container_configuration and code_configuration must be set",
      });
    }
  });

export const workflowDefinition = z.looseObject({
  kind: z.literal("workflow"),
  ...common,
  workflow: z.string().optional(),
});

export const externalDefinition = z.looseObject({
  kind: z.literal("external"),
  ...common,
  otel_agent_id: z.string().min(1).optional(),
});

/** Voice agents are a large preview model: stored and echoed, not interpreted. */
export const voiceDefinition = z.looseObject({ kind: z.literal("voice"), ...common });

export const agentKinds = ["prompt", "hosted", "workflow", "external", "voice"] as const;
export type AgentKind = (typeof agentKinds)[number];

export const agentDefinition = z.discriminatedUnion("kind", [
  promptDefinition,
  hostedDefinition,
  workflowDefinition,
  externalDefinition,
  voiceDefinition,
]);

export type AgentDefinition = z.infer<typeof agentDefinition>;
export type HostedDefinition = z.infer<typeof hostedDefinition>;
