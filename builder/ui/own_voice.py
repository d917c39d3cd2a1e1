"""Your own voice: say each command word into the microphone (or upload recordings) for a keyword-spotting pipeline.

Each recording is decoded, cut to the word (the silence before and after it dropped), checked as the run checks it
(silent, clipped, too short, too long: `blocks.speech.personalise.recording_problem`) and, when usable, kept as a
16 kHz WAV in the pipeline's own folder, `own-voice/<word>/NNN.wav`; a refused one is named with its reason in one
sentence. "Use my recordings" points the model node's `own_clips_path` at that folder, so the next run also learns
the user's voice. The pure functions come first; `show` and `use_button` draw them with Streamlit.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st

from blocks.speech.audio import SAMPLE_RATE, decode_audio, encode_wav
from blocks.speech.personalise import MIN_CLIPS_PER_WORD, max_recording_seconds, recording_problem, sound_span
from blocks.speech.synth import COMMANDS, UNKNOWN
from blocks.speech.wav_folder import AUDIO_SUFFIXES, MAX_FILE_BYTES
from builder.errors import BadItem
from builder.pipeline import EDGE
from builder.ui.draft import Draft, DraftError

__all__ = [
    "OWN_VOICE",
    "VoiceTask",
    "count_words",
    "in_use",
    "keep",
    "not_ready",
    "recordings",
    "remove",
    "show",
    "shown",
    "stop_using",
    "task_for",
    "trained_pipeline",
    "use",
    "use_button",
]

OWN_VOICE = "own-voice"  # the folder, inside the pipeline's, that holds the recordings (one sub-folder per word)
KWS, SYNTH = "speech.kws-cnn", "speech.synth-commands"
MARGIN_SECONDS = 0.25  # kept before and after the word when a recording is cut to it
_NUMBERED = re.compile(r"^(\d+)\.wav$")


@dataclass(frozen=True)
class VoiceTask:
    """What to record for one keyword model node: its words (and `_unknown_`, other words, when it learns them) and
    the longest recording its clips allow."""

    kws: str
    words: list[str]
    max_seconds: float


def _node(draft: Draft, node_id: str, key: str) -> object:
    """A node's `use` or `params` as written (None for a node that is not a mapping: the YAML tab names it)."""
    node = draft.blocks.get(node_id)
    return node.get(key) if isinstance(node, dict) else None


def _block_id(draft: Draft, node_id: str) -> str | None:
    ref = _node(draft, node_id, "use")
    return ref.split("@")[0] if isinstance(ref, str) else None


def _reached(draft: Draft, start: str, downstream: bool) -> list[str]:
    """The nodes reached from `start` along the edges (forwards or backwards), nearest first."""
    links: dict[str, list[str]] = {}
    for edge in draft.edges:
        m = EDGE.match(edge) if isinstance(edge, str) else None
        if m:
            src, dst = m.group(1), m.group(3)
            a, b = (src, dst) if downstream else (dst, src)
            links.setdefault(a, []).append(b)
    seen, queue, out = {start}, deque([start]), []
    while queue:
        for nxt in links.get(queue.popleft(), []):
            if nxt not in seen:
                seen.add(nxt)
                out.append(nxt)
                queue.append(nxt)
    return out


def _first(draft: Draft, nodes: list[str], block_id: str) -> str | None:
    return next((n for n in nodes if _block_id(draft, n) == block_id), None)


