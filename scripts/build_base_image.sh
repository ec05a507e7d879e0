#!/usr/bin/env bash
# Build a local equivalent of python:3.11-slim-bookworm with debootstrap, for machines that
# cannot pull Docker Hub images, and load it into buildah's image store.
#
#   bash scripts/build_base_image.sh          prints the image reference on its last line,
#                                              e.g. localhost/awnet-base:3f2a9c0d1e4b
#
# What it is: Debian bookworm (minbase) with python3, python3-venv, python-is-python3 and
# ca-certificates: the same Debian release and Python minor as the official slim image.
# It carries THIS machine's CA bundle (/etc/ssl/certs/ca-certificates.crt) and PIP_CERT
# pointing at it, so pip inside a build verifies TLS on a network that re-signs it (as
# corporate proxies do); see docs/deployment.md.
#
# Cached: the root file system is kept as a tarball under
#   ${AWNET_CACHE_DIR:-~/.cache/awnet-serve}/base/<key>.tar
# where <key> hashes the recipe (this script, the Debian suite and mirror, the architecture
# and the CA bundle). A run with an unchanged recipe reuses the tarball (and the image, when
# buildah's store still has it); a changed recipe builds a new one. Needs root (debootstrap,
# buildah) and the Debian packages debootstrap and buildah (scripts/install_system_deps.sh).
#
# Environment: AWNET_DEBIAN_MIRROR (default: the mirror the machine's apt sources name),
# AWNET_DEBIAN_SUITE (bookworm), AWNET_CA_BUNDLE (/etc/ssl/certs/ca-certificates.crt),
# BUILDAH_STORAGE_DRIVER (vfs), AWNET_CACHE_DIR.
set -euo pipefail

SUITE="${AWNET_DEBIAN_SUITE:-bookworm}"
CA_BUNDLE="${AWNET_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
CACHE_DIR="${AWNET_CACHE_DIR:-$HOME/.cache/awnet-serve}/base"
DRIVER="${BUILDAH_STORAGE_DRIVER:-vfs}"
PACKAGES="python3,python3-venv,python-is-python3,ca-certificates"
IMAGE_NAME="localhost/awnet-base"

log() { echo "build_base_image: $*" >&2; }
die() { log "$*"; exit 1; }

for t in debootstrap buildah sha256sum tar; do
  command -v "$t" >/dev/null 2>&1 || die "$t not found: run scripts/install_system_deps.sh"
done
[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap and buildah's image store)"
[ -r "$CA_BUNDLE" ] || die "CA bundle $CA_BUNDLE not readable (set AWNET_CA_BUNDLE)"

# The Debian mirror the machine's apt sources name (deb822 .sources or one-line .list).
apt_mirror() {
  local f url
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    url=$(awk -v suite="$SUITE" '
      /^URIs:/ {u=$2} /^Suites:/ {for (i=2;i<=NF;i++) if ($i==suite) s=1}
      /^$/ {if (s && u) {print u; done=1; exit} u=""; s=0}
      END {if (!done && s && u) print u}' "$f")
    [ -n "$url" ] && { echo "$url"; return; }
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -r "$f" ] || continue
    url=$(awk -v suite="$SUITE" '$1=="deb" && $0 ~ " "suite" " {for (i=2;i<=NF;i++) if ($i ~ /^https?:/) {print $i; exit}}' "$f")
    [ -n "$url" ] && { echo "$url"; return; }
  done
  echo "http://deb.debian.org/debian"
}

MIRROR="${AWNET_DEBIAN_MIRROR:-$(apt_mirror)}"
ARCH="$(dpkg --print-architecture 2>/dev/null || uname -m)"
KEY=$( {
  sha256sum < "${BASH_SOURCE[0]}"
  echo "$SUITE $MIRROR $ARCH $PACKAGES"
  sha256sum < "$CA_BUNDLE"
} | sha256sum | cut -c1-12)
IMAGE="$IMAGE_NAME:$KEY"
TARBALL="$CACHE_DIR/$KEY.tar"
BUILDAH=(buildah --storage-driver "$DRIVER")

if "${BUILDAH[@]}" inspect --type image "$IMAGE" >/dev/null 2>&1; then
  log "cached image $IMAGE"
  echo "$IMAGE"
  exit 0
fi

mkdir -p "$CACHE_DIR"
if [ ! -s "$TARBALL" ]; then
  start=$SECONDS
  work=$(mktemp -d "$CACHE_DIR/rootfs.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  log "debootstrap $SUITE from $MIRROR (recipe $KEY; about 2 minutes)"
  debootstrap --variant=minbase --include="$PACKAGES" --arch="$ARCH" "$SUITE" "$work/rootfs" "$MIRROR" \
    > "$work/debootstrap.log" 2>&1 || { tail -n 40 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
  r="$work/rootfs"
  # The machine's CA bundle (a superset of Debian's where the network re-signs TLS).
  install -m 0644 "$CA_BUNDLE" "$r/etc/ssl/certs/ca-certificates.crt"
  # Trim what the official slim image trims too: docs, man pages, apt's caches and lists.
  rm -rf "$r"/usr/share/doc/* "$r"/usr/share/man/* "$r"/usr/share/info/* \
         "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/*.bin "$r"/var/cache/apt/archives/*.deb \
         "$r"/var/cache/debconf/*-old "$r"/var/log/*.log "$r"/var/log/apt/* "$r"/tmp/* "$r"/root/.cache
  find "$r/usr/lib/python3"* -name __pycache__ -type d -prune -exec rm -rf {} + 2>/dev/null || true
  # The apt sources the image itself will use (as the official image: deb.debian.org style).
  printf 'deb %s %s main\n' "$MIRROR" "$SUITE" > "$r/etc/apt/sources.list"
  tar --numeric-owner --exclude=./dev/* --exclude=./proc/* --exclude=./sys/* \
      -C "$r" -cf "$TARBALL.part" .
  mv "$TARBALL.part" "$TARBALL"
  rm -rf "$work"
  trap - EXIT
  log "root file system cached: $TARBALL ($(du -h "$TARBALL" | cut -f1), $((SECONDS - start)) s)"
else
  log "cached root file system $TARBALL"
fi

ctr=$("${BUILDAH[@]}" from scratch)
trap '"${BUILDAH[@]}" rm "$ctr" >/dev/null 2>&1 || true' EXIT
"${BUILDAH[@]}" add "$ctr" "$TARBALL" / >/dev/null
"${BUILDAH[@]}" config \
  --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env LANG=C.UTF-8 \
  --env PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
  --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  --cmd python3 \
  --label org.opencontainers.image.title=awnet-base \
  --label "org.opencontainers.image.description=Debian $SUITE + python3 (local equivalent of python:3.11-slim-$SUITE), recipe $KEY" \
  "$ctr"
"${BUILDAH[@]}" commit --quiet --rm "$ctr" "$IMAGE" >/dev/null
trap - EXIT
# Older recipes' images are no longer needed.
for old in $("${BUILDAH[@]}" images --format '{{.Name}}:{{.Tag}}' 2>/dev/null | grep "^$IMAGE_NAME:" || true); do
  [ "$old" = "$IMAGE" ] || "${BUILDAH[@]}" rmi "$old" >/dev/null 2>&1 || true
done
find "$CACHE_DIR" -maxdepth 1 -name '*.tar' ! -name "$KEY.tar" -delete
log "image $IMAGE"
echo "$IMAGE"
