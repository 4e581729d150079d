/**
 * run-tests runs every compiled test file with tap and ends with the one summary line
 * that CI reads: `N passed, N failed` (and `, N skipped` when any were skipped).
 * Extra arguments narrow the files (for example `controller` or a path).
 */
import { spawn } from 'node:child_process'
import { readdirSync, statSync, existsSync } from 'node:fs'
import { join, dirname, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createRequire } from 'node:module'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..')
const PACKAGES = ['protocol', 'controller', 'node', 'sdk', 'cli', 'test']

function findTests (dir: string, out: string[]): void {
  if (!existsSync(dir)) return
  for (const name of readdirSync(dir)) {
    const p = join(dir, name)
    if (statSync(p).isDirectory()) findTests(p, out)
    else if (name.endsWith('.test.js')) out.push(p)
  }
}

const filters = process.argv.slice(2)
const files: string[] = []
for (const p of PACKAGES) findTests(join(root, p, 'dist', 'test'), files)
const chosen = files.map(f => relative(root, f)).filter(f => filters.length === 0 || filters.some(x => f.includes(x))).sort()
if (chosen.length === 0) {
  console.error(`no test files matched ${filters.join(' ')}; run 'npx tsc -b' first`)
  process.exit(1)
}

const tapBin = join(dirname(createRequire(import.meta.url).resolve('tap/package.json')), 'dist', 'esm', 'run.mjs')
const args = [tapBin, '--disable-coverage', '--timeout=600', '--jobs=2', ...chosen]
const child = spawn(process.execPath, args, { cwd: root, stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, TAP_COLOR: '0' } })
let tail = ''
child.stdout.on('data', (b: Buffer) => {
  process.stdout.write(b)
  tail = (tail + b.toString('utf8')).slice(-4000)
})
child.on('close', code => {
  const m = /#\s*\{([^}]*)\}\s*(?:\n.*)*$/.exec(tail)
  const counts: Record<string, number> = {}
  if (m !== null) for (const kv of m[1]!.matchAll(/(\w+):\s*(\d+)/g)) counts[kv[1]!] = Number(kv[2])
  const passed = counts.pass ?? 0
  const failed = (counts.fail ?? 0) + (m === null || (code !== 0 && (counts.fail ?? 0) === 0) ? 1 : 0)
  const skipped = (counts.skip ?? 0) + (counts.todo ?? 0)
  console.log(`${passed} passed, ${failed} failed${skipped > 0 ? `, ${skipped} skipped` : ''}`)
  process.exit(failed > 0 ? 1 : 0)
})
