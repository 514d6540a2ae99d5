#!/usr/bin/env bash
# Runs Plugboard's whole performance benchmark (issue 7) and prints one table at the end.
# Usage: host/benches/run.sh [extra cargo args]; knobs (environment, defaults in brackets):
#   CONNECTIONS [32] keep-alive connections of the load generator
#   SECONDS [5] length of each loopback load window (limit, ingest)
#   PLUGIN_CALLS [3000] calls per plugin-call microbenchmark
#   OUTBOUND_MESSAGES [4000] agent replies drained to the fake provider
#   STARTUP_RUNS [5] starts per start-up figure (cold and warm)
#   BENCH_ONLY [all] comma list of calls,ingest,metrics,outbound,startup,memory,isolation
#   METRICS_ROUNDS [2] windows per server (metrics off, on) of the metrics item
#   ISOLATION_WEBHOOKS [5000] healthy webhooks per phase of the isolation section
#   BENCH_ONLY=storage (never in the default run: it loads minutes of data) with
#     BENCH_STORAGE_CONVERSATIONS [1000000] conversations loaded, BENCH_STORAGE_REQUESTS [2000]
#     lists per view, BENCH_STORAGE_CACHES [64,256] cache_mib values, BENCH_STORAGE_DIR [a temp
#     dir] where the data is kept and reused by later runs
#   BENCH_ONLY=postgres (never in the default run: it needs Debian's postgresql) ingest on sled,
#     on PostgreSQL with one host and with two hosts on one database
#   CALL_VARIANTS [all] comma list of reuse-pooling,fresh-pooling,reuse-on-demand,fresh-on-demand
#   JOBS [2] cargo build jobs
# See BENCHMARKS.md for what every line measures.
set -euo pipefail
cd "$(dirname "$0")/../.."
echo "machine: $(nproc) cores; load: $(uptime)"
echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with local changes)')"
cargo bench -p plugboard --bench webhook -j "${JOBS:-2}" "$@"
echo "load after: $(uptime)"
