/** localapi: the daemon's JSON API on a root-only Unix socket (what the CLI and SDK use). */
export * from './server.js'
export * from './watch.js'
