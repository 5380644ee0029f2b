"""prepare.py: the character vocabulary, the split, the files it writes, and its one-line errors."""

import json
import os

import numpy as np
import pytest

import prepare
from conftest import SHAKESPEARE, assert_one_line_error, make_text, run_script


def test_vocabulary_is_the_sorted_distinct_characters():
    assert prepare.build_vocab("hello world") == " dehlorw"


def test_encode_then_decode_gives_back_the_text():
    text = make_text()
    chars = prepare.build_vocab(text)
    ids = prepare.encode(text, chars)
    assert ids.shape == (len(text),)
    assert ids.min() == 0 and ids.max() == len(chars) - 1
    assert prepare.decode(ids, chars) == text
    assert list(prepare.encode("hello", " dehlorw")) == [3, 2, 4, 4, 5]


def test_encode_works_beyond_ascii():
    text = "Grüße, 世界! 🙂"
    chars = prepare.build_vocab(text)
    assert prepare.decode(prepare.encode(text, chars), chars) == text


def test_encode_names_the_unknown_characters():
    with pytest.raises(KeyError) as info:
        prepare.encode("hex!", " dehlorw")
    assert info.value.args[0] == "!x"


def test_split_is_first_90_percent_train_last_10_percent_val(tmp_path, text_file):
    text = text_file.read_text(encoding="utf-8")
    info = prepare.prepare(str(text_file), str(tmp_path / "data"), 0.1)
    n_train = int(len(text) * 0.9)
    assert (info["train_tokens"], info["val_tokens"]) == (n_train, len(text) - n_train)

    chars = "".join(info["chars"])
    train = np.fromfile(tmp_path / "data" / "train.bin", dtype=np.uint8)
    val = np.fromfile(tmp_path / "data" / "val.bin", dtype=np.uint8)
    assert prepare.decode(train, chars) == text[:n_train]
    assert prepare.decode(val, chars) == text[n_train:]

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


def test_script_prints_vocabulary_and_split_sizes(tmp_path, text_file):
    result = run_script("prepare.py", "--input", text_file, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "vocab_size: " in result.stdout and "train: " in result.stdout and "val: " in result.stdout
    assert (tmp_path / "data" / "vocab.json").exists()


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    (b"", "is empty"),
    (b"caf\xe9 au lait", "is not UTF-8"),
    (b"abc", "leaves 1 for validation"),
    (b"PK\x03\x04\x00\x00 binary", "looks binary"),
])
def test_bad_input_is_one_line_and_leaves_data_untouched(tmp_path, content, message):
    data = tmp_path / "data"
    data.mkdir()
    (data / "vocab.json").write_text("earlier run", encoding="utf-8")
    path = tmp_path / "input.txt"
    if content is not None:
        path.write_bytes(content)
    result = run_script("prepare.py", "--input", path, cwd=tmp_path)
    assert_one_line_error(result, message)
    assert os.listdir(data) == ["vocab.json"]
    assert (data / "vocab.json").read_text(encoding="utf-8") == "earlier run"


def test_bad_val_fraction_is_one_line(tmp_path, text_file):
    assert_one_line_error(run_script("prepare.py", "--input", text_file, "--val-fraction", "1.5",
                                     cwd=tmp_path), "--val-fraction")
    assert_one_line_error(run_script("prepare.py", "--val-fraction", "half", cwd=tmp_path), "--val-fraction")


def test_offline_without_a_text_says_how_to_get_it(tmp_path):
    # Port 9 on this machine refuses at once, which is what no network looks like.
    result = run_script("prepare.py", "--url", "http://127.0.0.1:9/input.txt", cwd=tmp_path)
    assert_one_line_error(result, "could not download", "--input")
    assert os.listdir(tmp_path / "data") == []


def test_a_download_that_is_not_tiny_shakespeare_is_refused(tmp_path, text_file):
    result = run_script("prepare.py", "--url", text_file.as_uri(), cwd=tmp_path)
    assert_one_line_error(result, "not tiny Shakespeare")
    assert os.listdir(tmp_path / "data") == []


@pytest.mark.skipif(not SHAKESPEARE.exists(), reason=f"tiny Shakespeare not found at {SHAKESPEARE}")
def test_download_lands_in_data_and_gives_the_lectures_numbers(tmp_path):
    # A file:// URL stands in for the web: the same code path, checksum and all, without a network.
    result = run_script("prepare.py", "--url", SHAKESPEARE.as_uri(), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "data" / "input.txt").read_bytes() == SHAKESPEARE.read_bytes()
    assert "vocab_size: 65 " in result.stdout
    assert "train: 1,003,854 characters, val: 111,540 characters" in result.stdout


def test_reading_in_small_chunks_gives_the_same_files(tmp_path):
    # 7-byte chunks split the 2-, 3- and 4-byte characters across chunk boundaries.
    text = "Grüße, 世界! 🙂 naïve café\n" * 40
    path = tmp_path / "text.txt"
    path.write_text(text, encoding="utf-8")
    whole = prepare.prepare(str(path), str(tmp_path / "whole"), 0.1)
    chunked = prepare.prepare(str(path), str(tmp_path / "chunked"), 0.1, chunk_bytes=7)
    assert whole == chunked and "".join(whole["chars"]) == prepare.build_vocab(text)
    for name in ("train.bin", "val.bin"):
        assert (tmp_path / "whole" / name).read_bytes() == (tmp_path / "chunked" / name).read_bytes()
    ids = np.fromfile(tmp_path / "chunked" / "train.bin", dtype=np.uint8)
    assert prepare.decode(ids, "".join(whole["chars"])) == text[:int(len(text) * 0.9)]


def test_more_than_65536_distinct_characters_are_refused(tmp_path):
    path = tmp_path / "everything.txt"
    path.write_text("".join(chr(c) for c in range(0x4E00, 0x4E00 + 70_000) if not 0xD800 <= c < 0xE000),
                    encoding="utf-8")
    result = run_script("prepare.py", "--input", path, cwd=tmp_path)
    assert_one_line_error(result, "at most 65,536")
    assert not (tmp_path / "data").exists() or os.listdir(tmp_path / "data") == []
