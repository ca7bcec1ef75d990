#!/usr/bin/env bash
# `make images`: every image of the Dockerfile, built on a machine that reaches Debian's archive, PyPI and Maven
# Central but no container registry. The Dockerfile and docker-compose.yml stay standard (Docker Engine builds
# them anywhere else); what this machine needs is kept here:
#   - the base image the Dockerfile names (debian:bookworm-slim) is built from Debian's packages with
#     `debootstrap --variant=minbase bookworm` and `podman import`, and every build runs with --pull=never;
#   - rootful podman 4.3 with overlay, runc and cgroupfs, and raised default ulimits (containers.conf here);
#   - `--format docker`: the OCI format has no HEALTHCHECK, podman would drop it;
#   - pip and Maven inside a build fail certificate checks (outbound TLS is re-signed on its way out) unless the
#     machine's CA bundle is handed in, as a build secret (`--secret id=ca-bundle`), never as a layer.
# Usage: infra/podman/images.sh [target ...]   (default: python registry inference inference-cuda kafka redis)
# Prints one line per image (seconds, size; `all` is the wall time, the lanes overlap) and writes the same as JSON
# to $IMAGES_REPORT when it is set.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=infra/podman
export CONTAINERS_CONF=$PWD/$here/containers.conf
export CONTAINERS_STORAGE_CONF=$PWD/$here/storage.conf

BASE=docker.io/library/debian:bookworm-slim
PREFIX=${IMAGE_PREFIX:-kafka-pipeline}
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
targets=("$@")
((${#targets[@]})) || targets=(python registry inference inference-cuda kafka redis)

for tool in podman debootstrap runc; do
  command -v "$tool" >/dev/null || {
    echo "images: $tool is missing (apt-get install podman debootstrap runc)" >&2
    exit 1
  }
done
[ "$(id -u)" = 0 ] || { echo "images: run as root (rootful podman)" >&2; exit 1; }

times=$(mktemp)
trap 'rm -f "$times"' EXIT
timed() { # name, command...: run it, append "name seconds" to $times
  local name=$1 start
  shift
  start=$(date +%s.%N)
  "$@"
  echo "$name $(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { print e - s }')" >>"$times"
}

# The Debian mirror this machine's apt uses (deb822 or one-line sources), so the base comes from the same place.
debian_mirror() {
  local uri
  uri=$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -n 1)
  [ -n "$uri" ] || uri=$(grep -hsE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list |
    awk '{print $2}' | grep -v security | head -n 1)
  [ -n "$uri" ] || { echo "images: no Debian mirror in /etc/apt/sources.list*" >&2; return 1; }
  echo "$uri"
}

base_image() {
  if podman image exists "$BASE"; then
    echo "base: $BASE is there"
    return
  fi
  local root
  root=$(mktemp -d /var/tmp/debootstrap.XXXXXX)
  debootstrap --variant=minbase bookworm "$root" "$(debian_mirror)" >/dev/null
  # What debian:bookworm-slim leaves out of an image: apt's lists and caches.
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
  tar -C "$root" -c . | podman import --change 'CMD ["bash"]' \
    --message "debootstrap --variant=minbase bookworm (infra/podman/images.sh)" - "$BASE" >/dev/null
  rm -rf "$root"
  echo "base: $BASE imported from debootstrap"
}

build() { # target
  local secret=()
  [ -s "$CA_BUNDLE" ] && secret=(--secret "id=ca-bundle,src=$CA_BUNDLE")
  podman build --pull=never --layers --format docker "${secret[@]}" --target "$1" -t "$PREFIX/$1:latest" -f Dockerfile . >/dev/null
}

lane() { # target...: build them one after the other
  local target
  for target in "$@"; do
    echo "building $PREFIX/$target"
    timed "$target" build "$target"
  done
}

started=$(date +%s.%N)
timed base base_image
# Two lanes at once: the Python images (each builds on the one before) and the others (kafka, redis), which
# share nothing with them; the inference image's large layer is mostly waiting on I/O.
python_lane=() other_lane=()
for target in "${targets[@]}"; do
  case $target in
    python | registry | inference | inference-cuda) python_lane+=("$target") ;;
    *) other_lane+=("$target") ;;
  esac
done
lane "${python_lane[@]}" &
python_pid=$!
lane "${other_lane[@]}"
wait "$python_pid"
echo "all $(awk -v s="$started" -v e="$(date +%s.%N)" 'BEGIN { print e - s }')" >>"$times"

json="{"
while read -r name seconds; do
  size=0
  case $name in base | all) ;; *) size=$(podman image inspect --format '{{.Size}}' "$PREFIX/$name:latest") ;; esac
  printf '%-15s %6.1fs  %6d MB\n' "$name" "$seconds" $((size / 1000000))
  json+="\"$name\": {\"seconds\": $(printf '%.1f' "$seconds"), \"bytes\": $size}, "
done <"$times"
json="${json%, }}"
[ -z "${IMAGES_REPORT:-}" ] || echo "$json" >"$IMAGES_REPORT"
