/** Shared helpers for benchmarks: medians, tables, and bench/RESULTS.md sections. */
import { readFileSync, writeFileSync, existsSync } from 'node:fs'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { loadavg } from 'node:os'

export function median (xs: number[]): number {
  if (xs.length === 0) return NaN
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

export function percentile (xs: number[], p: number): number {
  if (xs.length === 0) return NaN
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!
}

/** printTable renders rows as a Markdown table (readable in a terminal and in RESULTS.md). */
export function printTable (head: string[], rows: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map(r => (r[i] ?? '').length)))
  const line = (cells: string[]) => '| ' + cells.map((c, i) => c.padEnd(w[i]!)).join(' | ') + ' |'
  return [line(head), '| ' + w.map(n => '-'.repeat(n)).join(' | ') + ' |', ...rows.map(line)].join('\n') + '\n'
}

export function argValue (name: string, dflt: string): string {
  const i = process.argv.indexOf(name)
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : dflt
}

const resultsPath = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'RESULTS.md')

/** writeResults replaces (or appends) the `## title` section of bench/RESULTS.md. */
export function writeResults (title: string, body: string): void {
  const date = new Date().toISOString().slice(0, 10)
  const section = `## ${title}\n\nMeasured ${date} on this 2-core shared machine (quote medians and ratios).\n\n${body.trim()}\n`
  let text = existsSync(resultsPath) ? readFileSync(resultsPath, 'utf8') : '# Benchmark results\n\nLatest figures of each benchmark in bench/src. Re-run a benchmark with `--write` to update its section.\n'
  const re = new RegExp(`## ${title.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\n[\\s\\S]*?(?=\\n## |$)`)
  text = re.test(text) ? text.replace(re, section) : text.trimEnd() + '\n\n' + section
  writeFileSync(resultsPath, text)
}

/** loadNow is the load average as the benchmarks quote it ("1.2 0.9 0.7"). */
export function loadNow (): string {
  return loadavg().map(x => x.toFixed(1)).join(' ')
}

/** loadLine is a summary's last line: the load average at the start and the end of the run. */
export function loadLine (start: string, end: string): string {
  return `Load average at the start and the end: ${start}, ${end} (2 cores, shared).`
}

/**
 * publish prints a run's table and summary and, with --write, puts them in the `## title`
 * section of bench/RESULTS.md after the command and what the run does (`about`).
 */
export function publish (title: string, command: string, about: string, table: string, summary: string): void {
  console.log(table)
  console.log(summary)
  if (process.argv.includes('--write')) {
    writeResults(title, `Command: \`${command}\` (root; \`npx tsc -b\` first)\n\n${about}\n\n${table}\n${summary}`)
  }
}
