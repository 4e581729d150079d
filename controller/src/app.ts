import Fastify, { type FastifyInstance, type FastifyRequest, type FastifyError, type FastifyServerOptions, type FastifyBaseLogger } from 'fastify'
import rateLimit from '@fastify/rate-limit'
import { Type } from '@sinclair/typebox'
import type { Logger } from 'pino'
import {
  WarrenError, isWarrenError, PROTOCOL_VERSION, Obj, Id, UserName,
  ErrorBody, ControllerInfo, RegisterRequest, RegisterResponse,
  CreateUserRequest, UserResponse, UserList, CreateAuthKeyRequest, CreateAuthKeyResponse, AuthKeyResponse,
  AuthKeyList, CreateApiKeyRequest, CreateApiKeyResponse, ApiKeyResponse, ApiKeyList, NodeResponse, NodeList,
  RenameNodeRequest, SetTagsRequest, AuditList,
  type CreateAuthKeyRequest as CreateAuthKeyBody, type CreateApiKeyRequest as CreateApiKeyBody,
  type CreateUserRequest as CreateUserBody, type RegisterRequest as RegisterBody
} from '@warren/protocol'
import type { ControllerState } from './state.js'
import type { ControllerMetrics } from './metrics.js'

/**
 * ControllerPluginContext is what extension modules (for example the policy routes in
 * controller/src/policy/) get when they add admin routes.
 */
export interface ControllerPluginContext {
  state: ControllerState
  /** actor names who made an admin request: `local-admin` or `apikey:<id>`, for audit entries */
  actor: (request: FastifyRequest) => string
  /** true on the local Unix-socket admin server */
  local: boolean
  metrics?: ControllerMetrics
}

/**
 * ControllerPlugin adds routes to the admin scope: they run after admin authentication
 * (API key over TCP, none on the local socket), share the JSON error format, and must
 * declare body and response schemas (`errorResponses` gives the error part).
 */
export type ControllerPlugin = (app: FastifyInstance, ctx: ControllerPluginContext) => Promise<void> | void

export interface RateLimitOptions {
  /** registrations per client address per window (default 60) */
  registerMax?: number
  /** failed admin authentications per client address per window (default 20) */
  authFailureMax?: number
  /** window length in ms (default 60 s) */
  windowMs?: number
}

export interface BuildAppOptions {
  state: ControllerState
  /**
   * `public`: the TCP (TLS) server: machine routes, /metrics, and admin routes that need an
   * API key. `local`: the Unix-socket server: admin routes only, as `local-admin`.
   */
  mode: 'public' | 'local'
  https?: { key: string, cert: string }
  logger?: Logger | false
  /** false turns rate limiting off (benchmarks) */
  rateLimit?: RateLimitOptions | false
  plugins?: ControllerPlugin[]
  metrics?: ControllerMetrics
}

export const BODY_LIMIT = 1024 * 1024
const LOCAL_ADMIN = 'local-admin'

/** errorResponses is the response schema part every route shares for its error answers. */
export const errorResponses = { '4xx': ErrorBody, '5xx': ErrorBody } as const

declare module 'fastify' {
  interface FastifyRequest { warrenActor: string }
}

