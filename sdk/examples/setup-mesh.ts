/**
 * setup-mesh: sets up a mesh for the greeter from nothing, with the admin API only (no CLI):
 * a user, an access policy that carries its own tests, and an auth key for nodes to join with.
 *
 *   node setup-mesh.js --state-dir /var/lib/warren-controller [--user alice] [--tags tag:greeter]
 *   WARREN_API_KEY=... node setup-mesh.js --controller https://ctl.example.com:8443 [...]
 *
 * Where the controller is:
 *   --state-dir DIR (or $WARREN_STATE_DIR)   on the controller host, as root: the admin
 *                                            socket in the state dir, no key needed
 *   --controller URL (or $WARREN_CONTROLLER) from anywhere, with an admin API key in
 *                                            $WARREN_API_KEY (kept out of the command line)
 * What it makes:
 *   --user NAME          the user who owns the nodes (default alice); kept if it exists
 *   --email ADDRESS      the user's email, when the user is new
 *   --tags TAG,TAG       tags for the nodes that join with the key (tag:greeter for the
 *                        service, tag:ci for CI runners); none: the user's own nodes
 *   --policy FILE        a policy of your own instead of the greeter's below
 *
 * It can be run again: the user and an unchanged policy are kept, and each run makes a
 * new auth key. The key (reusable, preapproved: nodes join without an approval step)
 * is printed alone on stdout, so `KEY=$(node setup-mesh.js ...)` works; what it did goes
 * to stderr. Then: `warren up --controller URL --auth-key $KEY` on each node.
 */
import { readFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import { createAdminClient, createPolicyAdmin, isWarrenError, type AdminClientInit } from '@warren/sdk'

const { values } = parseArgs({
  options: {
    'state-dir': { type: 'string' },
    controller: { type: 'string' },
    user: { type: 'string', default: 'alice' },
    email: { type: 'string' },
    tags: { type: 'string', default: '' },
    policy: { type: 'string' }
  }
})

/** greeterPolicy lets the user's nodes and CI runners reach the greeter's port 8080, and nothing else. */
function greeterPolicy (user: string): string {
  return `{
  // Who may own which tags: the user's auth keys may make greeter and CI nodes.
  "tagOwners": { "tag:greeter": ["${user}@"], "tag:ci": ["${user}@"] },
  "acls": [
    // The user's own nodes and CI runners reach the greeter service; nothing else is open.
    // The greeter itself decides which callers it answers (it refuses untrusted tags).
    { "action": "accept", "src": ["${user}@", "tag:ci"], "dst": ["tag:greeter:8080"] },
  ],
  // Checked on every change: a policy that breaks these is refused and nothing changes.
  "tests": [
    { "src": "${user}@", "accept": ["tag:greeter:8080"], "deny": ["tag:greeter:22"] },
    { "src": "tag:ci", "accept": ["tag:greeter:8080"], "deny": ["${user}@:8080"] },
  ],
}
`
}

/** adminInit picks the admin socket (on the controller host) or the remote API with a key. */
function adminInit (): AdminClientInit {
  const stateDir = values['state-dir'] ?? process.env.WARREN_STATE_DIR
  if (stateDir !== undefined && stateDir !== '') return { stateDir }
  const controller = values.controller ?? process.env.WARREN_CONTROLLER
  if (controller === undefined || controller === '') {
    console.error('setup-mesh: say where the controller is: --state-dir DIR on the controller host, or --controller URL with $WARREN_API_KEY set')
    process.exit(2)
  }
  // createAdminClient explains a missing or malformed key itself.
  return { controller, ...(process.env.WARREN_API_KEY !== undefined ? { apiKey: process.env.WARREN_API_KEY } : {}) }
}

const user = values.user
const tags = values.tags.split(',').map(t => t.trim()).filter(t => t !== '')

try {
  const admin = createAdminClient(adminInit())
  try {
    // 1. The user, unless it exists already.
    const users = await admin.users.list()
    if (users.some(u => u.name === user)) {
      console.error(`user ${user} exists`)
    } else {
      await admin.users.create({ name: user, ...(values.email !== undefined ? { email: values.email } : {}) })
      console.error(`created user ${user}`)
    }

    // 2. The policy. The controller parses it and runs its "tests"; when any fails, set()
    //    throws (policy_tests_failed) with every problem as line:column, and the policy in
    //    force stays. check() would run the same checks without changing anything.
    const policy = createPolicyAdmin(admin)
    const text = values.policy !== undefined ? await readFile(values.policy, 'utf8') : greeterPolicy(user)
    const current = await policy.get()
    if (current.text === text) {
      console.error(`policy unchanged (version ${current.version})`)
    } else {
      const set = await policy.set(text, 'greeter example: setup-mesh')
      console.error(`policy is now version ${set.version}`)
      for (const w of set.warnings) console.error(`  warning: ${w}`)
    }

    // 3. An auth key for the nodes: reusable (many nodes), preapproved (no approval step),
    //    tagged when --tags is given (a tagged node belongs to its tags, not to the user).
    const created = await admin.authKeys.create({ user, reusable: true, preapproved: true, ...(tags.length > 0 ? { tags } : {}) })
    console.error(`created auth key ${created.authKey.id} for ${tags.length > 0 ? tags.join(', ') : `${user}'s nodes`} (shown once)`)
    console.log(created.key)
  } finally {
    admin.close()
  }
} catch (e) {
  // Every admin failure is a WarrenError: `code` is stable, `message` says what to fix.
  if (!isWarrenError(e)) throw e
  console.error(`setup-mesh: ${e.code}: ${e.message}`)
  process.exitCode = 1
}
