import t from 'tap'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { REPO_ROOT, listSourceFiles, importsOfFile, packageOfSpecifier, readPackageJson } from '../src/source-imports.js'

// @warren/sdk is what apps embed: installing it must not bring the daemon, the
// controller or what they run on. Each ban says why.
const BANNED: Record<string, string> = {
  '@warren/node': 'the daemon; shared code such as the transports lives in the SDK',
  '@warren/controller': 'the control plane',
  execa: 'running system commands belongs to the daemon',
  'dns-packet': 'MagicDNS belongs to the daemon',
  'prom-client': 'metrics registries belong to the daemon and the controller',
  fastify: 'the HTTP server belongs to the controller',
  level: 'storage belongs to the controller',
  'classic-level': 'storage belongs to the controller'
}

/** dependencyClosure returns every package `name` needs at run time, through installed package.json files. */
function dependencyClosure (name: string): Set<string> {
  const seen = new Set<string>()
  const visit = (pkg: string): void => {
    const dir = join(REPO_ROOT, 'node_modules', pkg)
    if (!existsSync(join(dir, 'package.json'))) return
    for (const dep of Object.keys(readPackageJson(dir).dependencies ?? {})) {
      if (seen.has(dep)) continue
      seen.add(dep)
      visit(dep)
    }
  }
  visit(name)
  return seen
}

t.test('sdk/src imports neither the daemon nor the controller nor what they run on', async t => {
  const files = listSourceFiles(join(REPO_ROOT, 'sdk', 'src'))
  t.ok(files.length > 4, 'found the SDK sources')
  for (const file of files) {
    for (const spec of importsOfFile(file)) {
      const why = BANNED[packageOfSpecifier(spec) ?? '']
      if (why !== undefined) t.fail(`${file.slice(REPO_ROOT.length + 1)} imports '${spec}': ${why}`)
    }
  }
})

t.test('installing @warren/sdk brings none of the banned packages', async t => {
  const closure = dependencyClosure('@warren/sdk')
  t.ok(closure.has('@warren/protocol'), 'the closure was read (it holds @warren/protocol)')
  for (const [pkg, why] of Object.entries(BANNED)) t.notOk(closure.has(pkg), `${pkg} is not among the SDK's dependencies: ${why}`)
})
