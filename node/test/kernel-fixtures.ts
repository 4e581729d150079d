import t from 'tap'
import { createCommandRunner } from '../src/runner/index.js'

/**
 * skipUnlessKernel ends a real-kernel test file with a skip that says why, unless it runs
 * as root with `nft` and `ip` (network namespaces) at hand.
 */
export async function skipUnlessKernel (why: string): Promise<void> {
  const host = createCommandRunner()
  const usable = process.getuid?.() === 0 &&
    (await host.run(['nft', '--version'], { allowFail: true }).catch(() => undefined))?.exitCode === 0 &&
    (await host.run(['ip', '-V'], { allowFail: true }).catch(() => undefined))?.exitCode === 0
  if (!usable) {
    t.plan(0, `skipped: ${why} needs root, nft and ip (network namespaces)`)
    process.exit(0)
  }
}
