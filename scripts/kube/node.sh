#!/usr/bin/env bash
# Adds or deletes fake GPU nodes in a stack started by scripts/kube/up.sh DIR. kwok plays the
# kubelet for them: they turn Ready, keep their lease, and run pods until these complete.
#
# Usage: scripts/kube/node.sh DIR add [--gpus N] [--product NAME] NODE...
#        scripts/kube/node.sh DIR delete NODE...
#
# A node advertises N nvidia.com/gpu (default 8), 64 CPUs, 512Gi of memory and 110 pods, and
# carries the label the NVIDIA GPU operator sets, nvidia.com/gpu.product (default
# NVIDIA-H100-80GB-HBM3). Deleting a node is how a test loses one.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/lib.sh
. "$here/lib.sh"

usage="usage: $0 DIR add [--gpus N] [--product NAME] NODE... | $0 DIR delete NODE..."
(($# >= 2)) || die "$usage"
DIR=$1 verb=$2
shift 2
[[ -f $DIR/kubeconfig ]] || die "no stack in $DIR (start one with scripts/kube/up.sh $DIR)"
kubectl() {
	"$KUBE_DIR/kubectl" --kubeconfig "$DIR/kubeconfig" "$@"
}

case $verb in
add)
	gpus=8 product=NVIDIA-H100-80GB-HBM3
	while (($# > 0)); do
		case $1 in
		--gpus) gpus=${2-} && shift 2 ;;
		--product) product=${2-} && shift 2 ;;
		-*) die "unknown flag $1; $usage" ;;
		*) break ;;
		esac
	done
	[[ $gpus =~ ^[0-9]+$ ]] || die "--gpus must be a number, not '$gpus'"
	[[ -n $product ]] || die "--product must not be empty"
	(($# > 0)) || die "$usage"
	for node in "$@"; do
		cat <<-NODE
			---
			apiVersion: v1
			kind: Node
			metadata:
			  name: $node
			  annotations:
			    kwok.x-k8s.io/node: fake
			  labels:
			    kubernetes.io/hostname: $node
			    kubernetes.io/os: linux
			    kubernetes.io/arch: amd64
			    nvidia.com/gpu.present: "true"
			    nvidia.com/gpu.product: $product
			    nvidia.com/gpu.count: "$gpus"
			status:
			  capacity: &resources
			    cpu: "64"
			    memory: 512Gi
			    pods: "110"
			    nvidia.com/gpu: "$gpus"
			  allocatable: *resources
		NODE
	done | kubectl create -f - >/dev/null || die "could not create the nodes $*"
	nodes=("${@/#/node/}")
	kubectl wait --for=condition=Ready --timeout=60s "${nodes[@]}" >/dev/null ||
		die "the nodes $* did not turn Ready within 60s (is kwok running? see $DIR/logs/kwok.log)"
	log "nodes ready: $*"
	;;
delete)
	(($# > 0)) || die "$usage"
	kubectl delete node --wait=true --timeout=60s "$@" >/dev/null || die "could not delete the nodes $*"
	log "nodes deleted: $*"
	;;
*)
	die "$usage"
	;;
esac
