export * from './types.js'
export * from './disco.js'
export * from './path-manager.js'
export * from './path-service.js'
