"""The learner: segmentation models (registry), heads, losses, training on a
label state, and the prediction services strategies ask for."""

from alharness.learner.config import LearnerConfig, resolve_device
from alharness.learner.learner import Learner

__all__ = ["Learner", "LearnerConfig", "resolve_device"]
