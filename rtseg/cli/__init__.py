"""The ``rtseg`` command line. Only this package imports Typer and Rich; each command lives
in its own module and the library does the work."""
from __future__ import annotations

import logging
import signal
import sys


from rtseg.cli._app import app, console_err
from rtseg.errors import RtsegError, redact

# Importing a command module registers its command on ``app``.
from rtseg.cli import train as _train  # noqa: F401,E402
from rtseg.cli import run as _run  # noqa: F401,E402  (run, webcam)
from rtseg.cli import bench as _bench  # noqa: F401,E402
from rtseg.cli import eval as _eval  # noqa: F401,E402
from rtseg.cli import export as _export  # noqa: F401,E402
from rtseg.cli import doctor as _doctor  # noqa: F401,E402
from rtseg.cli import batch as _batch  # noqa: F401,E402
from rtseg.cli import import_ as _import  # noqa: F401,E402
from rtseg.cli import cache as _cache  # noqa: F401,E402

__all__ = ["app", "main"]


class _OneLine(logging.Formatter):
    """``warning: message`` (the level in lower case, as the CLI's ``error:`` lines)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(f"{record.levelname.lower()}: {record.getMessage()}")


# What each value option takes, shown in --help instead of Typer's type labels ("<str>", "<path>").
_METAVARS = {"size": "HxW", "crop": "HxW", "val_size": "HxW", "scale": "MIN,MAX", "device": "DEVICE",
             "runtime": "RUNTIME", "view": "VIEW", "codec": "CODEC", "dataset": "NAME", "optimizer": "NAME",
             "loss": "NAME", "class_weights": "NAME", "amp": "MODE", "data_on_device": "auto|on|off",
             "train_split": "SPLIT", "val_split": "SPLIT", "split": "SPLIT", "format": "FORMAT",
             "start": "POSITION", "end": "POSITION", "index": "INDEX", "max_frames": "N", "limit": "N", "lr": "LR",
             "weight_decay": "X", "fps": "FPS", "serve": "[HOST:]PORT", "rerun": "FILE.rrd|[HOST:]PORT|spawn", "serve_token": "TOKEN", "serve_linger": "SECONDS",
             "classes": "NAME|FILE", "colors": "FILE", "normalize": "NAME", "warmup": "N", "min_confidence": "P",
             "confidence": "DIR", "plot": "PNG", "plots": "DIR", "input_name": "NAME", "output_name": "NAME",
             "stall_timeout": "SECONDS", "model": "NAME", "aux_weight": "X"}
_PATHS = {"engine", "weights", "checkpoint", "trace_path", "output", "output_text", "json_path", "masks", "data_root", "out", "resume", "init",
          "calib", "stats"}


def _plain_help(command) -> None:
    """Help as plain text (it survives pipes and narrow terminals) with value names rather than
    type labels: ``--size HxW``, ``--engine PATH``, ``--epochs N``; flags show none."""
    for sub in getattr(command, "commands", {}).values():
        _plain_help(sub)
    for param in getattr(command, "params", []):
        option = getattr(param, "param_type_name", "") == "option"  # click's own tag, whichever click Typer uses
        if option and (getattr(param, "is_flag", False) or getattr(param, "count", False)):
            continue
        name = param.name or ""
        default = getattr(param, "default", None)
        kind = "N" if isinstance(default, int) and not isinstance(default, bool) else "X" if isinstance(default, float) else None
        metavar = _METAVARS.get(name) or ("PATH" if name in _PATHS else None) or kind or name.upper()
        if option:
            param.metavar = metavar
        else:  # an argument: its name says it; no type label beside it
            param.metavar = name.upper()
            param.display_type_rich = lambda ctx: None


def main() -> None:
    """Console-script entry point: user errors print one line and exit 2; Ctrl-C, SIGTERM and
    SIGHUP stop a run cleanly (its outputs finalised) and exit 130, 143, 129 (docs/architecture.md)."""
    from rtseg import signals

    # Library warnings read like the CLI's own lines: "warning: ...", not logging's "WARNING name: ...".
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine())
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    with signals.interrupt_on_signals():
        try:
            import typer

            command = typer.main.get_command(app)
            _plain_help(command)
            command(prog_name="rtseg")
        except RtsegError as exc:
            from rich.markup import escape  # the message is text, not markup: "rtseg[trt]" must print as is

            console_err.print(f"[bold red]error:[/] {escape(redact(str(exc)))}", highlight=False, soft_wrap=True)
            sys.exit(2)
        except ModuleNotFoundError as exc:
            if (exc.name or "").split(".")[0] != "torch":
                raise
            console_err.print("[bold red]error:[/] this needs PyTorch, which is not installed here (pip install torch; "
                              "see the README's install notes for a CPU-only build); ONNX models run on ONNX Runtime "
                              "or OpenVINO without it", highlight=False, soft_wrap=True)
            sys.exit(2)
        except KeyboardInterrupt as exc:
            console_err.print(str(exc) or "interrupted", highlight=False)
            sys.exit(getattr(exc, "exit_code", 130))
        except SystemExit as exc:
            # Typer turns a KeyboardInterrupt outside a run (opening the engine, say) into exit 130:
            # a SIGTERM or SIGHUP there says so and ends with its own code.
            signum = signals.received()
            if exc.code == 130 and signum not in (None, signal.SIGINT):
                console_err.print(signals.WORDS[signum], highlight=False)
                sys.exit(signals.exit_code())
            raise
