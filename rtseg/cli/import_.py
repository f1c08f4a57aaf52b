"""``rtseg import``: a segmentation ONNX file from another tool -> an rtseg artifact that later
runs need no flags for (the preprocessing and the argmax inside, the classes in its metadata)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from rtseg.cli._app import app, console


@app.command("import")
def import_(
    model: Path = typer.Argument(..., help="ONNX segmentation model without rtseg metadata (torch.onnx, mmdeploy's end2end.onnx, PaddleSeg, jetson-inference)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="The rtseg artifact to write [default: <model stem>_rtseg.onnx]."),
    classes: Optional[str] = typer.Option(None, "--classes", help="camvid, cityscapes, ade20k, voc or a classes.json [default: guessed from the class count]."),
    normalize: Optional[str] = typer.Option(None, "--normalize", help="imagenet, unit (x/255), symmetric (x/127.5-1) or none [default: imagenet; none for uint8 inputs]."),
    bgr: bool = typer.Option(False, "--bgr", help="The model takes BGR pixels (default: RGB)."),
    input_name: Optional[str] = typer.Option(None, "--input-name", help="The input to feed, when the model has several."),
    output_name: Optional[str] = typer.Option(None, "--output-name", help="The output to read, when the model has several."),
    size: Optional[str] = typer.Option(None, "--size", help="Default inference size HxW of a dynamic-size model [default: the dataset's usual one]."),
) -> None:
    """Import a foreign ONNX segmentation model as an rtseg artifact."""
    from rtseg.engines.base import parse_size
    from rtseg.export.foreign import inspect_onnx, wrap_foreign
    from rtseg.formats.onnx_meta import read_onnx_meta

    output = output if output is not None else model.with_name(f"{model.stem}_rtseg.onnx")
    graph = inspect_onnx(model, input_name, output_name)  # errors before anything is written
    console.print(f"found {graph.describe()}", highlight=False)
    path = wrap_foreign(model, output, classes=classes, normalize=normalize, bgr=bgr, input_name=input_name,
                        output_name=output_name, size=parse_size(size),
                        note=lambda line: console.print(line, highlight=False))
    meta = read_onnx_meta(path)
    h, w = meta.input_size
    console.print(f"wrote {path} ({meta.num_classes} classes: {meta.dataset}, "
                  f"{meta.extra['foreign']['normalize']} normalisation, {'BGR' if bgr else 'RGB'}, "
                  f"{'dynamic size, default ' if meta.extra['export']['dynamic'] else ''}{h}x{w}); "
                  f"run it with: rtseg run VIDEO --engine {path}", highlight=False)
