import Fastify, { type FastifyInstance, type FastifyRequest, type FastifyReply, type FastifyError, type FastifyServerOptions, type FastifyBaseLogger } from 'fastify'
import rateLimit from '@fastify/rate-limit'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { Logger } from 'pino'
import { WarrenError } from '@warren/protocol'
import type { ControllerState } from './state.js'
import type { ControllerMetrics } from './metrics.js'
import type { ControllerPlugin, ControllerPluginContext, MachinePlugin } from './routes/controller-plugin.js'
import { BODY_LIMIT, errorAnswer, formatValidationError, createClientErrorHandler, answerBeforeRouting } from './routes/error-answer.js'
import { parseJsonBody } from './routes/json-body.js'
import { machineRoutes } from './routes/machine.js'
import { userRoutes } from './routes/users.js'
import { authKeyRoutes } from './routes/keys.js'
import { apiKeyRoutes } from './routes/apikeys.js'
import { nodeRoutes } from './routes/nodes.js'
import { nodeAttrRoutes } from './routes/node-attrs.js'
import { auditRoutes } from './routes/audit.js'

export { errorResponses, type ControllerApp, type ControllerPlugin, type ControllerPluginContext, type MachinePlugin } from './routes/controller-plugin.js'
export { BODY_LIMIT } from './routes/error-answer.js'
export { MAX_JSON_DEPTH } from './routes/json-body.js'

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
   * `public`: the TCP (TLS) server: machine routes, and admin routes that need an API
   * key. `local`: the Unix-socket server: admin routes only, as `local-admin`.
   */
  mode: 'public' | 'local'
  https?: { key: string, cert: string }
  logger?: Logger | false
  /** false turns rate limiting off (benchmarks) */
  rateLimit?: RateLimitOptions | false
  plugins?: ControllerPlugin[]
  /** machinePlugins add public routes that need no API key (the login routes), on the public server only */
  machinePlugins?: MachinePlugin[]
  metrics?: ControllerMetrics
  /** primaryRoutes lists the routes a node is the primary router for (from the map service) */
  primaryRoutes?: (nodeId: string) => string[]
}

const LOCAL_ADMIN = 'local-admin'

/** The admin route groups every admin server has, before the plugins given to buildApp. */
const ADMIN_ROUTES: readonly ControllerPlugin[] = [userRoutes, authKeyRoutes, apiKeyRoutes, nodeRoutes, nodeAttrRoutes, auditRoutes]

declare module 'fastify' {
  interface FastifyRequest { warrenActor: string }
}

/** buildApp makes the controller's fastify app (not listening yet). */
export async function buildApp (opts: BuildAppOptions): Promise<FastifyInstance> {
  const { state, metrics } = opts
  const local = opts.mode === 'local'
  const app = createControllerFastify({ logger: opts.logger, https: opts.https, metrics })
  app.decorateRequest('warrenActor', '')

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
    const registerLimit = limits === undefined ? undefined : { max: limits.registerMax, windowMs: limits.windowMs }
    await app.register(async scope => {
      const typed = scope.withTypeProvider<TypeBoxTypeProvider>()
      machineRoutes({ state, ...(metrics !== undefined ? { metrics } : {}), ...(registerLimit !== undefined ? { registerLimit } : {}) })(typed)
      for (const plugin of opts.machinePlugins ?? []) plugin(typed, registerLimit !== undefined ? { registerLimit } : {})
    })
  }

  await app.register(async admin => {
    const authFailures = limits !== undefined && !local ? admin.createRateLimit({ max: limits.authFailureMax, timeWindow: limits.windowMs }) : undefined
    admin.addHook('onRequest', async (req) => {
      if (local) { req.warrenActor = LOCAL_ADMIN; return }
      if (authFailures !== undefined) {
        const seen = await authFailures(req, { increment: false })
        if (!seen.isAllowed && seen.remaining === 0) throw new WarrenError('rate_limited', `too many failed authentications from this address; retry in ${seen.ttlInSeconds} s`, { status: 429 })
      }
      try {
        req.warrenActor = `apikey:${state.authenticateApiKey(bearer(req), 'admin').id}`
      } catch (e) {
        if (authFailures !== undefined) await authFailures(req)
        throw e
      }
    })
    const ctx: ControllerPluginContext = {
      state,
      actor: req => req.warrenActor,
      local,
      ...(metrics !== undefined ? { metrics } : {}),
      ...(opts.primaryRoutes !== undefined ? { primaryRoutes: opts.primaryRoutes } : {})
    }
    for (const plugin of [...ADMIN_ROUTES, ...opts.plugins ?? []]) {
      await admin.register(async scope => { await plugin(scope.withTypeProvider<TypeBoxTypeProvider>(), ctx) })
    }
  })

  return app
}

