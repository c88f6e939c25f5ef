"""The rules behind `pgrad report`: read a run folder and find what went wrong, in plain language.

The rules (thresholds are the constants below; docs/workflow/report.md gives each formula). Training trends
are read on W = `WINDOWS` windows of equal env-step width over the run, a window's value being the mean of its
records; each evaluation is a window of its own (it already averages episodes):

    non_finite                  a metric is null (NaN/inf) in metrics.jsonl
    no_learning                 best return window − start ≤ FLAT_SPREADS · σ₀ (σ₀: spread of single episodes)
    return_collapse             the end (the last training window; each of the last COLLAPSE_EVALS
                                evaluations) is below start + COLLAPSE_KEPT · (best − start), after the best
    eval_below_train            mean(train − eval) over the second half > EVAL_GAP · max(best − start, σ₀)
    entropy_collapse            H ≤ ENTROPY_FRACTION · H₀ while the return was < half way from start to best
                                (H₀: log |A| for discrete actions, else the first logged entropy)
    kl_spike                    approx KL > τ = min(KL_MAX, max(KL_FLOOR, KL_RATIO · median KL))
    value_loss_diverging        last loss window ≥ VALUE_LOSS_GROWTH · first window
    explained_variance_negative EV < 0 in ≥ EV_NEGATIVE_SHARE of the records
    clip_fraction_high          median clip fraction > CLIP_HIGH
    clip_fraction_zero          a ratio clip (clip_coef > 0) that never bound: clip fraction 0 at every record
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np

from pgrad.errors import ConfigError, PgradError
from pgrad.run.folder import RUN_FILE, read_run_file
from pgrad.run.logger import METRICS_FILE, read_metrics

# -- rule thresholds -----------------------------------------------------------------------------------------
WINDOWS = 10  # trend windows: 10% of the run's steps each, long enough to average away per-interval noise
MIN_RECORDS = 5  # fewer finite records of a metric than this: its trend rules are skipped, not guessed
MIN_EVALS = 3  # the same for evaluations (each already averages several episodes)
FLAT_SPREADS = 1.0  # a gain no larger than one std of single episodes' returns is indistinguishable from luck
COLLAPSE_KEPT = 0.5  # a run that ends having kept less than half of what it gained has collapsed
COLLAPSE_EVALS = 2  # ... in its last 2 evaluations: one evaluation of a few episodes is too noisy on its own
EVAL_GAP = 0.5  # eval below train by half the learning gain: the evaluated policy is not the one that learned
ENTROPY_FRACTION = 0.1  # 90% of the starting entropy gone: the policy is (nearly) deterministic
ENTROPY_FAR = 0.5  # ... and "far from its best": less than half way from the start return to the best one
KL_MAX = 0.1  # nats per update: 10x the trust region of TRPO/NPG (0.01) and above PPO's usual target_kl
KL_FLOOR = 0.05  # below this an update is ordinary whatever the median (a few times PPO's usual target_kl,
# 0.01-0.02; pgrad's own CartPole preset, 20 epochs at lr 4e-3, reaches 0.045 in its first updates)
KL_RATIO = 5.0  # a KL 5x the run's median is a jump even where the median itself is small
VALUE_LOSS_GROWTH = 1000.0  # three orders of magnitude above its start: more than a return scale growing
# ~30x explains (the loss is a squared error); a loss that fell near 0 and came back is not counted
EV_NEGATIVE_SHARE = 0.9  # "negative throughout": the critic is worse than the mean almost all the time
CLIP_HIGH = 0.5  # more than half the samples clipped at a typical update: the steps overshoot the clip range
CLIP_ZERO = 1e-9  # clip fraction values at or below this count as zero

# Metrics where null is a defined "undefined", not a fault: explained variance is NaN when the targets are
# constant (pgrad.estimators.explained_variance).
UNDEFINED_OK = ("stats/explained_variance",)
# Algorithms whose stats/approx_kl is KL(behaviour ‖ current) on replayed batches, large by design, not the
# size of one update (pgrad.algorithms.score_function.is_pg).
KL_TO_BEHAVIOUR = ("is_pg",)

TRAIN, EVAL = "charts/episode_return", "eval/mean_return"
VALUE_LOSSES = ("loss/value", "loss/critic")
GRAD_NORMS = ("stats/grad_norm", "stats/value_grad_norm", "stats/actor_grad_norm", "stats/critic_grad_norm")


# -- reading a run -------------------------------------------------------------------------------------------
@dataclasses.dataclass
class RunData:
    """A run folder's run.json and metrics records (sorted by step), as the report reads them."""

    path: Path
    info: dict[str, Any]
    records: list[dict[str, Any]]
    label: str = ""
    _names: list[str] | None = dataclasses.field(default=None, repr=False)

    @property
    def first_step(self) -> int:
        return int(self.records[0]["global_step"])

    @property
    def last_step(self) -> int:
        return int(self.records[-1]["global_step"])

    def metric_names(self) -> list[str]:
        """Every numeric metric the run logged, in first-seen order."""
        if self._names is None:
            seen: dict[str, None] = {}
            for record in self.records:
                for key, value in record.items():
                    if key not in ("global_step", "iteration", "time") and numeric_or_null(value):
                        seen.setdefault(key, None)
            self._names = list(seen)
        return self._names

    def series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """Steps and values of the records that hold `key` (null, NaN and inf become NaN)."""
        pairs = [
            (r["global_step"], math.nan if r[key] is None else float(r[key]))
            for r in self.records
            if key in r and numeric_or_null(r[key])
        ]
        if not pairs:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        steps, values = zip(*pairs, strict=True)
        values_ = np.asarray(values, dtype=float)
        values_[~np.isfinite(values_)] = math.nan
        return np.asarray(steps, dtype=np.int64), values_

    def finite(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        steps, values = self.series(key)
        keep = np.isfinite(values)
        return steps[keep], values[keep]


def numeric_or_null(value: Any) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def read_run(run_dir: str | Path) -> RunData:
    """A run folder's run.json and metrics, with one-line errors for a folder that is not a run or that has
    no metrics."""
    path = Path(run_dir)
    if not path.is_dir():
        raise ConfigError(f"{path}: no such run folder")
    if not (path / RUN_FILE).exists():
        raise ConfigError(f"{path} is not a pgrad run folder ({RUN_FILE} not found)")
    info = read_run_file(path)
    if not (path / METRICS_FILE).exists():
        raise ConfigError(f"{path} has no {METRICS_FILE}: the run logged nothing to report")
    records = read_metrics(path)
    for i, record in enumerate(records):
        step = record.get("global_step") if isinstance(record, dict) else None
        if isinstance(step, bool) or not isinstance(step, int):
            raise ConfigError(f"{path / METRICS_FILE}: record {i + 1} has no integer global_step")
    if not records:
        raise ConfigError(
            f"{path / METRICS_FILE} holds no metrics records (the run stopped before its first log "
            "interval?): nothing to report"
        )
    records.sort(key=lambda r: r["global_step"])  # stable: an evaluation record stays after its interval
    return RunData(path, info, records, label=path.name or str(path))


# -- findings ------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Finding:
    """One warning: a rule's code, a plain sentence with the numbers and what to try, the step where it
    happened (None for a property of the whole run) and the metric it was read from."""

    code: str
    message: str
    step: int | None
    metric: str

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "step": self.step, "metric": self.metric}


