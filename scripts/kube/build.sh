#!/usr/bin/env bash
# Builds the engines the Kubernetes tests run — kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, etcd and kwok — from the Go module proxy, and caches them by version
# under ${LODE_KUBE_ENGINES:-~/.cache/lode/engines}. Only what is missing is built, so a second run
# returns at once. A cold build (empty Go module and build caches) took 5.5 minutes on 2 cores;
# those caches grow by about 5 GB.
#
# Usage: scripts/kube/build.sh
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/lib.sh
. "$here/lib.sh"

command -v go >/dev/null || die "go is not on PATH"
export GOWORK=off # the throwaway modules below stand alone

work=$(mktemp -d "${TMPDIR:-/tmp}/lode-engines.XXXXXX")
partial=() # half-written outputs, removed when the script stops early
cleanup() {
	rm -rf "$work" ${partial[@]+"${partial[@]}"}
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# install_atomic moves a finished file or folder into place with one rename, so that an
# interrupted build never leaves something that looks cached.
install_atomic() {
	local src=$1 dst=$2
	mkdir -p "$(dirname "$dst")"
	local tmp
	tmp="$(dirname "$dst")/.$(basename "$dst").tmp.$$"
	partial+=("$tmp")
	rm -rf "$tmp"
	cp -R "$src" "$tmp"
	chmod -R u+w "$tmp" # files from the module cache are read-only
	rm -rf "$dst"
	mv "$tmp" "$dst"
}

# module_dir prints where the proxy's copy of module@version lies, downloading it if needed.
module_dir() {
	local dir
	dir=$(go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\([^"]*\)".*/\1/p')
	[[ -n $dir && -d $dir ]] || die "the Go module proxy did not serve $1"
	echo "$dir"
}

# new_module makes an empty throwaway module in $work/NAME and prints its folder.
new_module() {
	local name=$1
	local dir=$work/$name
	mkdir -p "$dir"
	(cd "$dir" && go mod init "lode.dev/engines/$name" >/dev/null 2>&1) || die "go mod init failed in $dir"
	echo "$dir"
}

gobuild() {
	local dir=$1 out=$2 ldflags=$3 pkg=$4
	log "building $pkg -> $out"
	local start=$SECONDS
	local tmp
	tmp=$work/bin/$(basename "$out")
	mkdir -p "$work/bin"
	(cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$tmp" "$pkg") ||
		die "building $pkg failed (see the go output above)"
	install_atomic "$tmp" "$out"
	log "built $out in $((SECONDS - start))s"
}

build_kubernetes() {
	local missing=() b
	for b in "${KUBE_BINARIES[@]}"; do
		[[ -x $KUBE_DIR/$b ]] || missing+=("$b")
	done
	if ((${#missing[@]} == 0)); then
		log "kubernetes $KUBERNETES_VERSION is cached in $KUBE_DIR"
		return
	fi
	log "kubernetes $KUBERNETES_VERSION: building ${missing[*]} into $KUBE_DIR"

	# k8s.io/kubernetes replaces its staging modules (k8s.io/api, k8s.io/client-go, …) with
	# folders of its own repository, which a dependent module cannot see: replace each with the
	# published module of the same release, v0.X.Y for v1.X.Y.
	local kdir staging_version=v0.${KUBERNETES_VERSION#v1.}
	kdir=$(module_dir "k8s.io/kubernetes@$KUBERNETES_VERSION")
	local staging
	staging=$(sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\) => \./staging/.*#\1#p' "$kdir/go.mod")
	[[ -n $staging ]] || die "found no staging modules in $kdir/go.mod"

	local dir
	dir=$(new_module kubernetes)
	{
		echo
		echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
		echo
		echo "replace ("
		local m
		for m in $staging; do
			echo "	$m => $m $staging_version"
		done
		echo ")"
		echo
		echo "tool ("
		for b in "${KUBE_BINARIES[@]}"; do
			echo "	k8s.io/kubernetes/cmd/$b"
		done
		echo ")"
	} >>"$dir/go.mod"
	log "resolving k8s.io/kubernetes $KUBERNETES_VERSION with $(wc -w <<<"$staging") staging modules at $staging_version"
	(cd "$dir" && go mod tidy) || die "go mod tidy failed for k8s.io/kubernetes $KUBERNETES_VERSION"

	# Without these the servers report a version that clients cannot parse.
	local minor=${KUBERNETES_VERSION#v1.}
	minor=${minor%%.*}
	local ldflags="-s -w" pkg
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
		ldflags+=" -X $pkg.gitTreeState=clean"
	done
	# The API server first: the others reuse most of what it compiles.
	for b in "${missing[@]}"; do
		gobuild "$dir" "$KUBE_DIR/$b" "$ldflags" "k8s.io/kubernetes/cmd/$b"
	done
}

build_etcd() {
	if [[ -x $ETCD_DIR/etcd ]]; then
		log "etcd $ETCD_VERSION is cached in $ETCD_DIR"
		return
	fi
	# go.etcd.io/etcd/server/v3 replaces its sibling modules with local paths, so `go install
	# module@version` refuses it; a throwaway module that requires it builds it.
	local dir
	dir=$(new_module etcd)
	printf '\nrequire go.etcd.io/etcd/server/v3 %s\n\ntool go.etcd.io/etcd/server/v3\n' "$ETCD_VERSION" >>"$dir/go.mod"
	(cd "$dir" && go mod tidy) || die "go mod tidy failed for go.etcd.io/etcd/server/v3 $ETCD_VERSION"
	gobuild "$dir" "$ETCD_DIR/etcd" "-s -w" go.etcd.io/etcd/server/v3
}

build_kwok() {
	if [[ -x $KWOK_DIR/kwok ]]; then
		log "kwok $KWOK_VERSION is cached in $KWOK_DIR"
		return
	fi
	# kwok's go.mod has no replace directives: build it exactly as it is published. Its stage
	# definitions are the project's own, in scripts/kube/stages.
	log "building sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION -> $KWOK_DIR/kwok"
	local start=$SECONDS
	GOBIN=$work/bin CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" ||
		die "building kwok $KWOK_VERSION failed (see the go output above)"
	install_atomic "$work/bin/kwok" "$KWOK_DIR/kwok"
	log "built $KWOK_DIR/kwok in $((SECONDS - start))s"
}

total=$SECONDS
build_etcd
build_kwok
build_kubernetes
if left=$(engines_missing) && [[ -n $left ]]; then
	die "still missing after the build: $left"
fi
log "engines ready under $ENGINES_ROOT ($((SECONDS - total))s)"
