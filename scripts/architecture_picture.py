"""Draw docs/img/architecture.png from the source: htsrl's modules in their groups and who imports whom
(read by scripts/import_graph.py, so the arrows are today's), and the path of one window through the engine.

    python scripts/architecture_picture.py            # writes docs/img/architecture.png
    python scripts/architecture_picture.py --check    # exit 1 if a module has no group (run by the tests)

Every module must belong to a group below: a new module that fits none fails ``--check`` until it is placed,
so the picture cannot fall behind the code.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from import_graph import ROOT, build_graph  # noqa: E402

# group -> (position (x, y) of its box's centre, the module prefixes it holds); first match wins
GROUPS = {
    "command line, API": (
        (1.0, 5.0),
        (
            "htsrl.cli",
            "htsrl.__main__",
            "htsrl.seeds",
            "htsrl.sweep",
            "htsrl.bench",
            "htsrl.evaluation",
            "htsrl.policy",
            "htsrl.analysis",
            "htsrl.baselines",
        ),
    ),
    "settings": (
        (4.0, 5.0),
        (
            "htsrl.config",
            "htsrl.config_files",
            "htsrl.presets",
            "htsrl.env_families",
            "htsrl.algo_rules",
            "htsrl.errors",
        ),
    ),
    "before start": ((7.0, 5.0), ("htsrl.checks", "htsrl.device")),
    "schedule (main process)": (
        (1.0, 2.6),
        (
            "htsrl.engine.runner",
            "htsrl.engine.state",
            "htsrl.engine.summary",
            "htsrl.engine.learner",
            "htsrl.engine.policy_lag",
            "htsrl.distributed",
        ),
    ),
    "rollout (executors, actors)": ((4.0, 2.6), ("htsrl.engine",)),
    "run folder, reports": (
        (7.0, 2.6),
        ("htsrl.run_dir", "htsrl.checkpoint", "htsrl.monitor", "htsrl.sinks", "htsrl.resources"),
    ),
    "algorithms": ((1.0, 0.4), ("htsrl.algos",)),
    "networks, actions": ((4.0, 0.4), ("htsrl.nn", "htsrl.distributions", "htsrl.normalization")),
    "envs": ((7.0, 0.4), ("htsrl.envs",)),
    "package": ((9.3, 5.0), ("htsrl",)),
}


def group_of(module: str) -> str | None:
    for name, (_, prefixes) in GROUPS.items():
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return name
    return None


def grouped(graph: dict[str, dict[str, bool]]) -> tuple[dict[str, list[str]], Counter]:
    members: dict[str, list[str]] = {g: [] for g in GROUPS}
    edges: Counter = Counter()
    for module in sorted(graph):
        members[group_of(module)].append(module)
        for target in graph[module]:
            a, b = group_of(module), group_of(target)
            if a != b:
                edges[a, b] += 1
    return members, edges


def _short(module: str) -> str:
    return module.removeprefix("htsrl.").replace(".__init__", "") or "htsrl"


def draw_modules(ax, members: dict[str, list[str]], edges: Counter) -> None:
    import textwrap

    ax.set_title("htsrl's modules by group; an arrow: the modules of one group import (ask) the other's", fontsize=11)
    boxes = {}
    for name, ((x, y), _) in GROUPS.items():
        text = textwrap.fill(", ".join(_short(m) for m in members[name]), 34)
        ax.text(
            x,
            y,
            f"{name}\n{text}",
            ha="center",
            va="center",
            fontsize=7.2,
            bbox=dict(boxstyle="round,pad=0.4", fc="#eef3fb" if name != "package" else "#f4f4f4", ec="#4a6fa5"),
        )
        boxes[name] = (x, y)
    for (a, b), n in sorted(edges.items()):
        (x0, y0), (x1, y1) = boxes[a], boxes[b]
        ax.annotate(
            "",
            xy=(x1, y1),
            xytext=(x0, y0),
            arrowprops=dict(
                arrowstyle="->",
                color="#888888",
                lw=0.4 + 0.25 * min(n, 8),
                shrinkA=38,
                shrinkB=38,
                connectionstyle="arc3,rad=0.12",
            ),
        )
    ax.set_xlim(-0.6, 10.4)
    ax.set_ylim(-0.6, 6.0)
    ax.axis("off")


# the path of one window w in HTS mode: (lane, start, end, label, module)
WINDOW_PATH = [
    ("main", 0.0, 1.3, "barrier w: publish θ_w,\ndraw w+1's uniforms, GO", "runner.collect · streams"),
    (
        "rollout",
        1.3,
        6.3,
        "collect w+1: executors step their envs, actors infer any ready group",
        "executor · actor · envs",
    ),
    ("main", 1.3, 2.4, "record w: hash,\nhistory, episodes", "runner.record"),
    ("main", 2.4, 5.1, "update on window w (θ_w → θ_w+1)", "learner · algos registry"),
    ("main", 5.1, 6.3, "report w", "monitor → sinks"),
    ("main", 6.3, 7.6, "barrier w+1: checkpoint\nwhen due", "state.save · run_dir"),
]


def draw_window(ax) -> None:
    from matplotlib.patches import FancyBboxPatch

    ax.set_title(
        "One window through the engine (HTS mode): window w+1 is collected while the learner updates on w", fontsize=11
    )
    lanes = {"rollout": 1.0, "main": 0.0}
    colours = {"rollout": "#c9e3c4", "main": "#f6dcb5"}
    for lane, y in lanes.items():
        ax.text(-0.15, y, {"rollout": "executors + actors", "main": "main process"}[lane], ha="right", va="center")
    for lane, t0, t1, label, module in WINDOW_PATH:
        y = lanes[lane]
        ax.add_patch(
            FancyBboxPatch(
                (t0 + 0.03, y - 0.32), t1 - t0 - 0.06, 0.64, boxstyle="round,pad=0.02", fc=colours[lane], ec="#666666"
            )
        )
        ax.text((t0 + t1) / 2, y + 0.08, label, ha="center", va="center", fontsize=7.5)
        ax.text((t0 + t1) / 2, y - 0.18, module, ha="center", va="center", fontsize=6.8, style="italic")
    for t in (1.3, 6.3):
        ax.axvline(t, color="#b03030", lw=0.8, ls="--")
    ax.text(6.3, 1.5, "all meet: θ_w+1 published, lag stays one update", ha="center", fontsize=7.5, color="#b03030")
    ax.set_xlim(-1.6, 7.8)
    ax.set_ylim(-0.6, 1.7)
    ax.axis("off")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="only check that every module has a group")
    p.add_argument("--out", default=str(ROOT / "docs" / "img" / "architecture.png"))
    a = p.parse_args(argv)
    graph = build_graph(ROOT / "htsrl")
    unplaced = sorted(m for m in graph if group_of(m) is None)
    if unplaced:
        print(f"no group in scripts/architecture_picture.py for: {', '.join(unplaced)}", file=sys.stderr)
        return 1
    if a.check:
        return 0
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    members, edges = grouped(graph)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(13, 11), gridspec_kw={"height_ratios": [3, 1.1]})
    draw_modules(top, members, edges)
    draw_window(bottom)
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
