"""Plain words for the code names of settings, metrics and steps: what the workbench shows a person who does not
program (the code names stay in the YAML, the API and `aib run --json`)."""

from __future__ import annotations

__all__ = ["block_name", "humanize", "metric_words", "param_words", "step_words", "with_article"]

# Settings whose meaning is the same in every block: (label, one-line explanation).
_PARAMS: dict[str, tuple[str, str]] = {
    "epochs": ("Training rounds", "How many times the model goes over all the training examples."),
    "lr": ("Learning speed", "How big each correction is while learning; too high is unstable, too low is slow."),
    "batch_size": ("Examples per step", "How many examples the model looks at before each correction."),
    "seed": ("Random seed", "Any whole number; the same number gives the same result every time."),
    "hidden": ("Extra layer size", "Size of an extra layer in the answer picker; 0 keeps it simple (often best)."),
    "weight_decay": ("Simplicity pressure", "Keeps the model from memorising the examples; higher is simpler."),
    "eval_fraction": ("Share kept for testing", "Part of each answer's questions kept aside to test the model."),
    "test_fraction": ("Share kept for testing", "Part of the data kept aside to test the model on."),
    "test_voices": ("Voices kept for testing", "Share of the voices kept aside, to test on voices never heard."),
    "path": ("File", "Your data file or folder, relative to the pipeline file."),
    "heldout_path": ("Test questions file", "Optional file of other wordings, kept out of training to test on."),
    "max_length": ("Longest question (tokens)", "Longer questions are cut to this many word pieces."),
    "normalize": ("Normalise", "Scale every sentence meaning to the same length (recommended)."),
    "device": ("Processor", "Where to train: auto picks a graphics card when there is one."),
    "threads": ("Processor threads", "How many processor threads to use; 0 lets the computer decide."),
    "tier": ("Machine size", "The smallest rented machine to run on: a processor, or a graphics card."),
    "memory_gb": ("Memory needed (GB)", "Memory the run needs; on graphics cards, their memory."),
    "max_price_per_hour": ("Highest price per hour", "The most you pay per machine-hour; 0 takes the cheapest."),
    "segment_batches": ("Check every … steps", "How often a rented machine's work is checked; 0: once per round."),
    "threshold": (
        "Confidence needed",
        "Below this confidence the service says it does not know; empty: chosen from your data.",
    ),
    "wrong_answer_target": (
        "Most wrong answers allowed",
        "Share of wrong answers allowed among the questions answered (0.05: 5 %); sets the confidence needed.",
    ),
    "fallback_answer": ("'I don't know' answer", "What the service answers when it is not confident."),
    "max_text_chars": ("Longest question (characters)", "Longer questions are refused."),
    "max_batch": ("Most questions per request", "Larger requests are refused."),
    "width": ("Model width", "Size of the model's first layer; wider learns more but is slower."),
    "channels": ("Model width", "Size of the model's layers; wider learns more but is slower."),
    "blocks": ("Model depth", "How many layers the model has."),
    "copies": ("Extra copies per image", "Changed copies of each training image, to learn from more examples."),
    "degrees": ("Largest rotation (degrees)", "How far copies may be turned either way."),
    "shift": ("Largest shift", "How far copies may be moved, as a share of the image size."),
    "noise": ("Noise", "How much random noise is added."),
    "limit": ("Use at most … images", "0 uses all images; a smaller number makes quick trials."),
    "size": ("Image size (pixels)", "Images are turned grey and resized to this many pixels across."),
    "scenes": ("Road pictures", "How many road pictures to generate, each from a different road."),
    "height": ("Picture height (pixels)", "Height of each picture."),
    "words": ("Command words", "The words the model learns to recognise."),
    "voices": ("Voices", "How many different voices speak the words."),
    "speeds": ("Speaking speeds", "Words per minute of the voices."),
    "pitches": ("Voice pitches", "How high the voices are, 0 to 99."),
    "unknown": ("Other words", "Also learn to recognise words that are not commands."),
    "silence": ("Silence", "Also learn to recognise background noise with no speech."),
    "reverb": ("Room echo", "Share of the recordings with room echo added."),
    "seconds": ("Clip length (seconds)", "Longer recordings are cut to this length."),
    "min_seconds": ("Shortest recording (seconds)", "Shorter recordings are reported, not used."),
    "max_seconds": ("Longest recording (seconds)", "Longer recordings are reported, not used."),
    "n_mels": ("Frequency bands", "How finely the sound is split into pitches."),
    "window_ms": ("Window (ms)", "Length of each slice of sound analysed."),
    "hop_ms": ("Step (ms)", "Time between slices of sound."),
    "mfcc": ("Compressed bands", "0 keeps all bands; a number keeps only that many compressed ones."),
    "commands": ("Commands", "The phrases to recognise; empty: the labels of the recordings."),
    "grammar": ("Grammar", "Your own grammar of phrases (replaces the commands)."),
    "open_vocabulary": ("Any speech", "Transcribe any English speech instead of a fixed list."),
    "eval_clips": ("Test recordings", "How many test recordings are transcribed to measure accuracy."),
    "voice": ("Voice", "The voice's language, and optionally its variant (like en-gb+f3)."),
    "speed": ("Speaking speed", "Words per minute."),
    "pitch": ("Pitch", "How high the voice is, 0 to 99."),
}

