import type { Server as HttpServer, IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { FastifyError, FastifyRequest } from 'fastify'
import { WarrenError, isWarrenError, type ErrorBody } from '@warren/protocol'
import { writeRawError } from '../raw-http.js'

/** BODY_LIMIT is the largest request body the controller reads. */
export const BODY_LIMIT = 1024 * 1024

/** ErrorAnswer is an error's HTTP status and the JSON body `{error: {code, message, field?}}` sent for it. */
export interface ErrorAnswer { status: number, body: ErrorBody }

/** Fastify's own error codes, each with the status, code and message the API answers. */
const FASTIFY_ERRORS: Record<string, [number, string, string]> = {
  FST_ERR_CTP_BODY_TOO_LARGE: [413, 'body_too_large', `request body is larger than the ${BODY_LIMIT / 1024} KiB limit`],
  FST_ERR_CTP_INVALID_MEDIA_TYPE: [415, 'unsupported_media_type', 'send the body as JSON with "Content-Type: application/json"'],
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: [400, 'invalid_content_length', 'the Content-Length header does not match the body'],
  FST_ERR_CTP_EMPTY_JSON_BODY: [400, 'invalid_json', 'request body is empty but Content-Type says JSON'],
  FST_ERR_BAD_URL: [400, 'bad_url', 'the URL path is not valid: a %-escape does not decode to UTF-8 text'],
  FST_ERR_MAX_PARAM_LENGTH: [414, 'url_too_long', 'a path segment of the URL is longer than 100 characters; no API path needs that']
}

/** errorAnswer maps any error to the status and JSON body the API sends. */
export function errorAnswer (err: FastifyError | WarrenError): ErrorAnswer {
  if (isWarrenError(err)) {
    const error: ErrorBody['error'] = { code: err.code, message: err.message }
    if (err.field !== undefined) error.field = err.field
    return { status: err.status, body: { error } }
  }
  const hit = err.code === undefined ? undefined : FASTIFY_ERRORS[err.code]
  if (hit !== undefined) return { status: hit[0], body: { error: { code: hit[1], message: hit[2] } } }
  const status = err.statusCode ?? 500
  if (status >= 400 && status < 500) return { status, body: { error: { code: 'bad_request', message: err.message } } }
  return { status: 500, body: { error: { code: 'internal', message: 'the controller failed to handle this request; see its log' } } }
}

/**
 * clientErrorAnswer is what the HTTP server answers when a request never reaches fastify:
 * it timed out, its headers were too large, or it was not valid HTTP.
 */
export function clientErrorAnswer (err: Error & { code?: string }): ErrorAnswer {
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') return rawAnswer(408, 'request_timeout', 'the request was not received in time; send the whole request at once')
  if (err.code === 'HPE_HEADER_OVERFLOW') return rawAnswer(431, 'headers_too_large', 'the request line and headers are larger than 16 KiB')
  return rawAnswer(400, 'bad_http', `the request is not valid HTTP/1.1 (${err.code ?? 'parse error'})`)
}

/** ErrorCounter sees the code of each error answer, for the error metric. */
export type ErrorCounter = (code: string) => void

/**
 * createClientErrorHandler handles node's 'clientError' for a controller server: it
 * writes a complete HTTP response with the JSON error body, then closes the connection.
 */
export function createClientErrorHandler (count?: ErrorCounter): (err: Error & { code?: string }, socket: Socket) => void {
  return (err, socket) => {
    if (err.code === 'ECONNRESET' || socket.destroyed) return
    const answer = clientErrorAnswer(err)
    count?.(answer.body.error.code)
    writeRawAnswer(socket, answer)
  }
}

/**
 * answerBeforeRouting makes the answers node's HTTP server would otherwise send with an
 * empty body take the JSON error shape: an unknown `Expect` (417), CONNECT (405), and an
 * HTTP/1.1 request without Host (400; the server must be created with
 * `requireHostHeader: false`, and `missingHost` is then called by an onRequest hook).
 */
export function answerBeforeRouting (server: HttpServer, count?: ErrorCounter): { missingHost: (req: FastifyRequest) => void } {
  server.on('checkExpectation', (_req: IncomingMessage, res: ServerResponse) => {
    const answer = rawAnswer(417, 'expectation_failed', 'the only Expect the API understands is "100-continue"')
    count?.(answer.body.error.code)
    const text = JSON.stringify(answer.body)
    res.writeHead(417, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), connection: 'close' }).end(text)
  })
  server.on('connect', (_req: IncomingMessage, socket: Socket) => {
    const answer = rawAnswer(405, 'method_not_allowed', 'CONNECT is not served here: the controller is not a proxy')
    count?.(answer.body.error.code)
    writeRawAnswer(socket, answer)
  })
  return {
    missingHost (req) {
      if (req.raw.httpVersion === '1.1' && req.headers.host === undefined) {
        throw new WarrenError('bad_http', 'an HTTP/1.1 request needs a Host header')
      }
    }
  }
}

function rawAnswer (status: number, code: string, message: string): ErrorAnswer {
  return { status, body: { error: { code, message } } }
}

/** writeRawAnswer writes a whole HTTP response on a socket node's HTTP server gave up, then closes it. */
function writeRawAnswer (socket: Socket, { status, body }: ErrorAnswer): void {
  writeRawError(socket, status, body.error.code, body.error.message)
}

interface AjvError { keyword: string, instancePath: string, message?: string, params: Record<string, unknown>, parentSchema?: { description?: string } }

/**
 * formatValidationError turns ajv's first error into one sentence that names the field,
 * for example `body/reusable must be boolean` or `body/color is not a known field`.
 */
export function formatValidationError (errors: AjvError[], dataVar: string): Error {
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
