/** engine turns network maps into desired state and reconciles it through the adapters. */
export * from './types.js'
export * from './engine.js'