# Where a name means something else in one block: (block id, name) -> words.
_PARAMS_BY_BLOCK: dict[tuple[str, str], tuple[str, str]] = {
    ("chat.minilm-encoder", "batch_size"): ("Sentences at once", "How many sentences are read at once."),
    ("chat.mpnet-encoder", "batch_size"): ("Sentences at once", "How many sentences are read at once."),
    ("driving.synthetic-roads", "width"): ("Picture width (pixels)", "Width of each picture."),
    ("speech.synth-commands", "noise"): ("Silence noise", "The loudest noise in the 'silence' recordings."),
    ("speech.synth-commands", "copies"): (
        "Changed copies per recording",
        "Each training recording is also learnt in this many changed versions (speed, pitch, noise, echo, phone).",
    ),
    ("speech.synth-commands", "speed"): ("Speed change", "How much faster or slower the copies may be (0.1 = 10 %)."),
    ("speech.synth-commands", "pitch"): ("Pitch change (semitones)", "How much higher or lower the copies may be."),
    ("speech.synth-commands", "engines"): ("Speech engines", "The programs that speak the words: espeak-ng, festival."),
    ("speech.synth-commands", "test_engine"): (
        "Test-only engine",
        "An engine only used to test the model, so its score is on voices it never heard; empty: held-out voices.",
    ),
    ("speech.synth-commands", "balance"): ("Balance engines", "Give an engine with few voices more changed copies."),
    ("speech.synth-commands", "vtlp"): (
        "Voice-shape change",
        "How much the copies' voices are made longer or shorter in the throat (0.1 = 10 %).",
    ),
    ("speech.synth-commands", "shift_ms"): ("Time shift (ms)", "How far the word may move inside the clip."),
    ("speech.synth-commands", "snr_db"): ("Noise level (dB SNR)", "How loud background noise is: low is loud."),
    ("speech.synth-commands", "noise_share"): ("Share with noise", "Share of the training recordings with noise."),
    ("speech.synth-commands", "telephone"): (
        "Share on a phone line",
        "Share of training recordings sent through a telephone line (narrow band, 8 kHz).",
    ),
    ("speech.kws-cnn", "spec_augment"): (
        "Hide bits while learning",
        "Hide random pitch bands and moments of each recording while training, so no single detail decides.",
    ),
    ("speech.kws-cnn", "utterance_norm"): (
        "Even out each voice's tone",
        "Take each recording's own average loudness in every pitch band away before listening, so a new voice, "
        "microphone or phone line sounds more like the voices it learnt from.",
    ),
    ("speech.kws-cnn", "own_clips_path"): (
        "Your own recordings",
        "A folder (or .zip) with a folder of your recordings per word, 3 or more each; the model also learns your "
        "voice from them. Empty: none.",
    ),
    ("speech.kws-cnn", "own_epochs"): (
        "Rounds on your recordings",
        "How many times the model goes over your own recordings after its training.",
    ),
    ("speech.synth-commands", "seconds"): ("Clip length (seconds)", "Length of each recording."),
    ("speech.synth-commands", "unknown_per_voice"): (
        "Other words per voice",
        "How many words that are not commands each voice says, at each speed and pitch, for 'unknown'.",
    ),
    ("speech.synth-commands", "unknown_distinct_copies"): (
        "A new word for each copy",
        "Each changed copy of an 'unknown' recording is another word, so the model hears more words that are not "
        "commands without hearing more 'unknown' recordings.",
    ),
    ("speech.kws-cnn", "unknown_bias"): (
        "Readiness to say 'unknown'",
        "How readily the model answers 'unknown' when it is unsure; higher turns away more other words and a few "
        "more commands. 0: as trained.",
    ),
    ("vision.augment", "noise"): ("Pixel noise", "How much random noise is added to the copies."),
    ("chat.faq-csv", "seed"): ("Random seed", "Which questions are kept for testing; the same number, the same."),
}

