"""axs_lib.scenes: whole-scene inference, streamed window by window, resumable, split across torchrun ranks.

Python API: :func:`stream_model` runs any ``nn.Module`` over a raster; :func:`run_scene` is its general form.
Command line: ``python -m axs_lib.cli.scenes {segment,sar-to-optical,pipeline} --help`` (or ``axs-scenes``).
"""

from ..errors import InvalidSceneError, OutputExistsError, OutputLockedError, SceneInterruptedError, SceneReadError
from .engine import run_scene, stream_model
from .inputs import BandRead, Grid, SceneInput
from .outputs import OutputSpec
from .windows import Window, WindowPlan, plan_windows

__all__ = [
    "BandRead",
    "Grid",
    "InvalidSceneError",
    "OutputExistsError",
    "OutputLockedError",
    "OutputSpec",
    "SceneInput",
    "SceneInterruptedError",
    "SceneReadError",
    "Window",
    "WindowPlan",
    "plan_windows",
    "run_scene",
    "stream_model",
]
