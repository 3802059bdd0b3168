"""Train presets for the same wall-clock budget, then score each with `ganforge eval`.

    python scripts/equal_time.py --minutes 8 --presets demo,mnist-gan,mnist-dcgan,mnist-best
    python scripts/equal_time.py --minutes 8 --presets demo,fashion-best \
        --set data.dataset=fashion-mnist

Each preset trains with `ganforge train --preset P` for the whole budget (its iteration count
is raised, so a recipe that would end sooner, such as the demo's 1,500 iterations, keeps
training: equal time for everyone), then it is stopped as a user would stop it (SIGINT: the
run saves a checkpoint and its generator). The generator is scored with
`ganforge eval --count N` against the test split, and one markdown row per preset is
printed: minutes, iterations, FID and recall in the classifier's space, FID in the
contrastive encoder's space, and the memorisation figures.
Run it on an otherwise idle machine: the budget is wall-clock time, so anything else
running takes iterations away from the preset that trains at that moment. Writes one JSON
record with everything (``--json``, default equal-time.json).
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

METRICS = "fid,precision-recall,memorisation,class-balance"
# iterations: more than any budget allows, so the clock decides
UNTIL_STOPPED = 10**7
COLUMNS = ("fid", "recall", "fid_enc", "memorised", "memorised_pixels")


def train(preset: str, out: Path, minutes: float, extra: list[str]) -> dict:
    """Train one preset for at most `minutes`; its wall-clock time and iterations."""
    name = f"{preset}-{minutes:g}min"
    command = ["ganforge", "train", "--preset", preset, "--out", str(out), "--name", name]
    command += ["--quiet", "--overwrite", "--iterations", str(UNTIL_STOPPED), *extra]
    start = time.perf_counter()
    process = subprocess.Popen(command)
    try:
        process.wait(timeout=minutes * 60)
    except subprocess.TimeoutExpired:
        # stops at the end of the iteration, with a checkpoint
        process.send_signal(signal.SIGINT)
        process.wait()
    seconds = time.perf_counter() - start
    summary = json.loads((out / name / "summary.json").read_text(encoding="utf-8"))
    return {"run": str(out / name), "seconds": round(seconds, 1), "steps": summary["steps"]}


def evaluate(run: str, count: int) -> dict:
    """`ganforge eval` of the run's generator; the JSON record it wrote."""
    record = Path(run) / "equal-time-eval.json"
    command = ["ganforge", "eval", run, "--count", str(count), "--metrics", METRICS]
    subprocess.run([*command, "--out", str(record)], check=True)
    return json.loads(record.read_text(encoding="utf-8"))


def row(preset: str, trained: dict, record: dict) -> str:
    metrics = record["metrics"]
    cells = [f"{metrics[k]:.4g}" if k in metrics else "-" for k in COLUMNS]
    minutes = trained["seconds"] / 60
    return f"| {preset} | {minutes:.1f} | {trained['steps']} | " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="demo,mnist-gan,mnist-dcgan,mnist-best")
    parser.add_argument("--minutes", type=float, default=8.0, help="wall-clock budget per preset")
    parser.add_argument("--count", type=int, default=10000, help="images for ganforge eval")
    parser.add_argument("--out", default="runs/equal-time", help="folder for the run folders")
    parser.add_argument("--json", default="equal-time.json")
    parser.add_argument("--set", action="append", default=[], help="passed to ganforge train")
    args = parser.parse_args(argv)
    extra = [item for value in args.set for item in ("--set", value)]
    out = Path(args.out)
    results = []
    for preset in args.presets.split(","):
        trained = train(preset, out, args.minutes, extra)
        record = evaluate(trained["run"], args.count)
        results.append({"preset": preset, **trained, "eval": record})
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    reference = results[0]["eval"]["reference"] if results else ""
    print(
        f"\nbudget {args.minutes:g} min per preset; ganforge eval --count {args.count} "
        f"vs {reference}"
    )
    print("| preset | minutes | iterations | " + " | ".join(COLUMNS) + " |")
    print("| --- |" + " ---: |" * (2 + len(COLUMNS)))
    for result in results:
        print(row(result["preset"], result, result["eval"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
