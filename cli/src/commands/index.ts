import type { Command } from 'commander'
import * as controller from './controller.js'
import * as relay from './relay.js'
import * as admin from './admin.js'
import * as adminUsers from './admin-users.js'
import * as adminKeys from './admin-keys.js'
import * as adminNodes from './admin-nodes.js'
import * as adminApikeys from './admin-apikeys.js'
import * as adminAudit from './admin-audit.js'
import * as adminPolicy from './admin-policy.js'
import * as version from './version.js'
import * as nodeRun from './node-run.js'
import * as localUp from './local-up.js'
import * as localDown from './local-down.js'
import * as localStatus from './local-status.js'
import * as localIp from './local-ip.js'
import * as localPing from './local-ping.js'
import * as localWhois from './local-whois.js'
import * as localNetcheck from './local-netcheck.js'

/** CommandModule is one verb file: it adds its commands to the program. */
export interface CommandModule {
  register(program: Command): void
}

/** commands lists every verb file, in the order `warren --help` shows them. */
export const commands: CommandModule[] = [
  controller,
  relay,
  admin,
  adminUsers,
  adminKeys,
  adminNodes,
  adminApikeys,
  adminAudit,
  adminPolicy,
  nodeRun,
  localUp,
  localDown,
  localStatus,
  localIp,
  localPing,
  localWhois,
  localNetcheck,
  version
]
