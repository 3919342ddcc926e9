'use strict';
// Microsoft's hyco-ws 1.0.5 listener (createRelayedServer) on a Hybrid Connections relay,
// echoing every message back with its kind (text or binary).
//
//   NODE_EXTRA_CA_CERTS=ca.pem node listener.js 'wss://HOST:PORT/$hc/NAME' KEYNAME KEY
//
// stdout: "listening" once the control channel is up; "refused CODE REASON" when the relay
//         refuses it (exit 4); "error MESSAGE" when it cannot connect (exit 5).
// and one line per accept message, connection and close.
// exits:  2 usage, 3 not listening within HYCO_TIMEOUT (20 s), 4 refused, 5 channel lost.
//
// Two hyco-ws bugs are worked around here, not in the relay:
// - its reconnect (HybridConnectionWebSocketServer.js:122-143) retries from both onerror and
//   onclose with no backoff, doubling its attempts every ~200 ms: this script exits first;
// - its reject path (abortConnection, :292-301) calls an undefined WebSocketClient and throws
//   inside ws's message handler, killing the process, and would use the wrong address and
//   unprefixed statusCode: the throw is caught and the rejection sent as the protocol says.

const { hcUri, parseArgs, deadline, onRefusal, seconds } = require('./common');
const { pos } = parseArgs(process.argv.slice(2), []);
if (pos.length < 3) {
  process.stderr.write('usage: node listener.js wss://HOST:PORT/$hc/NAME KEYNAME KEY\n');
  process.exit(2);
}
const [base, keyName, key] = pos;
const WS = require('hyco-ws');
// Everything on stdout, in order, for the test's log.
const log = (s) => process.stdout.write('listener: ' + s + '\n');

const uri = hcUri(base, 'listen');
// hyco-ws's own token: the relay must accept what createRelayToken signs.
const token = WS.createRelayToken(uri, keyName, key, 3600);
const startup = deadline(seconds('HYCO_TIMEOUT', 20), 'waiting for the control channel');

let refusing = false;
let conns = 0;
const server = WS.createRelayedServer({ server: uri, token }, onConnection);
const cc = server.controlChannel;

onRefusal(cc, (code, reason) => {
  process.stdout.write('refused ' + code + ' ' + reason + '\n');
  process.exit(4);
});
cc.on('unexpected-response', () => { refusing = true; server.closeRequested = true; });
server.on('error', (e) => {
  server.closeRequested = true;
  process.stdout.write('error ' + ((e && (e.message || e.code)) || e) + '\n');
  process.exit(5);
});
cc.on('close', (code) => {
  if (refusing) return;
  server.closeRequested = true;
  log('control channel closed ' + code);
  process.exit(5);
});

server.on('listening', () => {
  const original = cc.onmessage;
  cc.onmessage = function (event) {
    let accept = null;
    try { accept = JSON.parse(event.data).accept; } catch (e) { /* hyco-ws logs it */ }
    if (accept) {
      log('accept id=' + accept.id + ' connectHeaders=[' + Object.keys(accept.connectHeaders || {}).join(',') + ']');
    }
    try {
      original.call(this, event);
    } catch (e) {
      log('hyco-ws threw while handling the accept: ' + e.name + ': ' + e.message);
      if (accept && accept.address) reject(accept.address, 400, 'Bad Request');
    }
  };
  clearTimeout(startup);
  process.stdout.write('listening\n');
});

// What abortConnection means to do: a handshake to the address with the status.
function reject(address, status, description) {
  const uri = address + (address.includes('?') ? '&' : '?') + 'sb-hc-statusCode=' + status +
    '&sb-hc-statusDescription=' + encodeURIComponent(description);
  const ws = new WS(uri, null, { perMessageDeflate: false });
  onRefusal(ws, (code) => log('rejection ' + status + ' delivered (relay answered ' + code + ')'));
  ws.on('open', () => { log('the relay took a rejection as a rendezvous'); ws.terminate(); });
  ws.on('error', () => {});
}

function onConnection(ws) {
  const n = ++conns;
  log('connection ' + n + ' accepted');
  ws.on('message', (data, flags) => ws.send(data, { binary: !!(flags && flags.binary) }, () => {}));
  ws.on('close', (code) => log('connection ' + n + ' closed ' + code));
  ws.on('error', (e) => log('connection ' + n + ' error: ' + ((e && e.message) || e)));
}