/** buildApp makes the controller's fastify app (not listening yet). */
export async function buildApp (opts: BuildAppOptions): Promise<FastifyInstance> {
  const { state, metrics } = opts
  const local = opts.mode === 'local'
  const serverOpts: FastifyServerOptions & { https?: { key: string, cert: string } } = {
    bodyLimit: BODY_LIMIT,
    forceCloseConnections: true,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: false, allErrors: false, verbose: true } },
    schemaErrorFormatter: formatValidationError
  }
  if (opts.https !== undefined) serverOpts.https = opts.https
  const app: FastifyInstance = opts.logger === undefined || opts.logger === false
    ? Fastify({ ...serverOpts, logger: false })
    : Fastify({ ...serverOpts, loggerInstance: opts.logger as unknown as FastifyBaseLogger })

  app.decorateRequest('warrenActor', '')

  // Our own JSON parser, so that bad JSON gets our error code and an empty body is "no body".
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit: BODY_LIMIT }, (_req, body, done) => {
    const text = body as string
    if (text.trim() === '') { done(null, undefined); return }
    try {
      done(null, JSON.parse(text))
    } catch (e) {
      done(new WarrenError('invalid_json', `request body is not valid JSON: ${(e as Error).message}`), undefined)
    }
  })
  // Routes that take no input still declare an (empty) body schema; a missing body is `{}`.
  app.addHook('preValidation', async (req) => {
    if (req.body === undefined && req.routeOptions.schema?.body !== undefined) req.body = {}
  })

  app.setErrorHandler((err: FastifyError | WarrenError, req, reply) => {
    const { status, body } = errorAnswer(err)
    if (status >= 500) req.log.error({ err }, 'request failed')
    metrics?.httpErrors.inc({ code: body.error.code })
    void reply.code(status).send(body)
  })
  app.setNotFoundHandler((req, reply) => {
    metrics?.httpErrors.inc({ code: 'not_found' })
    void reply.code(404).send({ error: { code: 'not_found', message: `no route ${req.method} ${req.url.split('?')[0]}; see the README for the API` } })
  })

  const limits = opts.rateLimit === false ? undefined : { registerMax: 60, authFailureMax: 20, windowMs: 60_000, ...opts.rateLimit }
  if (limits !== undefined && !local) {
    await app.register(rateLimit, {
      global: false,
      max: limits.authFailureMax,
      timeWindow: limits.windowMs,
      errorResponseBuilder: (_req, ctx) => new WarrenError('rate_limited', `too many requests from this address; retry in ${Math.ceil(ctx.ttl / 1000)} s`, { status: 429 })
    })
  }

  if (!local) {
    machineRoutes(app, state, metrics, limits)
    if (metrics !== undefined) {
      app.get('/metrics', async (_req, reply) => {
        void reply.header('content-type', metrics.registry.contentType)
        return await metrics.registry.metrics()
      })
    }
  }

  await app.register(async (admin) => {
    const authFailures = limits !== undefined && !local ? admin.createRateLimit({ max: limits.authFailureMax, timeWindow: limits.windowMs }) : undefined
    admin.addHook('onRequest', async (req) => {
      if (local) { req.warrenActor = LOCAL_ADMIN; return }
      if (authFailures !== undefined) {
        const seen = await authFailures(req, { increment: false })
        if (!seen.isAllowed && seen.remaining === 0) throw new WarrenError('rate_limited', `too many failed authentications from this address; retry in ${seen.ttlInSeconds} s`, { status: 429 })
      }
      try {
        req.warrenActor = `apikey:${state.authenticateApiKey(bearer(req)).id}`
      } catch (e) {
        if (authFailures !== undefined) await authFailures(req)
        throw e
      }
    })
    const ctx: ControllerPluginContext = { state, actor: req => req.warrenActor, local, ...(metrics !== undefined ? { metrics } : {}) }
    adminRoutes(admin, ctx)
    for (const plugin of opts.plugins ?? []) await plugin(admin, ctx)
  })

  return app
}

function bearer (req: FastifyRequest): string {
  const h = req.headers.authorization
  if (h === undefined || h === '') {
    throw new WarrenError('unauthenticated', 'the admin API needs an API key: send "Authorization: Bearer wrnapi-..." (or use --state-dir on the controller host)', { status: 401 })
  }
  const m = /^Bearer\s+(\S+)$/i.exec(h)
  if (m === null) throw new WarrenError('invalid_api_key', 'the Authorization header must be "Bearer wrnapi-..."', { status: 401 })
  return m[1]!
}

function machineRoutes (app: FastifyInstance, state: ControllerState, metrics: ControllerMetrics | undefined, limits: Required<RateLimitOptions> | undefined): void {
  app.get('/v1/machine/key', { schema: { response: { 200: ControllerInfo, ...errorResponses } } }, async () => {
    return { version: PROTOCOL_VERSION, controllerKey: state.controllerKey.publicKey, domain: state.domain }
  })
  app.post('/v1/machine/register', {
    schema: { body: RegisterRequest, response: { 200: RegisterResponse, ...errorResponses } },
    ...(limits !== undefined ? { config: { rateLimit: { max: limits.registerMax, timeWindow: limits.windowMs } } } : {})
  }, async (req) => {
    try {
      const node = await state.register(req.body as RegisterBody)
      metrics?.registrations.inc({ result: 'ok' })
      return { node }
    } catch (e) {
      metrics?.registrations.inc({ result: isWarrenError(e) ? e.code : 'internal' })
      throw e
    }
  })
}

