import { readFileSync } from 'node:fs'
import { platform, release } from 'node:os'
import type { HostAttrs } from '@warren/protocol'

/** NODE_VERSION is @warren/node's package version, what this node reports as node:tsVersion. */
const NODE_VERSION: string = (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version

/** OS_NAMES maps Node's platform names to the ones Tailscale's node:os uses. */
const OS_NAMES: Readonly<Record<string, string>> = { darwin: 'macos', win32: 'windows' }

/**
 * hostAttrs are the device posture attributes this node reports in each map hello:
 * node:os (linux, macos, windows, ...), node:osVersion (the kernel release on Linux),
 * node:tsVersion (Warren's version) and node:tsReleaseTrack (`stable` for a release,
 * `unstable` for a pre-release such as 0.2.0-rc.1), which the policy's postures can test.
 */
export function hostAttrs (): HostAttrs {
  const os = platform()
  return {
    'node:os': OS_NAMES[os] ?? os,
    'node:osVersion': release().slice(0, 100),
    'node:tsVersion': NODE_VERSION,
    'node:tsReleaseTrack': releaseTrack(NODE_VERSION)
  }
}

/** releaseTrack is `stable` for a release version (1.2.3) and `unstable` for a pre-release (1.2.3-rc.1). */
export function releaseTrack (version: string): 'stable' | 'unstable' {
  return /^\d+\.\d+\.\d+$/.test(version) ? 'stable' : 'unstable'
}
