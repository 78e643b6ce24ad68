# shellcheck shell=bash
# Shared by build.sh, up.sh and down.sh: versions, where the engines live, and small helpers.
# Sourced, not run.

# shellcheck source=SCRIPTDIR/versions.env
. "$(dirname "${BASH_SOURCE[0]}")/versions.env"

# The engines are cached by version under one root; LODE_KUBE_ENGINES moves the root.
ENGINES_ROOT=${LODE_KUBE_ENGINES:-${XDG_CACHE_HOME:-$HOME/.cache}/lode/engines}
KUBE_DIR=$ENGINES_ROOT/kubernetes-$KUBERNETES_VERSION
ETCD_DIR=$ENGINES_ROOT/etcd-$ETCD_VERSION
KWOK_DIR=$ENGINES_ROOT/kwok-$KWOK_VERSION
KUBE_BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubectl)

die() {
	echo "${0##*/}: $*" >&2
	exit 1
}

log() {
	echo "${0##*/}: $*" >&2
}

# engines_missing prints every engine file that is not cached yet, one a line.
engines_missing() {
	local b
	for b in "${KUBE_BINARIES[@]}"; do
		[[ -x $KUBE_DIR/$b ]] || echo "$KUBE_DIR/$b"
	done
	[[ -x $ETCD_DIR/etcd ]] || echo "$ETCD_DIR/etcd"
	[[ -x $KWOK_DIR/kwok ]] || echo "$KWOK_DIR/kwok"
}
