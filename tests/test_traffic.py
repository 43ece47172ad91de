"""Traffic files and redaction, without a run: the reader's
checks and one-line errors, the slices, decontamination, and what the redactor replaces
and what it leaves."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from flywheel import store
from flywheel.config import ConfigError, RedactConfig
from flywheel.redact import DEFAULT_PATTERNS, Redactor, from_config, placeholders
from flywheel.toolcall import traffic

OFF = Redactor({})


def _log(tmp_path: Path, lines: list, name: str = "traffic.jsonl") -> Path:
    path = tmp_path / name
    path.write_bytes(b"".join((x if isinstance(x, bytes) else json.dumps(x).encode()) + b"\n" for x in lines))
    return path


@pytest.mark.parametrize("text,expected", [
    ("mail ada.l@example.org now", "mail <EMAIL> now"),
    ("call +44 20 7946 0958 tomorrow", "call <PHONE> tomorrow"),
    ("call (555) 014-2233", "call <PHONE>"),
    ("ring 555-0142 at noon", "ring <PHONE> at noon"),
    ("card 4111 1111 1111 1111 please", "card <CARD> please"),
    ("pay with 4111111111111111", "pay with <CARD>"),
    ("number 1234 5678 9012 3456", "number <CARD>"),
    ("iban DE89 3704 0044 0532 0130 00", "iban <IBAN>"),
    ("to GB82WEST12345698765432", "to <IBAN>"),
    # what a tool call needs stays: amounts, ids, dates, times
    ("convert 1500000.00 usd to eur", "convert 1500000.00 usd to eur"),
    ("convert 1,250.50 eur", "convert 1,250.50 eur"),
    ("renew loan 4521 for 2 weeks", "renew loan 4521 for 2 weeks"),
    ("on 12-05 at 14:00, 12/05/2026", "on 12-05 at 14:00, 12/05/2026"),
])
def test_the_shipped_patterns_replace_contacts_and_keep_what_calls_need(text, expected):
    assert Redactor(dict(DEFAULT_PATTERNS))(text) == expected


def test_counts_per_kind_and_patterns_of_your_own():
    red = from_config(RedactConfig(patterns={"staff_id": r"EMP-\d{5}"}))
    out = red("EMP-12345 asks: mail x@y.io and z@w.org, card 4111 1111 1111 1111")
    assert out == "<STAFF_ID> asks: mail <EMAIL> and <EMAIL>, card <CARD>"
    assert red.report() == {"email": 2, "iban": 0, "card": 1, "phone": 0, "staff_id": 1}
    assert placeholders([out, "no <EMAIL> here? yes"]) == {"card": 1, "email": 3, "staff_id": 1}
    assert from_config(RedactConfig(default=False))("x@y.io") == "x@y.io"


@pytest.mark.parametrize("patterns,names", [({"bad kind": "x"}, "'bad kind' is not a name"),
                                            ({"ok": "(unclosed"}, "patterns.ok: not a regular expression")])
def test_a_bad_pattern_is_refused_by_the_config(patterns, names):
    from flywheel.config import Config

    with pytest.raises(Exception) as err:
        Config.model_validate({"traffic": {"redact": {"patterns": patterns}}})
    assert names in str(err.value)
    assert not isinstance(err.value, ConfigError) or "\n" not in str(err.value)


@pytest.mark.parametrize("where", ["traffic.jsonl", "domains/toolcall/traffic.jsonl", "logs/../traffic.jsonl", "logs"])
def test_a_log_outside_logs_is_refused_in_one_line(tmp_path, where):
    """Only prepare and expand depend on logs/: a log anywhere else would be read by them
    without DVC seeing it change, or make every stage rerun."""
    import yaml

    from flywheel.config import load

    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    params["traffic"]["file"] = where
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(ConfigError) as err:
        load(path)
    assert str(err.value) == (f"{path}: traffic.file: {where!r} is not a file under logs/ (the folder only "
                              "prepare and expand depend on, so a log that grows reruns only the generations "
                              "whose slice changed)")
    params["traffic"]["file"] = "logs/traffic.jsonl"
    path.write_text(yaml.safe_dump(params))
    assert load(path).traffic.file == "logs/traffic.jsonl"


def test_traffic_is_read_redacted_distinct_and_in_utc(tmp_path):
    path = _log(tmp_path, [
        {"request": "renew loan 4521, mail ada@example.org", "timestamp": "2026-11-02T10:00:00+01:00"},
        {"request": "Renew  loan 4521, mail ada@example.org"},  # the same request again
        {"request": "pay 5 by card", "timestamp": "2026-11-01T09:00:00", "response": "call 555-0142"},
    ])
    rows = traffic.read(path, Redactor(dict(DEFAULT_PATTERNS)))
    assert list(rows["request"]) == ["renew loan 4521, mail <EMAIL>", "pay 5 by card"]
    assert rows["timestamp"].iloc[0] == pd.Timestamp("2026-11-02T09:00:00Z")
    assert list(rows["response"]) == ["", "call <PHONE>"]
    parquet = tmp_path / "traffic.parquet"
    pd.DataFrame({"request": ["hello", "pay 5 by card"]}).to_parquet(parquet)
    assert list(traffic.read(parquet, OFF)["request"]) == ["hello", "pay 5 by card"]


BAD = [
    ("not JSON", [{"request": "ok"}, b'{"request": "x", '], "traffic.jsonl: line 2: not valid JSON"),
    ("no request", [{"request": "ok"}, {"text": "x"}], "traffic.jsonl: line 2: 'request' must be a non-empty string"),
    ("empty request", [{"request": "  "}], "traffic.jsonl: line 1: 'request' must be a non-empty string"),
    ("not an object", [["a", "list"]], "traffic.jsonl: line 1: expected a JSON object"),
    ("bad timestamp", [{"request": "x", "timestamp": "yesterday"}],
     "traffic.jsonl: line 1: 'timestamp' 'yesterday' is not a time"),
    ("response not text", [{"request": "x", "response": 3}], "traffic.jsonl: line 1: 'response' must be a string"),
    ("not UTF-8", [b'{"request": "caf\xe9"}'], "traffic.jsonl: not UTF-8"),
    ("empty file", [], "traffic.jsonl: no requests"),
]


@pytest.mark.parametrize("case,lines,names", BAD, ids=[b[0] for b in BAD])
def test_a_bad_traffic_file_is_one_line(tmp_path, case, lines, names):
    path = _log(tmp_path, lines)
    with pytest.raises(store.DataError) as err:
        traffic.read(path, OFF)
    assert names in str(err.value) and "\n" not in str(err.value)


def test_bad_parquet_and_a_missing_file_are_named(tmp_path):
    bad = tmp_path / "t.parquet"
    bad.write_bytes(b"PAR1 not really")
    with pytest.raises(store.DataError, match=r"t\.parquet: not a readable Parquet file"):
        traffic.read(bad, OFF)
    with pytest.raises(store.DataError, match=r"nothere\.jsonl: not found \(traffic\.file\)"):
        traffic.read(tmp_path / "nothere.jsonl", OFF)


def test_slices_are_disjoint_in_time_order_or_a_seeded_shuffle(tmp_path):
    rows = [{"request": f"renew loan {1000 + i}", "timestamp": f"2026-11-01T{23 - i:02d}:00:00Z"} for i in range(20)]
    log = traffic.read(_log(tmp_path, rows), OFF)
    by_time = [traffic.take(log, i, 6, "time", 1) for i in range(4)]
    assert [len(s) for s in by_time] == [6, 6, 6, 2]
    assert list(by_time[0]["request"]) == [f"renew loan {1019 - i}" for i in range(6)]  # earliest first
    sampled = [set(traffic.take(log, i, 6, "sample", 7)["request"]) for i in range(4)]
    assert set().union(*sampled) == set(log["request"]) and sum(len(s) for s in sampled) == 20
    assert sampled[0] == set(traffic.take(log, 0, 6, "sample", 7)["request"])  # the same seed, the same slice
    assert sampled[0] != set(traffic.take(log, 0, 6, "sample", 8)["request"])
    untimed = traffic.read(_log(tmp_path, [{"request": "a"}, {"request": "b"}], "u.jsonl"), OFF)
    with pytest.raises(store.DataError, match="traffic.slice: time needs a 'timestamp'"):
        traffic.take(untimed, 0, 1, "time", 1)


def test_decontamination_drops_exact_and_near_copies_of_evaluation_requests(tmp_path):
    log = traffic.read(_log(tmp_path, [{"request": "reserve the quiet room tomorrow at 10:00"},
                                       {"request": "please reserve the quiet room tomorrow at 10:00 thanks"},
                                       {"request": "RESERVE the quiet room tomorrow at 10:00"},
                                       {"request": "cancel reservation 123"}]), OFF)
    kept, dropped = traffic.decontaminate(log, ["Reserve the quiet room tomorrow at 10:00"])
    assert list(kept["request"]) == ["cancel reservation 123"] and dropped == 2  # the third repeats the first
