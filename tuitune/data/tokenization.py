"""Tokenized training examples: `input_ids` plus a `completion_mask` marking the tokens with loss.

How the trainer must configure TRL (1.16) for a dataset from `build_training_dataset`: see
`SFT_SETTINGS` and `build_training_dataset`'s docstring.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from tuitune.data import problems as P
from tuitune.data.normalize import Row
from tuitune.data.problems import Problem
from tuitune.data.rendering import Rendered, TemplateFailure, preference_refusal, render_row
from tuitune.errors import TuituneError

# The SFTConfig fields the trainer must set (besides max_length=max_seq_length, packing=packing).
SFT_SETTINGS: dict[str, Any] = {
    # TRL folds `completion_mask` into the labels only when this is True; left at its default
    # (None) it is inferred False for a pre-tokenized dataset and every token would get loss.
    "completion_only_loss": True,
    # TRL's own assistant masking needs {% generation %} markers; our mask replaces it.
    "assistant_only_loss": False,
}


@dataclass
class TokenizedRows:
    input_ids: list[list[int]] = field(default_factory=list)
    completion_mask: list[list[int]] = field(default_factory=list)
    numbers: list[int] = field(default_factory=list)     # source row of each example (1-based)
    problems: list[Problem] = field(default_factory=list)

    @property
    def truncated(self) -> int:
        return sum(1 for p in self.problems if p.kind == P.TOO_LONG)

    @property
    def dropped(self) -> int:
        return len({p.row for p in self.problems if p.drops_row})

    def to_dataset(self):
        from datasets import Dataset

        return Dataset.from_dict({"input_ids": self.input_ids,
                                  "completion_mask": self.completion_mask})


def _offsets_supported(tokenizer) -> bool:
    return bool(getattr(tokenizer, "is_fast", False))


def _mask_from_offsets(offsets, spans: list[tuple[int, int]]) -> list[int]:
    """1 for each token whose characters overlap a span (special tokens included)."""
    return [1 if end > start and any(start < s_end and end > s_start for s_start, s_end in spans)
            else 0 for start, end in offsets]


def _encode_pieces(rendered: Rendered, tokenizer, responses_only: bool) -> tuple[list[int], list[int]]:
    """For slow tokenizers (no offsets): tokenize the pieces between span boundaries apart."""
    ids: list[int] = []
    mask: list[int] = []
    cuts = sorted({0, len(rendered.text), *(b for span in rendered.spans for b in span)})
    for index, (start, end) in enumerate(zip(cuts, cuts[1:])):
        piece = tokenizer(rendered.text[start:end],
                          add_special_tokens=rendered.add_special_tokens and index == 0)["input_ids"]
        inside = any(s <= start and end <= e for s, e in rendered.spans)
        ids.extend(piece)
        mask.extend([1 if (inside or not responses_only) else 0] * len(piece))
    return ids, mask


def encode_batch(items: list[tuple[Rendered, bool]], tokenizer) -> list[tuple[list[int], list[int]]]:
    """(input_ids, mask) for each (rendered text, responses_only), tokenized in batches."""
    out: list = [None] * len(items)
    if not _offsets_supported(tokenizer):
        return [_encode_pieces(rendered, tokenizer, only) for rendered, only in items]
    for special in (False, True):
        chosen = [i for i, (rendered, _) in enumerate(items) if rendered.add_special_tokens is special]
        if not chosen:
            continue
        enc = tokenizer([items[i][0].text for i in chosen], add_special_tokens=special,
                        return_offsets_mapping=True)
        for position, i in enumerate(chosen):
            rendered, only = items[i]
            ids = list(enc["input_ids"][position])
            mask = (_mask_from_offsets(enc["offset_mapping"][position], rendered.spans) if only
                    else [1] * len(ids))
            out[i] = (ids, mask)
    return out


def encode_rendered(rendered: Rendered, tokenizer, responses_only: bool) -> tuple[list[int], list[int]]:
    """Token ids of the rendered text and, per token, 1 when it gets loss."""
    return encode_batch([(rendered, responses_only)], tokenizer)[0]


def _finish(row: Row, ids: list[int], mask: list[int], tokenizer) -> tuple[list[int], list[int]]:
    eos_id = getattr(tokenizer, "eos_token_id", None)
    if row.kind == "text" and eos_id is not None and (not ids or ids[-1] != eos_id):
        ids.append(eos_id)
        mask.append(1)
    return ids, mask


def encode_row(row: Row, tokenizer, *, responses_only: bool = True,
               system_prompt: str | None = None) -> tuple[list[int], list[int]]:
    """(input_ids, completion_mask) of one row, untruncated. Plain text gets loss everywhere."""
    rendered = render_row(row, tokenizer, system_prompt=system_prompt)
    ids, mask = encode_rendered(rendered, tokenizer, responses_only and row.kind != "text")
    return _finish(row, ids, mask, tokenizer)


def _iter_rows(data: Any) -> Iterator[Row]:
    """Canonical rows of a LoadedData (its rows may be lazy), a list of Rows, or dicts."""
    rows = getattr(data, "rows", data)
    for index, row in enumerate(rows, start=1):
        if isinstance(row, Row):
            yield row
        elif isinstance(row, dict) and "messages" in row:
            yield Row(row.get("row", index), messages=row["messages"])
        elif isinstance(row, dict) and "text" in row:
            yield Row(row.get("row", index), text=row["text"])
        elif isinstance(row, dict) and "chosen" in row:
            yield Row(index, messages=row.get("prompt") or [], chosen=row["chosen"],
                      rejected=row.get("rejected"))
        else:
            raise TuituneError(f"Row {index} is not a canonical row (expected a Row, or a dict "
                               "with `messages` or `text`). Load data with tuitune.data.load_rows.")


def _add(out: TokenizedRows, row: Row, ids: list[int], mask: list[int], max_seq_length: int,
         packing: bool) -> None:
    """Append one encoded row to `out`, truncating (or, packed plain text, splitting) it."""
    chunks = [(ids, mask)]
    if len(ids) > max_seq_length:
        if packing and row.kind == "text":
            chunks = [(ids[i:i + max_seq_length], mask[i:i + max_seq_length])
                      for i in range(0, len(ids), max_seq_length)]
            out.problems.append(Problem(row.number, P.TOO_LONG,
                                        f"{len(ids)} tokens, over the max sequence length "
                                        f"{max_seq_length}; split into {len(chunks)} pieces"))
        else:
            chunks = [(ids[:max_seq_length], mask[:max_seq_length])]
            out.problems.append(Problem(row.number, P.TOO_LONG,
                                        f"{len(ids)} tokens, over the max sequence length "
                                        f"{max_seq_length}; truncated to the first "
                                        f"{max_seq_length}"))
    for chunk_ids, chunk_mask in chunks:
        if not any(chunk_mask):
            out.problems.append(Problem(row.number, P.NO_LOSS_TOKENS,
                                        "after truncation no assistant token is left; raise "
                                        "the max sequence length or shorten the prompt"))
            continue
        out.input_ids.append(chunk_ids)
        out.completion_mask.append(chunk_mask)
        out.numbers.append(row.number)


def tokenized_batches(data: Any, tokenizer, *, max_seq_length: int, responses_only: bool = True,
                      packing: bool = False, system_prompt: str | None = None,
                      batch_size: int = 256) -> Iterator[TokenizedRows]:
    """`tokenize_rows` one batch of rows at a time, reading the rows as it goes (a large dataset is
    never held whole). Raises TuituneError at the first preference pair."""
    if max_seq_length < 1:
        raise TuituneError(f"max_seq_length must be at least 1 (got {max_seq_length}).")
    out = TokenizedRows()
    pending: list[tuple[Row, Rendered]] = []

    def flush() -> TokenizedRows:
        nonlocal out
        encoded = encode_batch([(r, responses_only and row.kind != "text") for row, r in pending],
                               tokenizer)
        for (row, _), (ids, mask) in zip(pending, encoded):
            _add(out, row, *_finish(row, ids, mask, tokenizer), max_seq_length, packing)
        pending.clear()
        done, out = out, TokenizedRows()
        return done

    for row in _iter_rows(data):
        if row.kind == "preference":
            raise TuituneError(preference_refusal())
        try:
            pending.append((row, render_row(row, tokenizer, system_prompt=system_prompt)))
        except TemplateFailure as exc:
            out.problems.append(Problem(row.number, P.TEMPLATE_ERROR, str(exc)))
        if len(pending) >= batch_size:
            yield flush()
    yield flush()


def tokenize_rows(data: Any, tokenizer, *, max_seq_length: int, responses_only: bool = True,
                  packing: bool = False, system_prompt: str | None = None,
                  batch_size: int = 256) -> TokenizedRows:
    """Tokenize canonical rows (a LoadedData, Rows, or dicts with `messages`/`text`).

    Rows over `max_seq_length` tokens are truncated (keeping the start) and reported as
    `too_long`; with `packing`, plain-text rows are split into `max_seq_length` chunks instead,
    so continued pretraining loses no text. Rows left with no loss token are dropped.
    """
    out = TokenizedRows()
    for batch in tokenized_batches(data, tokenizer, max_seq_length=max_seq_length,
                                   responses_only=responses_only, packing=packing,
                                   system_prompt=system_prompt, batch_size=batch_size):
        out.input_ids.extend(batch.input_ids)
        out.completion_mask.extend(batch.completion_mask)
        out.numbers.extend(batch.numbers)
        out.problems.extend(batch.problems)
    out.problems.sort(key=lambda p: p.row)
    return out


def write_tokenized(batches: Iterable[TokenizedRows], path: Path) -> tuple[int, list[Problem]]:
    """Write examples to an Arrow file (the format `datasets.Dataset.from_file` memory-maps), one
    batch at a time. Returns (examples written, the first few problems)."""
    import pyarrow as pa

    ids_type, mask_type = pa.list_(pa.int32()), pa.list_(pa.int8())
    schema = pa.schema([("input_ids", ids_type), ("completion_mask", mask_type)])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    written, problems = 0, []
    try:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
            for batch in batches:
                if len(problems) < 3:
                    problems.extend(batch.problems[: 3 - len(problems)])
                if batch.input_ids:
                    writer.write_batch(pa.record_batch(
                        [pa.array(batch.input_ids, ids_type), pa.array(batch.completion_mask, mask_type)],
                        schema=schema))
                    written += len(batch.input_ids)
        os.replace(tmp, path)
    except OSError as exc:
        raise TuituneError(f"Cannot write the tokenized data to {path.parent} ({exc.strerror or exc}). "
                           "Free some disk space, or choose another runs folder with --output.") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return written, problems


def build_training_dataset(data: Any, tokenizer, *, max_seq_length: int, responses_only: bool,
                           packing: bool, system_prompt: str | None = None,
                           format: str | None = None, cache_dir: str | Path | None = None):
    """A `datasets.Dataset` with columns `input_ids` and `completion_mask`, one row per example.

    `completion_mask` is 1 on tokens that get loss: all of them when `responses_only` is False or
    the row is plain text; otherwise every assistant reply of every turn and the end-of-turn
    token after each (the eos after each reply with the Alpaca prompt). Rows are truncated to
    `max_seq_length`; packing itself is left to TRL.

    TRL 1.16's SFTTrainer recognises the dataset as pre-tokenized (it has `input_ids`) and skips
    its own templating and tokenization. It turns `completion_mask` into labels (-100 where 0)
    ONLY when `completion_only_loss=True`; with the default (None) it infers False for such a
    dataset and silently trains on every token. The trainer must therefore pass::

        SFTConfig(
            completion_only_loss=True,    # required, see above
            assistant_only_loss=False,    # our mask replaces TRL's template-marker masking
            max_length=max_seq_length,    # TRL truncates (keep_start) or packs to this length
            packing=packing,              # TRL packs with its default "bfd" strategy
            # leave dataset_kwargs["skip_prepare_dataset"] unset: preparation builds `labels`
            # from the mask, and TRL refuses mask columns without labels when it is skipped
        )

    (`SFT_SETTINGS` holds the first two.) The default collator pads input_ids and labels; with
    packing, TRL keeps `labels` through `pack_dataset` and adds `seq_lengths`.

    `data` is a LoadedData, a list of Rows, or dicts with `messages` or `text`; `format` (the
    loaded format, optional) only lets preference data be refused before any work. With
    `cache_dir`, rows are tokenized a batch at a time into an Arrow file there and the dataset
    memory-maps it (as do the caches TRL's preparation writes beside it): nothing grows with the
    dataset's size but the disk. Without it, the dataset is built in memory.
    Raises TuituneError for preference pairs (DPO) and when no row is left to train on.
    Use `tokenize_rows` to get the per-row problems (truncations, template errors) as well.
    """
    if format == "preference" or getattr(data, "format", None) == "preference":
        raise TuituneError(preference_refusal())
    if cache_dir is not None:
        from datasets import Dataset

        path = Path(cache_dir) / "tokenized.arrow"
        written, problems = write_tokenized(tokenized_batches(
            data, tokenizer, max_seq_length=max_seq_length, responses_only=responses_only,
            packing=packing, system_prompt=system_prompt), path)
        if not written:
            reasons = "; ".join(str(p) for p in problems) or "the dataset has no rows"
            raise TuituneError(f"No row is left to train on after tokenization ({reasons}).")
        return Dataset.from_file(str(path))
    tokenized = tokenize_rows(data, tokenizer, max_seq_length=max_seq_length,
                              responses_only=responses_only, packing=packing,
                              system_prompt=system_prompt)
    if not tokenized.input_ids:
        reasons = "; ".join(str(p) for p in tokenized.problems[:3]) or "the dataset has no rows"
        raise TuituneError(f"No row is left to train on after tokenization ({reasons}).")
    return tokenized.to_dataset()


def token_lengths(rows: Iterable[Row], tokenizer, *, system_prompt: str | None = None,
                  batch_size: int = 256) -> tuple[list[tuple[int, int]], list[Problem]]:
    """(row number, token count) of every row as it would be trained, before truncation.

    Preference pairs count the longer of prompt+chosen and prompt+rejected. Rows the chat
    template refuses are reported as problems instead.
    """
    longest: dict[int, int] = {}
    problems: list[Problem] = []
    batch: list[tuple[int, str, bool]] = []

    def flush() -> None:
        for special in (False, True):
            group = [(number, text) for number, text, s in batch if s is special]
            if group:
                encoded = tokenizer([text for _, text in group],
                                    add_special_tokens=special)["input_ids"]
                for (number, _), ids in zip(group, encoded):
                    longest[number] = max(longest.get(number, 0), len(ids))
        batch.clear()

    for row in rows:
        variants = [row]
        if row.kind == "preference":
            variants = [Row(row.number, messages=row.messages + row.chosen),
                        Row(row.number, messages=row.messages + row.rejected)]
        try:
            rendered = [render_row(v, tokenizer, system_prompt=system_prompt, spans=False)
                        for v in variants]
        except TemplateFailure as exc:
            problems.append(Problem(row.number, P.TEMPLATE_ERROR, str(exc)))
            continue
        batch.extend((row.number, r.text, r.add_special_tokens) for r in rendered)
        if len(batch) >= batch_size:
            flush()
    flush()
    return sorted(longest.items()), problems
