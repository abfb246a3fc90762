"""The chart of the report: each comparison's ratio against its goal (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.report import EXAMPLE_GOAL, example_rows, results_of
from benchmarks.specs import EXAMPLES, POLICIES, POLICY_GOALS, POLICY_LABELS


def chart(results: dict[str, Any], path: Path) -> Path | None:
    """Bar charts of the ratios against their goals; ``None`` without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    s = results["settings"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    panels = [
        (
            axes[0],
            "Generated / hand-written step time",
            examples_series(results),
            [(EXAMPLE_GOAL, "--", "red", f"goal {EXAMPLE_GOAL}")],
        ),
        (
            axes[1],
            "Policy / plain embedding step time",
            policy_series(results),
            [
                (1.10, "--", "red", "goal 1.10 (pad, positions)"),
                (1.20, ":", "orange", "goal 1.20 (per-row)"),
            ],
        ),
    ]
    for ax, title, (labels, series), goals in panels:
        width = 0.8 / max(len(series), 1)
        for i, (backend, values) in enumerate(series.items()):
            xs = [x + i * width for x in range(len(labels))]
            ax.bar(xs, [v if v is not None else 0 for v in values], width, label=backend)
            for x, v in zip(xs, values, strict=True):
                if v is None:
                    ax.text(x, 0.02, "n/a", ha="center", va="bottom", fontsize=7, rotation=90)
        ax.set_xticks([x + width * (len(series) - 1) / 2 for x in range(len(labels))])
        ax.set_xticklabels(labels, rotation=20, ha="right", fontsize=8)
        ax.axhline(1.0, color="gray", linewidth=0.8)
        for goal, style, color, label in goals:
            ax.axhline(goal, color=color, linestyle=style, linewidth=0.8, label=label)
        ax.set_title(title + (" (QUICK: noise)" if s["quick"] else ""), fontsize=10)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def examples_series(results: dict[str, Any]) -> tuple[list[str], dict[str, list]]:
    s = results["settings"]
    if "examples" not in s["sections"]:
        return [], {}
    rows = example_rows(results, "examples", s["device"])
    labels = list(s.get("examples", EXAMPLES))
    series: dict[str, list] = {b: [None] * len(labels) for b in s["backends"]}
    for row in rows:
        ratio = (row["result"] or {}).get("ratio")
        series[row["backend"]][labels.index(row["name"])] = ratio
    return labels, series


def policy_series(results: dict[str, Any]) -> tuple[list[str], dict[str, list]]:
    s = results["settings"]
    if "policy" not in s["sections"]:
        return [], {}
    labels = [v for v in POLICIES if v in POLICY_GOALS]
    series: dict[str, list] = {}
    for worker, r in results_of(results, "policy", s["device"]):
        variants = (r or {}).get("variants", {})
        series[worker["backend"]] = [variants.get(v, {}).get("ratio") for v in labels]
    return [POLICY_LABELS[v] for v in labels], series