@dataclasses.dataclass
class Check:
    """One rule as applied to a run: "ok", "warned" or "skipped", with a note saying what was measured."""

    code: str
    status: str
    note: str
    findings: list[Finding] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class Window:
    lo: int  # the steps of the window's first and last record
    hi: int
    mean: float
    count: int


def windows(run: RunData, steps: np.ndarray, values: np.ndarray, n: int = WINDOWS) -> list[Window]:
    """Means of the finite `values` over `n` windows of equal env-step width spanning the run (empty windows
    are left out)."""
    edges = np.linspace(run.first_step, run.last_step, n + 1)
    keep = np.isfinite(values)
    steps, values = steps[keep], values[keep]
    index = np.clip(np.searchsorted(edges, steps, side="right") - 1, 0, n - 1)
    out = []
    for i in range(n):
        inside = index == i
        if inside.any():
            lo, hi = int(steps[inside].min()), int(steps[inside].max())
            out.append(Window(lo, hi, float(values[inside].mean()), int(inside.sum())))
    return out


@dataclasses.dataclass
class Profile:
    """A return curve reduced to what the rules need: its start (first record), windows, best window, the
    gain best − start and σ₀, the spread of single episodes' returns at the start."""

    source: str  # "training" or "evaluation"
    key: str
    steps: np.ndarray
    values: np.ndarray
    start: float
    windows: list[Window]
    best: Window
    spread: float
    start_label: str = "its start"

    @property
    def gain(self) -> float:
        return self.best.mean - self.start

    @property
    def flat(self) -> bool:
        return self.gain <= FLAT_SPREADS * self.spread

    def level(self, kept: float) -> float:
        """The return that keeps a fraction `kept` of the gain."""
        return self.start + kept * self.gain


