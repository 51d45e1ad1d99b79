"""CoRD on Ray: a Ray Data stage (problem rows in, trace records out) and ``distill --ray``.

Needs the optional extra: ``pip install 'cord-proxy[ray]'``. Everything here imports the
real ``ray`` package absolutely; this subpackage is ``cord_proxy.ray``, never ``ray``.
"""

from __future__ import annotations

from cord_proxy.ray.stage import CordStage, StageSettings, apply_cord

__all__ = ["CordStage", "StageSettings", "apply_cord"]
