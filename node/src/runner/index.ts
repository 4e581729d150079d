/** runner is the one place where Warren runs system commands (see command-runner.ts). */
export * from './command-runner.js'
