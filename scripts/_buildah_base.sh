# shellcheck shell=bash
# Sourced by scripts/container_check.sh and scripts/gpu_image_check.sh: without a Docker engine or a registry
# pull, make the Dockerfiles' base image (python:3.11-slim-bookworm) locally with debootstrap, once.
# Needs root, buildah and debootstrap (apt-get install -y buildah debootstrap), and Debian's mirror.
STORE=(--storage-driver vfs)
BASE=docker.io/library/python:3.11-slim-bookworm

ensure_base_image() {  # ensure_base_image WORK_DIR
  local work="$1" ctr
  buildah "${STORE[@]}" inspect --type image "$BASE" >/dev/null 2>&1 && return 0
  echo "== making the base image with debootstrap"
  rm -rf "$work/rootfs"
  debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates bookworm "$work/rootfs" >"$work/debootstrap.log" 2>&1
  ln -sf /usr/bin/python3 "$work/rootfs/usr/local/bin/python"
  ctr=$(buildah "${STORE[@]}" from scratch)
  buildah "${STORE[@]}" copy "$ctr" "$work/rootfs" / >/dev/null
  buildah "${STORE[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$ctr"
  buildah "${STORE[@]}" commit "$ctr" "$BASE" >/dev/null
  buildah "${STORE[@]}" rm "$ctr" >/dev/null
  rm -rf "$work/rootfs"
}
