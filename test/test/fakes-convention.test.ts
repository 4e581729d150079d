import t from 'tap'
import { readFileSync } from 'node:fs'
import { basename, join } from 'node:path'
import { REPO_ROOT, listSourceFiles } from '../src/source-imports.js'

// Fakes follow one convention: a `createFakeX` factory in a file named `fake-*.ts`,
// exported from the package's `/testing` entry and never from its public index.
const PACKAGES: Record<string, () => Promise<Array<Record<string, unknown>>>> = {
  '@warren/node': async () => await Promise.all([import('@warren/node'), import('@warren/node/testing')]),
  '@warren/controller': async () => await Promise.all([import('@warren/controller'), import('@warren/controller/testing')]),
  '@warren/relay': async () => await Promise.all([import('@warren/relay'), import('@warren/relay/testing')])
}

/** fakeFactories lists `createFakeX` factories a package's sources define, with their files. */
function fakeFactories (dir: string): Array<{ name: string, file: string }> {
  return listSourceFiles(join(REPO_ROOT, dir, 'src')).flatMap(file =>
    [...readFileSync(file, 'utf8').matchAll(/export (?:async )?function (createFake\w+)/g)].map(m => ({ name: m[1]!, file })))
}

for (const [pkg, load] of Object.entries(PACKAGES)) {
  t.test(`${pkg}: fakes are in fake-*.ts files and exported from /testing only`, async t => {
    const [publicIndex, testing] = await load() as [Record<string, unknown>, Record<string, unknown>]
    const factories = fakeFactories(pkg.replace('@warren/', ''))
    t.ok(factories.length > 1, `found the fakes (${factories.map(f => f.name).join(', ')})`)
    for (const { name, file } of factories) {
      t.match(basename(file), /^fake-[a-z-]+\.ts$/, `${name} is in a fake-*.ts file (${basename(file)})`)
      t.type(testing[name], 'function', `${pkg}/testing exports ${name}`)
    }
    const leaked = Object.keys(publicIndex).filter(k => /^createFake|^Fake/.test(k))
    t.same(leaked, [], `${pkg} exports no fakes from its index`)
  })
}
