"""Download the known checkpoints into the default weights folder (``<folder>/<Name>/``) and convert them to
safetensors; the folder is the checkout's ``weights/hf/`` from a source checkout, else
``~/.local/share/axs_lib/weights/hf`` (:data:`axs_lib.weights.discovery.DEFAULT_WEIGHTS_DIR`).

    axs-setup                                    # everything, then convert
    axs-setup --models Prithvi-EO-2.0-600M
    axs-setup --convert-only                     # no network: convert what is already downloaded

(``python axs_lib/setup.py`` from a checkout does the same.) Failures are one ``error:`` line
(:mod:`axs_lib.cli.errors`). Downloads go through
``huggingface_hub.snapshot_download``: progress bars, resumable, and written under a temporary name until
complete. Conversions are atomic too (see ``axs_lib.weights.conversion``). This tool imports neither
TerraTorch nor the model code, so it starts at once.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from axs_lib.cli.errors import BAD_INPUT, FAILED, fail
from axs_lib.weights.catalog import CONVERTED_FILENAME, KNOWN_MODELS, ModelSpec
from axs_lib.weights.discovery import DEFAULT_WEIGHTS_DIR, setup_command
from axs_lib.weights.provenance import conversion_is_current

logger = logging.getLogger(__name__)


def download(spec: ModelSpec, weights_dir: Path) -> Path:
    """Fetch ``spec``'s weights file (and its ``config.json``, if published) into ``weights_dir/<name>/``."""
    from huggingface_hub import snapshot_download

    folder = weights_dir / spec.name
    snapshot_download(repo_id=spec.repo_id, local_dir=folder, allow_patterns=[spec.filename, "config.json"])
    return folder / spec.filename


def convert(spec: ModelSpec, weights_dir: Path, *, force: bool = False) -> Path | None:
    """Convert the downloaded ``.pt`` of ``spec`` to ``model.safetensors``; ``None`` when it is not downloaded.

    An up-to-date conversion is recognised here from its header alone, before torch is imported; otherwise the
    converter is told to convert without checking (and hashing) the source a second time.
    """
    source = weights_dir / spec.name / spec.filename
    if not source.is_file():
        return None
    target = source.with_name(CONVERTED_FILENAME)
    if not force and conversion_is_current(target, source):
        logger.info("%s is up to date with %s", target, source.name)
        return target
    from axs_lib.weights.conversion import convert_to_safetensors

    return convert_to_safetensors(source, force=True)


def _download_failure(error: BaseException, spec: ModelSpec, weights_dir: Path) -> str | None:
    """One line saying why ``spec`` could not be downloaded, or ``None`` when ``error`` is not about the network."""
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    by_hand = f"copy {spec.filename} into {weights_dir / spec.name}/ by hand"
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "on", "yes", "true"}:
        return f"HF_HUB_OFFLINE is set, so {spec.repo_id} cannot be downloaded: unset it, or {by_hand}."
    if isinstance(error, (LocalEntryNotFoundError, OfflineModeIsEnabled, ConnectionError, TimeoutError)):
        return f"cannot reach the Hugging Face Hub to download {spec.repo_id} (no network?): {by_hand}, or retry when online."
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="axs-setup",
        description=f"Download the known checkpoints into {DEFAULT_WEIGHTS_DIR}/<Name>/ (or --weights-dir) and "
        "convert them to safetensors.",
    )
    parser.add_argument("--models", nargs="+", choices=sorted(KNOWN_MODELS), metavar="NAME",
                        help=f"which models (default: all): {', '.join(KNOWN_MODELS)}")
    parser.add_argument("--weights-dir", type=Path, default=DEFAULT_WEIGHTS_DIR,
                        help=f"where to put them (default: {DEFAULT_WEIGHTS_DIR})")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--convert-only", action="store_true", help="only convert files already downloaded")
    mode.add_argument("--no-convert", action="store_true", help="download without converting to safetensors")
    parser.add_argument("--force", action="store_true", help="convert again even when up to date")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from axs_lib.errors import AxsModelError

    specs = [KNOWN_MODELS[name] for name in (args.models or KNOWN_MODELS)]
    weights_dir = args.weights_dir.expanduser().resolve()
    converted = 0
    for spec in specs:
        if not args.convert_only:
            print(f"Downloading {spec.name} from {spec.repo_id} ...", flush=True)
            try:
                download(spec, weights_dir)
            except Exception as error:  # noqa: BLE001 - one clear line instead of a network traceback
                failure = _download_failure(error, spec, weights_dir)
                if failure is None:
                    raise
                return fail(failure, code=BAD_INPUT)
        if args.no_convert:
            continue
        try:
            target = convert(spec, weights_dir, force=args.force)
        except AxsModelError as error:
            return fail(error, code=FAILED)
        if target is not None:
            converted += 1
            print(f"{spec.name}: {target}")
        elif args.convert_only:
            print(f"{spec.name}: not downloaded, skipped")
    if args.convert_only and not converted:
        return fail(f"nothing to convert under {weights_dir}; download first with: {setup_command(weights_dir=weights_dir)}",
                    code=FAILED)
    return 0


if __name__ == "__main__":
    sys.exit(main())
