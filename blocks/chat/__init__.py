"""Chat blocks: FAQ data, the MiniLM and MPNet sentence encoders and the intent classifier."""

from blocks.chat.faq_csv import FaqCsv
from blocks.chat.intent_classifier import IntentClassifier
from blocks.chat.minilm_encoder import MiniLMEncoder
from blocks.chat.mpnet_encoder import MPNetEncoder
from blocks.chat.predictor import TextClassifierPredictor

__all__ = ["FaqCsv", "IntentClassifier", "MPNetEncoder", "MiniLMEncoder", "TextClassifierPredictor"]
