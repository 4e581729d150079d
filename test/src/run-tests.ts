/**
 * run-tests runs every compiled test file (each a tap test program) and ends with the one
 * summary line that CI reads: `N passed, N failed` (and `, N skipped` when any were
 * skipped). Extra arguments narrow the files (for example `controller` or a path).
 *
 * It is its own small scheduler rather than tap's runner because tap starts files in
 * alphabetical order, which leaves the long namespace suites (test/e2e-*, the demo) to
 * run alone at the end. Here the long files start first and the short ones fill the
 * other slots. Each file's TAP output is printed whole when it ends.
 * WARREN_TEST_JOBS sets how many files run at once (default 3: the long suites mostly
 * wait on processes and the network, not on the CPU).
 */
import { spawn } from 'node:child_process'
import { readdirSync, statSync, existsSync } from 'node:fs'
import { join, dirname, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..')
const PACKAGES = ['protocol', 'relay', 'controller', 'node', 'sdk', 'cli', 'test']
/** FILE_TIMEOUT_MS ends a test file that has not finished; it counts as one failure. */
const FILE_TIMEOUT_MS = 600_000
/** LONG names the files that take longest (real daemons, namespaces, many cases): started first. */
const LONG = [/e2e-mesh/, /e2e-nat/, /nat-/, /demo/, /e2e-policy/, /e2e-sdk/, /firewall-kernel/, /policy-limits/, /smoke/, /netns-/, /firewall-property/, /fuzz/, /-kernel/]

function findTests (dir: string, out: string[]): void {
  if (!existsSync(dir)) return
  for (const name of readdirSync(dir)) {
    const p = join(dir, name)
    if (statSync(p).isDirectory()) findTests(p, out)
    else if (name.endsWith('.test.js')) out.push(p)
  }
}

/** rank orders files: the long ones first, in LONG's order, then the rest alphabetically. */
function rank (file: string): number {
  const i = LONG.findIndex(re => re.test(file))
  return i < 0 ? LONG.length : i
}

interface FileResult { file: string, passed: number, failed: number, skipped: number, ms: number }

/** runFile runs one test program and reads its closing `# { total, pass, fail, ... }` line. */
function runFile (file: string): Promise<FileResult> {
  const started = Date.now()
  return new Promise(resolve => {
    const child = spawn(process.execPath, ['--enable-source-maps', file], {
      cwd: root, stdio: ['ignore', 'pipe', 'pipe'], env: { TAP_TIMEOUT: String(FILE_TIMEOUT_MS / 1000), ...process.env, TAP_COLOR: '0' }
    })
    const out: Buffer[] = []
    child.stdout.on('data', (b: Buffer) => out.push(b))
    child.stderr.on('data', (b: Buffer) => out.push(b))
    let timedOut = false
    // SIGTERM first, so the file's teardowns remove what it made; SIGKILL if that hangs.
    const timer = setTimeout(() => {
      timedOut = true
      child.kill('SIGTERM')
      setTimeout(() => child.kill('SIGKILL'), 15_000).unref()
    }, FILE_TIMEOUT_MS)
    child.on('close', code => {
      clearTimeout(timer)
      const text = Buffer.concat(out).toString('utf8')
      const m = /^#\s*\{([^}]*)\}\s*$/m.exec(text.split('\n').filter(l => /^#\s*\{/.test(l)).pop() ?? '')
      const counts: Record<string, number> = {}
      if (m !== null) for (const kv of m[1]!.matchAll(/(\w+):\s*(\d+)/g)) counts[kv[1]!] = Number(kv[2])
      const broken = m === null || timedOut || (code !== 0 && (counts.fail ?? 0) === 0)
      const result = {
        file,
        passed: counts.pass ?? 0,
        failed: (counts.fail ?? 0) + (broken ? 1 : 0),
        skipped: (counts.skip ?? 0) + (counts.todo ?? 0),
        ms: Date.now() - started
      }
      const verdict = result.failed > 0 ? 'not ok' : 'ok'
      process.stdout.write(`# Subtest: ${file}\n${text.replace(/^/gm, '    ').trimEnd()}\n`)
      if (timedOut) process.stdout.write(`    # killed after ${FILE_TIMEOUT_MS / 1000} s\n`)
      process.stdout.write(`${verdict} - ${file} # time=${result.ms}ms\n\n`)
      resolve(result)
    })
  })
}

async function main (): Promise<void> {
  const filters = process.argv.slice(2)
  const files: string[] = []
  for (const p of PACKAGES) findTests(join(root, p, 'dist', 'test'), files)
  const chosen = files.map(f => relative(root, f))
    .filter(f => filters.length === 0 || filters.some(x => f.includes(x)))
    .sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0))
  if (chosen.length === 0) {
    console.error(`no test files matched ${filters.join(' ')}; run 'npx tsc -b' first`)
    process.exit(1)
  }
  const jobs = Math.max(1, Number(process.env.WARREN_TEST_JOBS ?? 3) || 3)
  const queue = [...chosen]
  const results: FileResult[] = []
  await Promise.all(Array.from({ length: Math.min(jobs, queue.length) }, async () => {
    for (let f = queue.shift(); f !== undefined; f = queue.shift()) results.push(await runFile(f))
  }))
  const sum = (k: 'passed' | 'failed' | 'skipped'): number => results.reduce((n, r) => n + r[k], 0)
  const failedFiles = results.filter(r => r.failed > 0).map(r => r.file)
  if (failedFiles.length > 0) console.log(`# failed files: ${failedFiles.join(' ')}`)
  const skipped = sum('skipped')
  console.log(`${sum('passed')} passed, ${sum('failed')} failed${skipped > 0 ? `, ${skipped} skipped` : ''}`)
  process.exit(sum('failed') > 0 ? 1 : 0)
}

await main()
