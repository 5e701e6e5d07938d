# Source this to build `--features cuda` on a machine with no GPU and no CUDA install:
# nvcc and the CUDA 13.0 headers/libraries come from PyPI wheels, and a stub libcuda.so
# (every entry point returns CUDA_ERROR_NO_DEVICE) stands in for the driver at link time.
# CUDA 13.0 matches the GPU machines' driver (580.x). Cached under $CUDA_TOOLCHAIN_DIR.
set -euo pipefail
CUDA_TOOLCHAIN_DIR="${CUDA_TOOLCHAIN_DIR:-${HOME:-/tmp}/.cache/flywheel-cuda-13.0}"
if [ ! -x "$CUDA_TOOLCHAIN_DIR/venv/bin/python" ]; then
  python3 -m venv "$CUDA_TOOLCHAIN_DIR/venv"
fi
if [ ! -f "$CUDA_TOOLCHAIN_DIR/.installed-1" ]; then
  "$CUDA_TOOLCHAIN_DIR/venv/bin/python" -m pip install -q --disable-pip-version-check \
    nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-cccl==13.0.85 \
    nvidia-cuda-runtime==13.0.96 nvidia-cublas==13.1.0.3 nvidia-curand==10.4.0.35 nvidia-cuda-nvrtc==13.0.88
  touch "$CUDA_TOOLCHAIN_DIR/.installed-1"
fi
CUDA_ROOT="$(ls -d "$CUDA_TOOLCHAIN_DIR"/venv/lib/python3*/site-packages/nvidia/cu13 | head -1)"
# Linkers look for plain names (libcublas.so); the wheels ship versioned ones.
for f in "$CUDA_ROOT"/lib/lib*.so.*; do
  base="$(basename "$f")"; plain="${base%%.so.*}.so"
  [ -e "$CUDA_ROOT/lib/$plain" ] || ln -s "$base" "$CUDA_ROOT/lib/$plain"
done
# nvcc expects lib64 next to include in some layouts.
[ -e "$CUDA_ROOT/lib64" ] || ln -s lib "$CUDA_ROOT/lib64"
# The stub driver: soname libcuda.so.1 defining every cu* entry point of cudarc's driver
# bindings (candle links them directly), each returning 100 = CUDA_ERROR_NO_DEVICE, so
# the binary links, starts, and reports "no device" where there is no GPU.
STUB="$CUDA_TOOLCHAIN_DIR/stub"
if [ ! -f "$STUB/libcuda.so" ]; then
  mkdir -p "$STUB"
  CUDARC_SRC="$(cargo metadata --format-version 1 --features cuda 2>/dev/null | python3 -c 'import json,sys,os; m=json.load(sys.stdin); print(next(os.path.dirname(p["manifest_path"]) for p in m["packages"] if p["name"]=="cudarc"))')"
  grep -o '^pub unsafe fn cu[A-Za-z0-9_]*' "$CUDARC_SRC/src/driver/sys/mod.rs" | sed 's/^pub unsafe fn //' | sort -u \
    | awk '{ printf "int %s(void) { return 100; }\n", $1 }' > "$STUB/stub.c"
  cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$STUB/libcuda.so" "$STUB/stub.c"
  ln -sf libcuda.so "$STUB/libcuda.so.1"
fi
export CUDA_HOME="$CUDA_ROOT" CUDA_PATH="$CUDA_ROOT" CUDA_ROOT
export NVCC="$CUDA_ROOT/bin/nvcc"
export PATH="$CUDA_ROOT/bin:$PATH"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
export CUDARC_CUDA_VERSION=13000
export LIBRARY_PATH="$CUDA_ROOT/lib:$STUB${LIBRARY_PATH:+:$LIBRARY_PATH}"
export LD_LIBRARY_PATH="$CUDA_ROOT/lib:$STUB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export RUSTFLAGS="${RUSTFLAGS:-} -L $CUDA_ROOT/lib -L $STUB"
set +euo pipefail
