#!/usr/bin/env bash
# Reruns the reproduction study of docs/reproduction.md from an empty store and regenerates its
# tables and figures (docs/reproduction/*/report.md). From the repository root, after `make install`:
#   bash docs/reproduce.sh [STORE]        # STORE defaults to a fresh folder under /tmp
# About 13 minutes for table7, 12 for table7-mlp-sensitivity (measured 2026-12-03), 80 for the
# three switching suites (switch-evidence, 2026-12-03), 56 for beyond-confidence (the §7 study
# of "Beyond the paper", measured 2026-12-03) and 44 for methods (the other KD methods, measured
# 2026-12-03) on 2 shared CPU cores.
set -euo pipefail
root=$(pwd)
store=${1:-$(mktemp -d /tmp/kdtrack-reproduction-XXXX)}
mkdir -p "$store" && cd "$store"
export MLFLOW_TRACKING_URI="sqlite:///$store/mlflow.db"
kdtrack=("$root/.venv/bin/kdtrack")
"${kdtrack[@]}" theory -P experiment=table7   # Theorem 4.1's closed form, one exact run
for entry in table7:paper table7-mlp-sensitivity:paper beyond-confidence:beyond methods:methods; do
    suite=${entry%%:*} dashboard=${entry##*:}
    "${kdtrack[@]}" suite run "$suite" --workers 2
    "${kdtrack[@]}" report --experiment "$suite" --dashboard "$dashboard" --format md \
        --out "$root/docs/reproduction/$suite"
done
# The switching study: three suites in one experiment, one report (docs/reproduction.md, "Does it pay to disobey?").
for suite in switch-evidence student-beats-teacher switch-gain-vs-fit; do
    "${kdtrack[@]}" suite run "$suite" --workers 2
done
"${kdtrack[@]}" report --experiment switch-evidence --dashboard switch --format md \
    --out "$root/docs/reproduction/switch-evidence"
"${kdtrack[@]}" claims --experiment table7 --format md
"${kdtrack[@]}" claims --experiment switch-evidence --dashboard switch --format md
"${kdtrack[@]}" claims --experiment beyond-confidence --dashboard beyond --format md
"${kdtrack[@]}" claims --experiment methods --dashboard methods --format md
