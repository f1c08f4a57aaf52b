"""--help reads as a user needs it: value names rather than type labels, no text lost to markup,
defaults stated, and where to get CamVid."""
from __future__ import annotations

import re
import sys

import pytest

COMMANDS = ["run", "webcam", "bench", "export", "train", "eval", "doctor"]


def _help(monkeypatch, capsys, *args: str) -> str:
    from rtseg.cli import main

    monkeypatch.setattr(sys, "argv", ["rtseg", *args, "--help"])
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code in (0, None)
    return capsys.readouterr().out


@pytest.mark.parametrize("command", COMMANDS)
def test_help_has_no_type_labels_and_keeps_its_brackets(monkeypatch, capsys, command):
    text = _help(monkeypatch, capsys, command)
    for label in ("<str>", "<bool>", "<path>", "<int>", "<float>"):
        assert label not in text, (command, label)
    assert not re.search(r"[\w)\]] \.(\s|$)", text), command  # text eaten as markup left "URL ." behind


def test_run_help_states_its_defaults_and_value_names(monkeypatch, capsys):
    text = " ".join(_help(monkeypatch, capsys, "run").split())
    assert "[default: the bundled demo clip]" in text and "[default: the bundled CamVid weights]" in text
    assert "--size HxW" in text and "--engine PATH" in text and "--stride N" in text
    assert "Default: <source name>_seg.mp4 in the current folder" in text


def test_train_help_says_where_to_get_camvid(monkeypatch, capsys):
    text = " ".join(_help(monkeypatch, capsys, "train").split())
    assert "github.com/alexgkendall/SegNet" in text and "--train-split SPLIT" in text  # (wrapping may break at its -)
