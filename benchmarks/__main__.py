"""``python -m benchmarks <scenario> [args]``: run one benchmark scenario."""

from __future__ import annotations

import importlib
import sys

SCENARIOS = {
    "roundtrip": "benchmarks.roundtrip",
    "large_documents": "benchmarks.large_documents",
    "vihf_verify": "benchmarks.vihf_verify",
    "queries": "benchmarks.queries",
    "submit": "benchmarks.submit",
    "profile_server": "benchmarks.profile_server",
}


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in SCENARIOS:
        print("usage: python -m benchmarks <scenario> [args]")
        print("scenarios: " + ", ".join(sorted(SCENARIOS)))
        return 2
    module = importlib.import_module(SCENARIOS[sys.argv[1]])
    return int(module.main(sys.argv[2:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