def _profile(run: RunData, key: str, start: float | None = None) -> Profile | None:
    """`start`: the return before learning, when the curve's first value comes too late to be it."""
    steps, values = run.finite(key)
    if len(values) < (MIN_RECORDS if key == TRAIN else MIN_EVALS):
        return None
    # Training: windows of 10% of the run. Evaluations: each its own window (it already averages episodes).
    wins = (
        windows(run, steps, values)
        if key == TRAIN
        else [Window(s, s, v, 1) for s, v in zip(steps.tolist(), values.tolist(), strict=True)]
    )
    first = wins[0]
    if key == TRAIN:
        # σ₀: the std of single episodes' returns in the first window (logged per interval); else the spread
        # of the interval means there.
        std_steps, stds = run.finite("charts/episode_return_std")
        early = stds[std_steps <= first.hi]
        spread = float(np.median(early)) if len(early) else float(np.std(values[steps <= first.hi]))
    else:
        std_steps, stds = run.finite("eval/std_return")
        spread = float(stds[0]) if len(stds) else 0.0
    best = max(wins, key=lambda w: w.mean)
    source = "training" if key == TRAIN else "evaluation"
    if start is None:
        return Profile(source, key, steps, values, float(values[0]), wins, best, spread)
    return Profile(source, key, steps, values, start, wins, best, spread, "the first training return")


def num(x: float, digits: int = 4) -> str:
    """A number for a sentence: `digits` significant digits, thousands separated."""
    if not math.isfinite(x):
        return str(x)
    if abs(x) >= 10**digits:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def span(w: Window) -> str:
    return f"step {w.lo:,}" if w.lo == w.hi else f"steps {w.lo:,}–{w.hi:,}"


def _too_few(values: np.ndarray, key: str, enough: int = MIN_RECORDS) -> str:
    """Why a rule was skipped: the metric is not logged, or too rarely."""
    if not len(values):
        return f"{key} is not logged by this run"
    return f"only {len(values)} finite records of {key} (the rule needs {enough})"


def _check_non_finite(run: RunData) -> Check:
    bad = []
    for key in run.metric_names():
        if key in UNDEFINED_OK:
            continue
        steps, values = run.series(key)
        nan = ~np.isfinite(values)
        if nan.any():
            bad.append((int(steps[nan][0]), key, int(nan.sum()), len(values)))
    if not bad:
        return Check("non_finite", "ok", f"{len(run.metric_names())} metrics, none null/NaN/inf")
    bad.sort()
    listed = "; ".join(f"{key} at {k} of {n} records from step {s:,}" for s, key, k, n in bad)
    message = (
        f"Metrics became NaN or infinite (null in {METRICS_FILE}): {listed}. The arithmetic overflowed: "
        "try a lower learning rate, gradient clipping (max_grad_norm), observation or reward "
        "normalisation, and check the env's observations and rewards for NaN or huge values."
    )
    return Check("non_finite", "warned", listed, [Finding("non_finite", message, bad[0][0], bad[0][1])])


