"""Reading the user's files (helpers.datafiles): every format, bad rows named by file and line, relative paths,
hub ids told apart from paths."""
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpers import datafiles


def msgs(q, a):
    return [{"role": "user", "content": q}, {"role": "assistant", "content": a}]


def test_load_every_format(tmp_path):
    (tmp_path / "a.jsonl").write_text(json.dumps({"messages": msgs("q1", "a1")}) + "\n\n"
                                      + json.dumps({"instruction": "q2", "response": "a2"}) + "\n")
    (tmp_path / "b.csv").write_text("instruction,response\nq1,a1\nq2,a2\n")
    (tmp_path / "c.json").write_text(json.dumps([{"instruction": "q1", "output": "a1", "input": "ctx"}]))
    pq.write_table(pa.Table.from_pylist([{"instruction": "q1", "response": "a1"}]), tmp_path / "d.parquet")
    assert datafiles.load_conversations(str(tmp_path / "a.jsonl")) == [{"messages": msgs("q1", "a1")},
                                                                     {"messages": msgs("q2", "a2")}]
    assert len(datafiles.load_conversations(str(tmp_path / "b.csv"))) == 2
    assert datafiles.load_conversations(str(tmp_path / "c.json"))[0]["messages"][0]["content"] == "q1\n\nctx"
    assert datafiles.load_conversations(str(tmp_path / "d.parquet")) == [{"messages": msgs("q1", "a1")}]


@pytest.mark.parametrize("name,content,message", [
    ("bad.jsonl", '{"instruction": "q"}\n', r"bad.jsonl, line 1: missing field 'response'"),
    ("bad2.jsonl", '{"instruction": "q", "response": "a"}\n{"response": "a"}\n', r"line 2: missing field 'instruction'"),
    ("bad3.jsonl", '{"messages": [{"role": "user"}]}\n', r"line 1: messages\[0\] is missing field"),
    ("bad4.jsonl", '{"messages": [{"role": "user", "content": "q"}]}\n', "the last message must be the assistant"),
    ("bad5.jsonl", "{not json\n", r"line 1: not valid JSON"),
    ("bad.csv", "instruction,answer\nq,a\n", r"bad.csv, line 2: missing field 'response'"),
    ("bad.txt", "x", "unsupported file type"),
])
def test_bad_rows_name_file_row_and_field(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(datafiles.DataError, match=message):
        datafiles.load_conversations(str(tmp_path / name))


def test_missing_file_is_clear():
    with pytest.raises(datafiles.DataError, match="no such file"):
        datafiles.load_conversations("data/nope.jsonl")


def test_relative_data_paths_are_found_from_the_repository_root(tmp_path, monkeypatch):
    """Notebooks run in notebooks/, a preset names data/x.jsonl: both places are looked in, and named if absent."""
    repo = tmp_path / "repo"
    (repo / "notebooks").mkdir(parents=True)
    (repo / "pyproject.toml").write_text("")
    (repo / "data").mkdir()
    (repo / "data" / "d.jsonl").write_text('{"instruction": "q", "response": "a"}\n')
    monkeypatch.chdir(repo / "notebooks")
    assert datafiles.load_conversations("data/d.jsonl")[0]["messages"][1]["content"] == "a"
    with pytest.raises(datafiles.DataError, match=r"data/missing.jsonl: no such file \(looked in .*notebooks and .*repo"):
        datafiles.load_conversations("data/missing.jsonl")
    monkeypatch.setenv("HOME", str(repo))  # ~ is expanded
    assert datafiles.load_conversations("~/data/d.jsonl")[0]["messages"][1]["content"] == "a"
    assert datafiles.looks_like_path("data/X.JSONL")
    (repo / "models" / "m").mkdir(parents=True)  # the same for a local model folder; a hub id stays as it is
    from helpers import models

    assert models.resolve("r", "models/m") == str(repo / "models" / "m")
    monkeypatch.setattr(models, "hub_reachable", lambda: "")  # as on a machine that reaches the hub
    assert models.resolve("r", "Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"


def test_hub_ids_and_paths_are_told_apart():
    assert not datafiles.looks_like_path("tatsu-lab/alpaca") and not datafiles.looks_like_path("alpaca")
    assert all(datafiles.looks_like_path(p) for p in ("data/x.jsonl", "./data", "/abs/folder", "x.parquet", "a\\b"))
    with pytest.raises(datafiles.DataError, match="cannot load dataset 'no-such-org/no-such-set'"):
        datafiles.load_conversations("no-such-org/no-such-set")  # an org/name id goes to the hub, not "no such file"
