"""Register axs_lib's models in TerraTorch and report which checkpoints this machine has.

    axs-register-models          # a table (python register_models.py from a checkout)
    axs-register-models --json   # the same report as JSON

Exits 1 when no checkpoint is found at all, 2 when the weights folders cannot be searched (e.g. AXS_WEIGHTS_DIR
names a folder that does not exist); either is one ``error:`` line (:mod:`axs_lib.cli.errors`).
"""

from __future__ import annotations

import argparse
import json
import sys

from axs_lib.cli.errors import BAD_INPUT, FAILED, fail


def _size(num_bytes: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if num_bytes < 1024 or unit == "GiB":
            return f"{num_bytes:.1f} {unit}" if unit != "B" else f"{num_bytes} B"
        num_bytes /= 1024
    raise AssertionError("unreachable")


def _table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="axs-register-models", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)

    from axs_lib.models import AxsModelError, NoModelsFoundError, register_all_models  # TerraTorch: after --help

    report = register_all_models()
    try:
        found = report.found  # searched here, so that a search that cannot run is one line, not a traceback
    except AxsModelError as error:
        return fail(error, code=BAD_INPUT)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    if not found:
        return fail(NoModelsFoundError(), code=FAILED)
    if args.json:
        return 0

    print("Models found:")
    print(_table(
        [(name, str(file.path), file.format, _size(file.size_bytes), file.origin) for name, file in found.items()],
        ("name", "path", "format", "size", "found in"),
    ))
    if report.missing:
        print(f"\nNot found: {', '.join(report.missing)}  (axs-setup --models <name>)")
    if report.error:
        print(f"\nNot registered: {report.error}")
    else:
        print("\nRegistered in TerraTorch:")
        print(_table(
            [(entry.name, entry.registry, entry.alias_of or "") for entry in report.registered],
            ("name", "registry", "alias of"),
        ))
    return 0


if __name__ == "__main__":
    sys.exit(main())