def _check_no_learning(run: RunData, train: Profile | None, ev: Profile | None) -> Check:
    p = train or ev
    if p is None:
        return Check(
            "no_learning",
            "skipped",
            f"{_too_few(run.finite(TRAIN)[1], TRAIN)}; {_too_few(run.finite(EVAL)[1], EVAL, MIN_EVALS)}",
        )
    note = (
        f"{p.source} return: start {num(p.start)}, best window {num(p.best.mean)} ({span(p.best)}), "
        f"σ₀ {num(p.spread)}"
    )
    if not p.flat:
        return Check("no_learning", "ok", note)
    message = (
        f"The {p.source} return did not improve: its best window ({num(p.best.mean)}, {span(p.best)}) is "
        f"{p.gain:+.4g} from its start ({num(p.start)}), within the spread of single episodes' returns "
        f"(σ₀ = {num(p.spread)}). Check that the reward reaches the agent, then try another learning rate "
        "(too small barely moves the policy, too large can collapse it: see the entropy warning if there is "
        "one), a longer run, or pgrad's preset for the env where there is one."
    )
    return Check("no_learning", "warned", note, [Finding("no_learning", message, None, p.key)])


def _check_collapse(run: RunData, p: Profile | None, source: str, key: str, explain: bool) -> Check:
    """`explain`: add what the entropy says about the collapse (to one of the two collapse warnings)."""
    code = "return_collapse"
    if p is None:
        enough = MIN_RECORDS if key == TRAIN else MIN_EVALS
        return Check(code, "skipped", f"{source} return: " + _too_few(run.finite(key)[1], key, enough))
    # The end of the run: the last window of training returns; the last COLLAPSE_EVALS evaluations, each
    # below the level (one evaluation of a few episodes is too noisy to call a collapse on its own).
    tail = p.windows[-(COLLAPSE_EVALS if key == EVAL else 1) :]
    level = p.level(COLLAPSE_KEPT)
    end = float(np.mean([w.mean for w in tail]))
    kept = (end - p.start) / p.gain if p.gain > 0 else 1.0
    what = "last window" if len(tail) == 1 else f"last {len(tail)} evaluations"
    shown = "; ".join(f"{num(w.mean)} ({span(w)})" for w in tail)
    note = f"{source} return: start {num(p.start)}, best {num(p.best.mean)} ({span(p.best)}), {what} {shown}"
    peak = p.windows.index(p.best)
    if p.flat or peak >= len(p.windows) - len(tail) or any(w.mean >= level for w in tail):
        return Check(code, "ok", note)
    # The collapse began where the return last crossed below the level (earlier dips it recovered from
    # are not it).
    above = [i for i, w in enumerate(p.windows) if w.mean >= level]
    fell = p.windows[above[-1] + 1]
    at = int(p.steps[(p.steps >= fell.lo) & (p.values < level)][0])  # its first record below the level
    best = "best window" if key == TRAIN else "best evaluation"
    message = (
        f"The {source} return collapsed after its peak: {best} {num(p.best.mean)} ({span(p.best)}), "
        f"{what} {shown}, keeping {kept:.0%} of its gain over {p.start_label} ({num(p.start)}); it has "
        f"stayed below {num(level)} (half the gain) since step {at:,}. Try a lower learning rate, stronger "
        "gradient clipping or a larger batch; the best-evaluated policy is kept "
        "(`pgrad eval RUN --checkpoint best`)."
    )
    # A policy that went deterministic cannot explore its way back: say so where the entropy shows it.
    _, h = run.finite("stats/entropy")
    if explain and len(h) and "target_entropy" not in (run.info.get("config") or {}):
        h0 = _entropy_reference(run, h)[0]
        if h0 > 0 and h[-1] <= ENTROPY_FRACTION * h0:
            message += (
                f" Its entropy ended at {num(float(h[-1]))} ({h[-1] / h0:.0%} of {num(h0)}): the policy is "
                "deterministic and no longer explores, so it cannot find its way back; an entropy bonus "
                "(ent_coef) keeps it exploring."
            )
    return Check(code, "warned", note, [Finding(code, message, at, key)])


