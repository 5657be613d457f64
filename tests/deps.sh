# Sourced by tests/run, qemu/build, qemu/demo and the benches: installs what is
# missing, and only that, so a machine that has everything needs no network.
# Debian/Ubuntu, as root.

die() { echo "error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root: the labs create network namespaces (as root: bash $0; or: sudo bash $0)"

# retry N CMD...: network steps fail now and then; try a few times before giving up.
retry() {
  local n=$1; shift
  local i
  for i in $(seq 1 "$n"); do
    "$@" && return 0
    echo "attempt $i/$n failed: $*" >&2
    sleep $((i * 5))
  done
  return 1
}

# What qemu/build needs to build the image, and qemu/run and the boot tests to boot it.
# Callers that also run qemu/build ask for these in the same call as their own.
IMAGE_PACKAGES=(syslinux syslinux-common mtools systemd-boot-efi binutils qemu-utils
  gzip zstd lz4 xz-utils ca-certificates qemu-system-x86 ovmf)

missing_packages() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}

# ensure_packages PKG...: one `apt-get install` for the whole missing set, so apt
# resolves it together; then checks that every package asked for is really there.
# (Installing one package may remove another: a newer qemu-utils from backports goes
# when qemu-system-x86 comes from the release. A second pass puts it back at the
# release's version.)
ensure_packages() {
  local missing pass
  for pass in 1 2; do
    mapfile -t missing < <(missing_packages "$@")
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if [ -z "${APT_UPDATED:-}" ]; then
      retry 3 apt-get update -q || die "apt-get update failed: the Debian package mirror is unreachable"
      APT_UPDATED=1
    fi
    retry 3 apt-get install -y -q --no-install-recommends "${missing[@]}" \
      || die "apt-get install of ${missing[*]} failed (the Debian package mirror may be unreachable)"
  done
  mapfile -t missing < <(missing_packages "$@")
  [ ${#missing[@]} -eq 0 ] || die "still not installed after apt-get install: ${missing[*]}"
}

ensure_rust() {
  command -v cargo >/dev/null || die "cargo is missing: install a Rust toolchain (rustup) first"
  retry 3 cargo fetch --locked -q || die "cargo fetch failed: crates.io is unreachable"
}
