# Sourced by tests/run and tests/demo: installs what is missing, and only that, so a
# machine that has everything needs no network. Debian/Ubuntu, as root.

die() { echo "error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root: the labs create network namespaces (sudo bash $0)"

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

ensure_packages() {
  local missing=()
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  retry 3 apt-get update -q || die "apt-get update failed: the Debian package mirror is unreachable"
  retry 3 apt-get install -y -q --no-install-recommends "${missing[@]}" \
    || die "apt-get install of ${missing[*]} failed: the Debian package mirror is unreachable"
}

ensure_rust() {
  command -v cargo >/dev/null || die "cargo is missing: install a Rust toolchain (rustup) first"
  retry 3 cargo fetch --locked -q || die "cargo fetch failed: crates.io is unreachable"
}