def task_for(draft: Draft, node_id: str | None = None) -> VoiceTask | None:
    """What to record for the keyword model that `node_id` is (or whose spoken words it makes), or for the
    pipeline's first keyword model when no node is given; None when there is no keyword model fed by spoken words.

    The words are the `speech.synth-commands` node's (its default ten when it names none), then `_unknown_` unless
    that node learns no other words: the user's own other words teach the model that their voice alone is no
    command (fine-tuned on commands only, it answered a command to most of them)."""
    if node_id is None:
        node_id = next((n for n in draft.blocks if _block_id(draft, n) == KWS), None)
        if node_id is None:
            return None
    kind = _block_id(draft, node_id)
    if kind == KWS:
        kws, synth = node_id, _first(draft, _reached(draft, node_id, downstream=False), SYNTH)
    elif kind == SYNTH:
        kws, synth = _first(draft, _reached(draft, node_id, downstream=True), KWS), node_id
    else:
        return None
    if kws is None or synth is None:
        return None
    params = _node(draft, synth, "params")
    params = params if isinstance(params, dict) else {}
    raw = params.get("words")
    words = [str(w) for w in raw] if isinstance(raw, list) and raw else list(COMMANDS)
    # A word becomes a folder name: one that cannot be one is not offered (the run would never find it).
    words = [w for w in dict.fromkeys(words) if w.strip() and "/" not in w and "\\" not in w and w[0] != "."]
    if params.get("unknown", True) is not False and UNKNOWN not in words:
        words.append(UNKNOWN)
    seconds = params.get("seconds", 1.0)
    seconds = float(seconds) if isinstance(seconds, int | float) and seconds > 0 else 1.0
    return VoiceTask(kws, words, max_recording_seconds(seconds))


def recordings(draft: Draft, words: list[str]) -> dict[str, list[str]]:
    """The file names of the recordings kept for each word, oldest first."""
    root = draft.base_dir / OWN_VOICE
    out: dict[str, list[str]] = {}
    for word in words:
        folder = root / word
        found = folder.iterdir() if folder.is_dir() else ()
        out[word] = sorted(
            p.name for p in found if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES and not p.name.startswith(".")
        )
    return out


def shown(word: str) -> str:
    """A word as the page names it: `_unknown_` is "other words"."""
    return "other words" if word == UNKNOWN else word


def count_words(n: int) -> str:
    """How many recordings a word has and how many more it needs, in words."""
    if n == 0:
        return f"No recordings yet: record {MIN_CLIPS_PER_WORD} (a word you skip keeps the computer voices only)."
    if n < MIN_CLIPS_PER_WORD:
        return f"{n} recording{'s' if n > 1 else ''}: record {MIN_CLIPS_PER_WORD - n} more."
    return f"{n} recordings: enough."


def _around_the_word(x: np.ndarray) -> np.ndarray:
    """The recording cut to its sound, with a little silence before and after (a recording made in the browser
    starts and ends with the clicks on Record and Stop, far from the word); unchanged when it holds no sound."""
    span = sound_span(x)
    if span is None:
        return x
    margin = int(MARGIN_SECONDS * SAMPLE_RATE)
    return x[max(0, span[0] - margin) : min(len(x), span[1] + margin)]


def keep(draft: Draft, word: str, data: bytes, max_seconds: float, what: str) -> str:
    """Check one recording of `word` (WAV or FLAC bytes) and keep it as the word's next WAV file; its file name.

    DraftError, one sentence starting with `what` ("This recording of “yes”", "yes-2.flac"), when it is not
    audio or cannot be used."""
    if len(data) > MAX_FILE_BYTES:
        raise DraftError(f"{what} was not kept: it is {len(data):,} bytes; the limit is {MAX_FILE_BYTES:,}.")
    try:
        x = _around_the_word(decode_audio(data))
    except BadItem as exc:
        raise DraftError(f"{what} was not kept: {exc}.") from None
    problem = recording_problem(x, max_seconds)
    if problem:
        raise DraftError(f"{what} was not kept: {problem}.")
    folder = draft.base_dir / OWN_VOICE / word
    folder.mkdir(parents=True, exist_ok=True)
    taken = [int(m.group(1)) for p in folder.iterdir() if (m := _NUMBERED.match(p.name))]
    name = f"{max(taken, default=0) + 1:03d}.wav"
    (folder / name).write_bytes(encode_wav(x))
    return name


def remove(draft: Draft, word: str, name: str) -> None:
    """Delete one kept recording of `word` (a plain file name; anything else is ignored)."""
    if Path(name).name == name and not name.startswith("."):
        (draft.base_dir / OWN_VOICE / word / name).unlink(missing_ok=True)