def _check_eval_gap(run: RunData, train: Profile | None, ev: Profile | None) -> Check:
    code = "eval_below_train"
    if train is None or ev is None:
        return Check(code, "skipped", f"needs {MIN_RECORDS} training returns and {MIN_EVALS} evaluations")
    # Pair each evaluation with the training return of its own log interval (the record at or just before
    # it, no older than one window), in the run's second half, where both should have settled.
    width = (run.last_step - run.first_step) / WINDOWS
    half = run.first_step + (run.last_step - run.first_step) / 2
    pairs = []
    for step, value in zip(ev.steps, ev.values, strict=True):
        before = np.nonzero((train.steps <= step) & (train.steps >= step - width))[0]
        if step >= half and len(before):
            pairs.append((int(step), float(train.values[before[-1]]), float(value)))
    if len(pairs) < 2:
        return Check(code, "skipped", "fewer than 2 evaluations with a training return beside them")
    gap = float(np.mean([t - e for _, t, e in pairs]))
    scale = max(train.gain, train.spread)
    note = (
        f"mean train − eval over {len(pairs)} evaluations of the second half: {num(gap)} (scale {num(scale)})"
    )
    if not (scale > 0 and gap > EVAL_GAP * scale):
        return Check(code, "ok", note)
    first = next(s for s, t, e in pairs if t - e > EVAL_GAP * scale)
    deterministic = (run.info.get("run") or {}).get("eval_deterministic", True)
    how = (
        "the evaluation acts with the distribution's mode: compare with sampled actions "
        "(`pgrad eval RUN --no-deterministic`)"
        if deterministic
        else "the evaluation samples actions like training"
    )
    message = (
        f"Evaluation is far below training: over the {len(pairs)} evaluations of the second half the "
        f"evaluation return averaged {num(gap)} below the training return of the same interval (more than "
        f"{EVAL_GAP:.0%} of the learning gain {num(scale)}), first at step {first:,}. "
        f"{how[0].upper() + how[1:]}; "
        "check that observation normalisation and the env's settings (env_kwargs) are the same in both, and "
        "use more evaluation episodes."
    )
    return Check(code, "warned", note, [Finding(code, message, first, EVAL)])


def action_space(run: RunData) -> dict[str, Any] | None:
    """The run's action space as its latest checkpoint records it (state.json, no tensors read); None when
    there is no readable checkpoint."""
    from pgrad.run.checkpoint import latest_checkpoint, read_json

    try:
        state = read_json(latest_checkpoint(run.path / "checkpoints") / "state.json")
        space = state["state"]["policy"]["action_space"]
    except (PgradError, KeyError, TypeError):
        return None
    return space if isinstance(space, dict) else None


def max_entropy(space: dict[str, Any] | None) -> float | None:
    """log |A| for a Discrete or MultiDiscrete action space (the uniform policy's entropy), else None."""
    try:
        if space and space.get("type") == "Discrete":
            return math.log(int(space["n"]))
        if space and space.get("type") == "MultiDiscrete":
            return float(sum(math.log(int(n)) for n in np.ravel(space["nvec"])))
    except (KeyError, TypeError, ValueError):
        return None
    return None


def _entropy_reference(run: RunData, values: np.ndarray) -> tuple[float, str]:
    """H₀ and how it was found: log |A| where the action space is discrete (a policy can collapse within the
    first log interval), else the first logged entropy."""
    h_max = max_entropy(action_space(run))
    return (h_max, "the uniform policy's") if h_max else (float(values[0]), "its first logged value,")


def _return_at(p: Profile, step: int, width: float) -> float | None:
    """The mean return of the records in (step − width, step], else the latest before `step`, else None."""
    inside = (p.steps <= step) & (p.steps > step - width)
    if inside.any():
        return float(p.values[inside].mean())
    before = p.steps <= step
    return float(p.values[before][-1]) if before.any() else None