_METRICS: dict[str, tuple[str, str]] = {
    "accuracy": ("Accuracy", "Share of the test examples the model got right."),
    "baseline_accuracy": ("Guessing baseline", "Accuracy of always giving the most common answer; beat this."),
    "train_accuracy": ("Accuracy on training data", "Right answers on the examples it learned from (optimistic)."),
    "loss": ("Training error", "How wrong the model still is while learning; lower is better."),
    "mae": ("Average steering error", "Average distance from the right steering angle; lower is better."),
    "baseline_mae": ("Guessing baseline error", "Error of always steering the average angle; beat this."),
    "mae_vs_baseline": ("Error vs guessing", "The model's error divided by guessing's; below 1 is better."),
    "train_mae": ("Error on training data", "Steering error on the frames it learned from (optimistic)."),
    "eval_examples": ("Test examples", "How many examples the accuracy was measured on."),
    "eval_split": ("Tested on", "Which examples the accuracy was measured on."),
    "cv_folds": ("Test rounds", "Times the model was retrained, each time tested on a different part."),
    "metric_note": ("How it was measured", "How the accuracy was measured."),
    "classes": ("Classes", "How many different answers the model chooses between."),
    "intents": ("Answers", "How many different answers the model chooses between."),
    "epochs": ("Training rounds", "How many times the model went over all the training examples."),
    "train_examples": ("Training examples", "Questions the model learned from."),
    "train_images": ("Training images", "Images the model learned from."),
    "test_images": ("Test images", "Images kept aside to test the model."),
    "train_clips": ("Training recordings", "Recordings the model learned from."),
    "test_clips": ("Test recordings", "Recordings kept aside to test the model."),
    "eval_clips": ("Test recordings", "Recordings transcribed to measure accuracy."),
    "train_frames": ("Training pictures", "Road pictures the model learned from."),
    "test_frames": ("Test pictures", "Road pictures kept aside to test the model."),
    "embeddings_computed": ("Sentences read", "Sentences the language model read in this run."),
    "embeddings_cached": ("Sentences reused", "Sentences read in an earlier run and reused."),
    "features_from_cache": ("Sound features reused", "1 when the sound features came from an earlier run."),
    "sample_seconds": ("Sample length (seconds)", "Length of the spoken sample."),
    "resumed_from_epoch": ("Resumed after round", "The run was interrupted and continued from this round."),
    "parity_max_abs_diff": ("Export difference", "Largest difference between the exported and trained model."),
    "vocabulary": ("Vocabulary", "A fixed list of phrases, or any speech."),
    "accuracy_by_label": ("Accuracy per command", "Share recognised right, for each command."),
    "confusion_matrix": ("Confusion matrix", "Which answers the model mixes up."),
    "threshold": ("Confidence needed", "Below this confidence the service says it does not know."),
    "wrong_answer_target": ("Most wrong answers allowed", "The confidence needed was chosen to stay within this."),
    "out_of_scope_rejection": (
        "Unrelated questions declined",
        "Share of questions your FAQ has no answer for that get the 'I don't know' answer (general set).",
    ),
    "answered_right": ("Test questions answered right", "Share of test questions given their right answer."),
}

