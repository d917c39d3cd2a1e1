"""Speech blocks: command words synthesised with espeak-ng and a keyword-spotting CNN (features in the graph)."""

from blocks.speech.kws import KwsCnn
from blocks.speech.predictor import AudioClassifierPredictor
from blocks.speech.synth import SynthCommands

__all__ = ["AudioClassifierPredictor", "KwsCnn", "SynthCommands"]
