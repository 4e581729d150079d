/**
 * oidc: login at an OpenID Connect identity provider. Nodes that join without an auth
 * key get a login URL; the person who logs in owns the node. See login-service.ts for
 * the flow, oidc-client.ts for the provider side (openid-client), identity.ts for the
 * allow lists, token-vault.ts for refresh tokens at rest, and recheck.ts for the
 * continuous check of each user at the provider.
 */
export * from './oidc-options.js'
export * from './oidc-client.js'
export * from './identity.js'
export * from './token-vault.js'
export * from './login-service.js'
export * from './login-routes.js'
export * from './recheck.js'
export * from './recheck-routes.js'
