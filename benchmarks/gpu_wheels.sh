#!/usr/bin/env bash
# Download the wheels that the GPU machine's image lacks (it has no package index) into .whl/,
# for Python 3.12 on manylinux x86_64. Carry .whl with the bench part of benchmarks/gpu_check.py.
# The image already has torch, numpy, onnx, onnxruntime, opencv-python-headless, typer, rich,
# pytest and tensorboard; rtseg needs PyAV beside them (H.264 output).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "av>=12"
ls -l .whl
