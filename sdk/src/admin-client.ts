import { join } from 'node:path'
import {
  WarrenError, parseCredential, isTag, checkNodeName, checkRoutes, UserName, Email, USER_ROLES, isUserRole, isCustomAttr,
  type User, type Node, type AuthKeyInfo, type ApiKeyInfo, type AuditEntry,
  type CreateUserRequest, type CreateAuthKeyRequest, type CreateAuthKeyResponse,
  type CreateApiKeyRequest, type CreateApiKeyResponse,
  type UserResponse, type UserList, type NodeResponse, type NodeList, type AuthKeyResponse, type AuthKeyList,
  type ApiKeyResponse, type ApiKeyList, type AuditList, type NodeRoutes, type NodeRoutesResponse,
  type IdpRecheckResult, type IdpRecheckResponse, type UserRole, type PostureValue, type PostureAttrsResponse
} from '@warren/protocol'
import { createControllerTransport, createUnixTransport, errorFromResponse, type JsonTransport } from './transport/index.js'

/**
 * AdminClientInit says how to reach the controller's admin API: either `stateDir` (the
 * root-only Unix socket on the controller host, no key needed) or `controller` plus
 * `apiKey` over HTTPS. The certificate pin comes from `fingerprint` or else from the pin
 * embedded in the API key.
 */
export interface AdminClientInit {
  controller?: string
  apiKey?: string
  fingerprint?: string
  stateDir?: string
  timeoutMs?: number
}

/** AdminClient has one typed method per admin route; every failure is a WarrenError with the server's code. */
export interface AdminClient {
  /** where is the controller URL or the admin socket path, for messages */
  readonly where: string
  /** controllerUrl is the controller's https:// URL when talking to it remotely */
  readonly controllerUrl?: string
  users: {
    create(req: CreateUserRequest): Promise<User>
    list(): Promise<User[]>
    delete(name: string): Promise<void>
    /** setRole gives a user a role; autogroup:<role> in the policy follows it */
    setRole(name: string, role: UserRole): Promise<User>
    /** recheck asks the identity provider about one user (or all) now: continuous verification on demand */
    recheck(user?: string): Promise<IdpRecheckResult[]>
  }
  authKeys: {
    create(req: CreateAuthKeyRequest): Promise<CreateAuthKeyResponse>
    list(): Promise<AuthKeyInfo[]>
    expire(id: string): Promise<AuthKeyInfo>
  }
  nodes: {
    list(): Promise<Node[]>
    /** get takes a node id or name, as do the other node methods */
    get(node: string): Promise<Node>
    approve(node: string): Promise<Node>
    rename(node: string, name: string): Promise<Node>
    expire(node: string): Promise<Node>
    delete(node: string): Promise<void>
    setTags(node: string, tags: string[]): Promise<Node>
    /** routes lists the subnet routes a node advertises, those approved, and those it serves (both) */
    routes(node: string): Promise<NodeRoutes>
    /**
     * approveRoutes sets the routes approved for a node to exactly `routes` (an empty list
     * approves none); each is checked first (a CIDR without host bits, not the mesh's own range)
     */
    approveRoutes(node: string, routes: string[]): Promise<NodeRoutes>
    /** attrs lists a node's posture attributes: the node: ones it reports and the custom: ones admins set */
    attrs(node: string): Promise<PostureAttrsResponse>
    /** setAttrs sets and removes custom attributes (keys custom:NAME) in one change */
    setAttrs(node: string, change: { set?: Record<string, PostureValue>, unset?: string[] }): Promise<Node>
  }
  apiKeys: {
    create(req: CreateApiKeyRequest): Promise<CreateApiKeyResponse>
    list(): Promise<ApiKeyInfo[]>
    expire(id: string): Promise<ApiKeyInfo>
  }
  audit: {
    list(opts?: { limit?: number }): Promise<AuditEntry[]>
  }
  /** request calls any admin route (path under /v1) and returns the parsed body, or throws the server's error */
  request<T = unknown>(method: string, path: string, body?: unknown): Promise<T>
  close(): void
}

/** ADMIN_SOCKET_NAME is the admin socket's file name inside the controller's state dir. */
export const ADMIN_SOCKET_NAME = 'admin.sock'

function openTransport (init: AdminClientInit): { transport: JsonTransport, headers: Record<string, string>, where: string, controllerUrl?: string } {
  if (init.stateDir !== undefined && init.stateDir !== '') {
    const socketPath = join(init.stateDir, ADMIN_SOCKET_NAME)
    const where = `the controller's admin socket ${socketPath}`
    return { transport: createUnixTransport(socketPath, { describe: where, ...(init.timeoutMs !== undefined ? { timeoutMs: init.timeoutMs } : {}) }), headers: {}, where }
  }
  if (init.controller === undefined || init.controller === '') {
    throw new WarrenError('usage', 'no controller given: pass stateDir (on the controller host) or controller and apiKey')
  }
  if (init.apiKey === undefined || init.apiKey === '') {
    throw new WarrenError('usage', `no API key for ${init.controller}: remote admin needs one; make it on the controller host with 'warren admin --state-dir DIR apikeys create'`)
  }
  const cred = parseCredential(init.apiKey, 'api')
  const fingerprint = init.fingerprint !== undefined && init.fingerprint !== '' ? init.fingerprint : cred.fingerprint
  const transport = createControllerTransport({
    url: init.controller,
    ...(fingerprint !== undefined ? { fingerprint } : {}),
    ...(init.timeoutMs !== undefined ? { timeoutMs: init.timeoutMs } : {})
  })
  return { transport, headers: { authorization: `Bearer ${init.apiKey.trim()}` }, where: `controller at ${transport.url}`, controllerUrl: transport.url }
}

