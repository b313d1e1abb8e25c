"""``zipfhead export``: a trained toy as a TransformerLens HookedTransformer (needs the ``lens`` extra)."""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_export_parser"]


def _cmd_export(args: argparse.Namespace) -> int:
    from zipfhead.toy_models.lens import export  # imports torch and TransformerLens only when it runs

    try:
        pt, meta = export(args.run_dir, args.out, args.model)
    except ImportError as err:  # the lens extra is not installed
        print(f"zipfhead: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {pt} (HookedTransformer state dict, torch.save) and {meta} (its HookedTransformerConfig)")
    print(f"load it with: from zipfhead.toy_models.lens import load_export; model = load_export({str(pt)!r})")
    return 0


def add_export_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``zipfhead export RUN_DIR --to lens [--model M] [--out PATH]``."""
    p = sub.add_parser("export", help="export a trained toy to TransformerLens (HookedTransformer, attn_only)")
    p.add_argument("run_dir", help="a run directory of zipfhead train")
    p.add_argument("--to", choices=("lens",), required=True, help="target library: lens (TransformerLens)")
    p.add_argument("--model", type=int, default=0, help="which of the run's models (seeds x lrs) [0]")
    p.add_argument(
        "--out", default=None, help="state-dict path; the config goes beside it as .json [RUN_DIR/lens_model{M}.pt]"
    )
    p.set_defaults(func=_cmd_export)
