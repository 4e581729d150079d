/**
 * transport: how clients reach a Warren server. `createControllerTransport` speaks HTTPS
 * and WebSocket to the controller, trusting only the pinned certificate when a
 * fingerprint is given; `createUnixTransport` speaks HTTP over a local Unix socket.
 */
export * from './http-json.js'
export * from './pinned.js'
export * from './unix.js'
export * from './relay-link.js'
export * from './release-buffer.js'