/**
 * buildMetricsApp serves GET /metrics (Prometheus text) and nothing else, for the
 * separate plain-HTTP metrics listener; errors have the API's JSON shape.
 */
export function buildMetricsApp (opts: { metrics: ControllerMetrics, logger?: Logger | false }): FastifyInstance {
  const { metrics } = opts
  const app = createControllerFastify({ logger: opts.logger, metrics })
  app.get('/metrics', async (_req, reply) => {
    void reply.header('content-type', metrics.registry.contentType)
    return await metrics.registry.metrics()
  })
  return app
}

/**
 * createControllerFastify is a fastify instance with what every controller server
 * shares: the JSON body parser, and one error shape `{error: {code, message}}` for route
 * errors, unknown routes, bad URLs and requests fastify never sees (node's clientError).
 */
function createControllerFastify (opts: { logger?: Logger | false | undefined, https?: { key: string, cert: string } | undefined, metrics?: ControllerMetrics | undefined }): FastifyInstance {
  const { metrics } = opts
  const countError = (code: string): void => { metrics?.httpErrors.inc({ code }) }
  const sendError = (err: FastifyError | WarrenError, req: FastifyRequest, reply: FastifyReply): void => {
    const { status, body } = errorAnswer(err)
    if (status >= 500) req.log.error({ err }, 'request failed')
    countError(body.error.code)
    void reply.code(status).send(body)
  }
  const serverOpts: FastifyServerOptions & { https?: { key: string, cert: string, requireHostHeader: boolean }, http?: { requireHostHeader: boolean } } = {
    bodyLimit: BODY_LIMIT,
    forceCloseConnections: true,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: false, allErrors: false, verbose: true } },
    schemaErrorFormatter: formatValidationError,
    // Bad URL encoding and over-long path segments, found before routing.
    frameworkErrors: (err, req, reply) => { sendError(err, req, reply as FastifyReply) },
    clientErrorHandler: createClientErrorHandler(countError)
  }
  // Node would answer a request without Host with an empty 400; the onRequest hook below answers it instead.
  if (opts.https !== undefined) serverOpts.https = { ...opts.https, requireHostHeader: false }
  else serverOpts.http = { requireHostHeader: false }
  const app: FastifyInstance = opts.logger === undefined || opts.logger === false
    ? Fastify({ ...serverOpts, logger: false })
    : Fastify({ ...serverOpts, loggerInstance: opts.logger as unknown as FastifyBaseLogger })
  const { missingHost } = answerBeforeRouting(app.server, countError)
  app.addHook('onRequest', async req => { missingHost(req) })

  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit: BODY_LIMIT }, (_req, body, done) => {
    try {
      done(null, parseJsonBody(body as string))
    } catch (e) {
      done(e as WarrenError, undefined)
    }
  })
  // Routes that take no input still declare an (empty) body schema; a missing body is `{}`.
  app.addHook('preValidation', async (req) => {
    if (req.body === undefined && req.routeOptions.schema?.body !== undefined) req.body = {}
  })
  app.setErrorHandler((err: FastifyError | WarrenError, req, reply) => { sendError(err, req, reply) })
  app.setNotFoundHandler((req, reply) => {
    countError('not_found')
    void reply.code(404).send({ error: { code: 'not_found', message: `no route ${req.method} ${req.url.split('?')[0]}; see the README for the API` } })
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
