/**
 * @warren/controller/testing holds the controller's fakes, for tests and benchmarks here
 * and in other packages: each is a `createFakeX` factory in a file named `fake-x.ts`.
 * They are not part of the public index.
 */
export * from './map/fake-node-source.js'
export * from './map/fake-map-policy.js'
