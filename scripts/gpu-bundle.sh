#!/usr/bin/env bash
# Prepares here what scripts/gpu-check.sh needs on a lent GPU machine, which has python3 with torch, CMake, ninja and
# dpkg but no Debian dev packages and no network: the Debian 12 packages of the header-only and static libraries the
# core build uses, downloaded as .deb files into third_party/deb/ (git-ignored, about 1.3 MB). The device call
# carries that folder (`carry: ["third_party/deb"]`); gpu-check.sh unpacks it with `dpkg -x`.
#
# OpenCV is not bundled: libopencv_imgcodecs pulls in GDAL, GDCM and OpenEXR, 185 MB of shared libraries (46 MB
# even xz-compressed), over the 64 MiB a device call carries with the repository. The GPU check therefore builds
# the core tier (M2SA_BUILD_DATA=OFF: models, dist, train math and their tests and benchmarks); see
# docs/DEVELOPING.md.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=third_party/deb
PKGS=(nlohmann-json3-dev libspdlog-dev libspdlog1.10 libfmt-dev libfmt9 libgtest-dev libgloo-dev)
mkdir -p "$OUT"
rm -f "$OUT"/*.deb
download() { (cd "$OUT" && apt-get download -q "${PKGS[@]}" 2>&1 | grep -v "^W: Download is performed unsandboxed" || true); }
download
if [ "$(ls "$OUT"/*.deb 2>/dev/null | wc -l)" -ne ${#PKGS[@]} ]; then
  echo "gpu-bundle: refreshing the package lists"
  apt-get update -qq
  download
fi
n=$(ls "$OUT"/*.deb 2>/dev/null | wc -l)
if [ "$n" -ne ${#PKGS[@]} ]; then
  echo "gpu-bundle: expected ${#PKGS[@]} packages in $OUT, got $n" >&2
  exit 1
fi
# "1%3a1.10" (the epoch) is no name to carry around
for f in "$OUT"/*%3a*; do [ -e "$f" ] && mv "$f" "${f//%3a/_}"; done
ls "$OUT"/*.deb | xargs -n1 basename > "$OUT/MANIFEST"
echo "gpu-bundle: $n packages ($(du -sh "$OUT" | cut -f1)) in $OUT; carry it with the device call:"
echo "  run(command='bash scripts/gpu-check.sh', carry=['third_party/deb'], timeout_s=540)"
