import type { Server as HttpsServer } from 'node:https'
import type { FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import type { ControllerState } from './state.js'
import type { ControllerMetrics } from './metrics.js'

/**
 * ServerHook gets the controller's HTTPS server before it listens, to mount what is not
 * a fastify route (the map server's WebSocket upgrade at /v1/machine/map, the relay).
 * What it returns is closed when the controller closes. It lives apart from server.ts
 * so that hooks (map/) can name it without importing the server that mounts them.
 */
export type ServerHook = (server: HttpsServer, ctx: ServerHookContext) => void | Closable | Promise<void | Closable>
export interface ServerHookContext { state: ControllerState, metrics: ControllerMetrics, log: Logger, app: FastifyInstance }
export interface Closable { close: () => Promise<void> | void }
