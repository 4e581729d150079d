/** @warren/test is the shared test harness: network namespaces and process runners. */
export * from './process.js'
export * from './netns.js'
