/* Markdown output and small statistics shared by the benchmarks. */

export interface Section {
  title: string;
  table: { header: string[]; rows: string[][] };
  notes: string[];
}

export function markdownTable(header: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(" | ")} |`;
  return [line(header), line(header.map(() => "---")), ...rows.map(line)].join("\n");
}

export function renderSection(section: Section): string {
  return [
    `## ${section.title}`,
    "",
    markdownTable(section.table.header, section.table.rows),
    "",
    ...section.notes.map((n) => `- ${n}`),
    "",
  ].join("\n");
}

/** The q-quantile (0..1) of the values, nearest-rank. */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank]!;
}

export const fixed = (n: number, digits = 2) => (Number.isFinite(n) ? n.toFixed(digits) : "n/a");

export const verdict = (met: boolean) => (met ? "met" : "**missed**");

/** A whole-number setting from the environment, for shorter smoke runs (BENCH_*). */
export function envInt(name: string, fallback: number): number {
  const raw = process.env[name];
  const n = raw === undefined || raw === "" ? fallback : Number(raw);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer`);
  return n;
}
