#!/usr/bin/env bash
# NormLab vs PyTorch, side by side on this machine: builds both sides, then times every workload at 1 and 2 threads on
# NormLab (BenchmarkDotNet) and right after on the PyTorch peer (TorchSharp + libtorch 2.10 CPU, kept running), row by
# row, and writes docs/benchmarks.md and docs/benchmarks.json. About 10 minutes; pass --quick for a rough pass in a few,
# --groups bn2d,gemm for a subset, --rounds 3 to time every row three times over and report its median speedup and range
# (about 25 minutes; the machine's speed drifts with its neighbours' load, and one timing's verdict on a row near its
# target is a coin toss).
set -euo pipefail
cd "$(dirname "$0")/.."
dotnet build -c Release bench/NormLab.Peer -v quiet -nologo
dotnet build -c Release bench/NormLab.Benchmarks -v quiet -nologo
exec bench/NormLab.Benchmarks/bin/Release/net10.0/NormLab.Benchmarks compare "$@"
