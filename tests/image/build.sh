#!/usr/bin/env bash
# Assembles the kubesurge runtime image of the Containerfile without a
# registry: the runtime stage's packages from the Debian archive (mmdebstrap,
# through the host's apt sources), the same changes as that stage, and an OCI
# image layout with the same configuration (umoci).
#
#   tests/image/build.sh OUT_DIR BINARY
#
# Writes OUT_DIR/oci (an OCI image layout, tag "kubesurge") and
# OUT_DIR/kubesurge.oci.tar (the same as an OCI archive). The base rootfs
# tarball is cached under .tools/image/, keyed by the suite, variant,
# architecture and package list; everything else is rebuilt each time.
#
# Exits 3 with one line on stderr when this machine cannot build images
# (not root, or mmdebstrap/umoci missing and not installable): the caller
# skips, saying why.
set -euo pipefail

if [ "$#" -ne 2 ]; then
  echo "usage: $0 OUT_DIR BINARY" >&2
  exit 2
fi
out_dir=$1
binary=$2
repo=$(cd "$(dirname "$0")/../.." && pwd)

# What the Containerfile's runtime stage is (tests/it/image.rs checks that
# these match it).
suite=bookworm
variant=essential
packages=ca-certificates,openssh-client
uid=65532
home=/home/nonroot
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$repo/Cargo.toml" | head -n 1)
description=$(sed -n 's/^description = "\(.*\)"$/\1/p' "$repo/Cargo.toml" | head -n 1)

cannot() {
  echo "cannot build images here: $*" >&2
  exit 3
}

[ "$(id -u)" -eq 0 ] || cannot "not root (mmdebstrap, chroot and file ownership need it)"
[ -x "$binary" ] || { echo "$binary is not an executable" >&2; exit 2; }

if ! command -v mmdebstrap >/dev/null 2>&1 || ! command -v umoci >/dev/null 2>&1; then
  echo "tests/image/build.sh: installing mmdebstrap and umoci" >&2
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends mmdebstrap umoci; } >&2; then
    cannot "mmdebstrap and umoci are not installable with apt-get"
  fi
fi

# The host's apt sources, as apt-get uses them: mmdebstrap pastes each
# file given as a mirror into the rootfs's sources (deb822 for .sources),
# so the base comes from wherever this machine's apt-get fetches.
sources=()
for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
  if [ -f "$file" ] && grep -qv '^[[:space:]]*\(#.*\)\?$' "$file"; then
    sources+=("$file")
  fi
done
[ "${#sources[@]}" -gt 0 ] || cannot "no apt sources in /etc/apt"

arch=$(dpkg --print-architecture)
cache_dir="$repo/.tools/image"
key=$(printf '%s\n' "$suite" "$variant" "$arch" "$packages" | sha256sum | cut -c1-16)
base="$cache_dir/base-$suite-$arch-$key.tar"
if [ ! -s "$base" ]; then
  mkdir -p "$cache_dir"
  # Renamed into place once whole: an interrupted build leaves no base.
  partial="$cache_dir/partial-$key.tar"
  echo "tests/image/build.sh: building the $suite base ($packages) into $base" >&2
  # Recommends off, as the Containerfile's --no-install-recommends.
  mmdebstrap --quiet --variant="$variant" --arch="$arch" \
    --include="$packages" \
    --aptopt='APT::Install-Recommends "false"' \
    "$suite" "$partial" "${sources[@]}" >&2
  mv "$partial" "$base"
fi

rm -rf "$out_dir"
mkdir -p "$out_dir"
layout="$out_dir/oci"
bundle="$out_dir/bundle"
umoci init --layout "$layout"
umoci new --image "$layout:kubesurge"
umoci unpack --image "$layout:kubesurge" "$bundle" >/dev/null
rootfs="$bundle/rootfs"
tar -C "$rootfs" --numeric-owner -xf "$base"

# The runtime stage's changes.
rm -rf "$rootfs"/var/lib/apt/lists/*
echo "nonroot:x:$uid:$uid:nonroot:$home:/usr/sbin/nologin" >>"$rootfs/etc/passwd"
echo "nonroot:x:$uid:" >>"$rootfs/etc/group"
install -d -o "$uid" -g "$uid" -m 0750 "$rootfs$home"
install -D -o 0 -g 0 -m 0755 "$binary" "$rootfs/usr/local/bin/kubesurge"

umoci repack --image "$layout:kubesurge" "$bundle" >/dev/null
rm -rf "$bundle"
# The image's configuration, as the Containerfile's (PATH as
# debian:bookworm-slim sets it).
umoci config --image "$layout:kubesurge" \
  --clear=config.cmd \
  --config.user="$uid:$uid" \
  --config.entrypoint=/usr/local/bin/kubesurge \
  --config.env=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --config.env=HOME="$home" \
  --config.workingdir="$home" \
  --config.label=org.opencontainers.image.title=kubesurge \
  --config.label=org.opencontainers.image.description="$description" \
  --config.label=org.opencontainers.image.licenses=Apache-2.0 \
  --config.label=org.opencontainers.image.version="$version"
umoci gc --layout "$layout"
tar -C "$layout" -cf "$out_dir/kubesurge.oci.tar" .
echo "$out_dir/kubesurge.oci.tar"
