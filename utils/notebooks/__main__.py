"""``python -m utils.notebooks``: regenerate every notebook; ``--check`` reports drift (exit 1)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __doc__ as DOC
from . import drift, write_all


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m utils.notebooks", description=DOC,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="report drift instead of writing")
    p.add_argument("--repo", default=str(Path(__file__).resolve().parents[2]))
    a = p.parse_args(argv)
    repo = Path(a.repo)
    if a.check:
        problems = drift(repo)
        print("\n".join(problems) if problems else "all generated notebooks match their templates")
        return 1 if problems else 0
    for path in write_all(repo):
        print(f"wrote {path.relative_to(repo)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
