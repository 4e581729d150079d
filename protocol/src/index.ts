/**
 * @warren/protocol holds Warren's wire types, schemas, keys, signing and the protocol
 * version. It is pure: no I/O, and none of fastify, level, execa, ws or child_process
 * (test/purity.test.ts enforces this), so every other package can share it.
 *
 * @example
 * ```ts
 * import { generateWireGuardKeyPair, validate, RegisterRequest } from '@warren/protocol'
 * const { publicKey } = generateWireGuardKeyPair()
 * const req = validate(RegisterRequest, JSON.parse(body), 'registration')
 * ```
 */
export * from './version.js'
export * from './compat.js'
export * from './errors.js'
export * from './encoding.js'
export * from './keys.js'
export * from './credentials.js'
export * from './names.js'
export * from './messages.js'
export * from './login.js'
export * from './validate.js'
export * from './ipproto.js'
export * from './ip.js'
export * from './filter.js'
export * from './capabilities.js'
export * from './util.js'
export * from './text.js'
export * from './control-packet.js'
export * from './stun.js'
export * from './disco.js'
export * from './relay-wire.js'
export * from './tls-relay.js'
export * from './routes.js'
export * from './node-attrs.js'
export * from './posture.js'
