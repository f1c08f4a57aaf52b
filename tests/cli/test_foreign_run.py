"""``--engine model.onnx`` for an ONNX file without rtseg metadata on ``run``, ``bench``, ``eval``,
``webcam`` and ``rtseg.stream``: wrapped once into the cache (one line says so; the second run
is a cache hit), the legend and classes.json from the --classes preset, and bad files refused
in one line, exit 2, before any output file exists."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import cv2
import onnx
import pytest
import torch
import torch.nn as nn

from rtseg.bundled import DEMO_CLIP
from rtseg.classes import resolve_classes


def _export(net: nn.Module, path: Path, shape: tuple[int, ...], dynamic: bool = True) -> Path:
    axes = {"input": {0: "batch", 2: "height", 3: "width"}, "output": {0: "batch", 2: "h", 3: "w"}} if dynamic else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net.eval(), (torch.zeros(shape),), str(path), input_names=["input"], output_names=["output"],
                          dynamic_axes=axes, opset_version=17, dynamo=False)
    return path


def _quarter(classes: int, in_ch: int = 3) -> nn.Module:
    """A random net giving ``classes`` scores at 1/4 of the input size."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(in_ch, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 24, 3, 2, 1), nn.ReLU(),
                         nn.Conv2d(24, classes, 1))


@pytest.fixture
def rtseg_cli(rtseg_cli, monkeypatch, tmp_path):
    """tests/conftest.py's ``rtseg_cli``, with a cache of its own in ``tmp_path``."""
    monkeypatch.setenv("RTSEG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("COLUMNS", "200")
    return rtseg_cli


@pytest.fixture
def m19(tmp_path) -> Path:
    return _export(_quarter(19), tmp_path / "m19.onnx", (1, 3, 64, 96))


def _wrap_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("wrapped m19.onnx")]


def test_run_writes_the_overlay_with_the_presets_legend_and_reuses_the_cache(rtseg_cli, m19, tmp_path, monkeypatch):
    import rtseg.pipeline.stages as runner

    legends: list[list[str]] = []

    class Spy(runner.Legend):
        def __init__(self, names, palette):
            legends.append(list(names))
            super().__init__(names, palette)

    monkeypatch.setattr(runner, "Legend", Spy)
    args = ("run", DEMO_CLIP, "--engine", m19, "--classes", "cityscapes", "--max-frames", "3", "--size", "96x128",
            "--runtime", "onnxruntime")
    code, out, err = rtseg_cli(*args, "-o", "out.mp4", "--masks", "masks")
    assert code == 0, err
    cityscapes = list(resolve_classes("cityscapes", 19).names)
    assert legends and all(names == cityscapes for names in legends)  # the legend names are the preset's
    assert [c["name"] for c in json.loads((tmp_path / "masks" / "classes.json").read_text())["classes"]] == cityscapes
    cap = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3 and cap.read()[0]
    cap.release()
    assert len(_wrap_lines(err)) == 1 and "foreign:m19.onnx (cityscapes, 19 classes)" in out
    entries = list((tmp_path / "cache" / "foreign").glob("*.onnx"))
    assert len(entries) == 1
    stamp = entries[0].stat().st_ino, entries[0].read_bytes()  # a rewrite would be a new file (renamed into place)

    code, out, err = rtseg_cli(*args, "-o", "again.mp4")  # the cache hit: no wrapping line, the entry untouched
    assert code == 0, err
    assert not _wrap_lines(err) and (tmp_path / "again.mp4").is_file()
    assert list((tmp_path / "cache" / "foreign").glob("*.onnx")) == entries and (entries[0].stat().st_ino, entries[0].read_bytes()) == stamp


def _classifier(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.Flatten(), nn.Linear(8 * 16 * 16, 1000))
    return _export(net, tmp_path / "bad.onnx", (1, 3, 32, 32), dynamic=False)


