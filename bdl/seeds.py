"""The loop over several seeds: mean and spread of every row of the ablation table, the share of the
M0-to-oracle gap the final model closes, and the steps that lose on the mean."""

import csv
from pathlib import Path

import numpy as np

from bdl.artifacts import atomic_path
from bdl.errors import BDLError

COLUMNS = ("miou", "miou16", "miou13")
# rows that are yardsticks, not steps of the loop: never judged, never the final model or the best row
YARDSTICKS = ("oracle", "m0_target_bn")


def loop_rows(rows) -> list:
    """The loop's models among a table's rows, in order (the yardsticks left out)."""
    return [m for m in rows if m not in YARDSTICKS]


def read_tables(paths) -> list[dict]:
    """Each metrics.tsv as model -> row (strings), in file order; every table must hold the same models."""
    tables = []
    for path in paths:
        try:
            with open(path, newline="") as fh:
                tables.append({r["model"]: r for r in csv.DictReader(fh, delimiter="\t")})
        except OSError as exc:
            raise BDLError(f"{path}: cannot read ({exc.strerror})") from None
        except KeyError:
            raise BDLError(f"{path}: not an ablation table (no 'model' column)") from None
    models = list(tables[0])
    for path, table in zip(paths, tables):
        if list(table) != models:
            raise BDLError(f"{path}: rows {list(table)} differ from {paths[0]}'s {models}")
        for model, row in table.items():
            for col in COLUMNS:
                try:
                    float(row[col])
                except (KeyError, TypeError, ValueError):
                    raise BDLError(f"{path}: row {model} has no number in column '{col}'") from None
    return tables


def summarise(tables: list[dict]) -> dict:
    """model -> column -> (mean, sample std with n-1), over the tables (one per seed, at least two)."""
    if len(tables) < 2:
        raise BDLError(f"a spread over seeds needs at least two tables, not {len(tables)}")
    out = {}
    for model in tables[0]:
        values = {c: np.array([float(t[model][c]) for t in tables]) for c in COLUMNS}
        out[model] = {c: (float(v.mean()), float(v.std(ddof=1))) for c, v in values.items()}
    return out


def gap_closed(mean: dict) -> float | None:
    """(final - m0) / (oracle - m0) of the mean mIoU, or None without an oracle above M0."""
    loop = loop_rows(mean)
    if "oracle" not in mean or "m0" not in mean or mean["oracle"] <= mean["m0"]:
        return None
    return (mean[loop[-1]] - mean["m0"]) / (mean["oracle"] - mean["m0"])


def judged_steps(loop: list) -> list[tuple[str, str, int]]:
    """The steps of the loop (its models in order, oracle left out) that are judged, as (before, after, k):
    M_1 against M0 and each SSL step against the model before it (k 0), and each round's last model against
    the round before's (k that round before). An adversarial M_k (k >= 2) is judged with its round, through
    the round's last model."""
    steps = [(a, b, 0) for a, b in zip(loop, loop[1:]) if a == "m0" or "_ssl" in b]
    rounds = sorted({int(m[5:].split("_")[0]) for m in loop if m.startswith("round")})
    lasts = [[m for m in loop if m.startswith(f"round{k}_")][-1] for k in rounds]
    return steps + [(a, b, k) for k, a, b in zip(rounds, lasts, lasts[1:])]


def losing_steps(mean: dict) -> list[str]:
    """Every step of the loop that loses on the mean mIoU (names as metrics.tsv's): M_1 adversarial below M0,
    an SSL step below the model before it, a round's last model below the round before's, a final model below
    any row. A final model level with the best row is the best row."""
    loop = loop_rows(mean)
    final = loop[-1]

    def below(b, a, a_is=""):  # as many decimals as it takes to show the two apart
        digits = next((d for d in range(2, 6) if f"{mean[b]:.{d}f}" != f"{mean[a]:.{d}f}"), 6)
        return f"{b} {mean[b]:.{digits}f} < {a_is}{a} {mean[a]:.{digits}f}"

    def lower(b, a):  # means of 2-decimal tables: a difference in the last float bits is a tie
        return mean[b] < mean[a] - 1e-9

    losses = [below(b, a) + (f" (round {k + 1} below round {k})" if k else "")
              for a, b, k in judged_steps(loop) if lower(b, a)]
    best = max(loop, key=mean.get)
    if lower(final, best):
        losses.append(f"final {below(final, best, 'best row ')}")
    return losses


