#!/usr/bin/env bash
# The gatehouse demo: one Dovecot mailstore and gatehouse in front of it.
#
#   bash scripts/demo.sh         start (or restart) the demo and show a login
#   bash scripts/demo.sh stop    stop gatehouse and the mailstore
#   bash scripts/demo.sh status  say what is running
#
# `make demo` builds first and then runs this script. Everything listens on
# 127.0.0.1 only and lives under run/demo/ in the repository:
#   run/demo/mailstore/   Dovecot (imap 17143, pop3 17110), user demo@example.com / demo
#   run/demo/gatehouse.pid, gatehouse.log (error log), audit.log, gatehouse.out
# gatehouse runs `build/gatehouse -c conf/demo.conf` (GATEHOUSE_BIN overrides the
# binary) on 127.0.0.1:1143 (IMAP) and 127.0.0.1:1110 (POP3).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
RUN=run/demo
PY=/usr/bin/python3
BIN=${GATEHOUSE_BIN:-build/gatehouse}
CONF=conf/demo.conf
PROXY_PORT=1143
POP3_PROXY_PORT=1110
IMAP_PORT=17143
POP3_PORT=17110
USER_NAME=demo@example.com
USER_PASS=demo

say() { printf '%s\n' "$*"; }

gatehouse_pid() {
  # Print the pid from run/demo/gatehouse.pid if that process is our gatehouse.
  local pid
  [ -f "$RUN/gatehouse.pid" ] || return 1
  pid=$(cat "$RUN/gatehouse.pid" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "gatehouse" || return 1
  printf '%s\n' "$pid"
}

port_open() {
  "$PY" - "$1" <<'PY'
import socket, sys
s = socket.socket()
s.settimeout(0.5)
try:
    s.connect(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
PY
}

stop_demo() {
  local pid i
  if pid=$(gatehouse_pid); then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      say "gatehouse (pid $pid) did not stop after 10 s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    say "gatehouse stopped (pid $pid)"
  fi
  rm -f "$RUN/gatehouse.pid"
  if [ -d "$RUN/mailstore" ]; then
    "$PY" tests/e2e/mailstore.py stop --dir "$RUN/mailstore" >/dev/null || true
    say "mailstore stopped"
  fi
}

status_demo() {
  local pid
  if pid=$(gatehouse_pid); then say "gatehouse running (pid $pid) on 127.0.0.1:$PROXY_PORT"
  else say "gatehouse not running"; fi
  if port_open "$IMAP_PORT"; then say "mailstore answering on 127.0.0.1:$IMAP_PORT"
  else say "mailstore not running"; fi
}

start_demo() {
  local pid i
  [ -x "$BIN" ] || { say "no gatehouse binary at $BIN: run 'make build' (or 'make demo') first" >&2; exit 1; }

  # Restarting: stop whatever an earlier run left behind.
  stop_demo >/dev/null
  for port in "$PROXY_PORT" "$IMAP_PORT" "$POP3_PORT"; do
    if port_open "$port"; then
      say "127.0.0.1:$port is already in use by another program; the demo needs it" >&2
      exit 1
    fi
  done

  mkdir -p "$RUN"
  rm -f "$RUN/audit.log" "$RUN/gatehouse.log" "$RUN/gatehouse.out"

  say "== starting the Dovecot mailstore on 127.0.0.1:$IMAP_PORT (user $USER_NAME / $USER_PASS)"
  "$PY" tests/e2e/mailstore.py start --dir "$RUN/mailstore" \
      --imap-port "$IMAP_PORT" --pop3-port "$POP3_PORT" --user "$USER_NAME:$USER_PASS"

  say "== checking $CONF"
  "$BIN" -t -c "$CONF"

  say "== starting gatehouse on 127.0.0.1:$PROXY_PORT"
  # setsid: gatehouse outlives this script and the terminal's Ctrl-C.
  setsid "$BIN" -c "$CONF" </dev/null >"$RUN/gatehouse.out" 2>&1 &
  pid=$!
  echo "$pid" >"$RUN/gatehouse.pid"
  for i in $(seq 1 100); do
    port_open "$PROXY_PORT" && break
    if ! kill -0 "$pid" 2>/dev/null; then
      say "gatehouse exited at start-up:" >&2
      cat "$RUN/gatehouse.out" "$RUN/gatehouse.log" 2>/dev/null >&2 || true
      rm -f "$RUN/gatehouse.pid"
      "$PY" tests/e2e/mailstore.py stop --dir "$RUN/mailstore" >/dev/null || true
      exit 1
    fi
    sleep 0.1
  done
  port_open "$PROXY_PORT" || { say "gatehouse does not accept on 127.0.0.1:$PROXY_PORT" >&2; exit 1; }
  say "gatehouse running (pid $pid)"

  local url="imap://127.0.0.1:$PROXY_PORT/INBOX;UID=1"
  say ""
  say "== reading the welcome message through gatehouse:"
  say "   curl -v --url '$url' --user '$USER_NAME:$USER_PASS'"
  say ""
  if ! curl -sS -v --max-time 10 --url "$url" --user "$USER_NAME:$USER_PASS" 2>&1; then
    say "curl failed; see $RUN/gatehouse.log" >&2
  fi

  say ""
  say "== the audit line for that login ($RUN/audit.log):"
  for i in $(seq 1 30); do
    [ -s "$RUN/audit.log" ] && break
    sleep 0.1
  done
  tail -n 1 "$RUN/audit.log" 2>/dev/null || say "(no audit line yet)"

  say ""
  say "Try it yourself (any IMAP client: server 127.0.0.1, port $PROXY_PORT, no TLS,"
  say "user $USER_NAME, password $USER_PASS):"
  say "   curl -v --url '$url' --user '$USER_NAME:$USER_PASS'"
  say "   curl --url 'imap://127.0.0.1:$PROXY_PORT/INBOX' --user '$USER_NAME:$USER_PASS' -X 'SEARCH ALL'"
  say "   curl --url 'pop3://127.0.0.1:$POP3_PROXY_PORT/1' --user '$USER_NAME:$USER_PASS'   (POP3)"
  say "Logs: $ROOT/$RUN/gatehouse.log (errors), $ROOT/$RUN/audit.log (logins)"
  say "Stop: bash scripts/demo.sh stop   (or: make demo-stop)"
}

case "${1:-start}" in
  start) start_demo ;;
  stop) stop_demo ;;
  status) status_demo ;;
  *) say "usage: $0 [start|stop|status]" >&2; exit 2 ;;
esac
