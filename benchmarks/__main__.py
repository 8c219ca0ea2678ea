"""``python -m benchmarks <scenario> [args]`` (or ``dmp-xds bench``, from a source checkout): run
one benchmark scenario. ``queries ... --plot`` also draws latency vs registry size afterwards
from every queries result (``plot``)."""

from __future__ import annotations

import importlib
import sys

SCENARIOS = {
    "roundtrip": "benchmarks.roundtrip",
    "large_documents": "benchmarks.large_documents",
    "vihf_verify": "benchmarks.vihf_verify",
    "queries": "benchmarks.queries",
    "submit": "benchmarks.submit",
    "retrieve": "benchmarks.retrieve",
    "batch": "benchmarks.batch",
    "plot": "benchmarks.plot",
    "profile_server": "benchmarks.profile_server",
}
DESCRIPTIONS = {
    "submit": "issue 7 #1: ITI-41 of one 20 KB CDA, 1/8/32 clients, 1 and 2 workers, vs the floor",
    "queries": "issue 7 #2: ITI-18 FindDocuments / GetDocuments on a 1 M (10 M) registry",
    "retrieve": "issue 7 #3: ITI-43 of 1 MB documents, 1/4/8 clients, MB/s and memory",
    "batch": "issue 7 #4: one ITI-41 of 1,000 documents of 20 KB (and dmp-xds import)",
    "plot": "ITI-18 latency vs registry size (PNG) from queries results",
    "roundtrip": "ITI-41 -> ITI-18 -> ITI-43 of one small CDA",
    "large_documents": "ITI-41 and ITI-43 of 1, 10, 50 MB documents, worker memory",
    "vihf_verify": "the cost of one VIHF verification, step by step (in process)",
    "profile_server": "cProfile of the WSGI app in process (find, get, submit, batch)",
}


def usage() -> None:
    print("usage: python -m benchmarks <scenario> [args]   (<scenario> --help for its options)")
    print("scenarios:")
    for name in SCENARIOS:
        print(f"  {name:<16} {DESCRIPTIONS.get(name, '')}")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in SCENARIOS:
        usage()
        return 2
    scenario, rest = args[0], args[1:]
    then_plot = scenario == "queries" and "--plot" in rest
    rest = [a for a in rest if not (then_plot and a == "--plot")]
    module = importlib.import_module(SCENARIOS[scenario])
    status = int(module.main(rest) or 0)
    if status == 0 and then_plot:
        from . import plot

        status = plot.main([])
    return status


if __name__ == "__main__":
    sys.exit(main())
