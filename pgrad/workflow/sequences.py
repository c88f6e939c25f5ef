"""`pgrad seq`: train token policies on verifiable-reward sequence tasks.

    pgrad seq train --task add1 --advantage grpo|dr_grpo|rloo [--init-from BC_DIR] [...]
    pgrad seq bc --task add2 --demonstrations 200 [--dataset FILE.jsonl] [...]

`train` runs GRPO / Dr. GRPO / RLOO (`pgrad.algorithms.sequences.grpo.train_sequences`); `bc` fits a policy
to demonstrations (`pgrad.algorithms.sequences.bc.train_bc`), a run folder `train --init-from` starts from.
Each prints its summary as one JSON line.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from pgrad.errors import ConfigError

USAGE = "pgrad seq {train,bc} [OPTIONS]  (see `pgrad seq train --help`, `pgrad seq bc --help`)"


def main(argv: Sequence[str]) -> int:
    """Run `pgrad seq train ...` or `pgrad seq bc ...`; returns the exit code."""
    from pgrad.cli import _parse  # here: pgrad.cli imports nothing from pgrad.workflow at module level

    argv = list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "train":
        from pgrad.algorithms.sequences import grpo

        summary = grpo.run(_parse(grpo.Config, rest, "pgrad seq train"))
    elif command == "bc":
        from pgrad.algorithms.sequences import bc

        summary = bc.run(_parse(bc.Config, rest, "pgrad seq bc"))
    else:
        raise ConfigError(f"unknown `pgrad seq` command {command!r}: {USAGE}")
    print(json.dumps(summary))
    return 0