def not_ready(draft: Draft, task: VoiceTask) -> str | None:
    """Why the kept recordings cannot be used yet (one sentence), or None when they can."""
    counts = {w: len(names) for w, names in recordings(draft, task.words).items()}
    few = next((w for w in task.words if 0 < counts[w] < MIN_CLIPS_PER_WORD), None)
    if few is not None:
        more = MIN_CLIPS_PER_WORD - counts[few]
        n = counts[few]
        return f"“{shown(few)}” has {n} recording{'s' if n > 1 else ''}: record {more} more, or remove it."
    if not any(counts.values()):
        return f"Record at least one word {MIN_CLIPS_PER_WORD} times first."
    return None


def in_use(draft: Draft, task: VoiceTask) -> bool:
    """Whether the model node already learns from the recordings kept here."""
    params = _node(draft, task.kws, "params")
    return isinstance(params, dict) and params.get("own_clips_path") == OWN_VOICE


def _set_own_clips(draft: Draft, task: VoiceTask, value: str | None) -> None:
    from builder.ui.actions import save

    written = _node(draft, task.kws, "params")
    params = dict(written) if isinstance(written, dict) else {}
    if value:
        params["own_clips_path"] = value
    else:
        params.pop("own_clips_path", None)
    if params:
        draft.blocks[task.kws]["params"] = params
    else:
        draft.blocks[task.kws].pop("params", None)
    save(draft)


def use(draft: Draft, task: VoiceTask) -> str:
    """Point the model node at the kept recordings and save the pipeline; what it means, for the user.
    DraftError (one sentence) while they cannot be used yet."""
    reason = not_ready(draft, task)
    if reason:
        raise DraftError(reason)
    _set_own_clips(draft, task, OWN_VOICE)
    counts = recordings(draft, task.words)
    total, words = sum(map(len, counts.values())), sum(1 for w in task.words if counts[w])
    return (
        f"The next run of {task.kws} also learns your voice, from {total} recordings of {words} "
        f"word{'s' if words > 1 else ''}."
    )


def stop_using(draft: Draft, task: VoiceTask) -> None:
    """Train on the computer voices only again (the recordings stay in the pipeline's folder)."""
    _set_own_clips(draft, task, None)


def trained_pipeline(pipeline_path: str | None, current: Draft | None = None) -> Draft | None:
    """The workbench pipeline a run was started from (`current` itself when it is that one, so that the page
    editing it does not overwrite a change), or None when the run came from a file outside My pipelines."""
    from builder.ui import saved
    from builder.ui.actions import workspaces_dir

    if not pipeline_path:
        return None
    path = Path(pipeline_path)
    if path.name != "pipeline.yaml" or path.parent.parent.resolve() != workspaces_dir().resolve():
        return None
    if current is not None and current.base_dir.resolve() == path.parent.resolve():
        return current
    try:
        return saved.open_saved(path.parent.name)
    except DraftError:
        return None


# --- Streamlit ------------------------------------------------------------------------------------------------------


def _said(key: str, word: str, kind: str, text: str) -> None:
    st.session_state.setdefault(f"{key}-said", []).append((word, kind, text))


def _fresh_widgets(key: str, word: str) -> None:
    """A new recorder and uploader for the word (new keys), empty and ready for the next take."""
    st.session_state[f"{key}-take-{word}"] = st.session_state.get(f"{key}-take-{word}", 0) + 1


def _recorded(draft: Draft, task: VoiceTask, key: str, word: str, widget: str) -> None:
    clip = st.session_state.get(widget)
    if clip is None:  # the recording was cleared
        return
    st.session_state[f"{key}-said"] = []
    try:
        of = "another word" if word == UNKNOWN else f"“{word}”"
        name = keep(draft, word, clip.getvalue(), task.max_seconds, f"This recording of {of}")
    except DraftError as exc:
        _said(key, word, "error", str(exc))
        return
    _said(key, word, "success", f"Kept as {word}/{name}.")
    _fresh_widgets(key, word)


def _uploaded(draft: Draft, task: VoiceTask, key: str, word: str, widget: str) -> None:
    files = st.session_state.get(widget) or []
    if not files:
        return
    st.session_state[f"{key}-said"] = []
    kept = 0
    for f in files:
        try:
            keep(draft, word, f.getvalue(), task.max_seconds, f.name)
            kept += 1
        except DraftError as exc:
            _said(key, word, "error", str(exc))
    if kept:
        _said(key, word, "success", f"Kept {kept} recording{'s' if kept > 1 else ''} of “{shown(word)}”.")
    _fresh_widgets(key, word)


