/**
 * child-sample runs one measurement in a fresh Node process, so each sample's peak
 * resident memory is its own: the parent spawns this script again with `--child ARGS`,
 * the child does the work and prints one JSON object, and an out-of-memory child is a
 * result ("out of memory"), not a crash of the benchmark.
 */
import { spawnSync } from 'node:child_process'

/** ChildSample is what a child printed, or why it failed. */
export type ChildSample<T> = { ok: true, value: T } | { ok: false, error: string }

/** childArgs is what follows `--child` on the command line when this process is a child, else undefined. */
export function childArgs (): string[] | undefined {
  const i = process.argv.indexOf('--child')
  return i < 0 ? undefined : process.argv.slice(i + 1)
}

/** runChild runs `script --child ...args` with a heap limit of `heapMb` and parses what it printed. */
export function runChild<T> (script: string, args: string[], heapMb: number): ChildSample<T> {
  const r = spawnSync(process.execPath, [`--max-old-space-size=${heapMb}`, script, '--child', ...args], { encoding: 'utf8', maxBuffer: 1 << 20 })
  if (r.status === 0) return { ok: true, value: JSON.parse(r.stdout) as T }
  const oom = /heap out of memory|Reached heap limit/.test(r.stderr)
  // the thrown error's own line says more than the stack under it
  const lines = r.stderr.trim().split('\n')
  const thrown = lines.find(l => /^\w*Error\b/.test(l)) ?? lines.slice(-3).join(' ')
  return { ok: false, error: oom ? `out of memory (heap limit ${heapMb} MB)` : `exit ${r.status ?? r.signal}: ${thrown}` }
}

/** peakRssMb is this process's peak resident memory so far, in MB. */
export function peakRssMb (): number {
  return process.resourceUsage().maxRSS / 1024
}