# What a step is doing, by block id.
_STEPS: dict[str, str] = {
    "chat.faq-csv": "Reading your FAQ file",
    "chat.minilm-encoder": "Reading the questions with a language model",
    "chat.mpnet-encoder": "Reading the questions with a language model",
    "chat.intent-classifier": "Training the answer picker",
    "service.api": "Packaging the service",
    "compute.local": "Setting up this computer",
    "compute.rented": "Renting a machine",
    "vision.digits": "Loading the handwritten digits",
    "vision.image-folder": "Reading your images",
    "vision.augment": "Making extra training images",
    "vision.small-cnn": "Training the image reader",
    "driving.synthetic-roads": "Drawing road pictures",
    "driving.pilotnet": "Training the steering model",
    "speech.synth-commands": "Recording the command words in many voices",
    "speech.wav-folder": "Reading your recordings",
    "speech.log-mel": "Turning the sound into pictures of pitch",
    "speech.kws-cnn": "Training the command listener",
    "speech.asr-pocketsphinx": "Setting up speech recognition",
    "speech.tts-espeak": "Setting up the voice",
}

_ABBREVIATIONS = {"lr": "learning rate", "mae": "MAE", "gb": "GB", "ms": "ms", "api": "API", "cv": "CV", "id": "ID"}


def humanize(name: str) -> str:
    """A code name as words: "weight_decay" -> "Weight decay", "memory_gb" -> "Memory GB"."""
    parts = [_ABBREVIATIONS.get(p.lower(), p) for p in name.replace("-", "_").replace(".", " ").split("_") if p]
    text = " ".join(parts).strip()
    return text[:1].upper() + text[1:] if text else name


def param_words(block_id: str | None, name: str) -> tuple[str, str]:
    """The label and one-line help of setting `name` (of block `block_id`, when known)."""
    key = (block_id.split("@")[0] if block_id else "", name)
    if key in _PARAMS_BY_BLOCK:
        return _PARAMS_BY_BLOCK[key]
    if name in _PARAMS:
        return _PARAMS[name]
    return humanize(name), _block_description(block_id, name)


def metric_words(name: str) -> tuple[str, str]:
    """The label and one-line explanation of metric `name` ("accuracy" -> "Accuracy", …)."""
    if name in _METRICS:
        return _METRICS[name]
    if name.startswith("train_") and name[6:] in _METRICS:  # fit() logs train_<score> beside <score>
        label = _METRICS[name[6:]][0]
        return f"{label} on training data", "Measured on the examples it learned from (optimistic)."
    return humanize(name), ""


def step_words(block_id: str) -> str:
    """What a step of block `block_id` is doing, in words ("Training the answer picker")."""
    block_id = block_id.split("@")[0]
    return _STEPS.get(block_id) or f"Running {humanize(block_id.split('.')[-1]).lower()}"


def _block_description(block_id: str | None, name: str) -> str:
    """The block's own description of a setting, for settings this module has no words for."""
    if block_id is None:
        return ""
    from builder.registry import all_blocks

    block_id = block_id.split("@")[0]  # "chat.faq-csv@1" as well as "chat.faq-csv"
    for cls in reversed(all_blocks()):  # the newest version of the block first
        if cls.id == block_id and name in cls.Params.model_fields:
            return cls.Params.model_fields[name].description or ""
    return ""


# Block ids are code names ("chat.faq-csv"); these words are written differently in plain text.
_WORDS = {
    "minilm": "MiniLM",
    "mpnet": "MPNet",
    "pilotnet": "PilotNet",
    "pocketsphinx": "PocketSphinx",
    "espeak": "eSpeak",
}
_ACRONYMS = {"faq", "csv", "api", "asr", "kws", "cnn", "tts", "wav", "cpu", "gpu"}


def block_name(ref: str) -> str:
    """A block's plain name from its id or ref: "chat.faq-csv@1.0.0" -> "FAQ CSV", "chat.minilm-encoder" ->
    "MiniLM encoder"."""
    words = ref.split("@")[0].split(".")[-1].replace("_", "-").split("-")
    out = [_WORDS.get(w, w.upper() if w in _ACRONYMS else w) for w in words if w]
    text = " ".join(out)
    return text[:1].upper() + text[1:]


def with_article(name: str) -> str:
    """ "MiniLM encoder" -> "a MiniLM encoder", "API" -> "an API", "FAQ CSV" -> "an FAQ CSV", "MPNet encoder" ->
    "an MPNet encoder"."""
    first = name.split(" ")[0]
    spelt = first.isupper() or first[:2].isupper()  # an acronym, or a name that starts with one: read letter by letter
    vowel = first[:1].lower() in "aeiou" or (spelt and first[:1] in "FHLMNRSX")
    return f"{'an' if vowel else 'a'} {name}"
