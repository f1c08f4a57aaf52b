"""SIGTERM and SIGHUP stop a run as Ctrl-C does, when asked (the CLI asks; the library installs
nothing by itself).

What ``docker stop``, systemd, Kubernetes, ``timeout`` and a closed terminal send would
otherwise end the process at once and lose the video being written. Inside
:func:`interrupt_on_signals` each of them raises :class:`Interrupted` (a ``KeyboardInterrupt``)
in the main thread, which is where Ctrl-C lands: the pipeline stops reading, closes its outputs
(the video finalised) and reports an interrupted run; :func:`exit_code` then says which code the
process should end with (docs/architecture.md, "Exit codes").
"""
from __future__ import annotations

import ctypes
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

__all__ = ["Interrupted", "interrupt_on_signals", "stop_on_signals", "deferred", "received", "exit_code",
           "EXIT_CODES", "WORDS", "keep_signal_stack"]

# 128 + the signal's number, as shells report a process a signal ended. Windows has no SIGHUP.
_SIGHUP = getattr(signal, "SIGHUP", None)
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143, **({_SIGHUP: 129} if _SIGHUP is not None else {})}
WORDS = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated", **({_SIGHUP: "hung up"} if _SIGHUP is not None else {})}

_state = {"received": None, "defer": 0}  # the last signal handled; >0: record signals, do not raise


class Interrupted(KeyboardInterrupt):
    """A stop signal, raised in the main thread as Ctrl-C is. ``signum``: which one."""

    def __init__(self, signum: int):
        super().__init__(WORDS.get(signum, f"signal {signum}"))
        self.signum = signum
        self.exit_code = EXIT_CODES.get(signum, 128 + int(signum))


def _handler(signum: int, frame) -> None:
    # The first signal stops the run. Later ones while it finalises its outputs are ignored (systemd
    # sends SIGHUP right after SIGTERM; a process group's kill reaches it more than once), except
    # Ctrl-C pressed again: a person insisting (the partial video plays, up to its last second).
    first = _state["received"] is None
    if first:
        _state["received"] = signum
    if not _state["defer"] and (first or signum == signal.SIGINT):
        raise Interrupted(signum)


@contextmanager
def interrupt_on_signals(signals: Sequence[int] = tuple(EXIT_CODES)) -> Iterator[None]:
    """Within the block, ``signals`` (Ctrl-C, SIGTERM, SIGHUP) raise :class:`Interrupted` in the
    main thread; the previous handlers come back at the end. Outside the main thread (where
    Python lets no one install handlers) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _state["received"] = None
    with _handling(signals, _handler):
        yield


@contextmanager
def _handling(signals: Sequence[int], handler: Callable) -> Iterator[None]:
    """``handler`` for ``signals`` within the block, the previous handlers back after it."""
    previous = {}
    for sig in signals:
        try:
            previous[sig] = signal.signal(sig, handler)
        except (OSError, ValueError):  # a signal this platform lacks (SIGHUP on Windows)
            pass
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextmanager
def stop_on_signals(stop: threading.Event, on_first: Callable[[int], None] | None = None,
                    signals: Sequence[int] = tuple(EXIT_CODES)) -> Iterator[None]:
    """Within the block the first stop signal only sets ``stop`` (the work finishes its step and
    saves; ``on_first(signum)`` can say so) and a second one raises :class:`Interrupted` at once:
    for work whose unit is too long to drop (a training step, a validation). :func:`received` and
    :func:`exit_code` report the first. Outside the main thread it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame) -> None:
        if stop.is_set():
            raise Interrupted(_state["received"] or signum)
        _state["received"] = signum
        stop.set()
        if on_first is not None:
            on_first(signum)

    with _handling(signals, handler):
        yield


@contextmanager
def deferred() -> Iterator[None]:
    """Within the block a stop signal is recorded (see :func:`received`) rather than raised: for
    the report and the JSON a run writes after its outputs are closed."""
    _state["defer"] += 1
    try:
        yield
    finally:
        _state["defer"] -= 1


def received() -> int | None:
    """The first stop signal handled since :func:`interrupt_on_signals` began (None: none)."""
    return _state["received"]


def exit_code(default: int = 130) -> int:
    """The process's exit code for the signal received: 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP;
    ``default`` when none was (a KeyboardInterrupt from Python's own Ctrl-C handler)."""
    signum = _state["received"]
    return EXIT_CODES.get(signum, default) if signum is not None else default


class _StackT(ctypes.Structure):  # struct stack_t of sigaltstack(2) on Linux (glibc and musl)
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


def _sigaltstack():
    """libc's sigaltstack on Linux, else None (other systems lay out stack_t otherwise: macOS puts
    the size before the flags; Windows has none)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).sigaltstack
    except (OSError, AttributeError, TypeError):
        return None
    fn.argtypes = [ctypes.POINTER(_StackT), ctypes.POINTER(_StackT)]
    return fn


@contextmanager
def keep_signal_stack() -> Iterator[None]:
    """The calling thread's alternate signal stack as it was before the block, after it.

    OpenVINO's CPU plugin, when a Core loads it, installs a signal stack of its own in the calling
    thread and puts the previous one back when that Core goes, but only when the Cores go in the
    reverse order they came: with two, the first one's stack (freed with it) can stay installed.
    Python's handlers run on that stack (SA_ONSTACK), so the next Ctrl-C or SIGTERM in the thread
    then crashed the process with SIGSEGV instead of stopping the run. Code that makes a Core runs
    inside this block, which leaves no plugin's stack behind."""
    fn = _sigaltstack()
    saved = _StackT()
    if fn is None or fn(None, ctypes.byref(saved)) != 0:
        yield
        return
    try:
        yield
    finally:
        fn(ctypes.byref(saved), None)
