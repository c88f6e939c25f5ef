"""Mutation score per package with mutmut 3 (`make mutation`; the numbers are in docs/testing.md).

    python tests/mutation.py [--sample 300] [--seed 0] [--max-children 2]
                             [--packages estimators run algorithms] [--unresolved] [--report]

1. mutmut writes every mutant of the files `[tool.mutmut] only_mutate` names into mutants/ (pyproject.toml);
2. per package, a seeded random sample of `--sample` mutants of its git-tracked files (all of them when it has
   fewer; see `sample`) is run by `mutmut run NAME…`: each mutant against the tests that reached the mutated
   function;
3. the score is killed / sampled, where killed counts the mutants a test failed on or that timed out.

`--unresolved` runs only the sampled mutants without a verdict or that survived (after adding tests: a killed
mutant stays killed while its function is unchanged). `--report` runs nothing and prints the last results.
Files not tracked by git yet (another change in progress) are left out of the sample.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "estimators": ("pgrad/estimators/",),
    "run": ("pgrad/run/",),
    "algorithms": ("pgrad/algorithms/common.py", "pgrad/algorithms/score_function/"),
}
# mutmut's exit codes (mutmut.stats.status_by_exit_code): a failed test (1) or a pytest internal error (3) is
# a kill, and so is a timeout (the mutant made a test hang or run away)
KILLED = {
    1: "killed",
    3: "killed",
    36: "timeout",
    -24: "timeout",
    24: "timeout",
    152: "timeout",
    255: "timeout",
}
OTHER = {0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", None: "not checked"}


def status(code: int | None) -> str:
    return KILLED.get(code) or OTHER.get(code) or ("segfault" if code in (-9, -11) else "suspicious")


def generate() -> None:
    """Write mutants/ (mutmut's copy of the sources with every mutant) without running any test."""
    sys.argv = ["mutmut"]
    os.chdir(ROOT)
    from mutmut.__main__ import (  # mutmut 3's own steps of `mutmut run` up to the mutants
        config,
        copy_also_copy_files,
        copy_src_dir,
        create_mutants,
        set_mutant_under_test,
        setup_source_paths,
    )

    set_mutant_under_test("mutant_generation")
    (ROOT / "mutants").mkdir(exist_ok=True)
    # mutmut copies a file it does not mutate only once: refresh those copies, so the tests run against the
    # code as it is now (a mutated file is rewritten whenever its source is newer)
    for copy in (ROOT / "mutants" / "pgrad").rglob("*"):
        source = copy.relative_to(ROOT / "mutants")
        mutated = source.suffix == ".py" and config().should_mutate(source)
        if copy.is_file() and (ROOT / source).is_file() and not mutated:  # not mutmut's .meta files
            copy.unlink()
    copy_src_dir()
    copy_also_copy_files()
    setup_source_paths()
    create_mutants(2)


def tracked_files() -> set[str]:
    out = subprocess.run(["git", "ls-files", "pgrad"], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def mutants_by_package() -> dict[str, dict[str, int | None]]:
    """{package: {mutant name: exit code or None}} over the git-tracked files of each package."""
    tracked = tracked_files()
    out: dict[str, dict[str, int | None]] = {name: {} for name in PACKAGES}
    for meta in sorted((ROOT / "mutants").glob("pgrad/**/*.py.meta")):
        source = str(meta.relative_to(ROOT / "mutants"))[: -len(".meta")]
        package = next((p for p, prefixes in PACKAGES.items() if source.startswith(prefixes)), None)
        if package is None or source not in tracked:
            continue
        out[package].update(json.loads(meta.read_text())["exit_code_by_key"])
    return out


def sample(names: list[str], size: int, seed: int) -> list[str]:
    """`size` mutants drawn at random, reproducibly: the ones whose seeded hash is smallest (bottom-k). A
    mutant added elsewhere in the package displaces at most one of them, so the sample stays put as the code
    around it changes (a seeded `random.sample` of the sorted names would reshuffle it entirely)."""
    if size <= 0 or len(names) <= size:
        return sorted(names)
    key = lambda name: hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()  # noqa: E731
    return sorted(sorted(names, key=key)[:size])


def report(package: str, names: list[str], results: dict[str, int | None], total: int) -> dict:
    counts = Counter(status(results.get(n)) for n in names)
    killed = counts["killed"] + counts["timeout"]
    score = 100.0 * killed / max(len(names), 1)
    kind = "all" if len(names) == total else f"random sample of {len(names)} of {total}"
    print(f"\n## {package}: {killed}/{len(names)} killed = {score:.1f}% ({kind}); {dict(counts)}")
    for name in names:
        if status(results.get(name)) not in ("killed", "timeout"):
            print(f"   {status(results.get(name)):<12} {name}")
    return {"package": package, "killed": killed, "sampled": len(names), "total": total, "score": score}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=300, help="mutants per package (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-children", type=int, default=2)
    parser.add_argument("--packages", nargs="+", default=list(PACKAGES), choices=list(PACKAGES))
    parser.add_argument("--unresolved", action="store_true", help="only sampled mutants not yet killed")
    parser.add_argument("--report", action="store_true", help="print the last results, run nothing")
    args = parser.parse_args()
    mutmut = str(Path(sys.executable).with_name("mutmut"))
    if not args.report:
        subprocess.run([sys.executable, __file__, "--generate-only"], check=True)
    by_package = mutants_by_package()
    picked = {p: sample(list(by_package[p]), args.sample, args.seed) for p in args.packages}
    if not args.report:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        for package in args.packages:
            names = picked[package]
            if args.unresolved:
                names = [n for n in names if status(by_package[package][n]) not in ("killed", "timeout")]
            if names:
                print(f"# {package}: running {len(names)} mutants", flush=True)
                cmd = [mutmut, "run", "--max-children", str(args.max_children), *names]
                subprocess.run(cmd, cwd=ROOT, env=env, check=False)
        by_package = mutants_by_package()
    rows = [report(p, picked[p], by_package[p], len(by_package[p])) for p in args.packages]
    print("\n| package | killed / sampled | score | mutants in package |")
    print("| --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['package']} | {r['killed']} / {r['sampled']} | {r['score']:.1f}% | {r['total']} |")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--generate-only"]:
        generate()
        sys.exit(0)
    sys.exit(main())
