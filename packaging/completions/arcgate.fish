# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_arcgate_global_optspecs
    string join \n v/verbose q/quiet h/help V/version
end

function __fish_arcgate_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_arcgate_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_arcgate_using_subcommand
    set -l cmd (__fish_arcgate_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c arcgate -n "__fish_arcgate_needs_command" -s v -l verbose -d 'More log lines: each -v one level up from the command\'s default (RUST_LOG, when set, decides instead)'
complete -c arcgate -n "__fish_arcgate_needs_command" -s q -l quiet -d 'Fewer log lines: each -q one level down from the command\'s default'
complete -c arcgate -n "__fish_arcgate_needs_command" -s h -l help -d 'Print help'
complete -c arcgate -n "__fish_arcgate_needs_command" -s V -l version -d 'Print version'
complete -c arcgate -n "__fish_arcgate_needs_command" -f -a "serve" -d 'Run the gate: TLS WebSocket endpoint, policy, bridge to 127.0.0.1:PORT'
complete -c arcgate -n "__fish_arcgate_needs_command" -f -a "config" -d 'Show or change the local configuration (same keys and output as `azcmagent config`)'
complete -c arcgate -n "__fish_arcgate_needs_command" -f -a "extension" -d 'Extension rules (extensions.enabled / allowlist / blocklist)'
complete -c arcgate -n "__fish_arcgate_needs_command" -f -a "token" -d 'Mint an access token from a key in the keys file'
complete -c arcgate -n "__fish_arcgate_needs_command" -f -a "key" -d 'List, add, remove or rotate the keys in a keys file (the gate\'s, or a relay\'s)'
complete -c arcgate -n "__fish_arcgate_needs_command" -f -a "connect" -d 'Connect stdin/stdout to a port on a host through its gate (an OpenSSH ProxyCommand)'
complete -c arcgate -n "__fish_arcgate_needs_command" -f -a "forward" -d 'Listen locally; every accepted connection becomes one tunnel (RDP, or any allowed port)'
complete -c arcgate -n "__fish_arcgate_needs_command" -f -a "ssh-config" -d 'Print a Host block for ~/.ssh/config that connects through the gate'
complete -c arcgate -n "__fish_arcgate_needs_command" -f -a "ssh" -d 'Run OpenSSH to a host through its gate, from its profile: arcgate ssh [user@]NAME [ARGS]'
complete -c arcgate -n "__fish_arcgate_needs_command" -f -a "profile" -d 'Add, list or remove client profiles (a host\'s gate URL, token file, CA, port)'
complete -c arcgate -n "__fish_arcgate_needs_command" -f -a "status" -d 'Show the version, the policy in force, its file and the live sessions of the running gate (from its admin socket)'
complete -c arcgate -n "__fish_arcgate_needs_command" -f -a "sessions" -d 'Approve or deny the sessions that wait for the host\'s administrator (incomingconnections.approval required), or list them'
complete -c arcgate -n "__fish_arcgate_needs_command" -f -a "relay" -d 'Run an embedded Hybrid Connections relay (gates attach with serve --relay)'
complete -c arcgate -n "__fish_arcgate_needs_command" -f -a "completions" -d 'Print shell completions: arcgate completions bash > /etc/bash_completion.d/arcgate'
complete -c arcgate -n "__fish_arcgate_needs_command" -f -a "manpages" -d 'Write the man pages into a directory (the package ships them)'
complete -c arcgate -n "__fish_arcgate_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c arcgate -n "__fish_arcgate_using_subcommand serve" -l listen -d 'Address to listen on (port 0 picks a free one)' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand serve" -l cert -d 'Certificate chain (PEM)' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand serve" -l key -d 'Private key (PEM)' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand serve" -l name -d 'The name this gate answers to in /$hc/{name} [default: the host name]' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand serve" -l public-host -d 'Only accept tokens whose resource names this host' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand serve" -l keys -d 'Keys file [default: keys.json beside the configuration file]' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand serve" -l ping-interval -d 'Ping a session\'s client after this long without hearing from it' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand serve" -l missed-pongs -d 'Drop a client after this many unanswered pings (a client that takes no bytes for ping interval × (this + 1) is dropped too)' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand serve" -l idle-timeout -d 'Close a session after this long with no data either way [default: never; SSH has its own keepalives]' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand serve" -l handshake-timeout -d 'TCP accept, TLS and the HTTP request must finish within this' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand serve" -l dial-timeout -d 'How long dialling the local service may take' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand serve" -l max-header-bytes -d 'Largest request head, in bytes' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand serve" -l max-frame-bytes -d 'Largest WebSocket frame accepted, in bytes' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand serve" -l max-sessions -d 'Concurrent sessions' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand serve" -l max-sessions-per-ip -d 'Concurrent sessions from one IP address' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand serve" -l max-handshakes-per-ip -d 'Connections still in their TLS or HTTP handshake from one source (an IPv4 address or an IPv6 /64); more are closed at once. Real clients finish a handshake in milliseconds, so 64 at a time is far above what one host needs, and far below the total (--max-sessions), which one flooding source could otherwise hold' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand serve" -l approval-timeout -d 'With incomingconnections.approval required: how long a session waits for the host\'s administrator before it is refused (approval_timed_out)' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand serve" -l max-waiting-approvals -d 'With incomingconnections.approval required: how many sessions may wait at once (more get 503)' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand serve" -l shutdown-grace -d 'On SIGTERM/SIGINT, how long sessions may continue before they are closed with 1001' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand serve" -l log-format -d 'Log format' -r -f -a "human\t'One plain line per event'
json\t'JSON lines, the agent client\'s shape'"
complete -c arcgate -n "__fish_arcgate_using_subcommand serve" -l admin -d 'Serve /metrics, /healthz and /sessions over plain HTTP on this loopback address' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand serve" -l admin-socket -d 'The admin socket `arcgate status` asks, mode 0600 [default: /run/arcgate/admin.sock for /var/opt/arcgate/localconfig.json, else admin.sock beside the configuration]' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand serve" -l audit-log -d 'Also append audit records to this file as JSON lines (reopened on SIGHUP)' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand serve" -l relay -d 'Relay mode: attach to this Hybrid Connections relay as a listener, wss://RELAY/$hc/NAME (single-quote it for $hc)' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand serve" -l relay-token-file -d 'The listen token for --relay, from a file (a change is sent to the relay as renewToken)' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand serve" -l relay-key -d 'Mint the listen token for --relay from this key in the keys file' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand serve" -l relay-token-ttl -d 'Lifetime of minted listen tokens; each is renewed (renewToken) at 80% of it' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand serve" -l relay-ca -d 'Extra CA certificate (PEM) trusted for the relay\'s certificate; repeatable' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand serve" -l relay-connect-timeout -d 'With --relay: how long connecting to the relay may take (TCP, proxy, TLS and the WebSocket handshake together), for the control channel and for each rendezvous' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand serve" -l config -d 'Configuration file [default: /var/opt/arcgate/localconfig.json as root, else $XDG_CONFIG_HOME/arcgate/localconfig.json]' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand serve" -l no-admin-socket -d 'Serve no admin socket'
complete -c arcgate -n "__fish_arcgate_using_subcommand serve" -l relay-require-gate-token -d 'With --relay: admit a relayed sender only with a gate token (`connect --gate-token-file`) signed with a key from this gate\'s keys file, checked as a direct token is; a relay that admits a stranger then still cannot open this host'
complete -c arcgate -n "__fish_arcgate_using_subcommand serve" -l relay-only -d 'With --relay: no inbound listening socket at all, and so no certificate (--cert, --key and --listen are refused with it)'
complete -c arcgate -n "__fish_arcgate_using_subcommand serve" -s v -l verbose -d 'More log lines: each -v one level up from the command\'s default (RUST_LOG, when set, decides instead)'
complete -c arcgate -n "__fish_arcgate_using_subcommand serve" -s q -l quiet -d 'Fewer log lines: each -q one level down from the command\'s default'
complete -c arcgate -n "__fish_arcgate_using_subcommand serve" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c arcgate -n "__fish_arcgate_using_subcommand config; and not __fish_seen_subcommand_from list get set clear info help" -l config -d 'Configuration file [default: /var/opt/arcgate/localconfig.json as root, else $XDG_CONFIG_HOME/arcgate/localconfig.json]' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand config; and not __fish_seen_subcommand_from list get set clear info help" -s v -l verbose -d 'More log lines: each -v one level up from the command\'s default (RUST_LOG, when set, decides instead)'
complete -c arcgate -n "__fish_arcgate_using_subcommand config; and not __fish_seen_subcommand_from list get set clear info help" -s q -l quiet -d 'Fewer log lines: each -q one level down from the command\'s default'
complete -c arcgate -n "__fish_arcgate_using_subcommand config; and not __fish_seen_subcommand_from list get set clear info help" -s h -l help -d 'Print help'
complete -c arcgate -n "__fish_arcgate_using_subcommand config; and not __fish_seen_subcommand_from list get set clear info help" -f -a "list" -d 'Print every key and its value'
complete -c arcgate -n "__fish_arcgate_using_subcommand config; and not __fish_seen_subcommand_from list get set clear info help" -f -a "get" -d 'Print one key\'s value'
complete -c arcgate -n "__fish_arcgate_using_subcommand config; and not __fish_seen_subcommand_from list get set clear info help" -f -a "set" -d 'Set a key (lists: comma-separated; replaces the list unless --add/--remove)'
complete -c arcgate -n "__fish_arcgate_using_subcommand config; and not __fish_seen_subcommand_from list get set clear info help" -f -a "clear" -d 'Put a key back to its default'
complete -c arcgate -n "__fish_arcgate_using_subcommand config; and not __fish_seen_subcommand_from list get set clear info help" -f -a "info" -d 'Describe the keys and their allowed values'
complete -c arcgate -n "__fish_arcgate_using_subcommand config; and not __fish_seen_subcommand_from list get set clear info help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c arcgate -n "__fish_arcgate_using_subcommand config; and __fish_seen_subcommand_from list" -l config -d 'Configuration file [default: /var/opt/arcgate/localconfig.json as root, else $XDG_CONFIG_HOME/arcgate/localconfig.json]' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand config; and __fish_seen_subcommand_from list" -s j -l json -d 'JSON output'
complete -c arcgate -n "__fish_arcgate_using_subcommand config; and __fish_seen_subcommand_from list" -s v -l verbose -d 'More log lines: each -v one level up from the command\'s default (RUST_LOG, when set, decides instead)'
complete -c arcgate -n "__fish_arcgate_using_subcommand config; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Fewer log lines: each -q one level down from the command\'s default'
complete -c arcgate -n "__fish_arcgate_using_subcommand config; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c arcgate -n "__fish_arcgate_using_subcommand config; and __fish_seen_subcommand_from get" -l config -d 'Configuration file [default: /var/opt/arcgate/localconfig.json as root, else $XDG_CONFIG_HOME/arcgate/localconfig.json]' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand config; and __fish_seen_subcommand_from get" -s j -l json -d 'JSON output'
complete -c arcgate -n "__fish_arcgate_using_subcommand config; and __fish_seen_subcommand_from get" -s v -l verbose -d 'More log lines: each -v one level up from the command\'s default (RUST_LOG, when set, decides instead)'
complete -c arcgate -n "__fish_arcgate_using_subcommand config; and __fish_seen_subcommand_from get" -s q -l quiet -d 'Fewer log lines: each -q one level down from the command\'s default'
complete -c arcgate -n "__fish_arcgate_using_subcommand config; and __fish_seen_subcommand_from get" -s h -l help -d 'Print help'
complete -c arcgate -n "__fish_arcgate_using_subcommand config; and __fish_seen_subcommand_from set" -l for -d 'With incomingconnections.enabled true: only for this long (30m, 2h, 1d); the end, in UTC, goes in incomingconnections.enableduntil' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand config; and __fish_seen_subcommand_from set" -l config -d 'Configuration file [default: /var/opt/arcgate/localconfig.json as root, else $XDG_CONFIG_HOME/arcgate/localconfig.json]' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand config; and __fish_seen_subcommand_from set" -s a -l add -d 'Add to a list key instead of replacing it'
complete -c arcgate -n "__fish_arcgate_using_subcommand config; and __fish_seen_subcommand_from set" -s r -l remove -d 'Remove from a list key'
complete -c arcgate -n "__fish_arcgate_using_subcommand config; and __fish_seen_subcommand_from set" -s v -l verbose -d 'More log lines: each -v one level up from the command\'s default (RUST_LOG, when set, decides instead)'
complete -c arcgate -n "__fish_arcgate_using_subcommand config; and __fish_seen_subcommand_from set" -s q -l quiet -d 'Fewer log lines: each -q one level down from the command\'s default'
complete -c arcgate -n "__fish_arcgate_using_subcommand config; and __fish_seen_subcommand_from set" -s h -l help -d 'Print help'
complete -c arcgate -n "__fish_arcgate_using_subcommand config; and __fish_seen_subcommand_from clear" -l config -d 'Configuration file [default: /var/opt/arcgate/localconfig.json as root, else $XDG_CONFIG_HOME/arcgate/localconfig.json]' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand config; and __fish_seen_subcommand_from clear" -s v -l verbose -d 'More log lines: each -v one level up from the command\'s default (RUST_LOG, when set, decides instead)'
complete -c arcgate -n "__fish_arcgate_using_subcommand config; and __fish_seen_subcommand_from clear" -s q -l quiet -d 'Fewer log lines: each -q one level down from the command\'s default'
complete -c arcgate -n "__fish_arcgate_using_subcommand config; and __fish_seen_subcommand_from clear" -s h -l help -d 'Print help'
complete -c arcgate -n "__fish_arcgate_using_subcommand config; and __fish_seen_subcommand_from info" -l config -d 'Configuration file [default: /var/opt/arcgate/localconfig.json as root, else $XDG_CONFIG_HOME/arcgate/localconfig.json]' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand config; and __fish_seen_subcommand_from info" -s v -l verbose -d 'More log lines: each -v one level up from the command\'s default (RUST_LOG, when set, decides instead)'
complete -c arcgate -n "__fish_arcgate_using_subcommand config; and __fish_seen_subcommand_from info" -s q -l quiet -d 'Fewer log lines: each -q one level down from the command\'s default'
complete -c arcgate -n "__fish_arcgate_using_subcommand config; and __fish_seen_subcommand_from info" -s h -l help -d 'Print help'
complete -c arcgate -n "__fish_arcgate_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "list" -d 'Print every key and its value'
complete -c arcgate -n "__fish_arcgate_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "get" -d 'Print one key\'s value'
complete -c arcgate -n "__fish_arcgate_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "set" -d 'Set a key (lists: comma-separated; replaces the list unless --add/--remove)'
complete -c arcgate -n "__fish_arcgate_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "clear" -d 'Put a key back to its default'
complete -c arcgate -n "__fish_arcgate_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "info" -d 'Describe the keys and their allowed values'
complete -c arcgate -n "__fish_arcgate_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c arcgate -n "__fish_arcgate_using_subcommand extension; and not __fish_seen_subcommand_from check help" -l config -d 'Configuration file [default: /var/opt/arcgate/localconfig.json as root, else $XDG_CONFIG_HOME/arcgate/localconfig.json]' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand extension; and not __fish_seen_subcommand_from check help" -s v -l verbose -d 'More log lines: each -v one level up from the command\'s default (RUST_LOG, when set, decides instead)'
complete -c arcgate -n "__fish_arcgate_using_subcommand extension; and not __fish_seen_subcommand_from check help" -s q -l quiet -d 'Fewer log lines: each -q one level down from the command\'s default'
complete -c arcgate -n "__fish_arcgate_using_subcommand extension; and not __fish_seen_subcommand_from check help" -s h -l help -d 'Print help'
complete -c arcgate -n "__fish_arcgate_using_subcommand extension; and not __fish_seen_subcommand_from check help" -f -a "check" -d 'Exit 0 if Publisher/Type may be installed, 1 if not; print why'
complete -c arcgate -n "__fish_arcgate_using_subcommand extension; and not __fish_seen_subcommand_from check help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c arcgate -n "__fish_arcgate_using_subcommand extension; and __fish_seen_subcommand_from check" -l config -d 'Configuration file [default: /var/opt/arcgate/localconfig.json as root, else $XDG_CONFIG_HOME/arcgate/localconfig.json]' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand extension; and __fish_seen_subcommand_from check" -s v -l verbose -d 'More log lines: each -v one level up from the command\'s default (RUST_LOG, when set, decides instead)'
complete -c arcgate -n "__fish_arcgate_using_subcommand extension; and __fish_seen_subcommand_from check" -s q -l quiet -d 'Fewer log lines: each -q one level down from the command\'s default'
complete -c arcgate -n "__fish_arcgate_using_subcommand extension; and __fish_seen_subcommand_from check" -s h -l help -d 'Print help'
complete -c arcgate -n "__fish_arcgate_using_subcommand extension; and __fish_seen_subcommand_from help" -f -a "check" -d 'Exit 0 if Publisher/Type may be installed, 1 if not; print why'
complete -c arcgate -n "__fish_arcgate_using_subcommand extension; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c arcgate -n "__fish_arcgate_using_subcommand token" -l key-name -d 'The key to sign with' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand token" -l ttl -d 'How long the token is valid, with its unit (90s, 30m, 8h, 7d)' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand token" -l out -d 'Write the token to this file, mode 0600 (a shell\'s `> file` makes it readable by others)' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand token" -l resource -d 'The resource [default: http://{host}/{name}/]' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand token" -l name -d 'The gate name the token is for [default: the host name]' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand token" -l host -d 'The host in the resource [default: the gate name]' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand token" -l keys -d 'Keys file [default: keys.json beside the configuration file]' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand token" -l config -d 'Configuration file [default: /var/opt/arcgate/localconfig.json as root, else $XDG_CONFIG_HOME/arcgate/localconfig.json]' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand token" -s v -l verbose -d 'More log lines: each -v one level up from the command\'s default (RUST_LOG, when set, decides instead)'
complete -c arcgate -n "__fish_arcgate_using_subcommand token" -s q -l quiet -d 'Fewer log lines: each -q one level down from the command\'s default'
complete -c arcgate -n "__fish_arcgate_using_subcommand token" -s h -l help -d 'Print help'
complete -c arcgate -n "__fish_arcgate_using_subcommand key; and not __fish_seen_subcommand_from list add remove rotate help" -l keys -d 'Keys file [default: keys.json beside the configuration file; for a relay, its --keys]' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand key; and not __fish_seen_subcommand_from list add remove rotate help" -l config -d 'Configuration file [default: /var/opt/arcgate/localconfig.json as root, else $XDG_CONFIG_HOME/arcgate/localconfig.json]' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand key; and not __fish_seen_subcommand_from list add remove rotate help" -s v -l verbose -d 'More log lines: each -v one level up from the command\'s default (RUST_LOG, when set, decides instead)'
complete -c arcgate -n "__fish_arcgate_using_subcommand key; and not __fish_seen_subcommand_from list add remove rotate help" -s q -l quiet -d 'Fewer log lines: each -q one level down from the command\'s default'
complete -c arcgate -n "__fish_arcgate_using_subcommand key; and not __fish_seen_subcommand_from list add remove rotate help" -s h -l help -d 'Print help'
complete -c arcgate -n "__fish_arcgate_using_subcommand key; and not __fish_seen_subcommand_from list add remove rotate help" -f -a "list" -d 'List the keys: name, rights, ports (never the secrets)'
complete -c arcgate -n "__fish_arcgate_using_subcommand key; and not __fish_seen_subcommand_from list add remove rotate help" -f -a "add" -d 'Add a key with a new random 256-bit secret, printed once on stdout'
complete -c arcgate -n "__fish_arcgate_using_subcommand key; and not __fish_seen_subcommand_from list add remove rotate help" -f -a "remove" -d 'Remove a key: its tokens stop working and its live sessions are closed'
complete -c arcgate -n "__fish_arcgate_using_subcommand key; and not __fish_seen_subcommand_from list add remove rotate help" -f -a "rotate" -d 'Give a key a new random secret, printed once: tokens signed with the old one stop working and the sessions they opened are closed'
complete -c arcgate -n "__fish_arcgate_using_subcommand key; and not __fish_seen_subcommand_from list add remove rotate help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c arcgate -n "__fish_arcgate_using_subcommand key; and __fish_seen_subcommand_from list" -l keys -d 'Keys file [default: keys.json beside the configuration file; for a relay, its --keys]' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand key; and __fish_seen_subcommand_from list" -l config -d 'Configuration file [default: /var/opt/arcgate/localconfig.json as root, else $XDG_CONFIG_HOME/arcgate/localconfig.json]' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand key; and __fish_seen_subcommand_from list" -s v -l verbose -d 'More log lines: each -v one level up from the command\'s default (RUST_LOG, when set, decides instead)'
complete -c arcgate -n "__fish_arcgate_using_subcommand key; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Fewer log lines: each -q one level down from the command\'s default'
complete -c arcgate -n "__fish_arcgate_using_subcommand key; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c arcgate -n "__fish_arcgate_using_subcommand key; and __fish_seen_subcommand_from add" -l rights -d 'What its tokens may do; repeat or separate with commas. `listen` attaches a gate to a relay and is never implied' -r -f -a "send\t'Open sessions: a direct connect, or a sender at a relay'
listen\t'Attach a gate to a relay as a listener'"
complete -c arcgate -n "__fish_arcgate_using_subcommand key; and __fish_seen_subcommand_from add" -l ports -d 'The only ports its tokens may reach, e.g. 22,3389 or 2200-2299 [default: any]' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand key; and __fish_seen_subcommand_from add" -l secret-file -d 'Use the secret in this file (mode 0600, as `add` writes one) instead of a new random one: another keys file\'s key, or an Azure Relay shared access policy\'s' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand key; and __fish_seen_subcommand_from add" -l keys -d 'Keys file [default: keys.json beside the configuration file; for a relay, its --keys]' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand key; and __fish_seen_subcommand_from add" -l config -d 'Configuration file [default: /var/opt/arcgate/localconfig.json as root, else $XDG_CONFIG_HOME/arcgate/localconfig.json]' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand key; and __fish_seen_subcommand_from add" -s v -l verbose -d 'More log lines: each -v one level up from the command\'s default (RUST_LOG, when set, decides instead)'
complete -c arcgate -n "__fish_arcgate_using_subcommand key; and __fish_seen_subcommand_from add" -s q -l quiet -d 'Fewer log lines: each -q one level down from the command\'s default'
complete -c arcgate -n "__fish_arcgate_using_subcommand key; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c arcgate -n "__fish_arcgate_using_subcommand key; and __fish_seen_subcommand_from remove" -l keys -d 'Keys file [default: keys.json beside the configuration file; for a relay, its --keys]' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand key; and __fish_seen_subcommand_from remove" -l config -d 'Configuration file [default: /var/opt/arcgate/localconfig.json as root, else $XDG_CONFIG_HOME/arcgate/localconfig.json]' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand key; and __fish_seen_subcommand_from remove" -s v -l verbose -d 'More log lines: each -v one level up from the command\'s default (RUST_LOG, when set, decides instead)'
complete -c arcgate -n "__fish_arcgate_using_subcommand key; and __fish_seen_subcommand_from remove" -s q -l quiet -d 'Fewer log lines: each -q one level down from the command\'s default'
complete -c arcgate -n "__fish_arcgate_using_subcommand key; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help'
complete -c arcgate -n "__fish_arcgate_using_subcommand key; and __fish_seen_subcommand_from rotate" -l keys -d 'Keys file [default: keys.json beside the configuration file; for a relay, its --keys]' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand key; and __fish_seen_subcommand_from rotate" -l config -d 'Configuration file [default: /var/opt/arcgate/localconfig.json as root, else $XDG_CONFIG_HOME/arcgate/localconfig.json]' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand key; and __fish_seen_subcommand_from rotate" -s v -l verbose -d 'More log lines: each -v one level up from the command\'s default (RUST_LOG, when set, decides instead)'
complete -c arcgate -n "__fish_arcgate_using_subcommand key; and __fish_seen_subcommand_from rotate" -s q -l quiet -d 'Fewer log lines: each -q one level down from the command\'s default'
complete -c arcgate -n "__fish_arcgate_using_subcommand key; and __fish_seen_subcommand_from rotate" -s h -l help -d 'Print help'
complete -c arcgate -n "__fish_arcgate_using_subcommand key; and __fish_seen_subcommand_from help" -f -a "list" -d 'List the keys: name, rights, ports (never the secrets)'
complete -c arcgate -n "__fish_arcgate_using_subcommand key; and __fish_seen_subcommand_from help" -f -a "add" -d 'Add a key with a new random 256-bit secret, printed once on stdout'
complete -c arcgate -n "__fish_arcgate_using_subcommand key; and __fish_seen_subcommand_from help" -f -a "remove" -d 'Remove a key: its tokens stop working and its live sessions are closed'
complete -c arcgate -n "__fish_arcgate_using_subcommand key; and __fish_seen_subcommand_from help" -f -a "rotate" -d 'Give a key a new random secret, printed once: tokens signed with the old one stop working and the sessions they opened are closed'
complete -c arcgate -n "__fish_arcgate_using_subcommand key; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c arcgate -n "__fish_arcgate_using_subcommand connect" -l profile -d 'Take the URL, token files and CA files from this client profile (arcgate profile add); flags given as well take precedence' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand connect" -s p -l port -d 'Target port on the host [default: the profile\'s, else 22]' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand connect" -s r -l relay-info -d 'Relay information file (base64 JSON, the agent\'s form)' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand connect" -l token -d 'The token (prefer --token-file: arguments are visible to other users)' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand connect" -l token-file -d 'File holding the token (read again for every tunnel)' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand connect" -l gate-token-file -d 'Through a relay: file holding a token for the gate itself, signed with a key from the gate\'s keys file (read again for every tunnel). Sent beside the relay\'s token; a gate started with --relay-require-gate-token admits no one without it' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand connect" -l ca -d 'Extra CA certificate (PEM) to trust besides the system store; repeatable' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand connect" -l connect-timeout -d 'TCP + TLS + WebSocket handshake deadline' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand connect" -l approval-wait -d 'For a host that holds sessions until its administrator approves them (incomingconnections.approval): how long to wait for the gate\'s answer, e.g. 2m (more than the gate\'s --approval-timeout, 60s) [default: --connect-timeout]' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand connect" -l ping-interval -d 'Ping the gate after this long without hearing from it (0 disables)' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand connect" -l log-format -d 'Diagnostics format on stderr' -r -f -a "human\t'One plain line per event'
json\t'JSON lines, the agent client\'s shape'"
complete -c arcgate -n "__fish_arcgate_using_subcommand connect" -l insecure -d 'Do not verify the gate\'s certificate (DANGEROUS; for diagnosis only)'
complete -c arcgate -n "__fish_arcgate_using_subcommand connect" -s v -l verbose -d 'More log lines: each -v one level up from the command\'s default (RUST_LOG, when set, decides instead)'
complete -c arcgate -n "__fish_arcgate_using_subcommand connect" -s q -l quiet -d 'Fewer log lines: each -q one level down from the command\'s default'
complete -c arcgate -n "__fish_arcgate_using_subcommand connect" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c arcgate -n "__fish_arcgate_using_subcommand forward" -l profile -d 'Take the URL, token files and CA files from this client profile (arcgate profile add); flags given as well take precedence' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand forward" -s p -l port -d 'Target port on the host [default: the profile\'s, else 22]' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand forward" -s r -l relay-info -d 'Relay information file (base64 JSON, the agent\'s form)' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand forward" -l token -d 'The token (prefer --token-file: arguments are visible to other users)' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand forward" -l token-file -d 'File holding the token (read again for every tunnel)' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand forward" -l gate-token-file -d 'Through a relay: file holding a token for the gate itself, signed with a key from the gate\'s keys file (read again for every tunnel). Sent beside the relay\'s token; a gate started with --relay-require-gate-token admits no one without it' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand forward" -l ca -d 'Extra CA certificate (PEM) to trust besides the system store; repeatable' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand forward" -l connect-timeout -d 'TCP + TLS + WebSocket handshake deadline' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand forward" -l approval-wait -d 'For a host that holds sessions until its administrator approves them (incomingconnections.approval): how long to wait for the gate\'s answer, e.g. 2m (more than the gate\'s --approval-timeout, 60s) [default: --connect-timeout]' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand forward" -l ping-interval -d 'Ping the gate after this long without hearing from it (0 disables)' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand forward" -l log-format -d 'Diagnostics format on stderr' -r -f -a "human\t'One plain line per event'
json\t'JSON lines, the agent client\'s shape'"
complete -c arcgate -n "__fish_arcgate_using_subcommand forward" -l shutdown-grace -d 'On Ctrl-C/SIGTERM, how long open tunnels may continue before they are closed' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand forward" -l insecure -d 'Do not verify the gate\'s certificate (DANGEROUS; for diagnosis only)'
complete -c arcgate -n "__fish_arcgate_using_subcommand forward" -l no-check -d 'Do not open a test tunnel at start (by default one is opened and closed at once, so that a refusal - gate, token, policy - ends `forward` before it listens)'
complete -c arcgate -n "__fish_arcgate_using_subcommand forward" -s v -l verbose -d 'More log lines: each -v one level up from the command\'s default (RUST_LOG, when set, decides instead)'
complete -c arcgate -n "__fish_arcgate_using_subcommand forward" -s q -l quiet -d 'Fewer log lines: each -q one level down from the command\'s default'
complete -c arcgate -n "__fish_arcgate_using_subcommand forward" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c arcgate -n "__fish_arcgate_using_subcommand ssh-config" -s p -l port -d 'A fixed SSH port (default: whatever `ssh -p` says, 22)' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand ssh-config" -l token-file -d 'Token file for the ProxyCommand' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand ssh-config" -l ca -d 'Extra CA certificate for the ProxyCommand; repeatable' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand ssh-config" -l user -d 'A User line' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand ssh-config" -s v -l verbose -d 'More log lines: each -v one level up from the command\'s default (RUST_LOG, when set, decides instead)'
complete -c arcgate -n "__fish_arcgate_using_subcommand ssh-config" -s q -l quiet -d 'Fewer log lines: each -q one level down from the command\'s default'
complete -c arcgate -n "__fish_arcgate_using_subcommand ssh-config" -s h -l help -d 'Print help'
complete -c arcgate -n "__fish_arcgate_using_subcommand ssh" -s v -l verbose -d 'More log lines: each -v one level up from the command\'s default (RUST_LOG, when set, decides instead)'
complete -c arcgate -n "__fish_arcgate_using_subcommand ssh" -s q -l quiet -d 'Fewer log lines: each -q one level down from the command\'s default'
complete -c arcgate -n "__fish_arcgate_using_subcommand profile; and not __fish_seen_subcommand_from add list remove help" -s v -l verbose -d 'More log lines: each -v one level up from the command\'s default (RUST_LOG, when set, decides instead)'
complete -c arcgate -n "__fish_arcgate_using_subcommand profile; and not __fish_seen_subcommand_from add list remove help" -s q -l quiet -d 'Fewer log lines: each -q one level down from the command\'s default'
complete -c arcgate -n "__fish_arcgate_using_subcommand profile; and not __fish_seen_subcommand_from add list remove help" -s h -l help -d 'Print help'
complete -c arcgate -n "__fish_arcgate_using_subcommand profile; and not __fish_seen_subcommand_from add list remove help" -f -a "add" -d 'Add (or replace) the profile for a host'
complete -c arcgate -n "__fish_arcgate_using_subcommand profile; and not __fish_seen_subcommand_from add list remove help" -f -a "list" -d 'List the profiles'
complete -c arcgate -n "__fish_arcgate_using_subcommand profile; and not __fish_seen_subcommand_from add list remove help" -f -a "remove" -d 'Remove a profile'
complete -c arcgate -n "__fish_arcgate_using_subcommand profile; and not __fish_seen_subcommand_from add list remove help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c arcgate -n "__fish_arcgate_using_subcommand profile; and __fish_seen_subcommand_from add" -l url -d 'Its gate, wss://GATE[:PORT]/$hc/NAME (single-quote it this once)' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand profile; and __fish_seen_subcommand_from add" -l token-file -d 'The token file' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand profile; and __fish_seen_subcommand_from add" -l gate-token-file -d 'Through a relay: the gate token file' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand profile; and __fish_seen_subcommand_from add" -l ca -d 'An extra CA certificate to trust; repeatable' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand profile; and __fish_seen_subcommand_from add" -s p -l port -d 'The port on the host' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand profile; and __fish_seen_subcommand_from add" -s v -l verbose -d 'More log lines: each -v one level up from the command\'s default (RUST_LOG, when set, decides instead)'
complete -c arcgate -n "__fish_arcgate_using_subcommand profile; and __fish_seen_subcommand_from add" -s q -l quiet -d 'Fewer log lines: each -q one level down from the command\'s default'
complete -c arcgate -n "__fish_arcgate_using_subcommand profile; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help'
complete -c arcgate -n "__fish_arcgate_using_subcommand profile; and __fish_seen_subcommand_from list" -s v -l verbose -d 'More log lines: each -v one level up from the command\'s default (RUST_LOG, when set, decides instead)'
complete -c arcgate -n "__fish_arcgate_using_subcommand profile; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Fewer log lines: each -q one level down from the command\'s default'
complete -c arcgate -n "__fish_arcgate_using_subcommand profile; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c arcgate -n "__fish_arcgate_using_subcommand profile; and __fish_seen_subcommand_from remove" -s v -l verbose -d 'More log lines: each -v one level up from the command\'s default (RUST_LOG, when set, decides instead)'
complete -c arcgate -n "__fish_arcgate_using_subcommand profile; and __fish_seen_subcommand_from remove" -s q -l quiet -d 'Fewer log lines: each -q one level down from the command\'s default'
complete -c arcgate -n "__fish_arcgate_using_subcommand profile; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help'
complete -c arcgate -n "__fish_arcgate_using_subcommand profile; and __fish_seen_subcommand_from help" -f -a "add" -d 'Add (or replace) the profile for a host'
complete -c arcgate -n "__fish_arcgate_using_subcommand profile; and __fish_seen_subcommand_from help" -f -a "list" -d 'List the profiles'
complete -c arcgate -n "__fish_arcgate_using_subcommand profile; and __fish_seen_subcommand_from help" -f -a "remove" -d 'Remove a profile'
complete -c arcgate -n "__fish_arcgate_using_subcommand profile; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c arcgate -n "__fish_arcgate_using_subcommand status" -l admin -d 'Ask the gate\'s --admin address instead of its admin socket (read-only: approvals need the socket)' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand status" -l socket -d 'The gate\'s admin socket [default: the one a gate with this configuration serves: /run/arcgate/admin.sock for the host\'s]' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand status" -l config -d 'Configuration file [default: /var/opt/arcgate/localconfig.json as root, else $XDG_CONFIG_HOME/arcgate/localconfig.json]' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand status" -l json -d 'JSON output: {"health": ..., "sessions": [...], "approvals": {...}}'
complete -c arcgate -n "__fish_arcgate_using_subcommand status" -s v -l verbose -d 'More log lines: each -v one level up from the command\'s default (RUST_LOG, when set, decides instead)'
complete -c arcgate -n "__fish_arcgate_using_subcommand status" -s q -l quiet -d 'Fewer log lines: each -q one level down from the command\'s default'
complete -c arcgate -n "__fish_arcgate_using_subcommand status" -s h -l help -d 'Print help'
complete -c arcgate -n "__fish_arcgate_using_subcommand sessions; and not __fish_seen_subcommand_from waiting approve deny help" -l admin -d 'Ask the gate\'s --admin address instead of its admin socket (read-only: approvals need the socket)' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand sessions; and not __fish_seen_subcommand_from waiting approve deny help" -l socket -d 'The gate\'s admin socket [default: the one a gate with this configuration serves: /run/arcgate/admin.sock for the host\'s]' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand sessions; and not __fish_seen_subcommand_from waiting approve deny help" -l config -d 'Configuration file [default: /var/opt/arcgate/localconfig.json as root, else $XDG_CONFIG_HOME/arcgate/localconfig.json]' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand sessions; and not __fish_seen_subcommand_from waiting approve deny help" -s v -l verbose -d 'More log lines: each -v one level up from the command\'s default (RUST_LOG, when set, decides instead)'
complete -c arcgate -n "__fish_arcgate_using_subcommand sessions; and not __fish_seen_subcommand_from waiting approve deny help" -s q -l quiet -d 'Fewer log lines: each -q one level down from the command\'s default'
complete -c arcgate -n "__fish_arcgate_using_subcommand sessions; and not __fish_seen_subcommand_from waiting approve deny help" -s h -l help -d 'Print help'
complete -c arcgate -n "__fish_arcgate_using_subcommand sessions; and not __fish_seen_subcommand_from waiting approve deny help" -f -a "waiting" -d 'List the sessions waiting for approval, and the standing approvals'
complete -c arcgate -n "__fish_arcgate_using_subcommand sessions; and not __fish_seen_subcommand_from waiting approve deny help" -f -a "approve" -d 'Let a waiting session in'
complete -c arcgate -n "__fish_arcgate_using_subcommand sessions; and not __fish_seen_subcommand_from waiting approve deny help" -f -a "deny" -d 'Refuse a waiting session (403, approval_denied)'
complete -c arcgate -n "__fish_arcgate_using_subcommand sessions; and not __fish_seen_subcommand_from waiting approve deny help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c arcgate -n "__fish_arcgate_using_subcommand sessions; and __fish_seen_subcommand_from waiting" -l admin -d 'Ask the gate\'s --admin address instead of its admin socket (read-only: approvals need the socket)' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand sessions; and __fish_seen_subcommand_from waiting" -l socket -d 'The gate\'s admin socket [default: the one a gate with this configuration serves: /run/arcgate/admin.sock for the host\'s]' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand sessions; and __fish_seen_subcommand_from waiting" -l config -d 'Configuration file [default: /var/opt/arcgate/localconfig.json as root, else $XDG_CONFIG_HOME/arcgate/localconfig.json]' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand sessions; and __fish_seen_subcommand_from waiting" -s j -l json -d 'JSON output'
complete -c arcgate -n "__fish_arcgate_using_subcommand sessions; and __fish_seen_subcommand_from waiting" -s v -l verbose -d 'More log lines: each -v one level up from the command\'s default (RUST_LOG, when set, decides instead)'
complete -c arcgate -n "__fish_arcgate_using_subcommand sessions; and __fish_seen_subcommand_from waiting" -s q -l quiet -d 'Fewer log lines: each -q one level down from the command\'s default'
complete -c arcgate -n "__fish_arcgate_using_subcommand sessions; and __fish_seen_subcommand_from waiting" -s h -l help -d 'Print help'
complete -c arcgate -n "__fish_arcgate_using_subcommand sessions; and __fish_seen_subcommand_from approve" -l for-key -d 'Also let the same key\'s sessions in without asking, for this long (at most 1d)' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand sessions; and __fish_seen_subcommand_from approve" -l admin -d 'Ask the gate\'s --admin address instead of its admin socket (read-only: approvals need the socket)' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand sessions; and __fish_seen_subcommand_from approve" -l socket -d 'The gate\'s admin socket [default: the one a gate with this configuration serves: /run/arcgate/admin.sock for the host\'s]' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand sessions; and __fish_seen_subcommand_from approve" -l config -d 'Configuration file [default: /var/opt/arcgate/localconfig.json as root, else $XDG_CONFIG_HOME/arcgate/localconfig.json]' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand sessions; and __fish_seen_subcommand_from approve" -s v -l verbose -d 'More log lines: each -v one level up from the command\'s default (RUST_LOG, when set, decides instead)'
complete -c arcgate -n "__fish_arcgate_using_subcommand sessions; and __fish_seen_subcommand_from approve" -s q -l quiet -d 'Fewer log lines: each -q one level down from the command\'s default'
complete -c arcgate -n "__fish_arcgate_using_subcommand sessions; and __fish_seen_subcommand_from approve" -s h -l help -d 'Print help'
complete -c arcgate -n "__fish_arcgate_using_subcommand sessions; and __fish_seen_subcommand_from deny" -l admin -d 'Ask the gate\'s --admin address instead of its admin socket (read-only: approvals need the socket)' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand sessions; and __fish_seen_subcommand_from deny" -l socket -d 'The gate\'s admin socket [default: the one a gate with this configuration serves: /run/arcgate/admin.sock for the host\'s]' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand sessions; and __fish_seen_subcommand_from deny" -l config -d 'Configuration file [default: /var/opt/arcgate/localconfig.json as root, else $XDG_CONFIG_HOME/arcgate/localconfig.json]' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand sessions; and __fish_seen_subcommand_from deny" -s v -l verbose -d 'More log lines: each -v one level up from the command\'s default (RUST_LOG, when set, decides instead)'
complete -c arcgate -n "__fish_arcgate_using_subcommand sessions; and __fish_seen_subcommand_from deny" -s q -l quiet -d 'Fewer log lines: each -q one level down from the command\'s default'
complete -c arcgate -n "__fish_arcgate_using_subcommand sessions; and __fish_seen_subcommand_from deny" -s h -l help -d 'Print help'
complete -c arcgate -n "__fish_arcgate_using_subcommand sessions; and __fish_seen_subcommand_from help" -f -a "waiting" -d 'List the sessions waiting for approval, and the standing approvals'
complete -c arcgate -n "__fish_arcgate_using_subcommand sessions; and __fish_seen_subcommand_from help" -f -a "approve" -d 'Let a waiting session in'
complete -c arcgate -n "__fish_arcgate_using_subcommand sessions; and __fish_seen_subcommand_from help" -f -a "deny" -d 'Refuse a waiting session (403, approval_denied)'
complete -c arcgate -n "__fish_arcgate_using_subcommand sessions; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c arcgate -n "__fish_arcgate_using_subcommand relay" -l listen -d 'Address to listen on (port 0 picks a free one). The default is beside the gate\'s 8443, away from the admin endpoints\' 9443 in the README\'s examples' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand relay" -l cert -d 'Certificate chain (PEM)' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand relay" -l key -d 'Private key (PEM)' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand relay" -l keys -d 'Keys file: SAS keys with "rights": ["send"] (the default) or ["listen"], and optional "ports" a sender key may reach' -r -F
complete -c arcgate -n "__fish_arcgate_using_subcommand relay" -l public-host -d 'The host tokens must name in their resource (http://HOST/NAME/); without it, any' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand relay" -l handshake-timeout -d 'TLS and the HTTP request head must arrive within this' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand relay" -l max-header-bytes -d 'Largest request head, in bytes' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand relay" -l max-frame-bytes -d 'Largest WebSocket frame relayed, in bytes' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand relay" -l ping-interval -d 'Ping listeners\' control channels this often' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand relay" -l max-connections -d 'Concurrent connections (listeners, senders, rendezvous)' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand relay" -l max-handshakes-per-ip -d 'Connections in their TLS or HTTP handshake from one source (an IPv4 address or an IPv6 /64); more are closed unanswered. The same rule as `serve`\'s' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand relay" -l admin -d 'Serve /metrics and /healthz over plain HTTP on this loopback address' -r
complete -c arcgate -n "__fish_arcgate_using_subcommand relay" -l log-format -d 'Log format' -r -f -a "human\t'One plain line per event'
json\t'JSON lines, the agent client\'s shape'"
complete -c arcgate -n "__fish_arcgate_using_subcommand relay" -s v -l verbose -d 'More log lines: each -v one level up from the command\'s default (RUST_LOG, when set, decides instead)'
complete -c arcgate -n "__fish_arcgate_using_subcommand relay" -s q -l quiet -d 'Fewer log lines: each -q one level down from the command\'s default'
complete -c arcgate -n "__fish_arcgate_using_subcommand relay" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c arcgate -n "__fish_arcgate_using_subcommand completions" -s v -l verbose -d 'More log lines: each -v one level up from the command\'s default (RUST_LOG, when set, decides instead)'
complete -c arcgate -n "__fish_arcgate_using_subcommand completions" -s q -l quiet -d 'Fewer log lines: each -q one level down from the command\'s default'
complete -c arcgate -n "__fish_arcgate_using_subcommand completions" -s h -l help -d 'Print help'
complete -c arcgate -n "__fish_arcgate_using_subcommand manpages" -s v -l verbose -d 'More log lines: each -v one level up from the command\'s default (RUST_LOG, when set, decides instead)'
complete -c arcgate -n "__fish_arcgate_using_subcommand manpages" -s q -l quiet -d 'Fewer log lines: each -q one level down from the command\'s default'
complete -c arcgate -n "__fish_arcgate_using_subcommand manpages" -s h -l help -d 'Print help'
complete -c arcgate -n "__fish_arcgate_using_subcommand help; and not __fish_seen_subcommand_from serve config extension token key connect forward ssh-config ssh profile status sessions relay completions manpages help" -f -a "serve" -d 'Run the gate: TLS WebSocket endpoint, policy, bridge to 127.0.0.1:PORT'
complete -c arcgate -n "__fish_arcgate_using_subcommand help; and not __fish_seen_subcommand_from serve config extension token key connect forward ssh-config ssh profile status sessions relay completions manpages help" -f -a "config" -d 'Show or change the local configuration (same keys and output as `azcmagent config`)'
complete -c arcgate -n "__fish_arcgate_using_subcommand help; and not __fish_seen_subcommand_from serve config extension token key connect forward ssh-config ssh profile status sessions relay completions manpages help" -f -a "extension" -d 'Extension rules (extensions.enabled / allowlist / blocklist)'
complete -c arcgate -n "__fish_arcgate_using_subcommand help; and not __fish_seen_subcommand_from serve config extension token key connect forward ssh-config ssh profile status sessions relay completions manpages help" -f -a "token" -d 'Mint an access token from a key in the keys file'
complete -c arcgate -n "__fish_arcgate_using_subcommand help; and not __fish_seen_subcommand_from serve config extension token key connect forward ssh-config ssh profile status sessions relay completions manpages help" -f -a "key" -d 'List, add, remove or rotate the keys in a keys file (the gate\'s, or a relay\'s)'
complete -c arcgate -n "__fish_arcgate_using_subcommand help; and not __fish_seen_subcommand_from serve config extension token key connect forward ssh-config ssh profile status sessions relay completions manpages help" -f -a "connect" -d 'Connect stdin/stdout to a port on a host through its gate (an OpenSSH ProxyCommand)'
complete -c arcgate -n "__fish_arcgate_using_subcommand help; and not __fish_seen_subcommand_from serve config extension token key connect forward ssh-config ssh profile status sessions relay completions manpages help" -f -a "forward" -d 'Listen locally; every accepted connection becomes one tunnel (RDP, or any allowed port)'
complete -c arcgate -n "__fish_arcgate_using_subcommand help; and not __fish_seen_subcommand_from serve config extension token key connect forward ssh-config ssh profile status sessions relay completions manpages help" -f -a "ssh-config" -d 'Print a Host block for ~/.ssh/config that connects through the gate'
complete -c arcgate -n "__fish_arcgate_using_subcommand help; and not __fish_seen_subcommand_from serve config extension token key connect forward ssh-config ssh profile status sessions relay completions manpages help" -f -a "ssh" -d 'Run OpenSSH to a host through its gate, from its profile: arcgate ssh [user@]NAME [ARGS]'
complete -c arcgate -n "__fish_arcgate_using_subcommand help; and not __fish_seen_subcommand_from serve config extension token key connect forward ssh-config ssh profile status sessions relay completions manpages help" -f -a "profile" -d 'Add, list or remove client profiles (a host\'s gate URL, token file, CA, port)'
complete -c arcgate -n "__fish_arcgate_using_subcommand help; and not __fish_seen_subcommand_from serve config extension token key connect forward ssh-config ssh profile status sessions relay completions manpages help" -f -a "status" -d 'Show the version, the policy in force, its file and the live sessions of the running gate (from its admin socket)'
complete -c arcgate -n "__fish_arcgate_using_subcommand help; and not __fish_seen_subcommand_from serve config extension token key connect forward ssh-config ssh profile status sessions relay completions manpages help" -f -a "sessions" -d 'Approve or deny the sessions that wait for the host\'s administrator (incomingconnections.approval required), or list them'
complete -c arcgate -n "__fish_arcgate_using_subcommand help; and not __fish_seen_subcommand_from serve config extension token key connect forward ssh-config ssh profile status sessions relay completions manpages help" -f -a "relay" -d 'Run an embedded Hybrid Connections relay (gates attach with serve --relay)'
complete -c arcgate -n "__fish_arcgate_using_subcommand help; and not __fish_seen_subcommand_from serve config extension token key connect forward ssh-config ssh profile status sessions relay completions manpages help" -f -a "completions" -d 'Print shell completions: arcgate completions bash > /etc/bash_completion.d/arcgate'
complete -c arcgate -n "__fish_arcgate_using_subcommand help; and not __fish_seen_subcommand_from serve config extension token key connect forward ssh-config ssh profile status sessions relay completions manpages help" -f -a "manpages" -d 'Write the man pages into a directory (the package ships them)'
complete -c arcgate -n "__fish_arcgate_using_subcommand help; and not __fish_seen_subcommand_from serve config extension token key connect forward ssh-config ssh profile status sessions relay completions manpages help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c arcgate -n "__fish_arcgate_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "list" -d 'Print every key and its value'
complete -c arcgate -n "__fish_arcgate_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "get" -d 'Print one key\'s value'
complete -c arcgate -n "__fish_arcgate_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "set" -d 'Set a key (lists: comma-separated; replaces the list unless --add/--remove)'
complete -c arcgate -n "__fish_arcgate_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "clear" -d 'Put a key back to its default'
complete -c arcgate -n "__fish_arcgate_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "info" -d 'Describe the keys and their allowed values'
complete -c arcgate -n "__fish_arcgate_using_subcommand help; and __fish_seen_subcommand_from extension" -f -a "check" -d 'Exit 0 if Publisher/Type may be installed, 1 if not; print why'
complete -c arcgate -n "__fish_arcgate_using_subcommand help; and __fish_seen_subcommand_from key" -f -a "list" -d 'List the keys: name, rights, ports (never the secrets)'
complete -c arcgate -n "__fish_arcgate_using_subcommand help; and __fish_seen_subcommand_from key" -f -a "add" -d 'Add a key with a new random 256-bit secret, printed once on stdout'
complete -c arcgate -n "__fish_arcgate_using_subcommand help; and __fish_seen_subcommand_from key" -f -a "remove" -d 'Remove a key: its tokens stop working and its live sessions are closed'
complete -c arcgate -n "__fish_arcgate_using_subcommand help; and __fish_seen_subcommand_from key" -f -a "rotate" -d 'Give a key a new random secret, printed once: tokens signed with the old one stop working and the sessions they opened are closed'
complete -c arcgate -n "__fish_arcgate_using_subcommand help; and __fish_seen_subcommand_from profile" -f -a "add" -d 'Add (or replace) the profile for a host'
complete -c arcgate -n "__fish_arcgate_using_subcommand help; and __fish_seen_subcommand_from profile" -f -a "list" -d 'List the profiles'
complete -c arcgate -n "__fish_arcgate_using_subcommand help; and __fish_seen_subcommand_from profile" -f -a "remove" -d 'Remove a profile'
complete -c arcgate -n "__fish_arcgate_using_subcommand help; and __fish_seen_subcommand_from sessions" -f -a "waiting" -d 'List the sessions waiting for approval, and the standing approvals'
complete -c arcgate -n "__fish_arcgate_using_subcommand help; and __fish_seen_subcommand_from sessions" -f -a "approve" -d 'Let a waiting session in'
complete -c arcgate -n "__fish_arcgate_using_subcommand help; and __fish_seen_subcommand_from sessions" -f -a "deny" -d 'Refuse a waiting session (403, approval_denied)'
