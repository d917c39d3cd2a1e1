"""Speech on voices it never heard: the voice-commands model trained on some speech engines, judged on flite, an
engine no training data ever uses (its clips are spoken here, in the bench, and nowhere else).

    python bench/speech_generalise.py           # the template's data and model (templates/voice-commands.yaml)
    python bench/speech_generalise.py --quick   # 8 espeak-ng voices, 2 speeds, 2 pitches, 8 epochs; 2 fine-tune epochs
    python bench/speech_generalise.py --no-ablations   # full size: the baseline, both networks, the template
    python bench/speech_generalise.py --no-ablations --seeds 3   # the template's figures: mean and worst of 3 seeds

Each row trains a keyword spotter over log-mel features on one recipe (the template's data and network settings, read
from its file, unless the row says otherwise) and answers flite's
four voices (kal, awb, rms, slt) at three speeds: the ten commands (`leave_one_engine_out_accuracy`), the same clips
through a telephone line (`phone_line_accuracy`: 300-3400 Hz, 8 kHz, mu-law), and words it was never taught, by the
same voices at the same speeds (`unknown_rejection`: answered `_unknown_`; `commands_rejected`: commands wrongly
answered `_unknown_`). The first
row is the baseline measured in the same run: espeak-ng alone, as the template was trained before. Without
`--quick` the other network (DS-CNN or BC-ResNet, whichever the template does not use) is trained on the
template's data at a similar size: the comparison that chose the template's. One training is one draw: the same
recipe at another seed (voices chosen, augmentation, initial weights) moves flite accuracy by several points, so
`--seeds N` trains the template recipe N times (seeds 0 … N-1) and its headline figures are the mean over them, with
the worst and each seed's beside them.

The user's own voice (`personalise_*`): flite's rms is the user. Copies of the template recipe's net are fine-tuned
(blocks/speech/personalise.py, as speech.kws-cnn does with `own_clips_path`) on k = 3 and 10 recordings of each command
by that voice, at speaking rates and pitches no test clip has; k = 0 is the template net itself. Each is judged on
the user's test clips (other rates, natural pitch), on flite's other voices and on the user's unseen words.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from common import print_figures, print_table

# Words no recipe ever trains on, for `unknown_rejection` (the training `_unknown_` words are others).
UNSEEN_WORDS = [
    "apple", "window", "music", "river", "paper", "garden", "orange", "table", "yellow", "pencil", "coffee", "morning",
    "bottle", "chair", "number", "silver", "tiger", "rocket", "pillow", "candle",
]  # fmt: skip
FLITE_STRETCHES = (0.85, 1.0, 1.2)
USER_VOICE = "rms"
# The user's own recordings, (duration stretch, pitch in semitones), the first 3 for k = 3; the user's test clips
# are spoken at other stretches, at the voice's own pitch.
OWN_TAKES = [(0.8, 1.0), (1.04, -1.0), (1.25, 0.5), (0.75, -0.5), (0.88, 1.5), (0.96, -1.5), (1.12, 0.0),
             (1.16, 1.0), (1.3, -1.0), (1.4, 0.5)]  # fmt: skip
USER_TEST_STRETCHES = (0.85, 0.92, 1.0, 1.08, 1.2, 1.35)
# (k own clips per command, own recordings of other words): without and with the user's other words.
PERSONAL_CASES = ((0, 0), (3, 0), (10, 0), (3, 3), (10, 10))
# Other words the user records as `_unknown_`: neither a training `_unknown_` word nor one of UNSEEN_WORDS.
OWN_OTHER_WORDS = ["hello", "water", "button", "kitchen", "dinner", "lemon", "pocket", "sunday", "travel", "wonder"]
TEMPLATE = Path(__file__).resolve().parent.parent / "templates" / "voice-commands.yaml"
ARCH_NAMES = {"ds-cnn": "DS-CNN", "bc-resnet": "BC-ResNet"}
OTHER_ARCH = {"ds-cnn": {"arch": "bc-resnet", "channels": 16}, "bc-resnet": {"arch": "ds-cnn", "channels": 48}}


def flite_set(words: list[str], stretches: tuple[float, ...], samples: int) -> tuple[np.ndarray, list[str], list[str]]:
    """Every word in each of flite's voices at each stretch: clips, words and voices."""
    from blocks.speech.audio import fit_length
    from blocks.speech.engines import FLITE_VOICES, speak_flite

    xs, ws, vs = [], [], []
    for voice in FLITE_VOICES:
        for stretch in stretches:
            for word in words:
                x = fit_length(speak_flite(word, voice, stretch), samples)
                xs.append((x / (np.abs(x).max() + 1e-6) * 0.6).astype(np.float32))
                ws.append(word)
                vs.append(voice)
    return np.stack(xs), ws, vs


