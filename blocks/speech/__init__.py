"""Speech blocks: command words synthesised with espeak-ng or a user's recordings, log-mel features in the
digitized-data cache, a keyword-spotting CNN (features in the graph), pocketsphinx ASR and espeak-ng TTS."""

from blocks.speech.asr import AsrPocketsphinx, AsrPredictor
from blocks.speech.features import LogMelFeatures
from blocks.speech.kws import KwsCnn
from blocks.speech.predictor import AudioClassifierPredictor
from blocks.speech.synth import SynthCommands
from blocks.speech.tts import TtsEspeak, TtsPredictor
from blocks.speech.wav_folder import WavFolder

__all__ = [
    "AsrPocketsphinx",
    "AsrPredictor",
    "AudioClassifierPredictor",
    "KwsCnn",
    "LogMelFeatures",
    "SynthCommands",
    "TtsEspeak",
    "TtsPredictor",
    "WavFolder",
]
