import t from 'tap'
import { mkdtempSync, rmSync, mkdirSync, symlinkSync, readFileSync, writeFileSync, readdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execCommand } from '../src/process.js'
import { REPO_ROOT } from '../src/source-imports.js'

/**
 * The SDK's examples (sdk/examples) are what users copy, so they must compile against
 * the types the SDK publishes: `@warren/sdk` resolved through its package exports to
 * sdk/dist/src/*.d.ts, as in an app that installed it. Any type error fails the test.
 */
const TSC = join(REPO_ROOT, 'node_modules', '.bin', 'tsc')
const EXAMPLES = join(REPO_ROOT, 'sdk', 'examples')

t.test('the examples type-check against the published SDK types', { timeout: 180_000 }, async t => {
  const files = readdirSync(EXAMPLES).filter(f => f.endsWith('.ts')).sort()
  t.same(files, ['greeter-client.ts', 'greeter-service.ts', 'setup-mesh.ts'], 'the three examples are there')
  const r = await execCommand([TSC, '--noEmit', '-p', EXAMPLES], { allowFail: true, timeoutMs: 170_000 })
  t.equal(r.exitCode, 0, `tsc --noEmit -p sdk/examples reports no error:\n${r.stdout}${r.stderr}`)
})

t.test('a misuse of the SDK in an example is a type error, so the check above can fail', { timeout: 180_000 }, async t => {
  // A copy outside the repo that finds @warren/sdk the way an app does: in its node_modules.
  const dir = mkdtempSync(join(tmpdir(), 'warren-examples-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  mkdirSync(join(dir, 'node_modules', '@warren'), { recursive: true })
  symlinkSync(join(REPO_ROOT, 'sdk'), join(dir, 'node_modules', '@warren', 'sdk'))
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'greeter', private: true, type: 'module' }))
  writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({
    extends: join(REPO_ROOT, 'tsconfig.base.json'),
    compilerOptions: { noEmit: true, composite: false, incremental: false, declaration: false, declarationMap: false, typeRoots: [join(REPO_ROOT, 'node_modules', '@types')] },
    include: ['*.ts']
  }))
  const client = readFileSync(join(EXAMPLES, 'greeter-client.ts'), 'utf8')
  writeFileSync(join(dir, 'greeter-client.ts'), client)
  const clean = await execCommand([TSC, '-p', dir], { allowFail: true, timeoutMs: 170_000 })
  t.equal(clean.exitCode, 0, `the copy as written compiles there:\n${clean.stdout}${clean.stderr}`)

  t.match(client, 'w.fetch(url)', 'the client calls w.fetch(url)')
  writeFileSync(join(dir, 'greeter-client.ts'), client.replace('w.fetch(url)', 'w.fetch(8080)'))
  const broken = await execCommand([TSC, '-p', dir], { allowFail: true, timeoutMs: 170_000 })
  t.not(broken.exitCode, 0, 'tsc fails')
  t.match(broken.stdout, /greeter-client\.ts\(\d+,\d+\): error TS2345: Argument of type 'number'/, `it names the file and the wrong argument:\n${broken.stdout}`)
  t.equal(broken.stdout.match(/error TS/g)?.length, 1, 'and reports nothing else')
})