def _check_entropy(run: RunData, train: Profile | None, ev: Profile | None) -> Check:
    code, key = "entropy_collapse", "stats/entropy"
    steps, values = run.finite(key)
    if len(values) < MIN_RECORDS:
        return Check(code, "skipped", _too_few(values, key))
    if "target_entropy" in (run.info.get("config") or {}):
        return Check(code, "skipped", "the algorithm steers its entropy to a target (target_entropy)")
    # The reference: the uniform policy's entropy where the action space is discrete (a policy can collapse
    # within the first log interval), else the first logged value.
    h0, start = _entropy_reference(run, values)
    if h0 <= 0:
        return Check(code, "skipped", f"the entropy starts at {num(h0)} ≤ 0 (a differential entropy)")
    low = np.nonzero(values <= ENTROPY_FRACTION * h0)[0]
    note = f"reference {num(h0)} ({start.rstrip(',')}), lowest {num(float(values.min()))}"
    if not len(low):
        return Check(code, "ok", note)
    at, h = int(steps[low[0]]), float(values[low[0]])
    p = train or ev
    if p is None:
        context = "no return was logged to judge whether the policy had learned by then"
    else:
        width = (run.last_step - run.first_step) / WINDOWS
        r = _return_at(p, at, width)
        far = p.level(ENTROPY_FAR)
        if not p.flat and r is not None and r >= far:
            return Check(
                code, "ok", note + f"; it fell below {ENTROPY_FRACTION:.0%} once the return was {num(r)}"
            )
        if r is None:
            context = f"before the first {p.source} return was logged"
        elif p.flat:
            context = f"while the {p.source} return ({num(r)}) had not improved on its start ({num(p.start)})"
        else:
            context = (
                f"while the {p.source} return ({num(r)}) was less than half way from its start "
                f"({num(p.start)}) to its best ({num(p.best.mean)})"
            )
    message = (
        f"The policy's entropy collapsed early: {num(h)} at step {at:,}, {h / h0:.0%} of {start} "
        f"{num(h0)}, {context}. The policy stopped exploring before it learned: try an entropy bonus "
        "(ent_coef, e.g. 0.01) or a lower learning rate."
    )
    return Check(code, "warned", note, [Finding(code, message, at, key)])


def _check_kl(run: RunData) -> Check:
    code, key = "kl_spike", "stats/approx_kl"
    steps, values = run.finite(key)
    if len(values) < MIN_RECORDS:
        return Check(code, "skipped", _too_few(values, key))
    if run.info.get("algorithm") in KL_TO_BEHAVIOUR:
        return Check(code, "skipped", "approx_kl is the distance to the replay's behaviour policy here")
    median = float(np.median(values))
    tau = min(KL_MAX, max(KL_FLOOR, KL_RATIO * median))
    spikes = np.nonzero(values > tau)[0]
    note = f"median {num(median)}, threshold τ {num(tau)}, max {num(float(values.max()))}"
    if not len(spikes):
        return Check(code, "ok", note)
    top = int(spikes[np.argmax(values[spikes])])
    shown = ", ".join(f"{int(s):,}" for s in steps[spikes][:5]) + (", …" if len(spikes) > 5 else "")
    message = (
        f"The policy jumped at some updates: approx KL exceeded τ = {num(tau)} at {len(spikes)} of "
        f"{len(values)} records (steps {shown}), up to {num(float(values[top]))} at step {int(steps[top]):,} "
        f"(median {num(median)}). Try a lower learning rate, fewer update epochs, a target_kl (PPO) or a "
        "smaller clip range."
    )
    return Check(code, "warned", note, [Finding(code, message, int(steps[spikes[0]]), key)])


def _check_value_loss(run: RunData, key: str) -> Check:
    code = "value_loss_diverging"
    steps, values = run.finite(key)
    if len(values) < MIN_RECORDS:
        return Check(code, "skipped", _too_few(values, key))
    wins = windows(run, steps, values)
    positive = [w for w in wins[:-1] if w.mean > 0]
    if len(wins) < 3 or not positive:
        return Check(code, "skipped", f"{key}: fewer than 3 windows, or none positive before the last")
    first, last = positive[0], wins[-1]  # the start: the first window with a loss (sparse rewards: not 0)
    growth = last.mean / first.mean
    note = f"{key}: first window {num(first.mean)} ({span(first)}), last {num(last.mean)} (×{num(growth)})"
    if growth < VALUE_LOSS_GROWTH:
        return Check(code, "ok", note)
    after = (steps > first.hi) & (values >= VALUE_LOSS_GROWTH * first.mean)
    at = int(steps[after][0]) if after.any() else last.lo
    message = (
        f"The critic is diverging: {key} grew from {num(first.mean)} ({span(first)}) to {num(last.mean)} in "
        f"the last window ({span(last)}), ×{num(growth)}; it first passed "
        f"×{num(VALUE_LOSS_GROWTH)} its start at step {at:,}. Try a lower critic learning rate, gradient "
        "clipping, reward normalisation (normalize_reward) or a smaller discount γ."
    )
    return Check(code, "warned", note, [Finding(code, message, at, key)])


