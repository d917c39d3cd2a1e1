"""Vision blocks: the handwritten digits set, a user's image folder, augmentation and a small CNN classifier."""

from blocks.vision.augment import Augment
from blocks.vision.digits import Digits
from blocks.vision.image_folder import ImageFolder
from blocks.vision.predictor import ImageClassifierPredictor
from blocks.vision.small_cnn import SmallCnnClassifier

__all__ = ["Augment", "Digits", "ImageClassifierPredictor", "ImageFolder", "SmallCnnClassifier"]
