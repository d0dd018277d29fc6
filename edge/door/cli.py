"""The ``rollcall edge`` subcommands: ``run`` (the door device service), ``eval`` and ``replay`` (the engine)."""

from __future__ import annotations

import argparse
import json
import resource
import sys
from pathlib import Path


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """Options every engine command shares."""
    parser.add_argument(
        "--pack", default=None, help="model pack (default: the manifest's default; see `rollcall models list`)"
    )
    parser.add_argument("--model-dir", type=Path, default=None, help="models directory (default: $ROLLCALL_MODEL_DIR)")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads per model (default 1)")
    parser.add_argument(
        "--threshold", type=float, default=None, help="match threshold (cosine); default from MatchPolicy"
    )
    parser.add_argument(
        "--margin", type=float, default=None, help="required lead over the runner-up; default from MatchPolicy"
    )


def add_edge_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``run``, ``eval`` and ``replay`` under ``rollcall edge``."""
    run = commands.add_parser(
        "run",
        help="run the door device service (camera, recognition, outbox, MQTT); SIGTERM flushes and stops",
        description="Run the door device: frames from camera.source through the recognition pipeline into the "
        "outbox, delivered to the hub over MQTT; galleries, commands and health. Meant for systemd (Type=notify).",
    )
    run.add_argument("--config", type=Path, required=True, help="edge TOML config (see docs/examples/edge.toml)")
    run.set_defaults(handler=run_service)

    evaluate = commands.add_parser(
        "eval",
        help="identification quality on folders of photos (rank-1, TAR at FAR, stranger rejection)",
        description="Enrol every photo of every person (one sub-folder per person), then measure leave-one-out "
        "rank-1, TAR at FAR 1e-2 and 1e-3 over all pairs, and open-set rejection of held-out identities.",
    )
    evaluate.add_argument("--people", type=Path, required=True, help="folder with one sub-folder of photos per person")
    evaluate.add_argument("--json", action="store_true", help="end with one JSON line of the figures")
    evaluate.add_argument("--stranger-share", type=float, default=0.3, help="share of identities held out (0.3)")
    evaluate.add_argument("--splits", type=int, default=10, help="random stranger splits averaged (10)")
    add_engine_arguments(evaluate)
    evaluate.set_defaults(handler=run_eval)

    replay = commands.add_parser(
        "replay",
        help="run a video, folder or camera through the pipeline and print one JSON line per event",
        description="Enrol the people in --people, run SOURCE (a video file, folder of images, camera index or "
        "stream URL) through the recognition pipeline and print one JSON line per event.",
    )
    replay.add_argument("source", help="video file, image folder, camera index or rtsp:// URL")
    replay.add_argument("--people", type=Path, required=True, help="folder with one sub-folder of photos per person")
    replay.add_argument("--annotate", type=Path, default=None, help="also write this .mp4 with boxes and names drawn")
    add_engine_arguments(replay)
    replay.set_defaults(handler=run_replay)


def _policy(args: argparse.Namespace) -> object:
    from edge.recognition.gallery import MatchPolicy

    default = MatchPolicy()
    return MatchPolicy(
        threshold=default.threshold if args.threshold is None else args.threshold,
        min_margin=default.min_margin if args.margin is None else args.margin,
    )


def _fail(message: str) -> int:
    print(f"rollcall edge: {message}", file=sys.stderr)
    return 2


def run_eval(args: argparse.Namespace) -> int:
    """``rollcall edge eval``."""
    from edge.recognition.engine import build_engine
    from edge.recognition.evaluate import evaluate
    from edge.recognition.faces import enrol_people
    from edge.recognition.gallery import MatchPolicy
    from edge.recognition.packs import ModelError
    from edge.recognition.photos import people_folders

    if not 0 < args.stranger_share < 1 or args.splits < 1:
        return _fail("--stranger-share must be between 0 and 1 and --splits at least 1")
    try:
        people = people_folders(args.people)
        engine = build_engine(args.pack, args.model_dir, threads=args.threads)
    except (FileNotFoundError, ModelError) as exc:
        return _fail(str(exc))
    results = enrol_people(engine, people)
    failed = [r for r in results if not r.ok]
    for result in failed:
        print(f"  no template from {result.path}: {result.reason}", file=sys.stderr)
    policy = _policy(args)
    assert isinstance(policy, MatchPolicy)
    report = evaluate(results, policy, stranger_share=args.stranger_share, splits=args.splits)
    print(f"identities {report.identities}, photos {report.photos} ({report.usable_photos} usable)")
    print(f"rank-1 (leave one out, {report.rank1_probes} probes): {report.rank1:.4f}")
    print(
        f"TAR at FAR 1e-2: {report.tar_at_far['1e-2']:.4f}   at FAR 1e-3: {report.tar_at_far['1e-3']:.4f}  "
        f"({report.genuine_pairs} genuine, {report.impostor_pairs} impostor pairs)"
    )
    print(
        f"open set at threshold {policy.threshold} / margin {policy.min_margin}: strangers rejected "
        f"{report.stranger_reject_rate:.4f} ({report.stranger_probes} probes), known accepted "
        f"{report.known_accept_rate:.4f} ({report.known_probes} probes)"
    )
    if args.json:
        print(json.dumps(report.as_json()))
    return 0


def run_replay(args: argparse.Namespace) -> int:
    """``rollcall edge replay``."""
    from edge.door.sources import SourceError, open_source
    from edge.recognition.engine import build_engine
    from edge.recognition.faces import enrol_people, gallery_from_results
    from edge.recognition.gallery import MatchPolicy
    from edge.recognition.packs import ModelError
    from edge.recognition.photos import people_folders
    from edge.recognition.pipeline import Pipeline
    from edge.recognition.replay import replay

    try:
        people = people_folders(args.people)
        engine = build_engine(args.pack, args.model_dir, threads=args.threads)
        source = open_source(args.source)
    except (FileNotFoundError, ModelError, SourceError) as exc:
        return _fail(str(exc))
    results = enrol_people(engine, people, strict=False)
    gallery = gallery_from_results(results, model_id=engine.embedder.model_id)
    policy = _policy(args)
    assert isinstance(policy, MatchPolicy)
    pipeline = Pipeline(engine, gallery, policy=policy)
    try:
        for event in replay(source, pipeline, annotate=args.annotate):
            print(json.dumps(event.as_dict()), flush=True)
    except SourceError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"cannot write the annotated video: {exc}")
    stats = pipeline.stats
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"frames {stats.frames}, detector runs {stats.detector_runs}, motion skips {stats.motion_skips}, "
        f"face-frames {stats.face_frames}, recognitions {stats.recognitions}, tracks {stats.tracks}, "
        f"peak RSS {peak_mb:.0f} MB",
        file=sys.stderr,
    )
    return 0


def run_service(args: argparse.Namespace) -> int:
    """``rollcall edge run``."""
    from edge.door.config import EdgeConfig
    from edge.door.service import EdgeService, quality_limits
    from edge.recognition.engine import build_engine
    from edge.recognition.packs import ModelError
    from edge.runtime.keys import KeyFileError
    from edge.runtime.launcher import launch
    from edge.runtime.outbox import OutboxError

    def build(config: EdgeConfig, software: str) -> EdgeService:
        engine = build_engine(
            config.models.pack,
            config.models.dir,
            providers=config.models.providers,
            threads=config.models.threads,
            detector_input=config.recognition.detector_input,
            limits=quality_limits(config),
        )
        return EdgeService(config, engine=engine, config_path=args.config, software=software)

    return launch("edge", EdgeConfig, args.config, build, (ModelError, OutboxError, KeyFileError, OSError))