def train(
    params: Any, net_params: dict[str, Any], cache: Path
) -> tuple[Any, list[str], dict, tuple[torch.Tensor, torch.Tensor]]:
    """The recipe's clips (train and held-out voices alike: flite is the test here), a KwsNet fitted on them, and the
    features and labels it was fitted on."""
    from blocks.speech.features import DEFAULT_SPEC, log_mel_module
    from blocks.speech.kws import KwsNet, KwsParams, OnFeatures, answer_bias, optimiser
    from blocks.speech.synth import SynthCommands
    from runtime.training import fit_quietly

    t0 = time.perf_counter()
    clips = SynthCommands().load(params, cache)
    speak_s = time.perf_counter() - t0
    x = np.concatenate([clips.train_x, clips.test_x])
    y = np.concatenate([clips.train_y, clips.test_y])
    t0 = time.perf_counter()
    with torch.inference_mode():
        mel = log_mel_module(DEFAULT_SPEC)
        feats = torch.cat([mel(torch.from_numpy(x[i : i + 256])) for i in range(0, len(x), 256)])
    feats = feats.clone()  # a plain tensor (not an inference one): it is trained on
    p = KwsParams(**net_params)
    torch.manual_seed(p.seed)
    bias = answer_bias(clips.labels, p.unknown_bias)
    net = KwsNet(len(clips.labels), p.channels, p.blocks, DEFAULT_SPEC, p.arch, p.utterance_norm, bias)
    trainable = OnFeatures(net, p.spec_augment, p.seed)
    fit_quietly(trainable, optimiser(net, p), feats, torch.from_numpy(y),
                epochs=p.epochs, batch_size=p.batch_size, seed=p.seed, device="cpu")  # fmt: skip
    train_s = time.perf_counter() - t0
    info = {"clips": len(y), "params": sum(w.numel() for w in net.body.parameters()), "speak_s": round(speak_s, 1),
            "train_s": round(train_s, 1)}  # fmt: skip
    return net.eval(), clips.labels, info, (feats, torch.from_numpy(y))


def predict(net: Any, x: np.ndarray) -> np.ndarray:
    from runtime.training import predicted_classes

    return predicted_classes(net, torch.from_numpy(x)).numpy()


def evaluate(net: Any, labels: list[str], commands: tuple, unknown: tuple) -> dict[str, Any]:
    """The figures of one trained recipe on the flite clips."""
    from blocks.speech.augment import telephone
    from blocks.speech.synth import UNKNOWN

    cx, cw, _ = commands
    ux, _, _ = unknown
    said = [labels[i] for i in predict(net, cx)]
    phone = [labels[i] for i in predict(net, np.stack([telephone(c) for c in cx]).astype(np.float32))]
    other = [labels[i] for i in predict(net, ux)]
    words = sorted(set(cw))
    return {
        "leave_one_engine_out_accuracy": round(float(np.mean([s == w for s, w in zip(said, cw, strict=True)])), 4),
        "phone_line_accuracy": round(float(np.mean([s == w for s, w in zip(phone, cw, strict=True)])), 4),
        "unknown_rejection": round(float(np.mean([s == UNKNOWN for s in other])), 4),
        "commands_rejected": round(float(np.mean([s == UNKNOWN for s in said])), 4),
        "per_word_recall": {
            w: round(float(np.mean([s == w for s, ww in zip(said, cw, strict=True) if ww == w])), 3) for w in words
        },
    }


