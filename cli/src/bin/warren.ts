#!/usr/bin/env node
/**
 * warren is the one Warren command. This file only hands argv to the program so that
 * tests and embedders can run the same commands in process.
 */
import { runCli } from '../program.js'

process.exitCode = await runCli(process.argv)
