import hljs from "highlight.js/lib/core";
import json from "highlight.js/lib/languages/json";
import { diffLines } from "diff";
import type { Version } from "../types.js";

hljs.registerLanguage("json", json);

/** JSON with object keys sorted at every level, two-space indented: equal values, equal text. */
export function canonicalJson(value: unknown): string {
  const sorted = (v: unknown): unknown =>
    Array.isArray(v)
      ? v.map(sorted)
      : v && typeof v === "object"
        ? Object.fromEntries(
            Object.keys(v)
              .sort()
              .map((k) => [k, sorted((v as Record<string, unknown>)[k])]),
          )
        : v;
  return JSON.stringify(sorted(value), null, 2);
}

/**
 * A value as highlighted JSON. highlight.js escapes the text it is given and adds only
 * `<span class="hljs-…">`, so its output is safe to set as HTML (and needs no inline style).
 */
export function JsonView({ value, label }: { value: unknown; label: string }) {
  const html = hljs.highlight(canonicalJson(value), { language: "json" }).value;
  return (
    <pre
      class="json"
      tabIndex={0}
      aria-label={label}
      data-testid="definition"
      dangerouslySetInnerHTML={{ __html: html }}
    />
  );
}

/** The lines added and removed between two versions' definitions (canonical JSON). */
export function VersionDiff({ from, to }: { from: Version; to: Version }) {
  const parts = diffLines(canonicalJson(from.definition), canonicalJson(to.definition));
  const changed = parts.some((p) => p.added || p.removed);
  let n = 0;
  return (
    <>
      <p class="hint">
        {changed
          ? `Lines removed from version ${from.version} (−) and added in version ${to.version} (+):`
          : `The definitions of versions ${from.version} and ${to.version} are the same.`}
      </p>
      <pre
        class="diff"
        tabIndex={0}
        aria-label={`Difference from version ${from.version} to version ${to.version}`}
        data-testid="diff"
      >
        {parts.flatMap((p) =>
          p.value
            .replace(/\n$/, "")
            .split("\n")
            .map((line) => {
              const kind = p.added ? "added" : p.removed ? "removed" : "same";
              const mark = p.added ? "+ " : p.removed ? "− " : "  ";
              return (
                <div key={n++} class={kind}>
                  {mark}
                  {line}
                </div>
              );
            }),
        )}
      </pre>
    </>
  );
}
