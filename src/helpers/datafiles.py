"""Reading the user's data files: JSONL, JSON, CSV or Parquet (or a hub dataset id), each row located by file and
line for error messages, and turned into TRL's ``messages`` rows. A service: stages 04 and 06 and the pipeline's
preflight read files through it."""

from __future__ import annotations

import csv
import hashlib
import json
import re
from pathlib import Path

from .runs import find_local, under_repo_root


class DataError(ValueError):
    """A data file the user gave cannot be read as asked; the message names the file, the row and the fix."""


def row_to_messages(row: dict, where: str) -> list[dict]:
    if "messages" in row and row["messages"] is not None:
        msgs = row["messages"]
        if isinstance(msgs, str):
            try:
                msgs = json.loads(msgs)
            except json.JSONDecodeError:
                raise DataError(f"{where}: 'messages' is a string that is not JSON") from None
        if not isinstance(msgs, list) or not msgs:
            raise DataError(f"{where}: 'messages' must be a non-empty list of {{role, content}} objects")
        for j, m in enumerate(msgs):
            if not isinstance(m, dict) or "role" not in m or "content" not in m:
                raise DataError(f"{where}: messages[{j}] is missing field 'role' or 'content'")
        if msgs[-1]["role"] != "assistant":
            raise DataError(f"{where}: the last message must be the assistant's (the answer to train on)")
        return [{"role": m["role"], "content": str(m["content"])} for m in msgs]
    response = row.get("response", row.get("output"))
    missing = [f for f, v in (("instruction", row.get("instruction")), ("response", response)) if v in (None, "")]
    if missing:
        raise DataError(f"{where}: missing field {missing[0]!r} (each row needs 'messages', or 'instruction' and "
                        "'response' -- Alpaca's 'output' and 'input' are accepted too)")
    instruction = str(row["instruction"])
    if row.get("input"):
        instruction += "\n\n" + str(row["input"])
    return [{"role": "user", "content": instruction}, {"role": "assistant", "content": str(response)}]


def looks_like_path(source: str) -> bool:
    """A file path rather than a hub id (``org/name`` ids also contain a slash, but no file suffix or backslash)."""
    return bool(re.search(r"\\|\.(jsonl?|csv|parquet)$", source, re.I)) or source.startswith((".", "/", "~"))


def no_such_file(source: str) -> DataError:
    in_repo = under_repo_root(Path(source).expanduser())
    looked = f" and {in_repo.parent}" if in_repo is not None else ""
    return DataError(f"{source}: no such file (looked in {Path.cwd()}{looked})")


def read_records(source: str) -> list[tuple[str, dict]]:
    """``(where, record)`` pairs from a JSONL, JSON, CSV or Parquet file, or a hub dataset id (its train split);
    ``where`` names the file and row (1-based line for JSONL/CSV) for error messages. A path is found by
    ``find_local`` (the working directory, then the repository root)."""
    path = find_local(source)
    if path is not None:
        suffix = path.suffix.lower()
        if suffix == ".jsonl" or (suffix == ".json" and path.read_text().lstrip()[:1] != "["):
            records = []
            with open(path) as f:
                for i, line in enumerate(f, 1):
                    if line.strip():
                        try:
                            records.append((f"{path}, line {i}", json.loads(line)))
                        except json.JSONDecodeError as err:
                            raise DataError(f"{path}, line {i}: not valid JSON ({err.msg})") from None
        elif suffix == ".json":
            records = [(f"{path}, row {i}", r) for i, r in enumerate(json.loads(path.read_text()), 1)]
        elif suffix == ".csv":
            with open(path, newline="") as f:
                records = [(f"{path}, line {i}", r) for i, r in enumerate(csv.DictReader(f), 2)]
        elif suffix == ".parquet":
            import pyarrow.parquet as pq

            records = [(f"{path}, row {i}", r) for i, r in enumerate(pq.read_table(path).to_pylist(), 1)]
        else:
            raise DataError(f"{path}: unsupported file type {suffix!r}; use .jsonl, .json, .csv or .parquet")
    else:
        if looks_like_path(source):
            raise no_such_file(source)
        from datasets import load_dataset

        try:
            ds = load_dataset(source, split="train")
        except Exception as err:
            raise DataError(f"cannot load dataset {source!r} (a hub id needs a reachable hub; otherwise give a "
                            f"local file): {type(err).__name__}: {err}") from err
        records = [(f"{source}, row {i}", r) for i, r in enumerate(ds, 1)]
    return records


