"""prepare.py's protection: large texts, pipes, the download, one-line errors, and files kept whole."""

import os
import signal
import socket
import subprocess
import sys

import pytest

import prepare
from conftest import ROOT, SHAKESPEARE, assert_one_line_error, make_text, run_script


def test_reading_in_small_chunks_gives_the_same_files(tmp_path):
    """What keeps memory flat on a large text: 7-byte chunks split 2-, 3- and 4-byte characters."""
    text = "Grüße, 世界! 🙂 naïve café\n" * 40
    path = tmp_path / "text.txt"
    path.write_text(text, encoding="utf-8")
    whole = prepare.prepare(str(path), str(tmp_path / "whole"), 0.1)
    chunked = prepare.prepare(str(path), str(tmp_path / "chunked"), 0.1, chunk_bytes=7)
    assert whole == chunked and "".join(whole["chars"]) == prepare.build_vocab(text)
    for name in ("train.bin", "val.bin"):
        assert (tmp_path / "whole" / name).read_bytes() == (tmp_path / "chunked" / name).read_bytes()


def test_a_pipe_is_prepared_like_the_file_it_carries(tmp_path, text_file):
    assert run_script("prepare.py", "--input", text_file, "--data-dir", "from_file",
                      cwd=tmp_path).returncode == 0
    piped = subprocess.run([sys.executable, str(ROOT / "prepare.py"), "--input", "/dev/stdin", "--data-dir",
                            "from_pipe"], cwd=tmp_path, input=text_file.read_bytes(), capture_output=True)
    assert piped.returncode == 0, piped.stderr
    for name in ("train.bin", "val.bin", "vocab.json"):
        assert (tmp_path / "from_pipe" / name).read_bytes() == (tmp_path / "from_file" / name).read_bytes()
    assert sorted(os.listdir(tmp_path / "from_pipe")) == ["train.bin", "val.bin", "vocab.json"]


@pytest.mark.skipif(not SHAKESPEARE.exists(), reason=f"tiny Shakespeare not found at {SHAKESPEARE}")
def test_the_download_is_checked_and_gives_the_lectures_numbers(tmp_path, monkeypatch, capsys):
    # A file:// URL stands in for the web: the same code path, checksum and all, without a network.
    monkeypatch.setattr(prepare.download_shakespeare, "__defaults__", (SHAKESPEARE.as_uri(),))
    prepare.main(["--data-dir", str(tmp_path / "data")])
    assert (tmp_path / "data" / "input.txt").read_bytes() == SHAKESPEARE.read_bytes()
    out = capsys.readouterr().out
    assert "vocab_size: 65 " in out and "train: 1,003,854 characters, val: 111,540 characters" in out


@pytest.mark.parametrize("url, message", [
    ("http://127.0.0.1:9/input.txt", "could not download the text"),   # port 9 refuses at once: offline
    ("file:///dev/null", "is not tiny Shakespeare"),
])
def test_a_failed_or_wrong_download_is_one_line_and_writes_nothing(tmp_path, url, message):
    with pytest.raises(SystemExit, match=message) as error:
        prepare.download_shakespeare(str(tmp_path / "data"), url)
    assert "\n" not in error.value.code and not (tmp_path / "data").exists()


def write(path, content):
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("flags, message", [
    (lambda d: ["--input", d / "missing.txt"], "no such file"),
    (lambda d: ["--input", d], "is not a file"),
    (lambda d: ["--input", write(d / "empty.txt", b"")], "has 0 characters"),
    (lambda d: ["--input", write(d / "latin1.txt", b"caf\xe9 au lait")], "is not UTF-8"),
    (lambda d: ["--input", write(d / "cut.txt", "a few words, 5 €".encode()[:-1])], "is not UTF-8"),
    (lambda d: ["--input", write(d / "zip.txt", b"PK\x03\x04\x00\x00 binary")], "looks binary"),
    (lambda d: ["--input", write(d / "abc.txt", b"abc")], "leaves 2 to train on and 1 to validate"),
    (lambda d: ["--input", write(d / "cjk.txt", "".join(chr(c) for c in range(0x4E00, 0x4E00 + 70_000)
                                                        if not 0xD800 <= c < 0xE000).encode())],
     "at most 65,536"),
    (lambda d: ["--val-fraction", "1.5"], "--val-fraction must be between 0 and 1"),
    (lambda d: ["--val-fraction", "half"], "--val-fraction"),
    (lambda d: ["--input", write(d / "euro.txt", "a € b".encode()),
                "--vocab", write(d / "v.json", b'{"chars": ["a", " "]}')],
     "euro.txt has characters the vocabulary lacks: 'b€'"),
    (lambda d: ["--vocab", write(d / "v.json", b"[1, 2]")], "--vocab"),
    (lambda d: ["--vocab", d / "missing.json"], "--vocab"),
])
def test_user_mistakes_are_one_line_and_leave_data_as_it_was(tmp_path, flags, message):
    data = tmp_path / "data"
    data.mkdir()
    (data / "vocab.json").write_text("an earlier run", encoding="utf-8")
    assert_one_line_error(run_script("prepare.py", *flags(tmp_path), cwd=tmp_path), message)
    assert os.listdir(data) == ["vocab.json"] and (data / "vocab.json").read_text() == "an earlier run"


@pytest.mark.skipif(sys.platform != "linux", reason="needs Linux's /proc/self/mem and /dev/stdin")
@pytest.mark.parametrize("path, error", [
    ("/proc/self/mem", "Input/output error"),           # a regular file whose read at offset 0 fails (EIO)
    ("/dev/stdin", "No such device or address"),       # a pipe to copy: a socket cannot be opened by name
])
def test_a_read_error_names_the_input_not_data_and_leaves_data_as_it_was(tmp_path, path, error):
    data = tmp_path / "data"
    data.mkdir()
    (data / "vocab.json").write_text("an earlier run", encoding="utf-8")
    here, there = socket.socketpair()
    with here, there:
        result = subprocess.run([sys.executable, str(ROOT / "prepare.py"), "--input", path], cwd=tmp_path,
                                stdin=there, capture_output=True, text=True)
    assert_one_line_error(result, f"prepare.py: error: cannot read {path} ({error}); nothing was written")
    assert os.listdir(data) == ["vocab.json"] and (data / "vocab.json").read_text() == "an earlier run"


@pytest.mark.parametrize("through_a_pipe", [False, True])   # a pipe fills the disk with its copy
def test_a_disk_that_fills_up_leaves_the_earlier_files_whole(prepared, tmp_path, through_a_pipe):
    resource = pytest.importorskip("resource")
    before = {p.name: p.read_bytes() for p in (prepared / "data").iterdir()}
    bigger = tmp_path / "bigger.txt"
    bigger.write_text(make_text(4000, seed=1), encoding="utf-8")           # ~400k characters

    def no_file_past_100_kb():   # the kernel refuses the write (EFBIG) as a full disk refuses it
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
    path, stdin = ("/dev/stdin", bigger.read_text(encoding="utf-8")) if through_a_pipe else (bigger, None)
    result = subprocess.run([sys.executable, str(ROOT / "prepare.py"), "--input", str(path)], cwd=prepared,
                            input=stdin, capture_output=True, text=True, preexec_fn=no_file_past_100_kb)
    assert_one_line_error(result, "File too large", "earlier files are unchanged")
    assert {p.name: p.read_bytes() for p in (prepared / "data").iterdir()} == before
