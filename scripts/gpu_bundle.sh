#!/usr/bin/env bash
# Gathers here what a build of radistill needs that the GPU machine lacks (issue 28): that machine
# has torch 2.11.0+cu130 (headers, libraries, CMake config in its wheel), CMake, ninja, nvcc and a
# compiler, but no package registry. The headers and shared libraries of CLI11, nlohmann-json,
# OpenBLAS, PCRE2, ICU, cpp-httplib, tcmalloc, GoogleTest and
# pkgconf come from Debian's packages: `apt-get download` + `dpkg -x`, pruned (static libraries, docs),
# their pkg-config files made relocatable (${pcfiledir}), the symbolic links Debian's alternatives
# would make added, and packed as one tar.xz in gpu-bundle/ (ignored by git) with a manifest.
# Not bundled: fmt (the torch 2.x build uses the wheel's own fmt headers) and gloo (the wheel has no
# gloo headers; Debian's are too old for torch 2.x: third_party/gloo, see CMakeLists.txt).
#
#   bash scripts/gpu_bundle.sh            -> gpu-bundle/radistill-gpu-deps.tar.xz, gpu-bundle/MANIFEST
#
# scripts/gpu_check.sh unpacks it (into $RAD_BUNDLE_ROOT, default /tmp/radistill-gpu-deps) and points
# CMake at it. The folder must stay small: it travels with the working tree, and one call to the GPU
# machine carries at most 64 MiB in all (the tracked tree is about 26 MiB). Limit: MAX_MIB (40).
# Downloads are cached in $RAD_BUNDLE_CACHE (default /var/tmp/radistill-gpu-bundle).
set -euo pipefail
cd "$(dirname "$0")/.."

OUTDIR=gpu-bundle
CACHE="${RAD_BUNDLE_CACHE:-/var/tmp/radistill-gpu-bundle}"
MAX_MIB="${MAX_MIB:-40}"
ARCH=x86_64-linux-gnu
PACKAGES=(
  nlohmann-json3-dev libcli11-dev libgtest-dev
  libopenblas0-openmp libopenblas-openmp-dev libgfortran5 libquadmath0   # BLAS of the fused kernels
  libpcre2-dev libpcre2-8-0
  libicu-dev libicu72
  libcpp-httplib-dev libcpp-httplib0.11 libbrotli1 libbrotli-dev zlib1g-dev libssl-dev  # serve (+ its .pc requirements)
  libgoogle-perftools-dev libgoogle-perftools4 libtcmalloc-minimal4 libunwind8  # tcmalloc
  pkgconf pkgconf-bin libpkgconf3
)

mkdir -p "$CACHE/debs"
rm -rf "$CACHE/root"
mkdir -p "$CACHE/root"
(
  cd "$CACHE/debs"
  if ! apt-get download "${PACKAGES[@]}" >/dev/null 2>"$CACHE/apt.err"; then
    apt-get update -qq
    apt-get download "${PACKAGES[@]}" >/dev/null
  fi
)
manifest=()
for p in "${PACKAGES[@]}"; do
  deb=$(ls -t "$CACHE"/debs/"${p}"_*.deb | head -1)
  dpkg -x "$deb" "$CACHE/root"
  manifest+=("$p $(dpkg-deb -f "$deb" Version) $(sha256sum "$deb" | cut -c1-16)")
done

