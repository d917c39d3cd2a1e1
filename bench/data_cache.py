"""Digitized-data cache: one epoch of the speech template's features read from cached shards vs. computed
from the raw audio files, and one training epoch on top of each.

    python bench/data_cache.py           # the voice-commands template's clips (24 voices; ~3,000 clips)
    python bench/data_cache.py --quick   # 8 voices, 2 speeds, 1 pitch (~430 clips)

"From raw audio" is what every epoch (and every run) costs without the cache: read each WAV file, decode it,
fit it to the clip length and compute its log-mel features. "From shards" reads the same features from the
shard store, checking every shard's sha256. `cache_speedup` compares the two data epochs; `train_epoch_speedup`
adds one epoch of the template's DS-CNN training to both, so it shows what a training run gains.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import median, print_figures, print_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer voices")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from blocks.speech.audio import decode_audio, encode_wav, fit_length
    from blocks.speech.features import DEFAULT_SPEC, clips_hash, compute_features, log_mel_module
    from blocks.speech.kws import KwsNet, OnFeatures
    from blocks.speech.synth import SynthCommands, SynthParams
    from runtime.config import Settings
    from runtime.context import StepContext
    from runtime.shards import ShardStore
    from runtime.training import fit

    torch.set_num_threads(max(1, torch.get_num_threads()))
    work = Path(tempfile.mkdtemp(prefix="aib-bench-cache-"))
    # --quick: 2 of the 9 speed x pitch combinations; speaking (Festival's above all) was most of the quick run.
    params = SynthParams(voices=8, speeds=[140, 180], pitches=[50]) if args.quick else SynthParams(voices=24)
    t0 = time.perf_counter()
    clips = SynthCommands().load(params, work / "synth")
    print(f"{len(clips.train_x)} training clips spoken in {time.perf_counter() - t0:.1f} s")

    # The raw audio, as files on disk (16 kHz mono 16-bit WAV: the cheapest raw form to decode).
    raw_dir = work / "raw"
    files = []
    for i, (x, y) in enumerate(zip(clips.train_x, clips.train_y, strict=True)):
        path = raw_dir / clips.labels[y] / f"{i:05d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode_wav(x))
        files.append(path)
    samples = clips.train_x.shape[1]
    module = log_mel_module(DEFAULT_SPEC)

    def epoch_from_raw() -> np.ndarray:
        out = []
        with torch.inference_mode():
            for i in range(0, len(files), 256):
                batch = np.stack([fit_length(decode_audio(p.read_bytes()), samples) for p in files[i : i + 256]])
                out.append(module(torch.from_numpy(batch)).numpy())
        return np.concatenate(out)

    store = ShardStore(work / "shards")
    t0 = time.perf_counter()
    built = compute_features(store, clips, DEFAULT_SPEC)
    build_s = time.perf_counter() - t0
    raw_hash = clips_hash(clips)

    def epoch_from_shards() -> np.ndarray:
        return store.load(raw_hash, DEFAULT_SPEC)["train"]

    # The two paths give the same features (WAV quantisation aside).
    assert np.abs(epoch_from_raw() - built.train).mean() < 0.05
    raw_s, shard_s = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        raw_feats = epoch_from_raw()
        raw_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        cached = epoch_from_shards()
        shard_s.append(time.perf_counter() - t0)
    assert cached.shape == raw_feats.shape

    # One training epoch of the template's model on the features (the same for both paths), in a step context
    # of its own (a private home under the work folder: no checkpoint of an earlier run is resumed).
    ctx = StepContext(run_id="bench", node_id="classifier", cache_key="data-cache", device="cpu", base_dir=work,
                      settings=Settings(home=work / "home", database_url="sqlite://"), plan={})  # fmt: skip
    torch.manual_seed(0)
    net = KwsNet(len(clips.labels), channels=48)
    x = torch.from_numpy(cached)
    y = torch.from_numpy(clips.train_y)
    t0 = time.perf_counter()
    fit(ctx, OnFeatures(net), torch.optim.Adam(net.parameters(), 0.003), (x, y, x[:64], y[:64]), epochs=1,
        batch_size=64, seed=0)  # fmt: skip
    train_s = time.perf_counter() - t0

    raw_m, shard_m = median(raw_s), median(shard_s)
    mb = sum(e.bytes for e in store.entries()) / 1e6
    shutil.rmtree(work, ignore_errors=True)  # the clips, WAV files and shards of this run
    rows = [
        ["features from raw WAV files", len(files), round(raw_m, 3), 1.0],
        ["features from cached shards (sha256 checked)", len(files), round(shard_m, 4), round(raw_m / shard_m, 1)],
        ["training epoch + raw features", len(files), round(raw_m + train_s, 2), 1.0],
        ["training epoch + cached shards", len(files), round(shard_m + train_s, 2),
         round((raw_m + train_s) / (shard_m + train_s), 2)],
    ]  # fmt: skip
    print_table("one epoch of the speech template's training clips", ["path", "clips", "seconds", "speedup"], rows)
    print_figures(
        {
            "quick": args.quick,
            "clips": len(files),
            "raw_epoch_s": round(raw_m, 4),
            "shard_epoch_s": round(shard_m, 4),
            "cache_speedup": round(raw_m / shard_m, 1),
            "train_epoch_s": round(train_s, 3),
            "train_epoch_speedup": round((raw_m + train_s) / (shard_m + train_s), 2),
            "first_build_s": round(build_s, 3),
            "shard_mb": round(mb, 1),
        }
    )


if __name__ == "__main__":
    main()
