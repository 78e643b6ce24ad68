#!/usr/bin/env bash
# Stops the stack that scripts/kube/up.sh DIR started: its clients first, then the API server,
# then etcd, each with SIGTERM and, if it has not exited within a few seconds, SIGKILL. Safe to
# run twice, and on a stack that only half started.
#
# Usage: scripts/kube/down.sh DIR
set -euo pipefail

(($# == 1)) || {
	echo "usage: $0 DIR" >&2
	exit 2
}
DIR=$1
[[ -d $DIR/pids ]] || exit 0

# running PID succeeds while PID is a live process (a zombie has exited already).
running() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	[[ ${stat%% *} != Z ]]
}

# ours PID NAME succeeds while PID runs what up.sh started as NAME: a pid file is not trusted
# further than that, since pids are reused.
ours() {
	local pid=$1 name=$2 exe
	running "$pid" || return 1
	exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
	exe=${exe% (deleted)}
	[[ ${exe##*/} == "$name" || ($name == reaper && ${exe##*/} == bash) ]]
}

# stop NAME... terminates the named components together and waits for them.
stop() {
	local name pid pids=() names=()
	for name in "$@"; do
		[[ -f $DIR/pids/$name.pid ]] || continue
		pid=$(<"$DIR/pids/$name.pid")
		if ours "$pid" "$name"; then
			kill -TERM "$pid" 2>/dev/null || true
			pids+=("$pid")
			names+=("$name")
		fi
		rm -f "$DIR/pids/$name.pid"
	done
	local i deadline=$((SECONDS + 10))
	for i in "${!pids[@]}"; do
		while running "${pids[i]}" && ((SECONDS < deadline)); do
			sleep 0.1
		done
		if running "${pids[i]}"; then
			echo "down.sh: ${names[i]} (pid ${pids[i]}) ignored SIGTERM for 10s; killing it" >&2
			kill -KILL "${pids[i]}" 2>/dev/null || true
			while running "${pids[i]}" && ((SECONDS < deadline + 5)); do
				sleep 0.1
			done
		fi
	done
}

# The watcher of the stack's owner goes first, unless it is the one stopping the stack.
[[ -n ${LODE_KUBE_REAPER-} ]] || stop reaper
stop kwok kube-scheduler kube-controller-manager
stop kube-apiserver
stop etcd
rm -rf "$DIR/pids"
[[ -n ${LODE_KUBE_QUIET-} ]] || echo "down.sh: stopped the stack in $DIR" >&2