/** createAdminClient opens a client for the controller's admin API (see AdminClientInit). */
export function createAdminClient (init: AdminClientInit): AdminClient {
  const { transport, headers, where, controllerUrl } = openTransport(init)
  const enc = encodeURIComponent

  async function request<T> (method: string, path: string, body?: unknown): Promise<T> {
    const res = await transport.request<unknown>(method, `/v1${path}`, body, headers)
    if (res.status < 200 || res.status > 299) throw errorFromResponse(res, `${method} ${path} on ${where}`)
    return res.body as T
  }

  /** checkUser refuses a malformed user before it is sent, with a message that says what fits. */
  function checkUser (req: CreateUserRequest): void {
    if (!new RegExp(UserName.pattern!).test(req.name)) {
      throw new WarrenError('bad_name', `user name '${req.name}' is not valid: use up to 64 lowercase letters, digits, '.', '_' and '-', starting and ending with a letter or digit (for example alice)`, { field: 'name' })
    }
    if (req.email !== undefined && (req.email.length > 254 || !new RegExp(Email.pattern!).test(req.email))) {
      throw new WarrenError('bad_email', `'${req.email}' is not an email address such as alice@example.com`, { field: 'email' })
    }
    if (req.role !== undefined) checkRole(req.role)
  }

  function checkRole (role: string): void {
    if (!isUserRole(role)) throw new WarrenError('bad_role', `'${role}' is not a role: use one of ${USER_ROLES.join(', ')}`, { field: 'role' })
  }

  function checkAttrKeys (keys: string[]): void {
    for (const k of keys) {
      if (!isCustomAttr(k)) throw new WarrenError('bad_attr', `'${k}' cannot be set: admins set custom:NAME attributes (letters, digits, _; for example custom:managed)`, { field: 'attrs' })
    }
  }

  function checkTags (tags: string[] | undefined): void {
    for (const t of tags ?? []) {
      if (!isTag(t)) throw new WarrenError('bad_tag', `'${t}' is not a tag: tags look like tag:name (letters, digits, inner hyphens), for example tag:server`, { field: 'tags' })
    }
  }

  return {
    where,
    ...(controllerUrl !== undefined ? { controllerUrl } : {}),
    users: {
      create: async req => { checkUser(req); return (await request<UserResponse>('POST', '/users', req)).user },
      list: async () => (await request<UserList>('GET', '/users')).users,
      delete: async name => { await request('DELETE', `/users/${enc(name)}`) },
      setRole: async (name, role) => { checkRole(role); return (await request<UserResponse>('POST', `/users/${enc(name)}/role`, { role })).user },
      recheck: async user => (await request<IdpRecheckResponse>('POST', '/users/recheck', user !== undefined ? { user } : {})).results
    },
    authKeys: {
      create: async req => { checkTags(req.tags); return await request<CreateAuthKeyResponse>('POST', '/authkeys', req) },
      list: async () => (await request<AuthKeyList>('GET', '/authkeys')).authKeys,
      expire: async id => (await request<AuthKeyResponse>('POST', `/authkeys/${enc(id)}/expire`, {})).authKey
    },
    nodes: {
      list: async () => (await request<NodeList>('GET', '/nodes')).nodes,
      get: async node => (await request<NodeResponse>('GET', `/nodes/${enc(node)}`)).node,
      approve: async node => (await request<NodeResponse>('POST', `/nodes/${enc(node)}/approve`, {})).node,
      rename: async (node, name) => { checkNodeName(name); return (await request<NodeResponse>('POST', `/nodes/${enc(node)}/rename`, { name })).node },
      expire: async node => (await request<NodeResponse>('POST', `/nodes/${enc(node)}/expire`, {})).node,
      delete: async node => { await request('DELETE', `/nodes/${enc(node)}`) },
      setTags: async (node, tags) => { checkTags(tags); return (await request<NodeResponse>('POST', `/nodes/${enc(node)}/tags`, { tags })).node },
      routes: async node => (await request<NodeRoutesResponse>('GET', `/nodes/${enc(node)}/routes`)).routes,
      approveRoutes: async (node, routes) => (await request<NodeRoutesResponse>('POST', `/nodes/${enc(node)}/routes`, { routes: checkRoutes(routes) })).routes,
      attrs: async node => await request<PostureAttrsResponse>('GET', `/nodes/${enc(node)}/attrs`),
      setAttrs: async (node, change) => {
        checkAttrKeys([...Object.keys(change.set ?? {}), ...(change.unset ?? [])])
        return (await request<NodeResponse>('POST', `/nodes/${enc(node)}/attrs`, change)).node
      }
    },
    apiKeys: {
      create: async req => await request<CreateApiKeyResponse>('POST', '/apikeys', req),
      list: async () => (await request<ApiKeyList>('GET', '/apikeys')).apiKeys,
      expire: async id => (await request<ApiKeyResponse>('POST', `/apikeys/${enc(id)}/expire`, {})).apiKey
    },
    audit: {
      list: async (opts = {}) => (await request<AuditList>('GET', `/audit${opts.limit !== undefined ? `?limit=${opts.limit}` : ''}`)).entries
    },
    request,
    close: () => { transport.close() }
  }
}
