"""The ``cellsearch`` command line."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cellsearch", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the gRPC server")
    args = parser.parse_args(argv)

    from cellsearch.settings import get_settings

    if args.command == "serve":
        from services.search.server import serve

        serve(get_settings())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
