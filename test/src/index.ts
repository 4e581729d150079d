/** @warren/test is the shared test harness: network namespaces and process runners. */
export {}