def user_clip(word: str, stretch: float, semitones: float, samples: int) -> np.ndarray:
    """`word` as the user records it: flite's USER_VOICE at `stretch` × its durations, `semitones` higher, checked
    and cut to the clip around its sound as speech.kws-cnn does with own recordings."""
    from blocks.speech.augment import pitch_shift
    from blocks.speech.engines import speak_flite
    from blocks.speech.personalise import recording_problem, word_window

    x = speak_flite(word, USER_VOICE, stretch)
    x = pitch_shift(x, semitones) if semitones else x
    x = (x / (np.abs(x).max() + 1e-6) * 0.6).astype(np.float32)
    problem = recording_problem(x)
    if problem:
        raise SystemExit(f"the user's {word!r} at stretch {stretch}, {semitones:+} semitones: {problem}")
    return word_window(x, samples)


def accuracy(net: Any, labels: list[str], x: np.ndarray, words: list[str]) -> float:
    return round(float(np.mean([labels[i] == w for i, w in zip(predict(net, x), words, strict=True)])), 4)


def personalise(
    net: Any, labels: list[str], base: tuple, commands: tuple, unknown: tuple, cases: tuple, epochs: int | None = None
) -> list[dict]:
    """Copies of `net` fine-tuned, for each (k, m) in `cases`, on k own recordings of each command and m of other
    words (`_unknown_`, one word each) as speech.kws-cnn does with its default params ((0, 0): `net` itself), judged
    on the user's test clips, flite's other voices and the user's unseen words. `epochs` replaces the default
    fine-tuning passes (--quick)."""
    import copy

    from blocks.speech.kws import KwsParams, fine_tune
    from blocks.speech.personalise import LR_FACTOR
    from blocks.speech.synth import COMMANDS, UNKNOWN

    p, samples = KwsParams(), 16000
    test = [(w, s) for s in USER_TEST_STRETCHES for w in COMMANDS]
    test_x = np.stack([user_clip(w, s, 0.0, samples) for w, s in test])
    cx, cw, cv = commands
    others = [i for i, v in enumerate(cv) if v != USER_VOICE]
    ux, _, uv = unknown
    unseen = ux[[i for i, v in enumerate(uv) if v == USER_VOICE]]
    most = max(k for k, _ in cases)
    own = {(w, t): user_clip(w, *t, samples) for t in OWN_TAKES[:most] for w in COMMANDS}
    own_other = [user_clip(w, *t, samples) for w, t in zip(OWN_OTHER_WORDS, OWN_TAKES, strict=True)]
    rows = []
    for k, m in cases:
        t0 = time.perf_counter()
        tuned = copy.deepcopy(net)
        if k or m:
            pairs = [(w, t) for t in OWN_TAKES[:k] for w in COMMANDS]
            own_x = np.stack([own[pair] for pair in pairs] + own_other[:m])
            own_y = np.array([labels.index(w) for w, _ in pairs] + [labels.index(UNKNOWN)] * m, dtype=np.int64)
            fine_tune(tuned, own_x, own_y, *base, epochs=epochs or p.own_epochs, lr=p.lr * LR_FACTOR,
                      batch_size=p.batch_size, spec_augment=p.spec_augment, seed=p.seed, device="cpu")  # fmt: skip
        rows.append(
            {
                "k": k,
                "other_words": m,
                "own_clips": k * len(COMMANDS) + m,
                "user_accuracy": accuracy(tuned, labels, test_x, [w for w, _ in test]),
                "other_voices_accuracy": accuracy(tuned, labels, cx[others], [cw[i] for i in others]),
                "user_unknown_rejection": accuracy(tuned, labels, unseen, [UNKNOWN] * len(unseen)),
                "fine_tune_s": round(time.perf_counter() - t0, 1),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer voices, speeds, pitches and epochs")
    parser.add_argument("--no-ablations", action="store_true", help="only the baseline and the template's recipe")
    parser.add_argument("--seeds", type=int, default=1, help="train the template recipe at this many seeds (mean)")
    args = parser.parse_args()

    from blocks.speech.kws import KwsParams
    from blocks.speech.synth import COMMANDS, SynthParams

    torch.set_num_threads(max(1, torch.get_num_threads()))
    # The template's own data and model settings: the bench measures what users get.
    blocks = yaml.safe_load(TEMPLATE.read_text())["blocks"]
    base, net = dict(blocks["speech"]["params"]), dict(blocks["kws"]["params"])
    stretches, unseen = FLITE_STRETCHES, UNSEEN_WORDS
    own_epochs = None  # the fine-tune's default passes (KwsParams.own_epochs)
    if args.quick:
        # Two fine-tuning passes instead of five: the fine-tunes were two thirds of the quick run's training.
        base.update(voices=8, speeds=[140, 180], pitches=[40, 60])
        net.update(epochs=8, channels=net.get("channels", 48) // 2)
        stretches, unseen, own_epochs = (1.0,), UNSEEN_WORDS[:10], 2
    arch = KwsParams(**net).arch
    plain = {"speed": 0.0, "pitch": 0.0, "vtlp": 0.0, "shift_ms": 0.0, "noise_share": 0.0, "reverb": 0.0,
             "telephone": 0.0, "balance": False, "clean_copy": False}  # fmt: skip
    before = {
        "arch": "ds-cnn",
        "channels": 24 if args.quick else 48,  # --quick halves it as it halves the template's net
        "blocks": 4,
        "spec_augment": False,
        "lr": 0.003,
        "lr_schedule": "constant",
        "utterance_norm": False,
        "unknown_bias": 0.0,
    }
    recipes = [
        (
            "espeak-ng, noise and reverb only, DS-CNN (before)",
            {**plain, "engines": ["espeak-ng"], "noise_share": 0.75, "reverb": 0.5, "unknown_distinct_copies": False},
            {**net, **before},
        ),  # fmt: skip
        (f"espeak-ng + festival, augmented, {ARCH_NAMES[arch]} (template)", {}, net),
    ]
    if not args.quick:
        # The other architecture at a similar size (~15k and ~27k weights) on the template's data.
        other = OTHER_ARCH[arch]
        recipes.insert(1, (f"espeak-ng + festival, augmented, {ARCH_NAMES[other['arch']]}", {}, {**net, **other}))
    if not args.quick and not args.no_ablations:
        recipes.insert(1, ("espeak-ng, augmented", {"engines": ["espeak-ng"]}, net))
        recipes.insert(2, ("espeak-ng + festival, not augmented", plain, {**net, "spec_augment": False}))

    commands = flite_set(COMMANDS, stretches, 16000)
    unknown = flite_set(unseen, stretches, 16000)  # the same voices at the same speeds as the commands
    keys = ["leave_one_engine_out_accuracy", "phone_line_accuracy", "unknown_rejection", "commands_rejected"]
    rows, results = [], []
    with tempfile.TemporaryDirectory(prefix="aib-bench-speech-") as tmp:
        for name, overrides, net_params in recipes:
            params = SynthParams(**{**base, **overrides})
            model, labels, info, fitted_on = train(params, net_params, Path(tmp))
            figures = {**evaluate(model, labels, commands, unknown), **info}
            results.append((name, figures))
            rows.append([name, info["clips"], info["params"], *[figures[k] for k in keys], info["speak_s"],
                         info["train_s"]])  # fmt: skip
        # The template recipe at more seeds: its figures become the mean (the seed-0 net stays the one fine-tuned).
        draws = [results[-1][1]]
        for seed in range(1, max(1, args.seeds)):
            params = SynthParams(**{**base, "seed": seed})
            _net, seed_labels, info, _ = train(params, {**net, "seed": seed}, Path(tmp))
            draws.append({**evaluate(_net, seed_labels, commands, unknown), **info})
    over_seeds = {}
    if len(draws) > 1:
        print_table(
            f"the template recipe at {len(draws)} seeds (voices chosen, augmentation, initial weights)",
            ["seed", *keys, "train s"],
            [[i, *[d[k] for k in keys], d["train_s"]] for i, d in enumerate(draws)],
        )
        worst = {"commands_rejected": max}  # the others: higher is better
        over_seeds = {
            **{k: round(float(np.mean([d[k] for d in draws])), 4) for k in keys},
            **{f"{k}_worst": worst.get(k, min)(d[k] for d in draws) for k in keys},
            **{f"{k}_by_seed": [d[k] for d in draws] for k in keys},
            "seeds": len(draws),
        }
    # The template recipe is the last row: its net is the one the user's own recordings fine-tune.
    cases = tuple(c for c in PERSONAL_CASES if c != (3, 3)) if args.quick else PERSONAL_CASES
    personal = personalise(model, labels, fitted_on, commands, unknown, cases, own_epochs)
    print_table(
        f"train engines -> flite ({len(commands[1])} command clips, {len(unknown[1])} unseen-word clips, 4 voices)",
        ["recipe", "clips", "weights", "flite acc", "phone acc", "unknown rej", "cmd rejected", "speak s", "train s"],
        rows,
    )
    best = results[-1][1]
    print_table("per-word recall on flite (template recipe)", ["word", "recall"],
                [[w, r] for w, r in best["per_word_recall"].items()])  # fmt: skip
    print_table(
        f"the user's own voice (flite {USER_VOICE}): the template net fine-tuned on k own recordings per command",
        ["k", "other words", "own clips", "user acc", "other flite voices acc", "user unknown rej", "fine-tune s"],
        [list(r.values()) for r in personal],
    )
    by_k = {r["k"]: r["user_accuracy"] for r in personal if not r["other_words"]}
    with_other = {r["k"]: r["user_unknown_rejection"] for r in personal if r["other_words"]}
    baseline = results[0][1]
    print_figures(
        {
            **{f"personalise_accuracy_k{k}": a for k, a in by_k.items()},
            "personalise_gain": round(by_k[10] - by_k[0], 4),
            **{f"personalise_unknown_rejection_k{k}_with_other_words": r for k, r in with_other.items()},
            "personalise": personal,
            "quick": args.quick,
            "leave_one_engine_out_accuracy": best["leave_one_engine_out_accuracy"],
            "phone_line_accuracy": best["phone_line_accuracy"],
            "unknown_rejection": best["unknown_rejection"],
            "commands_rejected": best["commands_rejected"],
            "baseline_leave_one_engine_out_accuracy": baseline["leave_one_engine_out_accuracy"],
            "baseline_phone_line_accuracy": baseline["phone_line_accuracy"],
            "accuracy_gain_over_baseline": round(
                over_seeds.get("leave_one_engine_out_accuracy", best["leave_one_engine_out_accuracy"])
                - baseline["leave_one_engine_out_accuracy"],
                4,
            ),
            "train_s": best["train_s"],
            "speak_s": best["speak_s"],
            "clips": best["clips"],
            "recipes": {name: {k: v for k, v in f.items() if k != "per_word_recall"} for name, f in results},
            **over_seeds,  # with --seeds N: the template's figures are the mean over N trainings
        }
    )


if __name__ == "__main__":
    main()
