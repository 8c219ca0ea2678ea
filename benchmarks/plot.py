"""ITI-18 latency against registry size, as a PNG, from the JSON results of ``queries`` runs
on registries of several sizes (issue 7's ``--plot``).

    python -m benchmarks plot [results/queries-*.json ...] [--out FILE.png]
                              [--clients 1,8,32] [--workers 1,2]
    python -m benchmarks queries --documents 10000000 ... --plot   # run, then plot

With no file named, every ``benchmarks/results/queries-*.json`` is read; where several runs
measured the same registry size, query, client and worker count, the newest one counts. One
line per query, client count and worker count; left panel the median, right panel the p99, of
the client-side latency (VIHF signing included), both axes logarithmic.

Needs matplotlib: ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .harness import RESULTS

DEFAULT_OUT = RESULTS / "queries-latency-vs-registry.png"


def series(paths: list[Path]) -> dict[tuple[str, int, int], dict[int, dict[str, Any]]]:
    """(query, clients, workers) -> registry size -> the newest row measured at that size."""
    out: dict[tuple[str, int, int], dict[int, dict[str, Any]]] = {}
    for path in sorted(paths, key=lambda p: p.name):  # names end with a sortable time stamp
        data = json.loads(path.read_text())
        if data.get("scenario") != "queries" or not data.get("registry_documents"):
            continue
        size = int(data["registry_documents"])
        for row in data["rows"]:
            key = (str(row["query"]), int(row["clients"]), int(row.get("workers", 0)))
            out.setdefault(key, {})[size] = row
    return out


def plot(
    paths: list[Path], out: Path, clients: set[int] | None = None, workers: set[int] | None = None
) -> Path:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        raise SystemExit(
            "the plot needs matplotlib, which is not installed: pip install -e '.[bench]' "
            "(or pip install matplotlib)"
        ) from None
    lines = {
        key: points
        for key, points in series(paths).items()
        if (clients is None or key[1] in clients) and (workers is None or key[2] in workers)
    }
    if not lines:
        raise SystemExit(f"no queries results with a registry size among {len(paths)} file(s)")
    # Colour: client count; line: query; marker: worker count.
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colours = {c: palette[i % len(palette)] for i, c in enumerate(sorted({k[1] for k in lines}))}
    markers = dict(zip(sorted({k[2] for k in lines}), "os^Dv", strict=False))
    plain = FuncFormatter(lambda y, _: f"{y:g}")
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5), sharex=True)
    for (query, n_clients, n_workers), points in sorted(lines.items()):
        sizes = sorted(points)
        label = f"{query}, {n_clients} client{'s' if n_clients > 1 else ''}" + (
            f", {n_workers} worker{'s' if n_workers > 1 else ''}" if n_workers else ""
        )
        for ax, column in zip(axes, ("median_ms", "p99_ms"), strict=True):
            ax.plot(
                sizes,
                [points[s][column] for s in sizes],
                linestyle="-" if query == "FindDocuments" else "--",
                marker=markers.get(n_workers, "o"),
                color=colours[n_clients],
                label=label,
            )
    for ax, title in zip(axes, ("median", "p99"), strict=True):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
        ax.set_xlabel("documents in the registry")
        ax.set_ylabel(f"{title} latency, ms (client side)")
        ax.set_title(f"ITI-18 {title} latency vs registry size")
        ax.grid(True, which="both", alpha=0.3)
    axes[1].legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1))
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return out


def _counts(value: str | None) -> set[int] | None:
    return {int(v) for v in value.split(",")} if value else None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks plot")
    parser.add_argument("files", nargs="*", type=Path, help="queries result files (JSON)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the PNG to write")
    parser.add_argument("--clients", help="only these client counts (comma-separated)")
    parser.add_argument("--workers", help="only these worker counts (comma-separated)")
    args = parser.parse_args(argv)
    paths = args.files or sorted(RESULTS.glob("queries-*.json"))
    try:
        written = plot(paths, args.out, _counts(args.clients), _counts(args.workers))
    except SystemExit as exc:
        print(f"plot: {exc}", file=sys.stderr)
        return 2
    print(f"written: {written}")
    return 0