def _truncated(tmp_path: Path) -> Path:
    data = _export(_quarter(19), tmp_path / "whole.onnx", (1, 3, 64, 96)).read_bytes()
    (tmp_path / "bad.onnx").write_bytes(data[: len(data) // 2])
    return tmp_path / "bad.onnx"


def _custom_op(tmp_path: Path) -> Path:
    model = onnx.load(str(_export(_quarter(19), tmp_path / "whole.onnx", (1, 3, 64, 96))))
    model.graph.node[1].domain = "mmdeploy"  # as mmdeploy's TensorRT-only ops are
    model.opset_import.append(onnx.helper.make_opsetid("mmdeploy", 1))
    onnx.save(model, str(tmp_path / "bad.onnx"))
    return tmp_path / "bad.onnx"


BAD = {
    "classifier": (_classifier, (), "not a segmentation output"),
    "truncated": (_truncated, (), "ONNX"),
    "four_channels": (lambda t: _export(_quarter(5, in_ch=4), t / "bad.onnx", (1, 4, 64, 64)), (), "4 channels"),
    "class_count": (lambda t: _export(_quarter(19), t / "bad.onnx", (1, 3, 64, 96)), ("--classes", "voc"),
                    "has 21 classes but the model's output has 19"),
    "custom_op": (_custom_op, (), "operators outside standard ONNX"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_foreign_files_are_one_line_exit_2_and_leave_no_output(rtseg_cli, tmp_path, case):
    make, flags, message = BAD[case]
    bad = make(tmp_path)
    code, out, err = rtseg_cli("run", DEMO_CLIP, "--engine", bad, *flags, "-o", "out.mp4", "--masks", "masks")
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], err
    assert not (tmp_path / "out.mp4").exists() and not (tmp_path / "masks").exists()
    assert not list((tmp_path / "cache").rglob("*.onnx"))  # nothing half-wrapped left in the cache either


def test_foreign_flags_on_an_rtseg_artifact_are_an_error(rtseg_cli, tiny_checkpoint, tmp_path):
    code, _, err = rtseg_cli("run", DEMO_CLIP, "--engine", tiny_checkpoint, "--normalize", "unit", "-o", "out.mp4")
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "--normalize apply to ONNX files without rtseg metadata" in lines[0]
    assert not (tmp_path / "out.mp4").exists()


def test_bench_runs_a_foreign_file(rtseg_cli, m19, tmp_path):
    code, out, err = rtseg_cli("bench", DEMO_CLIP, "--engine", m19, "--classes", "cityscapes", "--frames", "4",
                               "--rounds", "1", "--streams", "1", "--size", "64x96", "--runtime", "onnxruntime",
                               "--json", "b.json")
    assert code == 0, err
    data = json.loads((tmp_path / "b.json").read_text())
    assert data["model"].startswith("foreign:m19.onnx") and data["input_size"] == [64, 96] and len(_wrap_lines(err)) == 1


def test_eval_runs_a_foreign_file_with_a_classes_json(rtseg_cli, tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_conftest", Path(__file__).parents[1] / "train" / "conftest.py")
    train_conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_conftest)
    data = train_conftest.write_folder_dataset(tmp_path / "data")  # synthetic 64x96 frames, 3 classes
    raw = _export(_quarter(3), tmp_path / "m3.onnx", (1, 3, 64, 96))
    code, out, err = rtseg_cli("eval", "--engine", raw, "--classes", data / "classes.json", "--normalize", "unit",
                               "--dataset", "folder", "--data-root", data, "--json", "e.json", "--quiet")
    assert code == 0, err
    report = json.loads((tmp_path / "e.json").read_text())
    names = [c["name"] if isinstance(c, dict) else c for c in json.loads((data / "classes.json").read_text())["names"]]
    assert list(report["per_class_iou"]) == names and report["frames"] == 4 and 0 <= report["pixel_acc"] <= 1


def test_webcam_passes_the_flags_to_the_engine(rtseg_cli, m19, monkeypatch):
    import rtseg.cli.run as run_cli
    import rtseg.pipeline.context as context
    from rtseg.errors import RtsegError

    seen = {}

    def fake_open_run(spec, **kw):
        seen.update(spec.engine.foreign())
        raise RtsegError("stopped here by the test")

    monkeypatch.setattr(run_cli, "require_display", lambda *a: None)
    monkeypatch.setattr(context, "open_run", fake_open_run)
    code, _, err = rtseg_cli("webcam", "0", "--engine", m19, "--classes", "cityscapes", "--normalize", "unit",
                             "--bgr", "--input-name", "input", "--output-name", "output")
    assert code == 2 and "stopped here by the test" in err
    assert seen == {"classes": "cityscapes", "normalize": "unit", "bgr": True, "input_name": "input",
                    "output_name": "output"}


def test_stream_takes_a_foreign_file(m19, tmp_path, monkeypatch):
    import rtseg

    monkeypatch.setenv("RTSEG_CACHE", str(tmp_path / "cache"))
    results = list(rtseg.stream(DEMO_CLIP, weights=m19, classes="cityscapes", runtime="onnxruntime", device="cpu",
                                size="64x96", max_frames=2, view=None))
    assert len(results) == 2 and results[0].ids.shape == (360, 480) and results[0].ids.max() < 19


def test_temporal_on_a_foreign_model_off_by_default(rtseg_cli, m19, tmp_path):
    """A wrapped model with scores runs the temporal filter when asked (--temporal on); auto, the
    default, leaves it off for models from other tools."""
    code, out, err = rtseg_cli("run", DEMO_CLIP, "--engine", m19, "--classes", "cityscapes", "--size", "64x96",
                               "--max-frames", 4, "-o", tmp_path / "auto.mp4", "--json", tmp_path / "auto.json")
    assert code == 0, err
    assert "temporal filter off (auto: a model from another tool; --temporal on runs it)" in " ".join(out.split())
    assert "temporal_ms" not in json.loads((tmp_path / "auto.json").read_text())
    code, out, err = rtseg_cli("run", DEMO_CLIP, "--engine", m19, "--classes", "cityscapes", "--size", "64x96",
                               "--max-frames", 4, "--temporal", "on", "-o", tmp_path / "on.mp4",
                               "--json", tmp_path / "on.json")
    assert code == 0, err
    assert "temporal filter on" in out and json.loads((tmp_path / "on.json").read_text())["frames"] == 4
    assert "temporal_ms" in json.loads((tmp_path / "on.json").read_text())


class _Ids(nn.Module):
    """A model from another tool that ends in its own ArgMax: class ids out, no scores."""

    def __init__(self):
        super().__init__()
        self.net = _quarter(19)

    def forward(self, x):
        return self.net(x).argmax(1)


def test_a_foreign_model_of_quarter_size_ids_runs_and_temporal_on_is_one_line(rtseg_cli, tmp_path):
    """A model that gives ids at 1/4 of its input (its own ArgMax) is wrapped with its ids enlarged
    to the input (nearest); it has no scores for the filter: auto leaves it off, and --temporal on
    is refused in one line (exit 2) before any output file exists."""
    raw = _export(_Ids(), tmp_path / "ids19.onnx", (1, 3, 64, 96), dynamic=False)
    code, out, err = rtseg_cli("run", DEMO_CLIP, "--engine", raw, "--classes", "cityscapes", "--max-frames", 2,
                               "-o", tmp_path / "auto.mp4")
    assert code == 0, err
    assert "temporal filter off (auto: the engine gives no class scores)" in " ".join(out.split())
    code, out, err = rtseg_cli("run", DEMO_CLIP, "--engine", raw, "--classes", "cityscapes", "--max-frames", 2,
                               "--temporal", "on", "-o", tmp_path / "on.mp4")
    errors = [line for line in err.strip().splitlines() if line.startswith("error")]  # the notes aside
    assert code == 2 and len(errors) == 1 and "needs class scores" in errors[0] and "gives class ids" in errors[0], err
    assert "Traceback" not in err
    assert not (tmp_path / "on.mp4").exists() and not list(tmp_path.glob("on.partial*"))


class _TwoHeads(nn.Module):
    """A random net with two outputs, as exports with an auxiliary head have: 'aux' and 'seg'."""

    def __init__(self, classes: int):
        super().__init__()
        self.body = _quarter(classes)
        self.aux = nn.Conv2d(3, classes, 1, 4)

    def forward(self, x):
        return self.aux(x), self.body(x)


@pytest.fixture
def two_heads(tmp_path) -> Path:
    path = tmp_path / "heads.onnx"
    axes = {"input": {0: "batch", 2: "height", 3: "width"}, "aux": {0: "batch", 2: "h", 3: "w"},
            "seg": {0: "batch", 2: "h2", 3: "w2"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_TwoHeads(19).eval(), (torch.zeros(1, 3, 64, 96),), str(path), input_names=["input"],
                          output_names=["aux", "seg"], dynamic_axes=axes, opset_version=17, dynamo=False)
    return path


@pytest.fixture
def two_clips(tmp_path) -> Path:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipeline"))
    from pipeline_fakes import write_video

    folder = tmp_path / "clips"
    folder.mkdir()
    write_video(folder / "a.mp4", 4, size=(48, 64))
    write_video(folder / "b.mp4", 3, size=(48, 64))
    return folder


def test_batch_runs_a_foreign_file_over_a_folder_with_its_flags(rtseg_cli, two_heads, two_clips, tmp_path):
    """rtseg batch takes rtseg run's foreign-model flags (--classes, --normalize, --output-name):
    the file is wrapped once, every video is done with the preset's classes."""
    code, out, err = rtseg_cli("batch", two_clips, "-d", tmp_path / "out", "--engine", two_heads, "--classes",
                               "cityscapes", "--normalize", "unit", "--output-name", "seg", "--runtime", "onnxruntime",
                               "--size", "64x96", "--masks", "-q")
    assert code == 0, err
    lines = [json.loads(line) for line in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()]
    assert sorted((Path(r["input"]).name, r["status"], r["frames"]) for r in lines) == [("a.mp4", "done", 4),
                                                                                        ("b.mp4", "done", 3)]
    classes = json.loads((tmp_path / "out" / "a_masks" / "classes.json").read_text())["classes"]
    assert [c["name"] for c in classes] == list(resolve_classes("cityscapes", 19).names)
    assert len(list((tmp_path / "cache" / "foreign").glob("*.onnx"))) == 1  # wrapped once, for both videos


def test_rtseg_batch_is_a_function_taking_the_run_options_by_name(two_heads, two_clips, tmp_path, monkeypatch):
    import types

    import rtseg
    from rtseg.errors import RtsegError

    monkeypatch.setenv("RTSEG_CACHE", str(tmp_path / "cache"))
    assert isinstance(rtseg.batch, types.FunctionType)
    result = rtseg.batch([two_clips], tmp_path / "out", weights=two_heads, classes="cityscapes", normalize="unit",
                         output_name="seg", runtime="onnxruntime", size="64x96", temporal="off")
    assert result.ok and [r["frames"] for r in result.records] == [4, 3]
    with pytest.raises(RtsegError, match="unknown option 'colour'"):
        rtseg.batch([two_clips], tmp_path / "out2", colour="red")


def test_jetson_label_files_name_and_colour_a_foreign_model(rtseg_cli, tmp_path):
    """A jetson-inference-style model: classes.txt and colors.txt given with --classes/--colors; the
    masks' classes.json has their names and colours; an edited colors.txt makes a new cache entry."""
    model = _export(_quarter(3), tmp_path / "fcn.onnx", (1, 3, 64, 96))
    (tmp_path / "classes.txt").write_text("# classes of the model\nvoid\nroad\ncar\n")
    (tmp_path / "colors.txt").write_text("0 0 0 255\n128 64 128 255\n0 0 142 255\n")
    args = ("run", DEMO_CLIP, "--engine", model, "--classes", tmp_path / "classes.txt", "--colors",
            tmp_path / "colors.txt", "--runtime", "onnxruntime", "--max-frames", "2", "--size", "64x96")
    code, _, err = rtseg_cli(*args, "-o", "a.mp4", "--masks", "m")
    assert code == 0, err
    classes = json.loads((tmp_path / "m" / "classes.json").read_text())["classes"]
    assert [(c["name"], c["rgb"]) for c in classes] == [("void", [0, 0, 0]), ("road", [128, 64, 128]),
                                                        ("car", [0, 0, 142])]
    (tmp_path / "colors.txt").write_text("#000000\n#804080\n#ff0000\n")
    code, _, err = rtseg_cli(*args, "-o", "b.mp4", "--masks", "m2")
    assert code == 0, err
    assert json.loads((tmp_path / "m2" / "classes.json").read_text())["classes"][2]["rgb"] == [255, 0, 0]
    assert len(list((tmp_path / "cache" / "foreign").glob("*.onnx"))) == 2


def _with_props(path: Path, props: dict) -> Path:
    model = onnx.load(str(path))
    for k, v in props.items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("tool", ["ultralytics", "huggingface", "jetson"])
def test_a_tools_own_files_configure_the_run_with_no_flags(rtseg_cli, tmp_path, tool):
    """#39: ultralytics' metadata in the file, Hugging Face's config.json / preprocessor_config.json
    or jetson-inference's classes.txt / colors.txt beside it: the names (and normalisation, size,
    colours) come from there, and one line says so. (Files made here with those tools' keys and
    layouts, not by the tools themselves.)"""
    model = _export(_quarter(3), tmp_path / "m.onnx", (1, 3, 64, 96), dynamic=tool != "ultralytics")
    names = ["road", "car", "sky"]
    if tool == "ultralytics":
        _with_props(model, {"author": "Ultralytics", "task": "semantic", "imgsz": "[64, 96]",
                            "names": "{0: 'road', 1: 'car', 2: 'sky'}"})
        said = "classes, normalize, resize, size from the file's ultralytics metadata"
    elif tool == "huggingface":
        (tmp_path / "config.json").write_text(json.dumps({"id2label": {str(i): n for i, n in enumerate(names)}}))
        (tmp_path / "preprocessor_config.json").write_text(json.dumps(
            {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225], "size": {"height": 64, "width": 96}}))
        said = "classes, normalize, size from Hugging Face's config.json and preprocessor_config.json"
    else:
        (tmp_path / "classes.txt").write_text("road\ncar\nsky\n")
        (tmp_path / "colors.txt").write_text("128 64 128\n0 0 142\n70 130 180\n")
        said = "classes, colors from jetson-inference's classes.txt and colors.txt"
    code, out, err = rtseg_cli("run", DEMO_CLIP, "--engine", model, "--runtime", "onnxruntime", "--max-frames", "2",
                               "-o", "o.mp4", "--masks", "m")
    assert code == 0, err
    assert said in " ".join(err.split())
    classes = json.loads((tmp_path / "m" / "classes.json").read_text())["classes"]
    assert [c["name"] for c in classes] == names
    if tool == "jetson":
        assert classes[1]["rgb"] == [0, 0, 142]
    code, out, err = rtseg_cli("run", DEMO_CLIP, "--engine", model, "--runtime", "onnxruntime", "--max-frames", "1",
                               "-o", "p.mp4", "--masks", "m2", "--classes", str(_names_file(tmp_path)))  # flags win
    assert code == 0, err
    assert [c["name"] for c in json.loads((tmp_path / "m2" / "classes.json").read_text())["classes"]] == ["a", "b", "c"]


def _names_file(folder: Path) -> Path:
    f = folder / "mine.txt"
    f.write_text("a\nb\nc\n")
    return f