def load_conversations(source: str) -> list[dict]:
    """Rows ``{"messages": [...]}`` from a JSONL, JSON, CSV or Parquet file, or a hub dataset id.

    Each row needs ``messages`` or ``instruction`` + ``response``; a bad row raises an error naming the file, the
    row (1-based line for JSONL/CSV) and the missing field.
    """
    records = read_records(source)
    rows = []
    for where, record in records:
        if not isinstance(record, dict):
            raise DataError(f"{where}: expected an object with 'messages' or 'instruction'/'response'")
        rows.append({"messages": row_to_messages(record, where)})
    if not rows:
        raise DataError(f"{source}: no rows")
    return rows


def eval_row(record, where: str) -> dict:
    """One held-out question from a row: ``instruction`` and ``answer`` (``response`` or ``output`` also accepted),
    or ``messages`` with one user turn and the reference answer; optional ``family``, ``aliases``, and ``choices`` with
    ``label`` (the answer's index). Returns those fields (``family`` None when the row has none)."""
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected an object with 'instruction' and 'answer'")
    answer = next((record[k] for k in ("answer", "response", "output") if record.get(k) not in (None, "")), None)
    if answer is None and not record.get("messages"):
        raise DataError(f"{where}: missing field 'answer' (each row needs 'instruction' and 'answer', or "
                        "'messages' ending with the reference answer)")
    if answer is not None:
        record = {**record, "response": answer}
    messages = row_to_messages(record, where)
    if [m["role"] for m in messages] != ["user", "assistant"]:
        raise DataError(f"{where}: an evaluation row is one user turn and its reference answer; got roles "
                        f"{[m['role'] for m in messages]}")
    choices, label = tuple(str(c) for c in record.get("choices") or ()), record.get("label")
    if choices and not (isinstance(label, int) and 0 <= label < len(choices)):
        raise DataError(f"{where}: 'choices' needs 'label', the index of the answer among the {len(choices)} "
                        f"choices; got label {label!r}")
    return {"family": record.get("family"), "instruction": messages[0]["content"], "answer": messages[1]["content"],
            "aliases": tuple(str(a) for a in record.get("aliases") or ()), "choices": choices, "label": label}


def row_problems(source: str, kind: str, limit: int = 20) -> list[str]:
    """Every bad row of a local file, read as the notebooks will read it (``kind``: "conversations" for 04's
    domain and public sets, "eval" for 06's held-out sets): at most ``limit`` messages and a count of the rest, so a
    run learns all of them before its first notebook, not one at a time after hours of work."""
    check = eval_row if kind == "eval" else row_to_messages
    try:
        records = read_records(source)
    except DataError as err:  # the file as a whole (not JSON, an unknown type)
        return [str(err)]
    problems = []
    for where, record in records:
        try:
            if not isinstance(record, dict):
                raise DataError(f"{where}: expected an object")
            check(record, where)
        except DataError as err:
            problems.append(str(err))
    if not records:
        problems.append(f"{source}: no rows")
    more = len(problems) - limit
    return problems[:limit] + ([f"{source}: {more} more bad rows"] if more > 0 else [])


def passes_of(dataset) -> int:
    """How many passes notebook 04 wrote into an arm (its ``pass`` column: ``general_passes``); 1 without one."""
    return max(dataset["pass"]) + 1 if "pass" in dataset.column_names else 1


def fingerprint(dataset) -> str:
    """``datasets``' own content fingerprint (kept by save_to_disk / load_from_disk), or a hash of the rows: what
    notebook 05 records per adapter and notebook 06 checks against notebook 04's current arms."""
    found = getattr(dataset, "_fingerprint", None)
    if found:
        return found
    return hashlib.sha256(json.dumps(list(dataset), sort_keys=True, default=str).encode()).hexdigest()[:16]
