"""``rtseg import``: a segmentation ONNX file from another tool -> an rtseg artifact that later
runs need no flags for (the preprocessing and the argmax inside, the classes in its metadata)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from rtseg.cli._app import app, console
from rtseg.cli.options import run_options


@app.command("import")
@run_options("engine:classes,colors,normalize,bgr,input_name,output_name")
def import_(
    model: Path = typer.Argument(..., help="ONNX segmentation model without rtseg metadata (torch.onnx, mmdeploy's end2end.onnx, PaddleSeg, jetson-inference)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="The rtseg artifact to write [default: <model stem>_rtseg.onnx]."),
    size: Optional[str] = typer.Option(None, "--size", help="Default inference size HxW of a dynamic-size model [default: the dataset's usual one]."),
    *, options: dict,
) -> None:
    """Import a foreign ONNX segmentation model as an rtseg artifact."""
    from rtseg.engines.base import parse_size
    from rtseg.export.foreign import inspect_onnx, wrap_foreign
    from rtseg.formats.onnx_meta import read_onnx_meta

    classes, colors, normalize, bgr = options["classes"], options["colors"], options["normalize"], options["bgr"]
    input_name, output_name = options["input_name"], options["output_name"]
    output = output if output is not None else model.with_name(f"{model.stem}_rtseg.onnx")
    graph = inspect_onnx(model, input_name, output_name)  # errors before anything is written
    console.print(f"found {graph.describe()}", highlight=False)
    path = wrap_foreign(model, output, classes=classes, colors=colors, normalize=normalize, bgr=bgr,
                        input_name=input_name,
                        output_name=output_name, size=parse_size(size),
                        note=lambda line: console.print(line, highlight=False))
    meta = read_onnx_meta(path)
    h, w = meta.input_size
    console.print(f"wrote {path} ({meta.num_classes} classes: {meta.dataset}, "
                  f"{meta.extra['foreign']['normalize']} normalisation, {'BGR' if bgr else 'RGB'}, "
                  f"{'dynamic size, default ' if meta.extra['export']['dynamic'] else ''}{h}x{w}); "
                  f"run it with: rtseg run VIDEO --engine {path}", highlight=False)