const NodeParams = Obj({ node: Id })
const IdParams = Obj({ id: Id })
const UserParams = Obj({ name: UserName })
const NoBody = Obj({})
const AuditQuery = Obj({
  limit: Type.Optional(Type.String({ pattern: '^[0-9]{1,4}$', description: 'a number of entries, 1-1000' })),
  after: Type.Optional(Type.String({ pattern: '^[0-9]{1,15}$', description: 'a sequence number' }))
})

function adminRoutes (app: FastifyInstance, ctx: ControllerPluginContext): void {
  const { state, actor } = ctx
  const ok = <T>(schema: T) => ({ 200: schema, ...errorResponses })
  const created = <T>(schema: T) => ({ 201: schema, ...errorResponses })

  app.get('/v1/users', { schema: { response: ok(UserList) } }, async () => ({ users: state.listUsers().sort(byField('name')) }))
  app.post('/v1/users', { schema: { body: CreateUserRequest, response: created(UserResponse) } }, async (req, reply) => {
    void reply.code(201)
    return { user: await state.createUser(req.body as CreateUserBody, actor(req)) }
  })
  app.delete('/v1/users/:name', { schema: { params: UserParams, response: ok(UserResponse) } }, async (req) => {
    return { user: await state.deleteUser((req.params as { name: string }).name, actor(req)) }
  })

  app.get('/v1/authkeys', { schema: { response: ok(AuthKeyList) } }, async () => ({ authKeys: state.listAuthKeys().sort(byField('created')) }))
  app.post('/v1/authkeys', { schema: { body: CreateAuthKeyRequest, response: created(CreateAuthKeyResponse) } }, async (req, reply) => {
    void reply.code(201)
    return await state.createAuthKey(req.body as CreateAuthKeyBody, actor(req))
  })
  app.post('/v1/authkeys/:id/expire', { schema: { params: IdParams, body: NoBody, response: ok(AuthKeyResponse) } }, async (req) => {
    return { authKey: await state.expireAuthKey((req.params as { id: string }).id, actor(req)) }
  })

  app.get('/v1/apikeys', { schema: { response: ok(ApiKeyList) } }, async () => ({ apiKeys: state.listApiKeys().sort(byField('created')) }))
  app.post('/v1/apikeys', { schema: { body: CreateApiKeyRequest, response: created(CreateApiKeyResponse) } }, async (req, reply) => {
    void reply.code(201)
    return await state.createApiKey(req.body as CreateApiKeyBody, actor(req))
  })
  app.post('/v1/apikeys/:id/expire', { schema: { params: IdParams, body: NoBody, response: ok(ApiKeyResponse) } }, async (req) => {
    return { apiKey: await state.expireApiKey((req.params as { id: string }).id, actor(req)) }
  })

  const nodeOf = (req: FastifyRequest): string => (req.params as { node: string }).node
  const requireNode = (idOrName: string) => {
    const node = state.getNode(idOrName)
    if (node === undefined) throw new WarrenError('node_not_found', `no node with id or name '${idOrName}'; 'warren admin nodes list' shows them`, { status: 404 })
    return node
  }
  app.get('/v1/nodes', { schema: { response: ok(NodeList) } }, async () => ({ nodes: state.listNodes().sort(byField('name')) }))
  app.get('/v1/nodes/:node', { schema: { params: NodeParams, response: ok(NodeResponse) } }, async (req) => ({ node: requireNode(nodeOf(req)) }))
  app.post('/v1/nodes/:node/approve', { schema: { params: NodeParams, body: NoBody, response: ok(NodeResponse) } }, async (req) => {
    return { node: await state.approveNode(nodeOf(req), actor(req)) }
  })
  app.post('/v1/nodes/:node/rename', { schema: { params: NodeParams, body: RenameNodeRequest, response: ok(NodeResponse) } }, async (req) => {
    return { node: await state.renameNode(nodeOf(req), (req.body as { name: string }).name, actor(req)) }
  })
  app.post('/v1/nodes/:node/expire', { schema: { params: NodeParams, body: NoBody, response: ok(NodeResponse) } }, async (req) => {
    return { node: await state.expireNode(nodeOf(req), actor(req)) }
  })
  app.post('/v1/nodes/:node/tags', { schema: { params: NodeParams, body: SetTagsRequest, response: ok(NodeResponse) } }, async (req) => {
    return { node: await state.setTags(nodeOf(req), (req.body as { tags: string[] }).tags, actor(req)) }
  })
  app.delete('/v1/nodes/:node', { schema: { params: NodeParams, response: ok(NodeResponse) } }, async (req) => {
    return { node: await state.deleteNode(nodeOf(req), actor(req)) }
  })

  app.get('/v1/audit', { schema: { querystring: AuditQuery, response: ok(AuditList) } }, async (req) => {
    const q = req.query as { limit?: string, after?: string }
    const limit = q.limit === undefined ? 100 : Number(q.limit)
    if (limit < 1 || limit > 1000) throw new WarrenError('invalid_input', 'querystring/limit must be between 1 and 1000', { field: 'querystring/limit' })
    return { entries: state.listAudit({ limit, ...(q.after !== undefined ? { after: Number(q.after) } : {}) }) }
  })
}

