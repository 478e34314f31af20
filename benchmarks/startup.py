"""Start-up of the commands that do little: `kdtrack params train_teacher` and `kdtrack --help`
(target: under 1 s each), median wall time of fresh interpreters, with the slowest imports of one.

    .venv/bin/python benchmarks/startup.py [--rounds 5]

tests/cli/test_startup.py checks what these commands import (no torch); this measures how long
they take, which a test on a shared machine should not assert.
"""
import argparse
import statistics
import subprocess
import sys
import time

parser = argparse.ArgumentParser()
parser.add_argument("--rounds", type=int, default=5)
args = parser.parse_args()

for command in (["params", "train_teacher"], ["--help"]):
    line = [sys.executable, "-m", "kdtrack", *command]
    times = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        subprocess.run(line, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    imports = subprocess.run([sys.executable, "-X", "importtime", *line[1:]], check=True, capture_output=True,
                             text=True).stderr.splitlines()
    rows = [row.removeprefix("import time:").split("|") for row in imports if row.startswith("import time:")]
    timed = sorted((int(cumulative), name.strip()) for _, cumulative, name in rows if cumulative.strip().isdigit())
    print(f"kdtrack {' '.join(command)}: median {statistics.median(times):.2f} s over {args.rounds} runs "
          f"(min {min(times):.2f}, max {max(times):.2f}); slowest imports, cumulative:")
    for cumulative, name in reversed(timed[-3:]):
        print(f"    {cumulative / 1e6:.3f} s  {name}")
