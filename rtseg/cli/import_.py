"""``rtseg import``: a segmentation ONNX file from another tool -> an rtseg artifact that later
runs need no flags for (the preprocessing and the argmax inside, the classes in its metadata)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from rtseg.cli._app import app, console
from rtseg.cli.options import run_options


@app.command("import")
@run_options("engine:classes,colors,normalize,bgr,resize,input_name,output_name")
def import_(
    model: Path = typer.Argument(..., help="ONNX segmentation model without rtseg metadata (torch.onnx, mmdeploy's end2end.onnx, PaddleSeg, jetson-inference)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="The rtseg artifact to write [default: <model stem>_rtseg.onnx]."),
    size: Optional[str] = typer.Option(None, "--size", help="Default inference size HxW of a dynamic-size model [default: the dataset's usual one]."),
    *, options: dict,
) -> None:
    """Import a foreign ONNX segmentation model as an rtseg artifact."""
    from rtseg.engines.base import parse_size
    from rtseg.export.foreign import inspect_onnx, wrap_foreign
    from rtseg.export.foreign_tools import tool_defaults
    from rtseg.formats.onnx_meta import read_onnx_meta

    def say(line: str) -> None:
        console.print(line, highlight=False)

    flags = {k: options[k] for k in ("classes", "colors", "normalize", "bgr", "resize", "input_name", "output_name")}
    found, said = tool_defaults(model, flags)  # what the tool that made it wrote (ultralytics, Hugging Face, ...)
    if said:
        say(f"note: {model.name}: {said} (flags override it)")
    flags = {**found, **{k: v for k, v in flags.items() if v not in (None, False)}}
    size = parse_size(size) if size is not None else flags.pop("size", None)
    flags.pop("size", None)
    resample = flags.pop("resample", None)  # the Pillow filter its tool resizes with (no flag: read from its files)
    output = output if output is not None else model.with_name(f"{model.stem}_rtseg.onnx")
    graph = inspect_onnx(model, flags.get("input_name"), flags.get("output_name"))  # errors before anything is written
    say(f"found {graph.describe()}")
    path = wrap_foreign(model, output, size=size, note=say, extra={"resample": resample} if resample else None,
                        **flags)
    meta = read_onnx_meta(path)
    h, w = meta.input_size
    say(f"wrote {path} ({meta.num_classes} classes: {meta.dataset}, {meta.extra['foreign']['normalize']} "
        f"normalisation, {'BGR' if flags.get('bgr') else 'RGB'}, {meta.extra.get('resize', 'stretch')}ed, "
        f"{'dynamic size, default ' if meta.extra['export']['dynamic'] else ''}{h}x{w}); "
        f"run it with: rtseg run VIDEO --engine {path}")
