"""``python -m segmenter export``: write a stored version as an export folder.

    python -m segmenter export --project N [--version V] --out DIR [--model-dir DIR] [--label-config C.xml]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from segmenter import store
from segmenter.config import Settings
from segmenter.errors import SegmenterError


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``export`` subcommand's arguments."""
    p = sub.add_parser("export", help="write a trained version as ONNX + manifest + runner, to run without torch")
    p.add_argument("--project", required=True, help="the project whose version to export")
    p.add_argument("--version", help="the version (default: the one served)")
    p.add_argument("--out", type=Path, required=True, help="the folder to write (created)")
    p.add_argument("--model-dir", type=Path, help="where the versions are (default: MODEL_DIR)")
    p.add_argument("--label-config", type=Path,
                   help="the config whose clean-up settings apply (default: the project's last /setup)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Export, print where and what; an ``ExportError`` (a ``SegmenterError``) names project and version."""
    from segmenter.export.bundle import export  # torch.onnx: loaded for this command only
    if args.model_dir is not None:
        settings = replace(settings, model_dir=args.model_dir)
    try:
        project = store.resolve(settings.model_dir, args.project)
    except ValueError as exc:
        raise SegmenterError(f"--project {args.project}: {exc}") from None
    config = args.label_config.read_text() if args.label_config is not None else None
    manifest = export(settings, project, args.out, args.version, config)
    summary = {"out": str(args.out), "project": project, "version": manifest["version"],
               "targets": [t["from_name"] for t in manifest["targets"]]}
    print(json.dumps(summary, indent=2))
    print(f"run it: pip install numpy onnxruntime && python {args.out / 'runner.py'} {args.out} FILE.csv",
          file=sys.stderr)
    return 0