def _check_explained_variance(run: RunData) -> Check:
    code, key = "explained_variance_negative", "stats/explained_variance"
    steps, values = run.finite(key)
    if len(values) < MIN_RECORDS:
        return Check(code, "skipped", _too_few(values, key))
    share = float(np.mean(values < 0))
    note = f"negative in {share:.0%} of {len(values)} records, median {num(float(np.median(values)))}"
    if share < EV_NEGATIVE_SHARE:
        return Check(code, "ok", note)
    message = (
        f"The critic never learned the returns: explained variance was negative in {share:.0%} of "
        f"{len(values)} records (median {num(float(np.median(values)))}, from step {int(steps[0]):,}), worse "
        "than predicting their mean. Try a larger critic learning rate or more critic iterations, "
        "observation normalisation, or reward normalisation when returns are large."
    )
    return Check(code, "warned", note, [Finding(code, message, int(steps[0]), key)])


def _check_clip(run: RunData) -> list[Check]:
    key = "stats/clip_fraction"
    steps, values = run.finite(key)
    if len(values) < MIN_RECORDS:
        note = _too_few(values, key)
        return [Check("clip_fraction_high", "skipped", note), Check("clip_fraction_zero", "skipped", note)]
    median = float(np.median(values))
    note = f"median {num(median)}, max {num(float(values.max()))}"
    high = Check("clip_fraction_high", "ok", note)
    if median > CLIP_HIGH:
        at = int(steps[values > CLIP_HIGH][0])
        message = (
            f"Most samples hit the clip: the clip fraction's median is {median:.0%} over {len(values)} "
            f"records (above {CLIP_HIGH:.0%} from step {at:,}), so most of each batch no longer moves the "
            "policy. Try a lower learning rate or fewer update epochs (or a wider clip_coef)."
        )
        high = Check("clip_fraction_high", "warned", note, [Finding("clip_fraction_high", message, at, key)])
    clip = (run.info.get("config") or {}).get("clip_coef")
    if not isinstance(clip, int | float) or clip <= 0:
        zero = Check("clip_fraction_zero", "skipped", "no ratio clip (clip_coef) in this run's config")
    elif float(values.max()) > CLIP_ZERO:
        zero = Check("clip_fraction_zero", "ok", note)
    else:
        message = (
            f"The clip never bound: the clip fraction was 0 at all {len(values)} records (clip_coef {clip}), "
            "so the policy barely moves within an update. Try a larger learning rate or more update epochs "
            "(or a narrower clip_coef if the updates are meant to be clipped)."
        )
        zero = Check(
            "clip_fraction_zero", "warned", note, [Finding("clip_fraction_zero", message, int(steps[0]), key)]
        )
    return [high, zero]


def checks(run: RunData) -> list[Check]:
    """Every rule applied to one run, in the order the report lists them."""
    # The first evaluation comes eval_every steps in, often after the learning: the evaluations' start is
    # the first training return (the initial policy's) where there is one.
    train = _profile(run, TRAIN)
    ev = _profile(run, EVAL, start=train.start if train is not None else None)
    out = [
        _check_non_finite(run),
        _check_no_learning(run, train, ev),
        _check_collapse(run, train, "training", TRAIN, explain=True),
        _check_collapse(run, ev, "evaluation", EVAL, explain=train is None),
        _check_eval_gap(run, train, ev),
        _check_entropy(run, train, ev),
        _check_kl(run),
    ]
    losses = [key for key in VALUE_LOSSES if key in run.metric_names()]
    out += [_check_value_loss(run, key) for key in losses] or [
        Check("value_loss_diverging", "skipped", "no loss/value or loss/critic in the metrics")
    ]
    out.append(_check_explained_variance(run))
    out += _check_clip(run)
    return out


def diagnose(run_dir: str | Path) -> list[dict[str, Any]]:
    """The warnings of one run folder as dicts (code, message, step, metric), without writing anything."""
    return [f.as_dict() for check in checks(read_run(run_dir)) for f in check.findings]
