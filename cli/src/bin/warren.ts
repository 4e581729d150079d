#!/usr/bin/env node
/**
 * warren is the one Warren command. This file only hands argv and the process's streams
 * to the program, which tests and embedders run in process the same way, and exits with
 * its code once what it printed is flushed.
 */
import { runCli } from '../program.js'

const code = await runCli(process.argv)
await Promise.all([process.stdout, process.stderr].map(async s => { await new Promise(resolve => s.write('', resolve)) }))
process.exit(code)
