"""The learner: segmentation models (registry) and training on a label state."""

from alharness.learner.learner import Learner, LearnerConfig, resolve_device

__all__ = ["Learner", "LearnerConfig", "resolve_device"]
