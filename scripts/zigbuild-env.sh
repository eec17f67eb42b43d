# shellcheck shell=bash
# The portable scraper-d build (any x86-64 Linux with glibc >= 2.31): cargo-zigbuild with Zig,
# both from PyPI into target/zigbuild-py. Sourced by install-scraper.sh and pgo-build.sh from the
# repository root; defines `portable_build TARGET_DIR [RUSTFLAGS]`, which builds
# TARGET_DIR/x86_64-unknown-linux-gnu/release/scraper-d.

readonly GLIBC_FLOOR=2.31
readonly PORTABLE_TARGET=x86_64-unknown-linux-gnu
readonly ZIG_PY_DIR=target/zigbuild-py

# Installs ziglang and cargo-zigbuild when missing.
zigbuild_tools() {
  if [ ! -x "$ZIG_PY_DIR/bin/cargo-zigbuild" ]; then
    echo "installing ziglang and cargo-zigbuild from PyPI into $ZIG_PY_DIR" >&2
    python3 -m pip install --quiet --disable-pip-version-check --target "$ZIG_PY_DIR" \
      'ziglang==0.15.1' 'cargo-zigbuild==0.24.1'
  fi
}

# A `ziglang` module that runs Zig's own binary with rustc's `-u SYMBOL` rewritten as
# `-Wl,-u,SYMBOL`: `zig cc` takes a bare `-u`'s symbol for an input file, and an instrumented
# build (`-Cprofile-generate`) passes `-u __llvm_profile_runtime`. Prints the folder to put first
# on PYTHONPATH.
zig_u_shim() {
  local shim=target/zigbuild-shim
  mkdir -p "$shim/ziglang"
  : >"$shim/ziglang/__init__.py"
  cat >"$shim/ziglang/__main__.py" <<'EOF'
"""Zig with `-u SYMBOL` rewritten as `-Wl,-u,SYMBOL` (see scripts/zigbuild-env.sh)."""
import os
import sys

real = os.environ["ZIG_SHIM_REAL_ZIG"]
args, out = sys.argv[1:], []
i = 0
while i < len(args):
    if args[i] == "-u" and i + 1 < len(args):
        out.append("-Wl,-u," + args[i + 1])
        i += 2
        continue
    out.append(args[i])
    i += 1
os.execv(real, [real] + out)
EOF
  echo "$PWD/$shim"
}

# Builds scraper-d into TARGET_DIR with RUSTFLAGS (none by default).
portable_build() { # target dir, rustflags
  local target_dir=$1 rustflags=${2:-} pythonpath
  zigbuild_tools
  pythonpath="$PWD/$ZIG_PY_DIR"
  case "$rustflags" in
    *profile-generate*) pythonpath="$(zig_u_shim):$pythonpath" ;;
  esac
  # Zig's clang refuses libdeflate's 512-bit AVX-512 functions unless `evex512` is allowed: their
  # target attributes do not name it. `-mevex512` alone enables no AVX-512 instruction outside
  # such attributed functions, which libdeflate only calls after checking the CPU (objdump shows
  # zmm registers in crc32fast's and libdeflate's dispatched CRC-32 functions only). Without it
  # the build fails; leaving those functions out instead made WAT extraction about 5 % slower.
  PYTHONPATH="$pythonpath" PATH="$PWD/$ZIG_PY_DIR/bin:$PATH" \
    ZIG_SHIM_REAL_ZIG="$PWD/$ZIG_PY_DIR/ziglang/zig" \
    CFLAGS_x86_64_unknown_linux_gnu="-mevex512" RUSTFLAGS="$rustflags" \
    cargo zigbuild --release --locked -p scraper-d --bin scraper-d \
    --target "$PORTABLE_TARGET.$GLIBC_FLOOR" --target-dir "$target_dir"
}

# The newest GLIBC_x.y symbol version a binary needs.
glibc_needed() {
  objdump -T "$1" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1
}

# Fails unless the binary needs glibc GLIBC_FLOOR at most and runs here (needs objdump).
check_portable() { # binary
  local needed
  needed=$(glibc_needed "$1")
  if [ "$(printf '%s\n%s\n' "$needed" "$GLIBC_FLOOR" | sort -V | tail -1)" != "$GLIBC_FLOOR" ]; then
    echo "$1 needs glibc $needed, above $GLIBC_FLOOR" >&2
    return 1
  fi
  "$1" --version >/dev/null
  echo "glibc needed: $needed (floor $GLIBC_FLOOR)"
}
