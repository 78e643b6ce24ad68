#!/usr/bin/env bash
# Starts a real Kubernetes control plane with fake GPU nodes, everything on 127.0.0.1:
# etcd, kube-apiserver, kube-controller-manager (so Jobs create pods), kube-scheduler, and kwok,
# which plays the kubelet for nodes annotated kwok.x-k8s.io/node=fake as stages/ describes. Logs,
# pids, keys and the admin kubeconfig go under DIR; scripts/kube/down.sh DIR stops it all.
#
# Usage: scripts/kube/up.sh DIR
#
#   LODE_KUBE_NODES      how many fake GPU nodes to create (default 2: gpu-node-0, gpu-node-1)
#   LODE_KUBE_ENGINES    where scripts/kube/build.sh cached the binaries
#   LODE_KUBE_OWNER_PID  when set, the stack is stopped as soon as that process is gone, so a test
#                        binary that dies without cleaning up leaves nothing running
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/lib.sh
. "$here/lib.sh"

(($# == 1)) || die "usage: $0 DIR"
mkdir -p "$1"
DIR=$(cd "$1" && pwd)
NODES=${LODE_KUBE_NODES:-2}
[[ $NODES =~ ^[0-9]+$ ]] || die "LODE_KUBE_NODES must be a number, not '$NODES'"

if missing=$(engines_missing) && [[ -n $missing ]]; then
	die "the Kubernetes engines are not built; run scripts/kube/build.sh (missing: $(tr '\n' ' ' <<<"$missing"))"
fi
for tool in curl openssl base64; do
	command -v "$tool" >/dev/null || die "$tool is not on PATH"
done
[[ ! -e $DIR/pids ]] || die "$DIR already holds a stack; stop it with scripts/kube/down.sh $DIR"

start=$SECONDS
mkdir -p "$DIR/pids" "$DIR/logs" "$DIR/pki" "$DIR/flexvolume"
mkdir -p "$DIR/etcd"
chmod 700 "$DIR/etcd" # etcd warns about a wider one
started=() # component names, in start order

ready=0
# On any early exit, show the end of the logs of whatever died and stop what was started.
cleanup() {
	((ready == 0)) || return 0
	local name pid
	for name in ${started[@]+"${started[@]}"}; do
		pid=$(<"$DIR/pids/$name.pid")
		if ! kill -0 "$pid" 2>/dev/null; then
			echo "--- $name exited; the end of $DIR/logs/$name.log:" >&2
			tail -n 20 "$DIR/logs/$name.log" >&2
		fi
	done
	LODE_KUBE_QUIET=1 "$here/down.sh" "$DIR" || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM
fail() {
	echo "up.sh: $*" >&2
	exit 1
}

# Free ports, chosen below the kernel's ephemeral range from those no socket holds now.
read -r ephemeral _ </proc/sys/net/ipv4/ip_local_port_range || ephemeral=32768
((ephemeral > 20000)) || die "the ephemeral port range starts at $ephemeral; up.sh picks ports from 16384 below it"
declare -A taken=()
while read -r _ addr _; do
	port=${addr##*:}
	[[ $port =~ ^[0-9A-F]{4}$ ]] && taken[$((16#$port))]=1
done < <(cat /proc/net/tcp /proc/net/tcp6 2>/dev/null)
free_port() {
	local p _
	for _ in {1..200}; do
		p=$((ephemeral - 16384 + RANDOM % 16384))
		if [[ -z ${taken[$p]-} ]]; then
			taken[$p]=1
			printf -v "$1" '%d' "$p"
			return
		fi
	done
	die "found no free port"
}
ETCD_PORT=0 ETCD_PEER_PORT=0 API_PORT=0 KCM_PORT=0 SCHED_PORT=0 KWOK_PORT=0
free_port ETCD_PORT
free_port ETCD_PEER_PORT
free_port API_PORT
free_port KCM_PORT
free_port SCHED_PORT
free_port KWOK_PORT
SERVER=https://127.0.0.1:$API_PORT

# A serving certificate for 127.0.0.1 that is its own CA, the service-account signing key, and a
# token per client, all in system:masters: this is a test cluster, not a secure one.
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=127.0.0.1" \
	-addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
	-keyout "$DIR/pki/serving.key" -out "$DIR/pki/serving.crt" 2>"$DIR/logs/openssl.log" ||
	die "openssl could not make the serving certificate (see $DIR/logs/openssl.log)"
openssl genrsa -out "$DIR/pki/sa.key" 2048 2>>"$DIR/logs/openssl.log" ||
	die "openssl could not make the service-account key (see $DIR/logs/openssl.log)"
: >"$DIR/pki/tokens.csv"
chmod 600 "$DIR/pki/tokens.csv"
ca_data=$(base64 -w0 <"$DIR/pki/serving.crt")

# kubeconfig USER FILE writes a kubeconfig for USER, with a token of its own, to FILE.
kubeconfig() {
	local user=$1 file=$2 token
	token=$(openssl rand -hex 24)
	echo "$token,$user,$user,system:masters" >>"$DIR/pki/tokens.csv"
	cat >"$file" <<-KUBECONFIG
		apiVersion: v1
		kind: Config
		clusters:
		- name: lode
		  cluster:
		    server: $SERVER
		    certificate-authority-data: $ca_data
		users:
		- name: $user
		  user:
		    token: $token
		contexts:
		- name: lode
		  context:
		    cluster: lode
		    user: $user
		current-context: lode
	KUBECONFIG
	chmod 600 "$file"
}
kubeconfig admin "$DIR/kubeconfig"
for user in kube-controller-manager kube-scheduler kwok; do
	kubeconfig "$user" "$DIR/$user.kubeconfig"
done
admin_token=$(sed -n 's/^\([^,]*\),admin,.*/\1/p' "$DIR/pki/tokens.csv")

# run NAME BINARY ARGS... starts a component in the background with its log and pid under DIR.
run() {
	local name=$1 bin=$2
	shift 2
	"$bin" "$@" </dev/null >"$DIR/logs/$name.log" 2>&1 &
	echo $! >"$DIR/pids/$name.pid"
	started+=("$name")
}

# wait_until NAME SECONDS COMMAND... polls COMMAND until it succeeds, failing early when a
# component exits and late when the deadline passes.
wait_until() {
	local what=$1 deadline=$((SECONDS + $2)) name
	shift 2
	until "$@" >/dev/null 2>&1; do
		for name in ${started[@]+"${started[@]}"}; do
			kill -0 "$(<"$DIR/pids/$name.pid")" 2>/dev/null || fail "$name exited while waiting for $what"
		done
		((SECONDS < deadline)) || fail "$what: not ready after $2s (logs in $DIR/logs)"
		sleep 0.1
	done
}

api() {
	curl -sf --max-time 2 --cacert "$DIR/pki/serving.crt" -H "Authorization: Bearer $admin_token" "$SERVER$1"
}

healthz() {
	curl -sfk --max-time 2 "https://127.0.0.1:$1/healthz"
}

if [[ -n ${LODE_KUBE_OWNER_PID-} ]]; then
	# Stops the stack once its owner is gone; down.sh stops this watcher first otherwise.
	owner=$LODE_KUBE_OWNER_PID
	kill -0 "$owner" 2>/dev/null || die "LODE_KUBE_OWNER_PID $owner is not running"
	LODE_KUBE_REAPER=1 bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; exec "$2" "$3"' \
		reaper "$owner" "$here/down.sh" "$DIR" </dev/null >"$DIR/logs/reaper.log" 2>&1 &
	echo $! >"$DIR/pids/reaper.pid"
fi

run etcd "$ETCD_DIR/etcd" \
	--name lode \
	--data-dir "$DIR/etcd" \
	--listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
	--advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
	--listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
	--initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
	--initial-cluster "lode=http://127.0.0.1:$ETCD_PEER_PORT" \
	--unsafe-no-fsync \
	--log-level warn
wait_until etcd 30 curl -sf --max-time 2 "http://127.0.0.1:$ETCD_PORT/health"

run kube-apiserver "$KUBE_DIR/kube-apiserver" \
	--etcd-servers "http://127.0.0.1:$ETCD_PORT" \
	--bind-address 127.0.0.1 \
	--advertise-address 127.0.0.1 \
	--secure-port "$API_PORT" \
	--cert-dir "$DIR/pki" \
	--tls-cert-file "$DIR/pki/serving.crt" \
	--tls-private-key-file "$DIR/pki/serving.key" \
	--token-auth-file "$DIR/pki/tokens.csv" \
	--authorization-mode RBAC \
	--enable-admission-plugins OwnerReferencesPermissionEnforcement \
	--service-account-issuer "$SERVER" \
	--service-account-key-file "$DIR/pki/sa.key" \
	--service-account-signing-key-file "$DIR/pki/sa.key" \
	--service-cluster-ip-range 10.96.0.0/16 \
	--endpoint-reconciler-type none \
	--profiling=false
wait_until kube-apiserver 60 api /readyz

run kube-controller-manager "$KUBE_DIR/kube-controller-manager" \
	--kubeconfig "$DIR/kube-controller-manager.kubeconfig" \
	--authentication-kubeconfig "$DIR/kube-controller-manager.kubeconfig" \
	--authorization-kubeconfig "$DIR/kube-controller-manager.kubeconfig" \
	--authentication-skip-lookup \
	--bind-address 127.0.0.1 \
	--secure-port "$KCM_PORT" \
	--service-account-private-key-file "$DIR/pki/sa.key" \
	--root-ca-file "$DIR/pki/serving.crt" \
	--flex-volume-plugin-dir "$DIR/flexvolume" \
	--leader-elect=false \
	--profiling=false
run kube-scheduler "$KUBE_DIR/kube-scheduler" \
	--kubeconfig "$DIR/kube-scheduler.kubeconfig" \
	--authentication-kubeconfig "$DIR/kube-scheduler.kubeconfig" \
	--authorization-kubeconfig "$DIR/kube-scheduler.kubeconfig" \
	--authentication-skip-lookup \
	--bind-address 127.0.0.1 \
	--secure-port "$SCHED_PORT" \
	--leader-elect=false \
	--profiling=false
# The project's own stages (scripts/kube/stages): kwok's fast ones, with per-pod delays and exit
# codes, so a test can keep a pod running or make it fail.
stages=$(printf '%s,' "$here"/stages/*.yaml)
run kwok "$KWOK_DIR/kwok" \
	--kubeconfig "$DIR/kwok.kubeconfig" \
	--config "${stages%,}" \
	--manage-all-nodes=false \
	--manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
	--server-address "127.0.0.1:$KWOK_PORT"
wait_until kube-controller-manager 60 healthz "$KCM_PORT"
wait_until kube-scheduler 60 healthz "$SCHED_PORT"
wait_until kwok 60 curl -sf --max-time 2 "http://127.0.0.1:$KWOK_PORT/healthz"
# Pods are refused until their namespace's service account exists.
wait_until "the default service account" 60 api /api/v1/namespaces/default/serviceaccounts/default

names=()
for ((i = 0; i < NODES; i++)); do
	names+=("gpu-node-$i")
done
if ((NODES > 0)); then
	"$here/node.sh" "$DIR" add "${names[@]}" || fail "could not create the fake GPU nodes"
fi

ready=1
echo "$DIR/kubeconfig"
echo "up.sh: Kubernetes $KUBERNETES_VERSION with $NODES fake GPU node(s) ready in $((SECONDS - start))s at $SERVER" >&2