# Student's t at 97.5% for 1..30 degrees of freedom: the half-width of a two-sided 95% interval of a mean
# change over n seeds is T975[n - 2] * std / sqrt(n)
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def step_changes(tables: list[dict]) -> list[dict]:
    """Each step losing_steps judges, as the change of mIoU it makes on each seed (after - before, the same
    seed's table): mean, sample std (n-1), the seeds it gains on, and the 95% interval of the mean change
    (paired t). A step whose interval holds zero is not told apart from no change by these seeds, whichever
    way its mean goes; with three seeds that takes a change of about 2.5 stds. With the yardstick row
    m0_target_bn, the final model against it comes last (not a step: losing_steps never counts it)."""
    loop = loop_rows(tables[0])
    mean = {m: float(np.mean([float(t[m]["miou"]) for t in tables])) for m in loop}
    pairs = [(a, b, f"round {k + 1} against round {k}" if k else "") for a, b, k in judged_steps(loop)]
    best = max(loop, key=mean.get)
    # a final model level with the best row is the best row (losing_steps' tolerance)
    if mean[best] - mean[loop[-1]] > 1e-9 and (best, loop[-1]) not in [(a, b) for a, b, _ in pairs]:
        pairs.append((best, loop[-1], "final against the best row"))
    if "m0_target_bn" in tables[0]:  # not a step: what the loop adds over normalisation alone
        pairs.append(("m0_target_bn", loop[-1], "final against M0 with the target's statistics"))
    out = []
    for before, after, why in pairs:
        diff = np.array([float(t[after]["miou"]) - float(t[before]["miou"]) for t in tables])
        n, std = len(diff), float(diff.std(ddof=1))
        half = T975[min(n, len(T975) + 1) - 2] * std / np.sqrt(n)
        out.append({"before": before, "after": after, "why": why, "mean": round(float(diff.mean()), 4),
                    "std": round(std, 4), "gains_on": int((diff > 0).sum()), "seeds": n,
                    "interval95": [round(float(diff.mean() - half), 4), round(float(diff.mean() + half), 4)]})
    return out


def change_lines(tables: list[dict], names=None, changes=None) -> list[str]:
    """step_changes (given, or made from the tables) for people, one line each, and the gap each seed's final
    model closes."""
    lines = ["change of each step, the same seed before and after (mean ± std over seeds; seeds it gains on; "
             "95% interval):"]
    for c in step_changes(tables) if changes is None else changes:
        lo, hi = c["interval95"]
        noise = ", not told apart from none" if lo <= 0 <= hi else ""
        why = f", {c['why']}" if c["why"] else ""
        lines.append(f"  {c['after']} - {c['before']}{why}: {c['mean']:+.2f} ± {c['std']:.2f} "
                     f"({c['gains_on']} of {c['seeds']}; {lo:+.2f} to {hi:+.2f}{noise})")
    per_seed = [gap_closed({m: float(r["miou"]) for m, r in t.items()}) for t in tables]
    names = names or [str(i) for i in range(len(tables))]
    if any(g is not None for g in per_seed):
        lines.append("gap closed by each seed's final model: " + ", ".join(
            f"{'no gap (its oracle not above its M0)' if g is None else f'{100 * g:.0f}%'} (seed {name})"
            for name, g in zip(names, per_seed)))
    return lines


def loop_checks(mean: dict) -> list[str]:
    """The gap closed and the steps that lose, as lines for people."""
    loop = loop_rows(mean)
    closed = gap_closed(mean)
    out = [] if closed is None else [
        f"gap closed by {loop[-1]}: {100 * closed:.0f}% ((final - m0) / (oracle - m0) of the means)"]
    losses = losing_steps(mean)
    out.append("steps that lose on the mean: " + ("; ".join(losses) if losses else "none"))
    return out


def summary_tsv(summary: dict, seeds: list) -> str:
    head = ["model", "seeds", *(f"{c}_{s}" for c in COLUMNS for s in ("mean", "std"))]
    lines = ["\t".join(head)]
    for model, cols in summary.items():
        lines.append("\t".join([model, str(len(seeds)), *(f"{x:.2f}" for c in COLUMNS for x in cols[c])]))
    return "\n".join(lines) + "\n"


def summary_markdown(summary: dict) -> str:
    lines = ["| model | " + " | ".join(COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
    for model, cols in summary.items():
        lines.append(f"| {model} | " + " | ".join(f"{m:.2f} ± {s:.2f}" for m, s in (cols[c] for c in COLUMNS)) + " |")
    return "\n".join(lines)


def plot_seeds(tables: list[dict], seeds: list, path: Path, title: str) -> None:
    """mIoU of each model of the loop, in its order: every seed's point, the mean with its std as error bar,
    and the oracle as a line."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    loop = loop_rows(tables[0])
    values = np.array([[float(t[m]["miou"]) for m in loop] for t in tables])  # seeds x models
    fig = Figure(figsize=(max(5.0, 0.9 * len(loop) + 1.5), 3.8))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    x = np.arange(len(loop))
    for seed, row in zip(seeds, values):
        ax.plot(x, row, "o", ms=3, alpha=0.5, label=f"seed {seed}")
    ax.errorbar(x, values.mean(0), yerr=values.std(0, ddof=1), fmt="-", color="k", capsize=3, label="mean ± std")
    if "oracle" in tables[0]:
        oracle = np.mean([float(t["oracle"]["miou"]) for t in tables])
        ax.axhline(oracle, color="tab:green", ls="--", lw=1, label=f"oracle {oracle:.1f}")
    if "m0_target_bn" in tables[0]:
        base = np.mean([float(t["m0_target_bn"]["miou"]) for t in tables])
        ax.axhline(base, color="tab:gray", ls=":", lw=1, label=f"M0, target statistics {base:.1f}")
    ax.set_xticks(x, [m.replace("_", "\n") for m in loop], fontsize=8)
    ax.set_ylabel("mIoU (target val)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
