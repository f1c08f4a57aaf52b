"""The video pipeline: sources, the threaded stage runner, sinks and per-stage timing."""
from __future__ import annotations

from rtseg.pipeline.live import LiveSource, open_camera
from rtseg.pipeline.packet import Look, Packet
from rtseg.pipeline.runner import RunResult, Sink, Stage, StageError, StopRun, engine_stages, run
from rtseg.pipeline.opener import FrameFeed, open_frames, open_source
from rtseg.pipeline.sources import ImageFolderSource, Source, VideoFileSource
from rtseg.pipeline.timing import STAGES, StageStats, Timings

__all__ = ["Look", "Packet", "RunResult", "Sink", "Stage", "StageError", "StopRun", "engine_stages", "run",
           "FrameFeed", "ImageFolderSource", "LiveSource", "open_frames", "Source", "VideoFileSource", "open_camera", "open_source",
           "STAGES", "StageStats", "Timings"]
