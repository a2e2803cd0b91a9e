#!/usr/bin/env bash
# NormLab vs PyTorch, side by side on this machine: builds both sides, runs every workload group on NormLab
# (BenchmarkDotNet) and then on the PyTorch peer (TorchSharp + libtorch 2.10 CPU), and writes docs/benchmarks.md
# and docs/benchmarks.json. About 15 minutes; pass --quick for a rough pass in a few, --groups bn2d,gemm for a subset,
# --rounds 3 to run the compared groups three times over and report each row's median speedup and its range (about 40
# minutes; the machine's speed drifts over minutes, so one round's verdict on a row near its target is a coin toss).
set -euo pipefail
cd "$(dirname "$0")/.."
dotnet build -c Release bench/NormLab.Peer -v quiet -nologo
dotnet build -c Release bench/NormLab.Benchmarks -v quiet -nologo
exec bench/NormLab.Benchmarks/bin/Release/net10.0/NormLab.Benchmarks compare "$@"
