import type {
  FastifyInstance, FastifyRequest, FastifyBaseLogger, RawServerDefault, RawRequestDefaultExpression, RawReplyDefaultExpression
} from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { ErrorBody } from '@warren/protocol'
import type { ControllerState } from '../state.js'
import type { ControllerMetrics } from '../metrics.js'

/**
 * ControllerApp is the fastify instance route plugins get: request bodies, params and
 * querystrings are typed by the TypeBox schemas the routes declare.
 */
export type ControllerApp = FastifyInstance<RawServerDefault, RawRequestDefaultExpression, RawReplyDefaultExpression, FastifyBaseLogger, TypeBoxTypeProvider>

/**
 * ControllerPluginContext is what admin route plugins (the route groups in this folder,
 * and extensions given to startController) get when they add admin routes.
 */
export interface ControllerPluginContext {
  state: ControllerState
  /** actor names who made an admin request: `local-admin` or `apikey:<id>`, for audit entries */
  actor: (request: FastifyRequest) => string
  /** true on the local Unix-socket admin server */
  local: boolean
  metrics?: ControllerMetrics
  /** primaryRoutes lists the routes a node is the primary router for (none without a map service) */
  primaryRoutes?: (nodeId: string) => string[]
}

/**
 * ControllerPlugin adds routes to the admin scope: they run after admin authentication
 * (API key over TCP, none on the local socket), share the JSON error format, and must
 * declare body and response schemas (`errorResponses` gives the error part).
 */
export type ControllerPlugin = (app: ControllerApp, ctx: ControllerPluginContext) => Promise<void> | void

/**
 * MachinePlugin adds routes to the public scope, which needs no API key (the login
 * routes). `registerLimit` is the per-address limit for requests that start work.
 */
export type MachinePlugin = (app: ControllerApp, ctx: { registerLimit?: { max: number, windowMs: number } }) => void

/** errorResponses is the response schema part every route shares for its error answers. */
export const errorResponses = { '4xx': ErrorBody, '5xx': ErrorBody } as const

/** okResponse is a route's response schemas when it answers 200 with `schema`. */
export function okResponse<T> (schema: T): { 200: T } & typeof errorResponses {
  return { 200: schema, ...errorResponses }
}

/** createdResponse is a route's response schemas when it answers 201 with `schema`. */
export function createdResponse<T> (schema: T): { 201: T } & typeof errorResponses {
  return { 201: schema, ...errorResponses }
}

/** byField sorts lists by one string field, so listings read the same across restarts. */
export function byField<K extends string> (key: K): (a: Record<K, string>, b: Record<K, string>) => number {
  return (a, b) => a[key] < b[key] ? -1 : a[key] > b[key] ? 1 : 0
}