/** byField sorts lists by one string field, so listings read the same across restarts. */
function byField<K extends string> (key: K): (a: Record<K, string>, b: Record<K, string>) => number {
  return (a, b) => a[key] < b[key] ? -1 : a[key] > b[key] ? 1 : 0
}

interface AjvError { keyword: string, instancePath: string, message?: string, params: Record<string, unknown>, parentSchema?: { description?: string } }

/**
 * formatValidationError turns ajv's first error into one sentence that names the field,
 * for example `body/reusable must be boolean` or `body/color is not a known field`.
 */
function formatValidationError (errors: AjvError[], dataVar: string): Error {
  const e = errors[0]
  if (e === undefined) return new WarrenError('invalid_input', `${dataVar} is not valid`)
  let field = `${dataVar}${e.instancePath}`
  let message: string
  if (e.keyword === 'additionalProperties') {
    field = `${field}/${String(e.params.additionalProperty)}`
    message = `${field} is not a known field; remove it`
  } else if (e.keyword === 'required') {
    field = `${field}/${String(e.params.missingProperty)}`
    message = `${field} is required but missing`
  } else if (e.keyword === 'pattern' && e.parentSchema?.description !== undefined) {
    message = `${field} has the wrong form: expected ${e.parentSchema.description}`
  } else if (e.keyword === 'type' && e.instancePath === '' && dataVar === 'body') {
    message = 'body must be a JSON object'
  } else {
    message = `${field} ${e.message ?? 'is not valid'}`
  }
  return new WarrenError('invalid_input', message, { field })
}

/** errorAnswer maps any error to the status and JSON body the API sends. */
function errorAnswer (err: FastifyError | WarrenError): { status: number, body: ErrorBody } {
  if (isWarrenError(err)) {
    const error: ErrorBody['error'] = { code: err.code, message: err.message }
    if (err.field !== undefined) error.field = err.field
    return { status: err.status, body: { error } }
  }
  const code = (err as FastifyError).code
  const known: Record<string, [number, string, string]> = {
    FST_ERR_CTP_BODY_TOO_LARGE: [413, 'body_too_large', `request body is larger than the ${BODY_LIMIT / 1024} KiB limit`],
    FST_ERR_CTP_INVALID_MEDIA_TYPE: [415, 'unsupported_media_type', 'send the body as JSON with "Content-Type: application/json"'],
    FST_ERR_CTP_INVALID_CONTENT_LENGTH: [400, 'invalid_content_length', 'the Content-Length header does not match the body'],
    FST_ERR_CTP_EMPTY_JSON_BODY: [400, 'invalid_json', 'request body is empty but Content-Type says JSON']
  }
  const hit = code === undefined ? undefined : known[code]
  if (hit !== undefined) return { status: hit[0], body: { error: { code: hit[1], message: hit[2] } } }
  const status = (err as FastifyError).statusCode ?? 500
  if (status >= 400 && status < 500) return { status, body: { error: { code: 'bad_request', message: err.message } } }
  return { status: 500, body: { error: { code: 'internal', message: 'the controller failed to handle this request; see its log' } } }
}
