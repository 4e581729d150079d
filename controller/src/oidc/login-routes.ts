import { Type } from '@sinclair/typebox'
import {
  WarrenError, isWarrenError, Obj, RegisterRequest, LoginStartResponse, LoginWaitRequest, LoginWaitResponse,
  LOGIN_START_PATH, LOGIN_WAIT_PATH, LOGIN_CALLBACK_PATH
} from '@warren/protocol'
import type { FastifyReply } from 'fastify'
import { okResponse, type MachinePlugin } from '../routes/controller-plugin.js'
import { LOGIN_PAGE_PATH, type LoginService } from './login-service.js'

/** WAIT_MS is how long one long-poll of a login waits before answering `pending`. */
export const LOGIN_WAIT_MS = 25_000


/**
 * loginRoutes are the public routes of the login with the identity provider: the node's
 * start and long-poll (JSON, authenticated by its signed registration and then by the
 * wait token), and the browser's login link and the provider's callback (HTML pages
 * that say what happened in words).
 */
export function loginRoutes (logins: LoginService, waitMs = LOGIN_WAIT_MS): MachinePlugin {
  return (app, { registerLimit: limit }) => {
    app.post(LOGIN_START_PATH, {
      schema: { body: RegisterRequest, response: okResponse(LoginStartResponse) },
      // Login starts are limited per address like registrations.
      ...(limit !== undefined ? { config: { rateLimit: { max: limit.max, timeWindow: limit.windowMs } } } : {})
    }, async req => await logins.start(req.body))
    app.post(LOGIN_WAIT_PATH, { schema: { body: LoginWaitRequest, response: okResponse(LoginWaitResponse) } }, async req => await logins.wait(req.body.waitToken, waitMs))
    app.get(`${LOGIN_PAGE_PATH}/:id`, { schema: { params: Obj({ id: Type.String({ maxLength: 100 }) }) } }, async (req, reply) => {
      try {
        return await reply.redirect(await logins.open(req.params.id), 302)
      } catch (e) {
        return page(reply, e)
      }
    })
    app.get(LOGIN_CALLBACK_PATH, async (req, reply) => {
      const query = new URLSearchParams(req.url.split('?')[1] ?? '')
      try {
        const done = await logins.callback(query)
        return page(reply, undefined, `Logged in as ${done.user}. Node ${done.node.name} (${done.node.ipv4}) is now in the mesh; you can close this window.`)
      } catch (e) {
        return page(reply, e)
      }
    })
  }
}

/** page answers the browser with a small HTML page: the outcome, in words. */
function page (reply: FastifyReply, error: unknown, message = ''): FastifyReply {
  const err = error === undefined ? undefined : isWarrenError(error) ? error : new WarrenError('internal', 'the controller failed to complete the login; see its log', { status: 500 })
  const title = err === undefined ? 'Warren: logged in' : 'Warren: login refused'
  const text = err?.message ?? message
  return reply.code(err?.status ?? 200).type('text/html; charset=utf-8').header('cache-control', 'no-store').send(
    `<!doctype html><html><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head><body><h1>${escapeHtml(title)}</h1><p id="message">${escapeHtml(text)}</p></body></html>\n`)
}

function escapeHtml (s: string): string {
  return s.replace(/[&<>"']/g, c => `&#${c.charCodeAt(0)};`)
}
