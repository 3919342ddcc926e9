'use strict';
// Shared helpers for the hyco-ws harness (listener.js, sender.js, token.js), which the
// suite in tests/hyco.rs drives as a real third party.

// hyco-ws's URI helpers (createRelaySendUri/createRelayListenUri) hard-code ':443'
// (hyco-ws/index.js:115), so a relay on another port needs the URI built by hand.
// base: wss://HOST:PORT/$hc/NAME (a query, if any, is kept).
function hcUri(base, action, extra) {
  let uri = base;
  if (!/[?&]sb-hc-action=/.test(uri)) {
    uri += (uri.includes('?') ? '&' : '?') + 'sb-hc-action=' + action;
  }
  for (const [k, v] of extra || []) uri += '&' + k + '=' + encodeURIComponent(v);
  return uri;
}

// Splits argv into positionals and --flags (--name or --name=value or --name value).
function parseArgs(argv, valued) {
  const pos = [];
  const flags = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const m = /^--([^=]+)(?:=(.*))?$/.exec(a);
    if (!m) { pos.push(a); continue; }
    if (m[2] !== undefined) flags[m[1]] = m[2];
    else if (valued.includes(m[1])) flags[m[1]] = argv[++i];
    else flags[m[1]] = true;
  }
  return { pos, flags };
}

// Kills the process after `seconds` with exit code 3 (never hang).
function deadline(seconds, what) {
  const t = setTimeout(() => {
    process.stdout.write('timeout ' + what + '\n');
    process.stderr.write('hyco: timeout after ' + seconds + ' s: ' + what + '\n');
    process.exit(3);
  }, seconds * 1000);
  return t;
}

// Collects an unexpected HTTP answer (a refused handshake) and calls done(code, reason, body).
function onRefusal(ws, done) {
  ws.on('unexpected-response', (req, res) => {
    let body = '';
    res.setEncoding('utf8');
    res.on('data', (c) => { if (body.length < 4096) body += c; });
    const finish = () => done(res.statusCode, res.statusMessage || '', body.trim());
    res.on('end', finish);
    res.on('error', finish);
    res.on('aborted', finish);
  });
}

function seconds(name, dflt) {
  const v = Number(process.env[name]);
  return Number.isFinite(v) && v > 0 ? v : dflt;
}

module.exports = { hcUri, parseArgs, deadline, onRefusal, seconds };
