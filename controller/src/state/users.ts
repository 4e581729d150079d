import { randomBytes } from 'node:crypto'
import { DEFAULT_ROLE, WarrenError, type User, type CreateUserRequest, type UserRole } from '@warren/protocol'
import type { StoreOp, UserRecord } from '../store.js'
import { uniqueName, userNameFor } from '../names.js'
import type { CommitCore } from './commit-core.js'

/** IdpIdentity is a person as the identity provider vouched for them at one login. */
export interface IdpIdentity {
  issuer: string
  subject: string
  /** a verified email, if the provider gave one */
  email?: string
  /** the person's display name */
  name?: string
  /** a user-name hint (preferred_username) for when there is no email */
  username?: string
  groups: string[]
}

/** IdpLogin is the user an identity-provider login resolved to, and how. */
export interface IdpLogin {
  user: User
  /** created: first login; linked: an admin-made user with that email got the identity; returning: known identity */
  outcome: 'created' | 'linked' | 'returning'
}

/** UserMethods manage the people who own nodes and auth keys, known by name. */
export interface UserMethods {
  listUsers: () => User[]
  getUser: (name: string) => User | undefined
  createUser: (req: CreateUserRequest, actor: string) => Promise<User>
  /**
   * setUserRole gives a user a role (autogroup:<role> in the policy follows it); the last
   * owner keeps the role until another user is made owner
   */
  setUserRole: (name: string, role: UserRole, actor: string) => Promise<User>
  /** deleteUser refuses while the user owns nodes, and revokes the user's auth keys */
  deleteUser: (name: string, actor: string) => Promise<User>
  /**
   * loginIdpUser finds the user of an identity-provider login by its stable subject, else
   * links the user holding its email, else creates one; it stores the email, name and
   * groups the provider gave and writes the `login.ok` audit entry, with `extra` ops
   * (the login's sealed refresh token) in the same batch.
   */
  loginIdpUser: (identity: IdpIdentity, extra?: StoreOp[]) => Promise<IdpLogin>
  /**
   * recheckIdpUser stores the groups the identity provider gave at a continuous check, with
   * `extra` ops (a rotated refresh token) in the same batch. It writes an `idp.recheck`
   * audit entry with `detail` when `detail` is given, and tells the policy when the groups changed.
   * `asOf` is the user's `lastLogin` when the check began: if a login came in since, its
   * answer (groups, refresh token) is newer than the check's, and nothing is written (false).
   */
  recheckIdpUser: (name: string, asOf: string, groups: readonly string[], extra: StoreOp[], detail?: Record<string, unknown>) => Promise<boolean>
}

/** Users are the user methods and the lookups other parts of the state need. */
export interface Users {
  methods: UserMethods
  /** userExists says whether a user of that name exists now */
  userExists: (name: string) => boolean
  /** requireUser finds a user's record or throws user_not_found (naming `field` when given) */
  requireUser: (name: string, field?: string) => UserRecord
}