R="$CACHE/root"
L="$R/usr/lib/$ARCH"
# Pruning: documentation, static libraries (the build links shared ones; GoogleTest is static only).
rm -rf "$R/usr/share/doc" "$R/usr/share/man" "$R/usr/share/lintian" "$R/usr/share/aclocal" "$R/usr/share/gdb" "$R/usr/bin/icuinfo"
find "$R" -name '*.a' ! -name 'libgtest*.a' ! -name 'libgmock*.a' -delete
find "$R/usr/bin" -type f ! -name pkgconf -delete 2>/dev/null || true
rm -rf "$R/usr/lib/$ARCH/icu" "$R/usr/share/icu" "$R/usr/lib/$ARCH/openblas-openmp/cmake"
# What Debian's alternatives make at install time: libopenblas.so / libblas.so.3 / cblas.h at the usual places.
ln -sfn openblas-openmp/libopenblas.so.0 "$L/libopenblas.so.0"
ln -sfn openblas-openmp/libopenblas.so.0 "$L/libopenblas.so"
ln -sfn openblas-openmp/libblas.so.3 "$L/libblas.so.3"
ln -sfn openblas-openmp/liblapack.so.3 "$L/liblapack.so.3"
ln -sfn openblas-openmp/cblas.h "$R/usr/include/$ARCH/cblas.h"
ln -sfn openblas-openmp/openblas_config.h "$R/usr/include/$ARCH/openblas_config.h"
ln -sfn openblas-openmp/f77blas.h "$R/usr/include/$ARCH/f77blas.h"
# Symbolic links must stay inside the bundle: an absolute one becomes relative when its target is
# bundled, and goes otherwise (libz.so -> /lib/.../libz.so.1: zlib's library is the machine's own).
find "$R" -type l -lname '/*' -print0 | while IFS= read -r -d '' link; do
  target=$(readlink "$link")
  if [ -e "$R$target" ]; then ln -sfn "$(realpath --relative-to="$(dirname "$link")" "$R$target")" "$link"; else rm "$link"; fi
done
bad=$(find "$R" -type l -lname '/*' -printf '%p -> %l\n')
[ -z "$bad" ] || { echo "gpu_bundle: absolute links left:" >&2; echo "$bad" >&2; exit 1; }
# pkg-config files: /usr becomes a path relative to the file (pkgconf and pkg-config both know ${pcfiledir}).
python3 - "$R" <<'PY'
import os, re, sys
root = sys.argv[1]
usr = os.path.join(root, "usr")
n = 0
for d, _, files in os.walk(root):
    for f in files:
        if not f.endswith(".pc"):
            continue
        p = os.path.join(d, f)
        rel = os.path.relpath(usr, d)
        text = open(p).read()
        # "prefix=/usr" and ICU's "prefix = /usr"
        new = re.sub(r"^(\w+\s*=\s*)/usr(?=/|\s*$)", lambda m: m.group(1) + "${pcfiledir}/" + rel, text, flags=re.M)
        if new != text:
            open(p, "w").write(new)
            n += 1
print(f"gpu_bundle: {n} pkg-config files made relocatable")
left = [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.endswith(".pc")
        and re.search(r"^\w+\s*=\s*/usr", open(os.path.join(d, f)).read(), flags=re.M)]
if left:
    sys.exit("gpu_bundle: pkg-config files still naming /usr: " + ", ".join(left))
PY
# CMake package files must not name /usr either (they compute their prefix from their own place).
# (GTest's config names /usr only to recognise itself at its installed place.)
if grep -rnE '(IMPORTED_LOCATION|INCLUDE_DIRECTORIES|LINK_LIBRARIES)[^"]*"/usr/' --include='*.cmake' "$R"; then
  echo "gpu_bundle: CMake files naming /usr (above)" >&2; exit 1
fi

rm -rf "$OUTDIR"
mkdir -p "$OUTDIR"
tar -C "$R" -cf - usr | xz -T1 -6 > "$OUTDIR/radistill-gpu-deps.tar.xz"
# The corpus the check distils on (the KJV, scripts/get_corpus.sh), compressed.
[ -s data/kjv.txt ] || bash scripts/get_corpus.sh data/kjv.txt >/dev/null
xz -T1 -9 < data/kjv.txt > "$OUTDIR/kjv.txt.xz"
{
  echo "# scripts/gpu_bundle.sh, $(date -u +%Y-%m-%dT%H:%M:%SZ), Debian $(cat /etc/debian_version)"
  echo "# unpacked: $(du -sb "$R" | cut -f1) bytes; sha256 of the archive:"
  echo "$(sha256sum "$OUTDIR/radistill-gpu-deps.tar.xz" | cut -d' ' -f1)  radistill-gpu-deps.tar.xz"
  printf '%s\n' "${manifest[@]}"
} > "$OUTDIR/MANIFEST"
bytes=$(du -sb "$OUTDIR" | cut -f1)
echo "gpu_bundle: $OUTDIR/ holds $(awk -v b="$bytes" 'BEGIN {printf "%.1f", b / 1048576}') MiB ($bytes bytes; $(du -sb "$R" | cut -f1) bytes unpacked)"
if [ "$bytes" -gt $((MAX_MIB * 1048576)) ]; then
  echo "gpu_bundle: over the limit of $MAX_MIB MiB" >&2
  exit 1
fi