def show(draft: Draft, task: VoiceTask, key: str) -> None:
    """Per word, a recorder and an uploader, the recordings kept so far (to listen to or remove) and how many more
    are needed; `key` keeps this piece's widgets apart from others on the page."""
    st.markdown("**Your own voice**")
    st.caption(
        f"The model learns the words from computer voices. Say each word {MIN_CLIPS_PER_WORD} times into your "
        "microphone, or upload recordings of it, and it also learns your voice. Record one word per recording."
    )
    counts = recordings(draft, task.words)
    if st.session_state.get(f"{key}-word") not in task.words:  # the words were changed since
        st.session_state.pop(f"{key}-word", None)
    # The words alone: a radio whose labels change (a count) is shown with nothing picked in the browser.
    word = st.radio("Word to record", task.words, horizontal=True, key=f"{key}-word", format_func=shown)
    so_far = [f"{shown(w)} {len(counts[w])}" + (" ✓" if len(counts[w]) >= MIN_CLIPS_PER_WORD else "")
              for w in task.words]  # fmt: skip
    st.caption("Recorded so far: " + " · ".join(so_far))
    take = st.session_state.get(f"{key}-take-{word}", 0)
    recorder = f"{key}-rec-{word}-{take}"
    if word == UNKNOWN:
        st.caption("Say a word that is not one of the commands, a different one each time: the model learns to "
                   "answer “_unknown_” to your voice when it says no command.")  # fmt: skip
    said = "any other word" if word == UNKNOWN else f"“{word}”"
    st.audio_input(f"Say {said}", key=recorder, on_change=_recorded, args=(draft, task, key, word, recorder))
    uploader = f"{key}-up-{word}-{take}"
    st.file_uploader(
        f"…or upload recordings of {'other words' if word == UNKNOWN else said} (WAV or FLAC)",
        type=["wav", "flac"],
        accept_multiple_files=True,
        key=uploader,
        on_change=_uploaded,
        args=(draft, task, key, word, uploader),
    )
    for said_word, kind, text in st.session_state.get(f"{key}-said", []):
        if said_word == word:
            (st.success if kind == "success" else st.error)(text)
    st.caption(count_words(len(counts[word])))
    for name in counts[word]:
        c1, c2 = st.columns([4, 1], vertical_alignment="center")
        c1.audio((draft.base_dir / OWN_VOICE / word / name).read_bytes(), format="audio/wav")
        c2.button("Remove", key=f"{key}-remove-{word}-{name}", on_click=remove, args=(draft, word, name))
    commands = [w for w in task.words if w != UNKNOWN]
    enough = sum(1 for w in commands if len(counts[w]) >= MIN_CLIPS_PER_WORD)
    st.caption(f"Enough recordings for {enough} of {len(commands)} commands.")


def use_button(draft: Draft, task: VoiceTask, key: str, after: Callable[[str], None]) -> None:
    """ "Use my recordings" (or, once they are used, "Stop using my recordings"); `after(note)` runs once the
    pipeline has changed."""

    def _use() -> None:
        try:
            after(use(draft, task))
        except DraftError as exc:  # a recording was removed meanwhile (in another tab)
            st.session_state[f"{key}-use-error"] = str(exc)

    def _stop() -> None:
        stop_using(draft, task)
        after(f"{task.kws} learns from the computer voices only again; your recordings are kept.")

    if in_use(draft, task):
        st.info("The next run also learns your voice from these recordings.")
        st.button("Stop using my recordings", key=f"{key}-stop", on_click=_stop)
        return
    reason = not_ready(draft, task)
    st.button("Use my recordings", key=f"{key}-use", type="primary", disabled=bool(reason), on_click=_use)
    if reason:
        st.caption(reason)
    if f"{key}-use-error" in st.session_state:
        st.error(st.session_state.pop(f"{key}-use-error"))
