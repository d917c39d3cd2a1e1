"""Vision blocks: the handwritten digits set and a small CNN image classifier."""

from blocks.vision.digits import Digits
from blocks.vision.predictor import ImageClassifierPredictor
from blocks.vision.small_cnn import SmallCnnClassifier

__all__ = ["Digits", "ImageClassifierPredictor", "SmallCnnClassifier"]
