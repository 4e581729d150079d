import t from 'tap'
import { join } from 'node:path'
import { startController } from '@warren/controller'
import type { PostureAttrsResponse, User } from '@warren/protocol'
import { runWarren, tempDir, joinNode, ok, failsWith, json, type CliResult } from './cli-harness.js'
import { parseAttrAssignment } from '../src/commands/admin-attrs.js'

/** Device posture attributes and user roles at the command line, against a controller started here. */
t.test('warren admin users role and nodes attrs', async t => {
  const dir = tempDir(t, 'warren-posture-cli-')
  const ctl = await startController({ stateDir: join(dir, 'state'), listen: '127.0.0.1:0', logger: false, rateLimit: false })
  t.teardown(async () => { await ctl.close() })
  const admin = async (...args: string[]): Promise<CliResult> => await runWarren(['admin', '--state-dir', join(dir, 'state'), ...args])
  t.match(ok(t, await admin('users', 'create', 'alice'), 'create alice'), /role owner/, 'the first user owns the controller')
  t.match(ok(t, await admin('users', 'create', 'bob', '--role', 'it-admin'), 'create bob'), /role it-admin/)
  failsWith(t, await admin('users', 'create', 'carl', '--role', 'boss'), /'boss' is not a role: use one of owner, admin, it-admin/, 'a bad role')
  t.match(ok(t, await admin('users', 'role', 'bob', 'auditor'), 'role'), /user bob is now auditor/)
  t.match(ok(t, await admin('users', 'list'), 'list'), /bob\s+-\s+auditor/, 'the list shows roles')
  failsWith(t, await admin('users', 'role', 'alice', 'member'), /only owner/, 'the last owner stays')
  t.same(json<User[]>(await admin('users', 'list', '--json')).map(u => u.role), ['owner', 'auditor'], 'refused commands changed nothing')

  await joinNode(ctl, json<{ key: string }>(await admin('keys', 'create', '--user', 'alice', '--preapproved', '--json')).key, 'laptop')
  t.match(ok(t, await admin('nodes', 'attrs', 'laptop'), 'attrs'), /laptop has no posture attributes yet/)
  t.match(ok(t, await admin('nodes', 'attrs', 'set', 'laptop', 'custom:managed=true', 'custom:score=70', 'custom:site=berlin'), 'set'),
    /custom:managed\s+true\n\s+custom:score\s+70\n\s+custom:site\s+"berlin"/)
  ok(t, await admin('nodes', 'attrs', 'set', '--string', 'laptop', 'custom:agent=1.40'), 'set --string')
  ok(t, await admin('nodes', 'attrs', 'unset', 'laptop', 'custom:site'), 'unset')
  failsWith(t, await admin('nodes', 'attrs', 'set', 'laptop', 'node:os=macos'), /admins set custom:NAME attributes/, 'node: attributes are the node\'s')
  failsWith(t, await admin('nodes', 'attrs', 'set', 'laptop', 'custom:x'), /not an assignment: write custom:key=value/, 'not an assignment')
  t.same(json<PostureAttrsResponse>(await admin('nodes', 'attrs', 'laptop', '--json')).attrs, { 'custom:agent': '1.40', 'custom:managed': true, 'custom:score': 70 })
})

t.test('attribute values: true/false and numbers are typed unless --string', async t => {
  t.same(parseAttrAssignment('custom:a=false', false), ['custom:a', false])
  t.same(parseAttrAssignment('custom:a=-2.5', false), ['custom:a', -2.5])
  t.same(parseAttrAssignment('custom:a=x=y', false), ['custom:a', 'x=y'], 'the first = splits')
  t.same(parseAttrAssignment('custom:a=1.40', true), ['custom:a', '1.40'])
})
