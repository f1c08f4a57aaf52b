"""``rtseg export``: a checkpoint -> an ONNX file or a TensorRT engine, metadata inside (or beside)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from rtseg.cli._app import app, console


def _fp16(precision: str, fp16: bool) -> bool:
    """--precision (and its alias --fp16) as the exporters' fp16 flag; bf16 is a one-line error."""
    from rtseg.engines.runtimes import check_precision
    from rtseg.errors import RtsegError

    chosen = check_precision(precision)
    if fp16 and chosen not in ("auto", "fp16"):
        raise RtsegError(f"--fp16 and --precision {chosen} disagree; give one of them")
    if chosen == "bf16":
        raise RtsegError("--precision bf16: an exported ONNX file or TensorRT plan is fp32 or fp16; bf16 is chosen "
                         "when it runs (rtseg run --runtime openvino --precision bf16, on a CPU with AVX512-BF16 or AMX)")
    return fp16 or chosen == "fp16"


@app.command()
def export(
    weights: Optional[Path] = typer.Option(None, "--weights", "-w", "--engine", help="rtseg checkpoint (.pt) [default: the bundled CamVid weights]; --engine also works, as in run, eval and bench."),
    format: str = typer.Option("onnx", "--format", "-f", help="onnx (ONNX Runtime, OpenVINO) or engine (TensorRT plan)."),
    size: Optional[str] = typer.Option(None, "--size", help="Input size HxW the artifact is made for [default: the checkpoint's]."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Output file [default: <weights stem>_<HxW>[_fp16].onnx|.plan]."),
    precision: str = typer.Option("auto", "--precision", help="auto (fp32: the file runs on every runtime), fp32 or fp16 (input and ids stay uint8; checked against fp32). bf16 is a runtime's choice: rtseg run --precision bf16."),
    fp16: bool = typer.Option(False, "--fp16", help="The same as --precision fp16."),
    dynamic: bool = typer.Option(False, "--dynamic", help="ONNX only: dynamic batch, height and width."),
    int8: bool = typer.Option(False, "--int8", help="TensorRT only: int8 with calibration (--calib)."),
    calib: Optional[Path] = typer.Option(None, "--calib", help="TensorRT int8: folder of calibration images."),
    workspace: float = typer.Option(4.0, "--workspace", help="TensorRT builder workspace, GB."),
    opset: Optional[int] = typer.Option(None, "--opset", help="ONNX opset [default: 17]."),
) -> None:
    """Export weights to ONNX (--format onnx) or build a TensorRT engine (--format engine)."""
    from rtseg.bundled import DEFAULT_WEIGHTS, bundled
    from rtseg.formats.checkpoint import build_from_checkpoint
    from rtseg.engines.base import parse_size
    from rtseg.errors import RtsegError

    fp16 = _fp16(precision, fp16)
    fmt = format.strip().lower()
    if fmt not in ("onnx", "engine"):
        raise RtsegError(f"--format must be onnx or engine, got {format!r}")
    if fmt == "onnx" and (int8 or calib is not None):
        raise RtsegError("--int8/--calib apply to --format engine (TensorRT) only")
    if fmt == "engine" and dynamic:
        raise RtsegError("--dynamic applies to --format onnx; a TensorRT plan is built for one --size")
    if int8 and calib is None:
        raise RtsegError("--int8 needs --calib DIR (a folder of representative frames)")
    if workspace <= 0:
        raise RtsegError(f"--workspace must be a positive number of GB, got {workspace}")
    weights = weights if weights is not None else bundled(DEFAULT_WEIGHTS, "CamVid weights")
    model, meta = build_from_checkpoint(weights)
    h, w = parse_size(size) if size else meta.input_size
    tag = "_int8" if int8 else "_fp16" if fp16 else ""
    if output is None:
        output = Path(f"{weights.stem}_{h}x{w}{'_dyn' if dynamic else ''}{tag}.{'onnx' if fmt == 'onnx' else 'plan'}")

    if fmt == "onnx":
        from rtseg.export.onnx import export_onnx
        from rtseg.formats.onnx_meta import read_onnx_meta

        with console.status(f"exporting {weights.name} to ONNX at {h}x{w}..."):
            path = export_onnx(model, meta, output, size=(h, w), fp16=fp16, dynamic=dynamic, opset=opset)
        info = read_onnx_meta(path).extra.get("export", {})
        line = f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {'dynamic size' if dynamic else f'{h}x{w}'}, {info.get('precision')})"
        if "fp16_agreement" in info:
            line += f"; fp16 vs fp32 class ids agree on {100 * info['fp16_agreement']:.3f}% of pixels"
        console.print(line, highlight=False)
        return

    from rtseg.export.tensorrt import export_engine  # TensorRT is optional: imported only here

    with console.status(f"building a TensorRT engine from {weights.name} at {h}x{w} (minutes)..."):
        path = export_engine(weights, output, size=(h, w), fp16=fp16, int8=int8, calib=calib, workspace_gb=workspace)
    console.print(f"wrote {path} and its metadata {path.with_suffix('.json').name}", highlight=False)
