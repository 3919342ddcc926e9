'use strict';
// Microsoft's hyco-ws 1.0.5 sender (relayedConnect, with a token from createRelayToken).
//
//   NODE_EXTRA_CA_CERTS=ca.pem node sender.js 'wss://HOST:PORT/$hc/NAME' KEYNAME KEY PORT MODE
//
// MODE: "text:WORDS" sends WORDS as a text message, "binary:WORDS" as a binary one, and
//       prints the first message that comes back as "text WORDS" or "binary WORDS";
//       "first" sends nothing and prints the first message that comes (an SSH banner).
// stdout: that line, or "refused CODE REASON" when the handshake is refused (exit 4).
// exits:  0 ok, 2 usage, 3 nothing within HYCO_TIMEOUT (20 s), 4 refused, 5 error,
//         6 closed before a message came.

const { hcUri, deadline, onRefusal, seconds } = require('./common');
const [base, keyName, key, port, mode] = process.argv.slice(2);
if (!mode) {
  process.stderr.write('usage: node sender.js wss://HOST:PORT/$hc/NAME KEYNAME KEY PORT text:W|binary:W|first\n');
  process.exit(2);
}
const WS = require('hyco-ws');
deadline(seconds('HYCO_TIMEOUT', 20), 'sender');

const uri = hcUri(base, 'connect', [['port', port]]);
// relayedConnect sends the token in ServiceBusAuthorization (index.js:46-58).
const ws = WS.relayedConnect(uri, WS.createRelayToken(uri, keyName, key, 3600));
let done = false;
onRefusal(ws, (code, reason) => {
  done = true;
  process.stdout.write('refused ' + code + ' ' + reason + '\n');
  process.exit(4);
});
ws.on('unexpected-response', () => { done = true; });
ws.on('open', () => {
  const [kind, words] = [mode.split(':')[0], mode.slice(mode.indexOf(':') + 1)];
  if (kind === 'text') ws.send(words, { binary: false });
  else if (kind === 'binary') ws.send(Buffer.from(words), { binary: true });
});
ws.on('message', (data, flags) => {
  done = true;
  const binary = !!(flags && flags.binary);
  const text = Buffer.isBuffer(data) ? data.toString() : String(data);
  process.stdout.write((binary ? 'binary ' : 'text ') + text.split('\r')[0].split('\n')[0] + '\n',
    () => process.exit(0));
});
ws.on('error', (e) => {
  if (done) return;
  process.stdout.write('error ' + ((e && (e.message || e.code)) || e) + '\n');
  process.exit(5);
});
ws.on('close', (code) => {
  if (done) return;
  process.stdout.write('closed ' + code + '\n');
  process.exit(6);
});
