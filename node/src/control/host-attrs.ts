import { readFileSync } from 'node:fs'
import { platform, release } from 'node:os'
import type { HostAttrs } from '@warren/protocol'

/** NODE_VERSION is @warren/node's package version, what this node reports as node:tsVersion. */
const NODE_VERSION: string = (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version

/** OS_NAMES maps Node's platform names to the ones Tailscale's node:os uses. */
const OS_NAMES: Readonly<Record<string, string>> = { darwin: 'macos', win32: 'windows' }

/**
 * hostAttrs are the device posture attributes this node reports in each map hello:
 * node:os (linux, macos, windows, ...), node:osVersion (the kernel release on Linux) and
 * node:tsVersion (Warren's version), which the policy's postures can test.
 */
export function hostAttrs (): HostAttrs {
  const os = platform()
  return { 'node:os': OS_NAMES[os] ?? os, 'node:osVersion': release().slice(0, 100), 'node:tsVersion': NODE_VERSION }
}