export function createUsers (core: CommitCore): Users {
  const { store, locked, auditOp } = core
  const idByName = new Map([...store.users.values()].map(u => [u.name, u.id]))
  /** firstRole: the first user of a new controller owns it, as in Tailscale; later ones are members */
  const firstRole = (): UserRole => store.users.size === 0 ? 'owner' : DEFAULT_ROLE

  function requireUser (name: string, field?: string): UserRecord {
    const id = idByName.get(name)
    if (id === undefined) {
      throw new WarrenError('user_not_found', `user '${name}' does not exist; create it with 'warren admin users create ${name}'`, { status: 404, ...(field !== undefined ? { field } : {}) })
    }
    return store.users.get(id)!
  }

  const methods: UserMethods = {
    listUsers: () => [...store.users.values()].map(userView),
    getUser (name) {
      const id = idByName.get(name)
      return id === undefined ? undefined : userView(store.users.get(id)!)
    },
    createUser: locked((req: CreateUserRequest, actor: string) => {
      if (idByName.has(req.name)) {
        throw new WarrenError('user_exists', `user '${req.name}' already exists`, { status: 409, field: 'name' })
      }
      if (req.email !== undefined) {
        const email = req.email.toLowerCase()
        const holder = [...store.users.values()].find(u => u.email?.toLowerCase() === email)
        if (holder !== undefined) throw new WarrenError('email_taken', `user '${holder.name}' already has the email ${req.email}`, { status: 409, field: 'email' })
      }
      const rec: UserRecord = { id: randomBytes(6).toString('hex'), name: req.name, created: core.iso(), role: req.role ?? firstRole() }
      if (req.email !== undefined) rec.email = req.email
      const durable = store.commit([{ type: 'put', table: 'user', value: rec }, auditOp(actor, 'user.create', rec.name, { ...(req.email !== undefined ? { email: req.email } : {}), role: rec.role })])
      idByName.set(rec.name, rec.id)
      const user = userView(rec)
      return { durable, done: () => { core.emit('user-upserted', user); return user } }
    }),
    loginIdpUser: locked((id: IdpIdentity, extra: StoreOp[] = []) => {
      const known = [...store.users.values()].find(u => u.idp?.issuer === id.issuer && u.idp.subject === id.subject)
      const email = id.email?.toLowerCase()
      const holder = email === undefined ? undefined : [...store.users.values()].find(u => u.email?.toLowerCase() === email)
      if (holder !== undefined && holder !== known && holder.idp !== undefined) {
        throw new WarrenError('email_taken', `the email ${id.email ?? ''} already belongs to user '${holder.name}', who logs in with another identity at ${holder.idp.issuer}; an admin must delete or change one of them`, { status: 409 })
      }
      const base = known ?? holder
      const outcome: IdpLogin['outcome'] = known !== undefined ? 'returning' : holder !== undefined ? 'linked' : 'created'
      const rec: UserRecord = base !== undefined
        ? { ...base }
        : { id: randomBytes(6).toString('hex'), name: uniqueName(userNameFor(id.email?.split('@')[0] ?? id.username ?? id.subject), n => idByName.has(n), 64, 'user'), created: core.iso(), role: firstRole() }
      if (id.email !== undefined && holder === undefined) rec.email = id.email
      if (id.name !== undefined) rec.displayName = id.name
      rec.idp = { issuer: id.issuer, subject: id.subject, groups: [...id.groups].sort(), lastLogin: core.iso() }
      const durable = store.commit([{ type: 'put', table: 'user', value: rec }, ...extra, auditOp(`idp:${id.email ?? id.subject}`, 'login.ok', rec.name,
        { outcome, issuer: id.issuer, subject: id.subject, ...(id.email !== undefined ? { email: id.email } : {}), groups: rec.idp.groups })])
      idByName.set(rec.name, rec.id)
      const user = userView(rec)
      return { durable, done: () => { core.emit('user-upserted', user); return { user, outcome } } }
    }),
    recheckIdpUser: locked((name: string, asOf: string, groups: readonly string[], extra: StoreOp[], detail?: Record<string, unknown>) => {
      const u = requireUser(name)
      if (u.idp === undefined) throw new WarrenError('user_not_idp', `user '${name}' has never logged in at the identity provider, so there is nothing to check`, { status: 409 })
      if (u.idp.lastLogin !== asOf) return core.unchanged(false)
      const sorted = [...groups].sort()
      const changed = sorted.join('\n') !== u.idp.groups.join('\n')
      const rec: UserRecord = { ...u, idp: { ...u.idp, groups: sorted } }
      const audit = detail !== undefined ? [auditOp(`idp:${u.email ?? u.idp.subject}`, 'idp.recheck', name, detail)] : []
      const durable = store.commit([{ type: 'put', table: 'user', value: rec }, ...extra, ...audit])
      return {
        durable,
        done: () => {
          if (changed) core.emit('user-upserted', userView(rec))
          return true
        }
      }
    }),
    setUserRole: locked((name: string, role: UserRole, actor: string) => {
      const u = requireUser(name)
      const before = u.role ?? DEFAULT_ROLE
      if (before === role) return core.unchanged(userView(u))
      if (before === 'owner' && ![...store.users.values()].some(o => o !== u && o.role === 'owner')) {
        throw new WarrenError('last_owner', `user '${name}' is the only owner; make another user owner first ('warren admin users role NAME owner')`, { status: 409, field: 'role' })
      }
      const rec: UserRecord = { ...u, role }
      const durable = store.commit([{ type: 'put', table: 'user', value: rec }, auditOp(actor, 'user.role', name, { role, before })])
      const user = userView(rec)
      return { durable, done: () => { core.emit('user-upserted', user); return user } }
    }),
    deleteUser: locked((name: string, actor: string) => {
      const u = requireUser(name)
      const owned = [...store.nodes.values()].filter(n => n.user === name)
      if (owned.length > 0) {
        const list = owned.slice(0, 5).map(n => n.name).join(', ') + (owned.length > 5 ? ', ...' : '')
        throw new WarrenError('user_has_nodes', `user '${name}' still owns ${owned.length} node(s) (${list}); delete or re-tag them first ('warren admin nodes delete NODE')`, { status: 409 })
      }
      // The user's keys die with the user, so that no node can join as someone who is gone.
      const keyOps: StoreOp[] = [...store.authKeys.values()]
        .filter(k => k.user === name && !k.revoked)
        .map(k => ({ type: 'put', table: 'authkey', value: { ...k, revoked: true } }))
      const durable = store.commit([{ type: 'del', table: 'user', id: u.id }, ...keyOps, auditOp(actor, 'user.delete', name, keyOps.length > 0 ? { revokedAuthKeys: keyOps.length } : undefined)])
      idByName.delete(name)
      const user = userView(u)
      return { durable, done: () => { core.emit('user-removed', user); return user } }
    })
  }
  return { methods, userExists: name => idByName.has(name), requireUser }
}

/** userView is the API's view of a user; users stored before roles existed show as members. */
function userView (u: UserRecord): User {
  const role = u.role ?? DEFAULT_ROLE
  return u.email === undefined ? { id: u.id, name: u.name, created: u.created, role } : { id: u.id, name: u.name, email: u.email, created: u.created, role }
}
