#!/usr/bin/env bash
# Builds cola's images (docker/Dockerfile) into the local Docker daemon, without a registry:
#
#   cola:<tag>                         gateway, middleware and executor
#   cola-executor-<language>:<tag>     one per program language of the language table (numeric
#                                      jobs have none: the middleware solves them)
#
# Usage: scripts/images.sh [--cola-binary PATH] [--tag TAG]
#   --cola-binary PATH   put this (Debian 12) binary in the images instead of compiling cola in
#                        a Rust image; the tests use it to run the binary they test
#   --tag TAG            image tag (default: $COLA_IMAGE_TAG or `latest`)
#
# The Dockerfile starts FROM debian:bookworm-slim (and rust:<version>-slim-bookworm to compile).
# When the daemon has no such image and cannot pull it, this script makes it locally: the Debian
# base with debootstrap from the Debian mirror, imported with `docker import`; the Rust image as
# that base plus gcc and this machine's Rust toolchain. Elsewhere the public images are pulled
# and the same Dockerfile builds unchanged (`docker build -f docker/Dockerfile --target ... .`).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
tag=${COLA_IMAGE_TAG:-latest}
cola_binary=""
while [ $# -gt 0 ]; do
  case "$1" in
    --cola-binary) cola_binary=$(realpath "$2"); shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    *) echo "images: unknown argument $1" >&2; exit 2 ;;
  esac
done

base=debian:bookworm-slim
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
stages=(cola executor-c executor-go executor-javascript)

"$root/scripts/dockerd.sh"

# BuildKit builds only the stages a target needs; the legacy builder would build them all
# (and fail on the one whose input is absent). Debian's docker.io client enables it with
# DOCKER_BUILDKIT=1; newer clients need the buildx plugin.
if docker buildx version >/dev/null 2>&1; then
  build=(docker build)
elif [ -x /usr/bin/docker ] && /usr/bin/docker version --format '{{.Client.Version}}' 2>/dev/null | grep -q '^20\.'; then
  build=(env DOCKER_BUILDKIT=1 /usr/bin/docker build)
else
  echo "images: need BuildKit: the docker buildx plugin, or Debian's docker.io client" >&2
  exit 1
fi

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

pull_quietly() {
  timeout 60 docker pull -q "$1" >/dev/null 2>&1
}

if ! have_image "$base" && ! pull_quietly "$base"; then
  echo "images: making $base with debootstrap from $mirror"
  "$root/scripts/apt-install.sh" debootstrap:debootstrap
  rootfs=$(mktemp -d /tmp/cola-rootfs.XXXXXX)
  trap 'rm -rf "$rootfs"' EXIT
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
    || { tail -n 30 "$rootfs.log" >&2; exit 1; }
  rm -f "$rootfs.log"
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb
  tar -C "$rootfs" -c . | docker import --change 'CMD ["bash"]' - "$base" >/dev/null
  rm -rf "$rootfs"
  trap - EXIT
fi

context=$root
build_args=()
if [ -n "$cola_binary" ]; then
  [ -x "$cola_binary" ] || { echo "images: $cola_binary is not an executable" >&2; exit 1; }
  context=$(mktemp -d /tmp/cola-images.XXXXXX)
  trap 'rm -rf "$context"' EXIT
  cp "$cola_binary" "$context/cola.bin"
  build_args+=(--build-arg COLA_FROM=prebuilt)
else
  rust_version=$(rustc --version | sed -E 's/^rustc ([0-9]+\.[0-9]+).*/\1/')
  rust_image="rust:${rust_version}-slim-bookworm"
  if ! have_image "$rust_image" && ! pull_quietly "$rust_image"; then
    echo "images: making $rust_image from $base and this machine's Rust toolchain"
    # This machine's extra certificate authorities come along (an HTTPS proxy may stand between
    # cargo and crates.io), then the toolchain itself.
    cas=$(mktemp -d /tmp/cola-cas.XXXXXX)
    cp /usr/local/share/ca-certificates/*.crt "$cas"/ 2>/dev/null || true
    printf '%s\n' \
      "FROM $base" \
      "RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends gcc libc6-dev ca-certificates && rm -rf /var/lib/apt/lists/*" \
      "COPY . /usr/local/share/ca-certificates/" \
      "RUN update-ca-certificates" \
      | "${build[@]}" -q -t "$rust_image-toolchainless" -f - "$cas" >/dev/null
    rm -rf "$cas"
    printf '%s\n' \
      "FROM $rust_image-toolchainless" \
      "COPY . /usr/local/rust" \
      "ENV PATH=/usr/local/rust/bin:/usr/local/cargo/bin:\$PATH CARGO_HOME=/usr/local/cargo" \
      | "${build[@]}" -q -t "$rust_image" -f - "$(rustc --print sysroot)" >/dev/null
    docker rmi "$rust_image-toolchainless" >/dev/null
  fi
  build_args+=(--build-arg COLA_FROM=build --build-arg "RUST_IMAGE=$rust_image")
fi

for stage in "${stages[@]}"; do
  case "$stage" in
    cola) name=cola ;;
    executor-*) name="cola-$stage" ;;
  esac
  echo "images: $name:$tag"
  "${build[@]}" -q -f "$root/docker/Dockerfile" --target "$stage" "${build_args[@]}" \
    --build-arg "BASE=$base" -t "$name:$tag" "$context" >/dev/null
done
