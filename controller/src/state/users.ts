import { randomBytes } from 'node:crypto'
import { WarrenError, type User, type CreateUserRequest } from '@warren/protocol'
import type { StoreOp, UserRecord } from '../store.js'
import type { CommitCore } from './commit-core.js'

/** UserMethods manage the people who own nodes and auth keys, known by name. */
export interface UserMethods {
  listUsers: () => User[]
  getUser: (name: string) => User | undefined
  createUser: (req: CreateUserRequest, actor: string) => Promise<User>
  /** deleteUser refuses while the user owns nodes, and revokes the user's auth keys */
  deleteUser: (name: string, actor: string) => Promise<User>
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
      const rec: UserRecord = { id: randomBytes(6).toString('hex'), name: req.name, created: core.iso() }
      if (req.email !== undefined) rec.email = req.email
      const durable = store.commit([{ type: 'put', table: 'user', value: rec }, auditOp(actor, 'user.create', rec.name, req.email !== undefined ? { email: req.email } : undefined)])
      idByName.set(rec.name, rec.id)
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

function userView (u: UserRecord): User {
  return u.email === undefined ? { id: u.id, name: u.name, created: u.created } : { id: u.id, name: u.name, email: u.email, created: u.created }
}
