"""RunSpec: a run's options declared once. Every value is checked when the spec is made, with one
line naming the flag, the value and what is allowed; flat keywords route to their part; every
command's flags come from the spec's fields."""
from __future__ import annotations

from dataclasses import fields

import pytest

from rtseg.errors import RtsegError
from rtseg.pipeline.spec import GROUPS, EngineOptions, Outputs, RunSpec, SourceOptions
from rtseg.pipeline.temporal import TemporalConfig


def test_flat_keywords_go_to_their_part():
    spec = RunSpec.from_options("clip.mp4", weights="m.onnx", classes="camvid", stride=2, view="mask",
                                temporal="on", max_frames=0, queue_size=3)
    assert spec.source == SourceOptions("clip.mp4", stride=2)
    assert spec.engine == EngineOptions(weights="m.onnx", classes="camvid")
    assert spec.outputs == Outputs(view="mask")
    assert spec.temporal == TemporalConfig() and spec.max_frames is None and spec.queue_size == 3  # 0 frames: all
    assert RunSpec.from_options(temporal="off").temporal is None
    assert RunSpec.from_options().temporal.auto  # auto until open_run resolves it for the source and engine


@pytest.mark.parametrize("options, message", [
    ({"stride": 0}, "--stride 0 is not allowed; use >= 1"),
    ({"fps": 0}, "--fps 0 is not allowed; use a rate > 0"),
    ({"reconnect": -1}, "--reconnect -1 is not allowed; use >= 0"),
    ({"stall_timeout": 0}, "--stall-timeout 0 is not allowed; use seconds > 0"),
    ({"threads": -2}, "--threads -2 is not allowed; use >= 0"),
    ({"streams": -1}, "--streams -1 is not allowed; use >= 0"),
    ({"warmup": -1}, "--warmup -1 is not allowed; use >= 0"),
    ({"precision": "int4"}, "--precision 'int4' is not allowed; use one of auto, fp32, bf16, fp16"),
    ({"view": "x-ray"}, "--view must be one of overlay, mask, side-by-side"),
    ({"alpha": 1.5}, "--alpha must be in 0..1"),
    ({"codec": "vp9"}, "--codec 'vp9' is not allowed; use auto, h264 or opencv"),
    ({"temporal": "maybe"}, "--temporal must be auto, on or off"),
    ({"queue_size": -1}, "--queue-size -1 is not allowed"),
    ({"max_frames": -5}, "--max-frames -5 is not allowed; use >= 0"),
    ({"colour": "red"}, "unknown option 'colour'; the options are: alpha, bgr"),
])
def test_one_check_names_the_flag_the_value_and_what_is_allowed(options, message):
    with pytest.raises(RtsegError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        RunSpec.from_options("clip.mp4", **options)
    assert "\n" not in str(info.value)


def _command_flags(name: str) -> set[str]:
    import typer

    from rtseg.cli import app

    command = typer.main.get_command(app).commands[name]
    return {opt for p in command.params for opt in (*p.opts, *getattr(p, "secondary_opts", []))}


@pytest.mark.parametrize("command", ["run", "webcam", "bench", "eval", "batch"])
def test_every_command_takes_every_engine_flag_from_the_spec(command):
    flags = _command_flags(command)
    for f in fields(EngineOptions):
        for flag in f.metadata.get("flags", ()):
            assert set(flag.split("/")) <= flags, f"rtseg {command} lacks {flag}"


def test_run_takes_every_flag_the_spec_declares():
    flags = _command_flags("run")
    declared = {flag for cls in GROUPS.values() for f in fields(cls) for spelled in f.metadata.get("flags", ())
                for flag in spelled.split("/")}
    assert declared <= flags and {"--engine", "--classes", "--temporal", "--stride", "--show", "--no-show"} <= declared


def test_a_spec_field_reaches_the_cli_and_the_python_api(monkeypatch, rtseg_cli, tmp_path):
    """rtseg run --threads/--warmup and rtseg.stream(threads=, warmup=) set the same fields, and open_run
    hands them to the engine (--warmup was added as one spec field: no other change reached here)."""
    import rtseg.pipeline.context as context

    seen = []

    def fake_open_engine(*a, **k):
        seen.append((k["threads"], k["warmup"]))
        raise RtsegError("stopped here by the test")

    monkeypatch.setattr(context, "open_engine", fake_open_engine)
    code, _, err = rtseg_cli("run", "--threads", "1", "--warmup", "2", "-o", tmp_path / "x.mp4")
    assert code == 2 and "stopped here by the test" in err
    import rtseg

    with pytest.raises(RtsegError, match="stopped here"):
        rtseg.stream(threads=1, warmup=2, device="cpu")
    assert seen == [(1, 2), (1, 2)]
