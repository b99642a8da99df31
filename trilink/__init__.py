"""trilink: an engineering model of trilateral real-time missile-warning data sharing."""

from pathlib import Path

__version__ = "0.1.0"

#: The repository root (the project runs from an editable install; deploy/ and schemas/ live here).
REPO_ROOT = Path(__file__).resolve().parent.parent
