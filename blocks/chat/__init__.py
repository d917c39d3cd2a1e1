"""Chat blocks: FAQ data, the MiniLM sentence encoder and the intent classifier."""

from blocks.chat.faq_csv import FaqCsv
from blocks.chat.intent_classifier import IntentClassifier
from blocks.chat.minilm_encoder import MiniLMEncoder
from blocks.chat.predictor import TextClassifierPredictor

__all__ = ["FaqCsv", "IntentClassifier", "MiniLMEncoder", "TextClassifierPredictor"]
