"""The ``rollcall models list | verify [PACK] | fetch PACK`` commands: arguments, and what they print."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from edge.protocol.progress import Progress, human_bytes
from edge.recognition.fetch import BASE_URL_ENV, fetch_pack
from edge.recognition.packs import (
    MODEL_DIR_ENV,
    FileCheck,
    ModelError,
    ModelFile,
    check_file,
    load_manifest,
    resolve_model_dir_with_origin,
)
from rollcall.exit_codes import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK


def _load_edge_models(config: Path | None) -> tuple[Path | None, str | None]:
    """``models.dir`` and ``models.pack`` of an edge config file (ModelError listing the config's problems)."""
    if config is None:
        return None, None
    from edge.door.config import EdgeConfig
    from edge.protocol.config import ConfigError, load_config

    try:
        loaded = load_config(EdgeConfig, config, "edge")
    except ConfigError as exc:
        raise ModelError(
            f"{config}: the edge config has problems:\n" + "\n".join(f"  {p}" for p in exc.problems)
        ) from None
    return loaded.models.dir, loaded.models.pack


def _model_dir(args: argparse.Namespace, *, must_exist: bool) -> tuple[Path, str, str | None]:
    """Models directory, where it came from, and the configured pack (from --dir, --config, $ROLLCALL_MODEL_DIR)."""
    config_dir, config_pack = _load_edge_models(args.config)
    configured, origin = (args.dir, "--dir") if args.dir is not None else (config_dir, f"models.dir in {args.config}")
    model_dir, origin = resolve_model_dir_with_origin(configured, None, origin, must_exist)
    return model_dir, origin, config_pack


def _error(exc: ModelError) -> None:
    print(f"error: {exc}", file=sys.stderr)


def _file_line(role: str, model: ModelFile, status: str) -> str:
    size = human_bytes(model.size) if model.size is not None else "size ?"
    return f"  {role:<10}  {model.name:<36} {size:>9}  {status}"


def _cmd_list(args: argparse.Namespace) -> int:
    try:
        manifest = load_manifest(args.manifest)
    except ModelError as exc:
        _error(exc)
        return EXIT_BAD_INPUT
    model_dir: Path | None = None
    try:
        model_dir, origin, _ = _model_dir(args, must_exist=True)
        print(f"models directory: {model_dir} (from {origin})")
    except ModelError as exc:
        print(f"models directory: none usable ({exc}); presence is not checked")
    checks: dict[str, FileCheck] = {}
    for pack in manifest.packs.values():
        default = " (default)" if pack.name == manifest.default_pack else ""
        print(f"\n{pack.name}{default}: {pack.description}")
        print(f"  licence: {pack.licence}")
        for role, model in zip(("detector", "recogniser"), manifest.files_of(pack.name), strict=True):
            status = "-"
            if model_dir is not None:
                if model.name not in checks:
                    checks[model.name] = check_file(model, model_dir, check_hash=not args.quick)
                status = checks[model.name].status
            print(_file_line(role, model, status))
    return EXIT_OK


def _cmd_verify(args: argparse.Namespace) -> int:
    try:
        manifest = load_manifest(args.manifest)
        model_dir, origin, config_pack = _model_dir(args, must_exist=True)
        names = list(manifest.packs) if args.all else [manifest.pack(args.pack or config_pack).name]
    except ModelError as exc:
        _error(exc)
        return EXIT_BAD_INPUT
    print(f"models directory: {model_dir} (from {origin})")
    checks: dict[str, FileCheck] = {}
    failed: list[str] = []
    for name in names:
        bad = []
        print(f"\n{name}:")
        for role, model in zip(("detector", "recogniser"), manifest.files_of(name), strict=True):
            if model.name not in checks:
                checks[model.name] = check_file(model, model_dir)
            check = checks[model.name]
            print(_file_line(role, model, check.status if check.ok else check.problem))
            if not check.ok:
                bad.append(model.name)
        if bad:
            failed.append(name)
            print(f"  -> not usable: {', '.join(bad)}")
    if failed:
        target = failed[0] if len(failed) == 1 else "PACK"
        print(
            f"\n{len(failed)} of {len(names)} pack{'s' if len(names) != 1 else ''} not usable from {model_dir}: "
            f"{', '.join(failed)}. Fix: `rollcall models fetch {target} --dir {model_dir}`, or point "
            f"{MODEL_DIR_ENV} (or `models.dir`) at a folder holding the right files.",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    print(f"\nall {len(names)} pack{'s' if len(names) != 1 else ''} verified (sha256)")
    return EXIT_OK


def _cmd_fetch(args: argparse.Namespace) -> int:
    try:
        manifest = load_manifest(args.manifest)
        model_dir, origin, _ = _model_dir(args, must_exist=False)
        pack = manifest.pack(args.pack)
    except ModelError as exc:
        _error(exc)
        return EXIT_BAD_INPUT
    print(f"fetching pack {pack.name} into {model_dir} (from {origin})", file=sys.stderr)
    print(f"licence: {pack.licence}", file=sys.stderr)
    progress = None if args.no_progress else Progress(unit="bytes", stream=sys.stderr)
    try:
        results = fetch_pack(manifest, pack.name, model_dir, progress=progress, base_url_override=args.base_url)
    except ModelError as exc:
        _error(exc)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print(f"\ninterrupted: partial downloads stay in {model_dir}; run the command again to resume", file=sys.stderr)
        return 130
    for result in results:
        print(f"{result.action:<10}  {result.file.name}  sha256 ok  {result.path}")
    print(f"pack {pack.name} is ready in {model_dir}")
    if origin != MODEL_DIR_ENV and os.environ.get(MODEL_DIR_ENV) != str(model_dir):
        print(f"to use it: set {MODEL_DIR_ENV}={model_dir} (or `models.dir` in the edge config)")
    return EXIT_OK


def add_models_commands(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Register ``models list | verify [PACK] | fetch PACK`` on the ``rollcall`` command's subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--dir", type=Path, help=f"models directory (default: models.dir from --config, else ${MODEL_DIR_ENV})"
    )
    common.add_argument("--config", type=Path, help="an edge config file whose models.dir and models.pack to use")
    common.add_argument(
        "--manifest", type=Path, help="a manifest to use instead of the repository's models/manifest.toml"
    )

    models = subparsers.add_parser(
        "models",
        help="list, verify and download model packs (docs/models.md)",
        description="Model packs (a face detector plus a recogniser): list them, verify a models directory "
        "against the manifest's sha256, or download a pack. See docs/models.md.",
    )
    commands = models.add_subparsers(dest="models_command", metavar="COMMAND", required=True)

    listing = commands.add_parser(
        "list", parents=[common], help="packs with their files, sizes, licences and what the models directory holds"
    )
    listing.add_argument("--quick", action="store_true", help="check sizes only, not sha256")
    listing.set_defaults(handler=_cmd_list)

    verify = commands.add_parser(
        "verify", parents=[common], help="check a pack's files (size and sha256); exit 2 when any is missing or wrong"
    )
    verify.add_argument("pack", nargs="?", help="pack to verify (default: models.pack from --config, else the default)")
    verify.add_argument("--all", action="store_true", help="verify every pack in the manifest")
    verify.set_defaults(handler=_cmd_verify)

    fetch = commands.add_parser(
        "fetch", parents=[common], help="download a pack's files over HTTPS, resuming, and verify their sha256"
    )
    fetch.add_argument("pack", help="pack to download (see `rollcall models list`)")
    fetch.add_argument(
        "--base-url", help=f"a mirror replacing the download URLs' scheme and host (default: ${BASE_URL_ENV})"
    )
    fetch.add_argument("--no-progress", action="store_true", help="no progress bar on standard error")
    fetch.set_defaults(handler=_cmd_fetch)
    return models
