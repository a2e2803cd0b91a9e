#!/usr/bin/env bash
# Make TorchSharp 0.107.0's libLibTorchSharp.so loadable on a libstdc++ older than GCC 13.
#
# libLibTorchSharp.so requires GLIBCXX_3.4.32 for exactly one symbol,
# _ZSt21ios_base_library_initv (std::ios_base_library_init(), which GCC 13's <iostream>
# references). Debian 12 ships GCC 12's libstdc++ (up to GLIBCXX_3.4.30), so the loader
# refuses the library. For every copy of libLibTorchSharp.so under DIR this script
#   1. marks the GLIBCXX_3.4.32 version requirement weak (VER_FLG_WEAK in .gnu.version_r),
#   2. clears the symbol version of _ZSt21ios_base_library_initv,
#   3. adds a NEEDED entry for a tiny shim library (built here with g++, placed next to the
#      copy; the copy's RUNPATH already starts with $ORIGIN) that defines the symbol as a no-op.
# Idempotent: an already patched copy is left alone. Patching goes through a temporary copy
# that then replaces the file, so a file hard-linked into the NuGet cache is never modified.
# Nothing is done where the system libstdc++ already provides GLIBCXX_3.4.32.
#
# usage: scripts/patch-libtorchsharp.sh DIR     (normally the peer project's output dir;
#        run automatically after every build of bench/NormLab.Peer)
set -euo pipefail

dir="${1:?usage: $0 OUTPUT_DIR}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
shim_name="libtorchsharp_iosinit_shim.so"
symbol="_ZSt21ios_base_library_initv"
version="GLIBCXX_3.4.32"

[[ "$(uname -s)" == Linux ]] || exit 0
[[ -d "$dir" ]] || { echo "patch-libtorchsharp: no such directory: $dir" >&2; exit 1; }

mapfile -t libs < <(find "$dir" -name libLibTorchSharp.so -type f 2>/dev/null | sort)
if [[ ${#libs[@]} -eq 0 ]]; then
  echo "patch-libtorchsharp: no libLibTorchSharp.so under $dir, nothing to do"
  exit 0
fi

system_libstdcxx="$(/sbin/ldconfig -p 2>/dev/null | awk '/libstdc\+\+\.so\.6 .*x86-64/ {print $NF; exit}')"
if [[ -n "$system_libstdcxx" ]] && grep -aq "$version" "$system_libstdcxx"; then
  echo "patch-libtorchsharp: $system_libstdcxx provides $version, no patch needed"
  exit 0
fi

if ! command -v patchelf >/dev/null 2>&1; then
  echo "patch-libtorchsharp: installing patchelf (Debian package)"
  if [[ "$(id -u)" -eq 0 ]]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get install -y -qq patchelf >/dev/null 2>&1 \
    || { $sudo apt-get update -qq && $sudo apt-get install -y -qq patchelf >/dev/null; }
fi
command -v g++ >/dev/null 2>&1 || { echo "patch-libtorchsharp: g++ is required" >&2; exit 1; }
command -v python3 >/dev/null 2>&1 || { echo "patch-libtorchsharp: python3 is required" >&2; exit 1; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
g++ -shared -fPIC -O2 -Wl,-soname,"$shim_name" -o "$tmp/$shim_name" "$here/ios_base_library_init_shim.cpp"

for lib in "${libs[@]}"; do
  libdir="$(dirname "$lib")"
  # The shim travels with every copy (cmp keeps its timestamp when unchanged).
  cmp -s "$tmp/$shim_name" "$libdir/$shim_name" 2>/dev/null || cp "$tmp/$shim_name" "$libdir/$shim_name"
  if patchelf --print-needed "$lib" | grep -qx "$shim_name"; then
    echo "patch-libtorchsharp: already patched: $lib"
    continue
  fi
  work="$tmp/libLibTorchSharp.so"
  cp "$lib" "$work"
  python3 "$here/elf_weaken_verneed.py" "$work" "$version" >/dev/null
  patchelf --clear-symbol-version "$symbol" "$work"
  patchelf --add-needed "$shim_name" "$work"
  chmod --reference="$lib" "$work"
  mv -f "$work" "$lib"
  echo "patch-libtorchsharp: patched $lib"
done
