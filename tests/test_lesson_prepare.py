"""prepare.py's lesson: characters to integers (the vocabulary, encode, decode) and the 90/10 split."""

import json
import os

import numpy as np
import pytest

import prepare
from conftest import make_text, run_script


def test_vocabulary_is_the_sorted_distinct_characters():
    assert prepare.build_vocab("hello world") == " dehlorw"


def test_encode_then_decode_gives_back_the_text():
    text = make_text()
    chars = prepare.build_vocab(text)
    ids = prepare.encode(text, chars)
    assert len(ids) == len(text) and min(ids) == 0 and max(ids) == len(chars) - 1
    assert prepare.decode(ids, chars) == text
    assert prepare.encode("hello", " dehlorw") == [3, 2, 4, 4, 5]


def test_encode_works_beyond_ascii():
    text = "Grüße, 世界! 🙂"
    chars = prepare.build_vocab(text)
    assert prepare.decode(prepare.encode(text, chars), chars) == text


@pytest.mark.parametrize("text", [make_text(), "Grüße, 世界! 🙂 naïve café\n"],
                         ids=["ascii", "beyond-ascii"])
def test_the_fast_path_gives_the_same_vocabulary_and_ids_as_the_lectures(text):
    chars = prepare.build_vocab(text)
    assert prepare.distinct_chars(text) == chars
    wider = prepare.build_vocab(text, "é€")   # more characters than the text has, as a pretrained model's
    for vocabulary in (chars, wider):
        assert prepare.encode_array(text, vocabulary).tolist() == prepare.encode(text, vocabulary)
    assert prepare.encode_array("hex!", " dehlorw").tolist() == [3, 2, -1, -1]   # not in the vocabulary


def test_split_is_first_90_percent_train_last_10_percent_val(tmp_path, text_file):
    text = text_file.read_text(encoding="utf-8")
    info = prepare.prepare(str(text_file), str(tmp_path / "data"), 0.1)
    n_train = int(len(text) * 0.9)
    assert (info["train_tokens"], info["val_tokens"]) == (n_train, len(text) - n_train)
    chars = "".join(info["chars"])
    train = np.fromfile(tmp_path / "data" / "train.bin", dtype=np.uint8)
    val = np.fromfile(tmp_path / "data" / "val.bin", dtype=np.uint8)
    assert prepare.decode(train, chars) == text[:n_train] and prepare.decode(val, chars) == text[n_train:]
    assert prepare.encode_and_split(text) == (chars, train.tolist(), val.tolist())   # the lecture's way
    vocab = json.loads((tmp_path / "data" / "vocab.json").read_text(encoding="utf-8"))
    assert vocab["chars"] == sorted(set(text)) and vocab["vocab_size"] == len(set(text))
    assert vocab["dtype"] == "uint8"
    assert sorted(os.listdir(tmp_path / "data")) == ["train.bin", "val.bin", "vocab.json"]


def test_more_than_256_characters_are_stored_as_uint16(tmp_path):
    text = "".join(chr(0x4E00 + i) for i in range(300)) * 3  # 300 distinct CJK characters
    path = tmp_path / "cjk.txt"
    path.write_text(text, encoding="utf-8")
    info = prepare.prepare(str(path), str(tmp_path / "data"), 0.1)
    assert info["dtype"] == "uint16" and info["vocab_size"] == 300
    val = np.fromfile(tmp_path / "data" / "val.bin", dtype=np.uint16)
    assert prepare.decode(val, "".join(info["chars"])) == text[int(len(text) * 0.9):]


def test_the_script_prints_the_vocabulary_and_the_split_sizes(tmp_path, text_file):
    result = run_script("prepare.py", "--input", text_file, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "vocab_size: " in result.stdout and "train: " in result.stdout and "val: " in result.stdout
