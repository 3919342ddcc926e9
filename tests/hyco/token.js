'use strict';
// Prints hyco-ws's createRelayToken(uri, keyName, key, ttl) (index.js:69-88).
//   node token.js URI KEYNAME KEY [TTL_SECONDS]      (TTL default 3600)
// With --sr, also prints the decoded signed resource on a second line.
const args = process.argv.slice(2).filter((a) => a !== '--sr');
if (args.length < 3) {
  process.stderr.write('usage: node token.js URI KEYNAME KEY [TTL_SECONDS] [--sr]\n');
  process.exit(2);
}
const [uri, keyName, key, ttl] = args;
const token = require('hyco-ws').createRelayToken(uri, keyName, key, ttl ? Number(ttl) : undefined);
process.stdout.write(token + '\n');
if (process.argv.includes('--sr')) {
  process.stdout.write(decodeURIComponent(/sr=([^&]*)/.exec(token)[1]) + '\n');
}
